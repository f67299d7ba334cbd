"""The paper's four claims, each tested with the paired bootstrap of :mod:`oxa.evaluation.significance`.

Runs are named by role: ``base``, ``sft_lp``, ``sft``, ``oxa_mle``, ``oxa_full`` after fine-tuning, and
the same names with ``+rl`` (or ``_rl``) after RLVR (matched case-insensitively, ``-`` read as ``_``); a method
evaluated under several seeds has one run per seed, in the same seed order for every method.

1. OXA_MLE and OXA_Full beat SFT on Pass@1 and Pass@k, and SFT beats SFT_LP (Table 1).
2. OXA models start RLVR with higher policy entropy than SFT and SFT_LP (Figure 2c): the entropy of the
   fine-tuned models, which is where RLVR starts.
3. The gains persist after RLVR (claim 1's comparisons between the RLVR models: OXA+RL beats SFT+RL and
   SFT+RL beats SFT_LP+RL on Pass@1 and Pass@k), and OXA_Full climbs faster during it: what RLVR added to
   its per-problem Pass@1 exceeds what it added to SFT's and OXA_MLE's.
4. The gains are largest on problems the base model solves only sometimes (Figure 2d): OXA's Pass@1 gain
   over SFT on problems the base solved in some but not all of its samples exceeds its gain on the rest.
   (Gains are measured against SFT, not the base model: the base's own samples define the buckets, so its
   Pass@1 in them is biased - 0 in "never", 1 in "always".)

A claim holds when every part holds, does not hold when a part's interval lies below zero, and is
undecided otherwise; a part whose runs are missing is listed as not measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from oxa.evaluation.significance import (FAILS, HOLDS, UNDECIDED, Comparison, Table, compare, compare_strata,
                                         contrast_strata, difference_table, mean_spread, metric_table)

RL = "+rl"
ROLES = ("base", "sft_lp", "sft", "oxa_mle", "oxa_full")
# Claim 1's comparisons (A beats B), which claim 3 repeats after RLVR: "the gains persist"
GAINS = (("oxa_mle", "sft"), ("oxa_full", "sft"), ("sft", "sft_lp"))
LABELS = {"base": "Base", "sft_lp": "SFT_LP", "sft": "SFT", "oxa_mle": "OXA_MLE", "oxa_full": "OXA_Full"}


@dataclass
class SeedRun:
    """One evaluated model under one seed: its results.json and, when samples were kept, per-problem entropy."""

    results: dict
    entropy: Table | None = None


@dataclass
class Claim:
    number: int
    text: str
    parts: list[Comparison] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # parts that could not be measured, and why

    @property
    def verdict(self) -> str:
        if not self.parts:
            return "not measured"
        verdicts = {c.verdict for c in self.parts}
        return FAILS if FAILS in verdicts else UNDECIDED if UNDECIDED in verdicts or self.missing else HOLDS


def role(name: str) -> str:
    """The role a run name plays: lower case, ``-`` and spaces read as ``_``, an ``_rl`` suffix as ``+rl``."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return key[:-3] + RL if key.endswith("_rl") else key


def label(key: str) -> str:
    base, rl = (key[: -len(RL)], True) if key.endswith(RL) else (key, False)
    return LABELS.get(base, base) + ("+RL" if rl else "")


def _tables(runs: Sequence[SeedRun], metric: str) -> list[Table] | None:
    if metric == "entropy":
        tables = [r.entropy for r in runs]
        return None if any(t is None for t in tables) else tables  # type: ignore[return-value]
    return [metric_table(r.results, metric) for r in runs]


def evaluate_claims(methods: dict[str, list[SeedRun]], *, iterations: int = 10000, confidence: float = 0.95,
                    seed: int = 0) -> list[Claim]:
    """The four claims over ``methods`` (run name -> one :class:`SeedRun` per seed)."""
    by_role = {role(name): runs for name, runs in methods.items()}
    kw = {"iterations": iterations, "confidence": confidence, "seed": seed}

    def part(claim: Claim, a: str, b: str, metric: str) -> None:
        if a not in by_role or b not in by_role:
            claim.missing.append(f"{label(a)} vs {label(b)} on {metric}: no {label(a if a not in by_role else b)} runs")
            return
        ta, tb = _tables(by_role[a], metric), _tables(by_role[b], metric)
        if ta is None or tb is None:
            claim.missing.append(f"{label(a)} vs {label(b)} on {metric}: samples.jsonl (per-sample entropy) missing")
            return
        claim.parts.append(compare(label(a), ta, label(b), tb, metric, **kw))

    c1 = Claim(1, "OXA_MLE and OXA_Full beat SFT on Pass@1 and Pass@k, and SFT beats SFT_LP")
    for metric in ("pass@1", "pass@k"):
        for a, b in GAINS:
            part(c1, a, b, metric)
    c2 = Claim(2, "OXA models start RLVR with higher policy entropy than SFT and SFT_LP")
    for a in ("oxa_mle", "oxa_full"):
        for b in ("sft", "sft_lp"):
            part(c2, a, b, "entropy")
    c3 = Claim(3, "the gains persist after RLVR, and OXA_Full climbs faster during it")
    for metric in ("pass@1", "pass@k"):
        for a, b in GAINS:
            part(c3, a + RL, b + RL, metric)
    for b in ("sft", "oxa_mle"):
        _climb(c3, by_role, "oxa_full", b, kw)
    c4 = Claim(4, "the gains over SFT are largest on problems the base model solves only sometimes")
    for a in ("oxa_mle", "oxa_full"):
        _contrast(c4, by_role, a, "sft", kw)
    return [c1, c2, c3, c4]


def _climb(claim: Claim, by_role: dict[str, list[SeedRun]], a: str, b: str, kw: dict) -> None:
    """Part of claim 3: RLVR's per-problem Pass@1 gain for A exceeds B's."""
    need = [a, a + RL, b, b + RL]
    if any(k not in by_role for k in need):
        claim.missing.append(f"RL climb of {label(a)} vs {label(b)}: needs runs " + ", ".join(map(label, need)))
        return
    climb = {k: [difference_table(x, y) for x, y in zip(_tables(by_role[k + RL], "pass@1"), _tables(by_role[k], "pass@1"))]
             for k in (a, b)}
    claim.parts.append(compare(f"{label(a)} RL climb", climb[a], f"{label(b)} RL climb", climb[b], "pass@1 gain", **kw))


def _contrast(claim: Claim, by_role: dict[str, list[SeedRun]], a: str, b: str, kw: dict) -> None:
    """Part of claim 4: A - B on problems the base solves sometimes, minus A - B on the rest."""
    if any(k not in by_role for k in ("base", a, b)):
        claim.missing.append(f"{label(a)} vs {label(b)} by base pass counts: needs runs Base, {label(a)}, {label(b)}")
        return
    strata = []
    for base, ra, rb in zip(by_role["base"], by_role[a], by_role[b]):
        counts = {bench: {str(p["id"]): p["correct"] for p in m["per_problem"]}
                  for bench, m in base.results["benchmarks"].items()}
        ns = {m["samples_per_problem"] for m in base.results["benchmarks"].values()}
        if len(ns) != 1:
            claim.missing.append(f"{label(a)} vs {label(b)} by base pass counts: base has differing n {sorted(ns)}")
            return
        stratum = contrast_strata(metric_table(ra.results, "pass@1"), metric_table(rb.results, "pass@1"),
                                  counts, ns.pop())
        if stratum is None:
            claim.missing.append(f"{label(a)} vs {label(b)} by base pass counts: the base model solves every problem "
                                 "sometimes, or none sometimes, so there is nothing to contrast")
            return
        strata.append(stratum)
    claim.parts.append(compare_strata(f"{label(a)} - {label(b)} (base sometimes)", f"{label(a)} - {label(b)} (rest)",
                                      "pass@1", strata, **kw))


# ---------------------------------------------------------------------------------------- markdown
def summary_table(methods: dict[str, list[SeedRun]]) -> str:
    """Markdown: per method, Avg. Pass@1, Avg. Pass@k (%) and policy entropy as mean ± sd over seeds."""
    lines = ["| Method | seeds | Avg. Pass@1 | Avg. Pass@k | entropy |", "|---|---|---|---|---|"]
    for name, runs in methods.items():
        p1 = mean_spread([100 * r.results["average"]["pass@1"] for r in runs])
        pk = mean_spread([100 * r.results["average"]["pass@n"] for r in runs])
        ent = [_mean_entropy(r.results) for r in runs]
        ent_cell = "–" if any(e is None for e in ent) else "{:.3f} ± {:.3f}".format(*mean_spread(ent))
        lines.append(f"| {name} | {len(runs)} | {p1[0]:.1f} ± {p1[1]:.1f} | {pk[0]:.1f} ± {pk[1]:.1f} | {ent_cell} |")
    return "\n".join(lines)


def _mean_entropy(results: dict) -> float | None:
    values = [m.get("entropy") for m in results["benchmarks"].values()]
    return None if any(v is None for v in values) else sum(values) / len(values)


def _num(metric: str, x: float) -> str:
    return f"{x:+.3f}" if metric == "entropy" else f"{100 * x:+.1f}"


def claims_markdown(claims: list[Claim]) -> str:
    """Markdown: each claim's verdict, then one row per part with the difference and its interval."""
    lines = ["| # | claim | verdict |", "|---|---|---|"]
    lines += [f"| {c.number} | {c.text} | **{c.verdict}** |" for c in claims]
    conf = next((p.confidence for c in claims for p in c.parts), 0.95)
    lines += ["", f"| # | A | B | metric | A − B | {conf:.0%} CI | P(A − B ≤ 0) | seeds | problems | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for c in claims:
        for p in c.parts:
            lines.append(f"| {c.number} | {p.a} | {p.b} | {p.metric} | {_num(p.metric, p.diff)} | "
                         f"[{_num(p.metric, p.low)}, {_num(p.metric, p.high)}] | {p.p_not_better:.3f} | {p.seeds} | "
                         f"{p.problems} | {p.verdict} |")
    missing = [f"- claim {c.number}: {m}" for c in claims for m in c.missing]
    if missing:
        lines += ["", "Not measured:", *missing]
    return "\n".join(lines)
