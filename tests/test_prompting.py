import pytest

from oxa.prompting import PAPER_SUFFIX, PromptFormat, encode_example, encode_prompt, response_mask


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


# ---------------------------------------------------------------------------------------------------
# One prompt for every stage: a template override reaches scoring, training, generation and evaluation

SYSTEM_INJECTING = (  # like Qwen2.5-Math's: a default system turn when the messages bring none
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
NO_SYSTEM = (  # the paper's: ChatML without the default system turn (as in configs/paper/prompt.yaml)
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QUERY, RESPONSE, SUFFIX = "What is 2 + 3?", "<think>2 + 3 = 5</think> \\boxed{5}", " Think."


@pytest.fixture(scope="module")
def system_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny model whose saved tokenizer's own chat template injects a system turn."""
    import copy

    from oxa.tiny import build_tiny_model, save_tiny

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = SYSTEM_INJECTING
    model = build_tiny_model(tok, hidden=32, layers=1, heads=2, kv_heads=1, seed=0)
    return save_tiny(model, tok, tmp_path_factory.mktemp("sys") / "model")


@pytest.fixture
def fed(monkeypatch):
    """Every row of token ids the model embeds (a global forward hook on embedding layers), pads removed."""
    import torch

    rows: list[list[int]] = []

    def hook(module, args):
        if isinstance(module, torch.nn.Embedding) and args and args[0].dtype == torch.long and args[0].dim() == 2:
            rows.extend(r.tolist() for r in args[0])

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    yield rows
    handle.remove()


def _expected(tok) -> list[int]:
    """The paper's prompt written out by hand: the user turn only, then the assistant header."""
    text = f"<|im_start|>user\n{QUERY}{SUFFIX}<|im_end|>\n<|im_start|>assistant\n"
    return tok(text, add_special_tokens=False)["input_ids"]


def _strip_pads(row: list[int], pad: int) -> list[int]:
    start = next(i for i, t in enumerate(row) if t != pad)  # generation pads on the left
    end = len(row)
    while end > start and row[end - 1] == pad:  # training and scoring pad on the right
        end -= 1
    return row[start:end]


def test_every_stage_feeds_the_model_the_same_prompt_tokens(system_model_dir, tmp_path, fed):
    from oxa.evaluation import EvalConfig, evaluate
    from oxa.generation import GenerateConfig, generate_file
    from oxa.io import write_records
    from oxa.models import load_tokenizer
    from oxa.scoring import ScoreConfig, score_file
    from oxa.training import TrainConfig, train

    tok = load_tokenizer(system_model_dir)
    expected, pad = _expected(tok), tok.pad_token_id
    response = tok(RESPONSE, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    fmt = PromptFormat(suffix=SUFFIX, chat_template=NO_SYSTEM)
    # the tokenizer's own template would prompt differently: without the override the test cannot pass
    assert encode_prompt(tok, QUERY, PromptFormat(suffix=SUFFIX))[: len(expected)] != expected
    write_records(tmp_path / "data.jsonl", [{"id": "a", "query": QUERY, "response": RESPONSE, "answer": "5"}])
    common = dict(model=str(system_model_dir), prompt=fmt, progress=False)

    def run(stage) -> list[list[int]]:
        """The prompt-bearing rows the stage fed the model (not scoring's 8-token architecture probe, not
        the one-token decoding steps)."""
        fed.clear()
        stage()
        return [_strip_pads(r, pad) for r in fed if len(r) > 1 and r != list(range(len(r)))]

    scored = run(lambda: score_file(ScoreConfig(input=tmp_path / "data.jsonl", output=tmp_path / "s.jsonl", **common)))
    trained = run(lambda: train(TrainConfig(model=str(system_model_dir), output_dir=tmp_path / "t", method="sft",
                                            ce_data=tmp_path / "data.jsonl", prompt=fmt, max_steps=1, ce_per_step=1,
                                            micro_batch_size=1, save_steps=None), log=lambda *a: None))
    sampling = dict(n=1, max_new_tokens=2, backend="transformers", device="cpu")
    generated = run(lambda: generate_file(GenerateConfig(input=tmp_path / "data.jsonl", output=tmp_path / "g.jsonl",
                                                         **sampling, **common)))
    evaluated = run(lambda: evaluate(EvalConfig(benchmarks=[str(tmp_path / "data.jsonl")], output=tmp_path / "e",
                                                workers=1, **sampling, **common)))
    # scoring and training feed prompt + response + EOS; sampling prefills the prompt (then one token a step)
    assert scored == [expected + response]
    assert trained == [expected + response]
    assert generated == [expected]
    assert evaluated == [expected]


def test_the_vllm_prompt_text_is_the_same_prompt(system_model_dir, monkeypatch):
    """vLLM takes prompt text and tokenizes it itself: that text must tokenize to the same prompt."""
    import sys
    import types

    from oxa.generation.sampling import SamplingParams
    from oxa.generation.types import Job
    from oxa.generation.vllm_backend import VLLMBackend
    from oxa.models import load_tokenizer

    prompts: list[str] = []

    class FakeLLM:  # stands in for vllm.LLM: records what it is asked to complete
        def __init__(self, **kwargs):
            pass

        def generate(self, texts, requests, use_tqdm=False):
            prompts.extend(texts)
            out = types.SimpleNamespace(text="5", token_ids=[5], finish_reason="stop")
            return [types.SimpleNamespace(outputs=[out]) for _ in texts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM, SamplingParams=lambda **k: k))
    tok = load_tokenizer(system_model_dir)
    backend = VLLMBackend(str(system_model_dir), tok)
    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=2)
    list(backend.run([QUERY], [Job(key=0, query=0, seed=0)], params,
                     PromptFormat(suffix=SUFFIX, chat_template=NO_SYSTEM)))
    assert [tok(p)["input_ids"] for p in prompts] == [_expected(tok)]
