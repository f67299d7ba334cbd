from oxa.prompting import PAPER_SUFFIX, PromptFormat, encode_example, response_mask


def test_template_mode_prompt_is_chat_template_and_response_ends_with_eos(tiny_tokenizer):
    fmt = PromptFormat()
    enc = encode_example(tiny_tokenizer, "What is 2+3?", "<think>2+3=5</think> \\boxed{5}", fmt)
    prompt = tiny_tokenizer.decode(enc.input_ids[: enc.n_prompt])
    assert prompt == "<|im_start|>user\nWhat is 2+3?" + PAPER_SUFFIX + "<|im_end|>\n<|im_start|>assistant\n"
    assert enc.input_ids[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(enc.input_ids[enc.n_prompt : -1]) == "<think>2+3=5</think> \\boxed{5}"


def test_no_template_concatenates_without_special_tokens(tiny_tokenizer):
    fmt = PromptFormat(template=False, suffix="")
    enc = encode_example(tiny_tokenizer, "Q: 1+1", " A: 2", fmt)
    assert enc.input_ids == tiny_tokenizer("Q: 1+1")["input_ids"] + tiny_tokenizer(" A: 2")["input_ids"]
    empty = encode_example(tiny_tokenizer, "", "A: 2", fmt)
    assert empty.n_prompt == 0 and response_mask(empty)[0] is False and all(response_mask(empty)[1:])


def test_truncation_is_flagged(tiny_tokenizer):
    enc = encode_example(tiny_tokenizer, "q", "a long response " * 20, PromptFormat(), max_len=30)
    assert enc.truncated and len(enc.input_ids) == 30
