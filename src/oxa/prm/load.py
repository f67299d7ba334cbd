"""Which PRM to use, declared once (:class:`PRMConfig`), and building it (:func:`load_prm`).

``prm: checker`` is the synthetic world's exact step checker. Anything else is a transformers model
(a local directory, or a hub id where the network allows) whose style is read from its config unless
given: a token-classification model or Qwen's ``*ForProcessRewardModel`` is separator style, a causal
LM is tag style.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from oxa.config import StageConfig
from oxa.errors import OxaError
from oxa.prm.base import DEFAULT_THRESHOLD, PRM
from oxa.prm.checker import CheckerPRM
from oxa.prm.hf import QWEN_PRM_SYSTEM, SEPARATOR_SPLIT, STEP_TAG, STEP_TOKEN, TAG_SPLIT, SeparatorPRM, StepTagPRM
from oxa.prm.steps import StepSplit

CHECKER = "checker"


class PRMConfig(StageConfig):
    """The process reward model and how it cuts and judges steps."""

    prm: str = Field(CHECKER, description="'checker' (the synthetic world's exact step checker) or a PRM model: "
                     "a local directory or a hub id")
    style: Literal["auto", "separator", "tag"] = Field(
        "auto", description="separator: Qwen2.5-Math-PRM style (2-class head read at <extra_0> marks); tag: "
        "Math-Shepherd style (causal LM, P('+') vs '-' at step tags); auto: read it from the model's config")
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.0, le=1.0,
                             description="a step scored below this is an error; the first such step is the first error")
    separator: str | None = Field(None, min_length=1, description="text between steps (default: one step per line "
                                  "for the checker and tag style, a blank line for separator style)")
    scope: Literal["think", "all"] = Field("think", description="think: split inside <think>...</think> and treat "
                                           "the text after </think> as one answer step; all: split the whole response")
    step_token: str = Field(STEP_TOKEN, description="separator style: the mark after every step")
    system: str | None = Field(QWEN_PRM_SYSTEM, description="separator style: the system turn (none if empty)")
    template: bool = Field(True, description="separator style: render with the chat template (off: the question "
                           "directly followed by the marked steps, TRL's PRM layout)")
    step_tag: str = Field(STEP_TAG, description="tag style: the tag closing every step")
    good_token: str = Field("+", description="tag style: the token that means 'this step is right'")
    bad_token: str = Field("-", description="tag style: the token that means 'this step is wrong'")
    trust_remote_code: bool = Field(False, description="run the model repository's own code (Qwen2.5-Math-PRM ships "
                                    "its model class that way)")
    dtype: str = Field("float32", description="model weights' dtype (float32, bfloat16, float16, auto); scores are "
                       "computed in fp32")
    device: str = Field("auto", description="auto: this rank's GPU if any, else CPU")
    max_len: PositiveInt | None = Field(None, description="cap in tokens; steps beyond it get no score")
    token_budget: PositiveInt = Field(16384, description="padded tokens per forward pass")

    def step_split(self, default: StepSplit) -> StepSplit:
        return StepSplit(separator=self.separator or default.separator, scope=self.scope)


def detect_style(config) -> str:
    """separator or tag, from a transformers config's architectures."""
    archs = list(getattr(config, "architectures", None) or [])
    if any("TokenClassification" in a or "ProcessRewardModel" in a for a in archs):
        return "separator"
    if any("CausalLM" in a or "LMHeadModel" in a for a in archs):
        return "tag"
    raise OxaError(f"cannot tell the PRM style of a model with architectures {archs or 'unknown'}; "
                   "set style to separator or tag")


def load_prm(cfg: PRMConfig) -> PRM:
    """The PRM ``cfg`` describes, on its device, in eval mode."""
    if cfg.prm == CHECKER:
        if cfg.separator not in (None, "\n"):
            raise OxaError("the synthetic step checker judges one line at a time; leave separator unset")
        return CheckerPRM(StepSplit(separator="\n", scope=cfg.scope))
    from transformers import AutoConfig

    from oxa.distributed import default_device
    from oxa.models import _load_errors, load_model, load_tokenizer, resolve

    path = resolve(cfg.prm)
    with _load_errors(cfg.prm):
        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    style = detect_style(config) if cfg.style == "auto" else cfg.style
    device = default_device() if cfg.device == "auto" else cfg.device
    tokenizer = load_tokenizer(cfg.prm)
    common = dict(max_len=cfg.max_len, token_budget=cfg.token_budget)
    if style == "tag":
        model = load_model(cfg.prm, dtype=cfg.dtype, device=device)
        return StepTagPRM(model, tokenizer, step_tag=cfg.step_tag, good_token=cfg.good_token, bad_token=cfg.bad_token,
                          split=cfg.step_split(TAG_SPLIT), **common)
    model = _load_classifier(path, config, cfg).to(device).eval()
    return SeparatorPRM(model, tokenizer, step_token=cfg.step_token, system=cfg.system or None, template=cfg.template,
                        split=cfg.step_split(SEPARATOR_SPLIT), **common)


def _load_classifier(path: str, config, cfg: PRMConfig):
    """A 2-output token classifier: transformers' own class, or the repository's code (Qwen2.5-Math-PRM)."""
    from transformers import AutoModel, AutoModelForTokenClassification

    from oxa.models import DTYPES, _load_errors

    dtype = "auto" if cfg.dtype == "auto" else DTYPES.get(cfg.dtype)
    if dtype is None:
        raise OxaError(f"unknown dtype {cfg.dtype!r}; choose one of {sorted(DTYPES)} or auto")
    archs = list(getattr(config, "architectures", None) or [])
    remote = "AutoModel" in (getattr(config, "auto_map", None) or {}) and not any("TokenClassification" in a for a in archs)
    with _load_errors(cfg.prm):
        if remote:
            if not cfg.trust_remote_code:
                raise OxaError(f"{cfg.prm}: this PRM ships its own model code ({', '.join(archs)}); "
                               "set trust_remote_code to run it")
            return AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=True)
        if getattr(config, "num_labels", 2) != 2:
            raise OxaError(f"{cfg.prm}: a separator-style PRM needs 2 labels, this model has {config.num_labels}")
        return AutoModelForTokenClassification.from_pretrained(path, dtype=dtype)
