"""The pipeline engine and `oxa run`, on trivial stages (tests/pipeline_kinds.py): keys, reuse, --from/--only,
failures, launchers, kill -9 mid-stage, and every shipped recipe validating."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from oxa.cli import app
from oxa.errors import OxaError
from oxa.io import read_records
from oxa.pipeline import Step, run_steps
from oxa.pipeline.recipe import load_recipe, plan, recipe_source, shipped_recipes
from oxa.pipeline.run import run_recipe

TESTS = Path(__file__).parent
RECIPE = {
    "vars": {"n": 3},
    "stages": [
        {"name": "a", "kind": "pipeline_kinds:count", "settings": {"n": "${vars.n}"}},
        {"name": "b", "kind": "pipeline_kinds:count", "settings": {"n": 4, "scale": 10}},
        {"name": "total", "kind": "pipeline_kinds:total", "settings": {"inputs": ["${a}", "${b}"]}},
    ],
}


def _write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def _run(tmp_path, recipe=RECIPE, out="run", **kw) -> dict:
    loaded, source = load_recipe(_write(tmp_path / "r.yaml", recipe), overrides=kw.pop("overrides", None))
    return run_recipe(loaded, tmp_path / out, source=source, log=lambda m: None, **kw)


def _redone(manifest: dict) -> list[str]:
    return [name for name, s in manifest["stages"].items() if not s["reused"]]


def _sum(tmp_path, out="run") -> int:
    return json.loads((tmp_path / out / "total" / "sum.json").read_text())["sum"]


def test_steps_are_reused_until_their_settings_or_an_upstream_step_change(tmp_path):
    calls: list[str] = []

    def steps(x: int, y: int) -> list[Step]:
        def make(name):
            def run():
                calls.append(name)
                (tmp_path / f"{name}.txt").write_text(name)
                return {"outputs": [f"{name}.txt"], "counts": {"x": x}}
            return run
        return [Step("one", make("one"), settings=x), Step("two", make("two"), settings=y),
                Step("three", make("three"), after=("one",))]

    first = run_steps(steps(1, 1), tmp_path, log=lambda m: None)
    assert calls == ["one", "two", "three"] and first["stages"]["one"]["counts"] == {"x": 1}
    assert set(first["versions"]) >= {"python", "torch", "pydantic"}
    calls.clear()
    assert _redone(run_steps(steps(1, 1), tmp_path, log=lambda m: None)) == [] and calls == []
    assert _redone(run_steps(steps(2, 1), tmp_path, log=lambda m: None)) == ["one", "three"]  # three reads one
    assert _redone(run_steps(steps(2, 5), tmp_path, log=lambda m: None)) == ["two"]
    (tmp_path / "two.txt").unlink()  # a missing output is redone
    assert _redone(run_steps(steps(2, 5), tmp_path, log=lambda m: None)) == ["two"]


def test_recipe_references_keys_and_outputs(tmp_path):
    manifest = _run(tmp_path)
    assert _sum(tmp_path) == (0 + 1 + 4) + 10 * (0 + 1 + 4 + 9)
    st = manifest["stages"]
    assert st["total"]["inputs"] == {"a": str(tmp_path / "run/a/a.jsonl"), "b": str(tmp_path / "run/b/b.jsonl")}
    assert st["a"]["settings"]["n"] == 3 and st["total"]["counts"] == {"sum": 145}
    assert all(s["seconds"] >= 0 for s in st.values())
    # a --set override of a stage's setting redoes it and what reads it
    again = _run(tmp_path, overrides=["b.scale=100"])
    assert _redone(again) == ["b", "total"] and _sum(tmp_path) == 5 + 1400
    # its directory held the old settings' parts: redone under a new key, it started empty
    assert [r["value"] for r in read_records(tmp_path / "run/b/b.jsonl")] == [0, 100, 400, 900]
    assert _redone(_run(tmp_path, overrides=["vars.n=2", "b.scale=100"])) == ["a", "total"]


def test_from_and_only(tmp_path):
    _run(tmp_path)
    assert _redone(_run(tmp_path, from_stage="b")) == ["b", "total"]
    assert _redone(_run(tmp_path, only=["a"])) == ["a"]
    with pytest.raises(OxaError, match="no stage named 'c'"):
        _run(tmp_path, only=["c"])
    with pytest.raises(OxaError, match="upstream stage 'a' has not finished"):
        _run(tmp_path, out="fresh", only=["total"])


def test_a_failing_stage_is_named_and_the_finished_ones_are_kept(tmp_path):
    broken = {**RECIPE, "stages": [RECIPE["stages"][0], {**RECIPE["stages"][1], "settings": {"n": 4, "fail_at": 2}},
                                   RECIPE["stages"][2]]}
    with pytest.raises(OxaError, match=r"stage 'b' failed: ValueError: record 2 is broken"):
        _run(tmp_path, broken)
    manifest = json.loads((tmp_path / "run/manifest.json").read_text())
    assert "key" in manifest["stages"]["a"] and "failed" in manifest["stages"]["b"]
    assert sorted(p.name for p in (tmp_path / "run/b/parts").iterdir()) == ["0.json", "1.json"]
    fixed = _run(tmp_path)  # the fix changes b's settings: b starts over, a is reused
    assert _redone(fixed) == ["b", "total"] and _sum(tmp_path) == 145


@pytest.mark.parametrize("bad, message", [
    ({"stages": [{"name": "a", "kind": "nope"}]}, "stage a: unknown kind 'nope'"),
    ({"stages": [{"name": "a", "kind": "pipeline_kinds:count", "settings": {"n": "${later}"}}]},
     r"stage a: \$\{later\} is neither vars./models./data. nor an earlier stage"),
    ({"stages": [{"name": "a", "kind": "pipeline_kinds:count", "settings": {"n": "${vars.m}"}}]},
     "the recipe has no vars entry 'm'"),
    ({"stages": [{"name": "a", "kind": "pipeline_kinds:count", "settings": {"output": "x"}}]},
     "`output` is set by the engine"),
    ({"stages": [{"name": "a", "kind": "pipeline_kinds:count", "settings": {"n": "three"}}]},
     "stage a: invalid settings: n: Input should be a valid integer"),
    ({"stages": [{"name": "a", "kind": "pipeline_kinds:count"}], "stagse": []}, "stagse: Extra inputs"),
])
def test_bad_recipes_are_one_line_errors_naming_the_stage(tmp_path, bad, message):
    with pytest.raises(OxaError, match=message):
        loaded, source = load_recipe(_write(tmp_path / "r.yaml", bad))
        plan(loaded, tmp_path / "run", source=source)


def test_profiles_and_overrides(tmp_path):
    recipe = {**RECIPE, "profiles": {"small": {"vars.n": 1, "b.n": 1}}}
    loaded, _ = load_recipe(_write(tmp_path / "r.yaml", recipe), profile="small", overrides=["a.scale=2"])
    assert loaded.vars == {"n": 1} and loaded.stages[1].settings["n"] == 1 and loaded.stages[0].settings["scale"] == 2
    # stages sharing a YAML anchor's mapping are changed one at a time
    (tmp_path / "s.yaml").write_text("x-common: &common {n: 2}\nstages:\n"
                                     "  - {name: a, kind: 'pipeline_kinds:count', settings: *common}\n"
                                     "  - {name: b, kind: 'pipeline_kinds:count', settings: *common}\n")
    loaded, _ = load_recipe(tmp_path / "s.yaml", overrides=["a.n=5"])
    assert [s.settings["n"] for s in loaded.stages] == [5, 2]
    with pytest.raises(OxaError, match="no profile 'big'"):
        load_recipe(tmp_path / "r.yaml", profile="big")
    with pytest.raises(OxaError, match="'zz' is neither"):
        load_recipe(tmp_path / "r.yaml", overrides=["zz.n=1"])


def test_a_launcher_runs_the_stage_command_in_a_subprocess(tmp_path, monkeypatch):
    """`launcher: python` runs `python -m oxa.cli select --config RUN/<stage>/settings.yaml`: the same selection
    as in this process."""
    from oxa.io import write_records

    records = [{"id": str(i), "query": f"q{i}", "response": "r", "answer": "1", "correct": True, "ppl": 1.0 + i / 10}
               for i in range(20)]
    write_records(tmp_path / "scored.jsonl", records)
    stage = {"kind": "select", "settings": {"input": str(tmp_path / "scored.jsonl"), "n": 5, "method": "lowest"}}
    recipe = {"stages": [{"name": "here", **stage}, {"name": "there", **stage, "launcher": sys.executable}]}
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    manifest = _run(tmp_path, recipe)
    assert manifest["stages"]["there"]["launcher"] == sys.executable
    assert yaml.safe_load((tmp_path / "run/there/settings.yaml").read_text())["n"] == 5
    here, there = (read_records(tmp_path / f"run/{s}/{s}.jsonl") for s in ("here", "there"))
    assert [r["id"] for r in here] == [r["id"] for r in there] == ["0", "1", "2", "3", "4"]
    assert manifest["stages"]["there"]["counts"] == manifest["stages"]["here"]["counts"]
    recipe["stages"][1]["launcher"] = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    assert _redone(_run(tmp_path, recipe)) == []  # the launcher is not in the key: the results do not depend on it
    with pytest.raises(OxaError, match="stage 'there' failed: .* exited with status 3"):
        _run(tmp_path, recipe, from_stage="there")


def test_killed_mid_stage_and_rerun_gives_the_uninterrupted_result(tmp_path):
    recipe = {**RECIPE, "stages": [RECIPE["stages"][0], {"name": "b", "kind": "pipeline_kinds:count",
                                               "settings": {"n": 8, "scale": 10, "delay": 0.4}},
                         RECIPE["stages"][2]]}
    path = _write(tmp_path / "r.yaml", recipe)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *(p for p in sys.path if p)])}
    proc = subprocess.Popen([sys.executable, "-m", "oxa.cli", "run", str(path), "-o", str(tmp_path / "killed")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    part = tmp_path / "killed/b/parts/2.json"
    deadline = time.time() + 180
    while not part.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert part.exists() and not (tmp_path / "killed/b/b.jsonl").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "killed/b/parts").iterdir()}
    manifest = json.loads((tmp_path / "killed/manifest.json").read_text())
    assert list(manifest["stages"]) == ["a"]  # b was cut off: not recorded

    resumed = _run(tmp_path, recipe, out="killed")
    assert _redone(resumed) == ["b", "total"]
    assert all((tmp_path / "killed/b/parts" / name).stat().st_mtime_ns == t for name, t in kept.items())
    _run(tmp_path, recipe, out="whole")
    for f in ("a/a.jsonl", "b/b.jsonl", "total/sum.json"):
        assert (tmp_path / "killed" / f).read_bytes() == (tmp_path / "whole" / f).read_bytes(), f


def test_oxa_run_command_line(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    path = _write(tmp_path / "r.yaml", RECIPE)
    result = CliRunner().invoke(app, ["run", str(path), "-o", str(tmp_path / "run"), "--set", "vars.n=2"])
    assert result.exit_code == 0, result.output
    assert _sum(tmp_path) == 1 + 140
    result = CliRunner().invoke(app, ["run", str(path), "-o", str(tmp_path / "run"), "--set", "vars.n=2",
                                      "--from", "b"])
    assert result.exit_code == 0, result.output
    assert _redone(json.loads((tmp_path / "run/manifest.json").read_text())) == ["b", "total"]
    result = CliRunner().invoke(app, ["run", "no-such-recipe"])
    assert result.exit_code != 0 and "neither a recipe file nor a shipped recipe" in str(result.exception)


@pytest.mark.parametrize("name", sorted(shipped_recipes()))
def test_every_shipped_recipe_and_profile_validates(name, tmp_path):
    _, raw = recipe_source(name)
    unset = [f"{section}.{k}=x" for section in ("models", "data") for k, v in (raw.get(section) or {}).items()
             if v is None]  # what a user must give (the paper's teacher file)
    for profile in [None, *(raw.get("profiles") or {})]:
        recipe, source = load_recipe(name, profile=profile, overrides=unset)
        stages = plan(recipe, tmp_path / "run", source=source)
        assert stages and all(s.output for s in stages)


@pytest.mark.slow
def test_paper_recipe_runs_on_cpu_with_a_tiny_model_of_the_same_architecture(tmp_path, tiny_model_dir):
    """The paper's 1.5B recipe end to end, every stage, with its `cpu-check` profile and a tiny Qwen2 model in
    place of Qwen2.5-Math-1.5B (and a small teacher file): the recipe's settings all reach real commands."""
    from transformers import AutoConfig

    from oxa.io import write_records

    assert AutoConfig.from_pretrained(tiny_model_dir).model_type == "qwen2"  # Qwen2.5-Math's architecture
    rows = []
    for i in range(8):
        a, b = i + 3, 2 * i + 1
        right = a + b if i % 4 else a + b + 1  # a quarter of the teacher's answers are wrong
        rows.append({"id": f"t{i}", "query": f"What is {a} + {b}?", "answer": str(a + b),
                     "response": f"<think>\n{a} + {b} = {right}\n</think>\n\\boxed{{{right}}}"})
    write_records(tmp_path / "teacher.jsonl", rows)
    recipe, source = load_recipe("paper-qwen2.5-math-1.5b", profile="cpu-check",
                                 overrides=[f"models.base={tiny_model_dir}", f"data.teacher={tmp_path / 'teacher.jsonl'}"])
    manifest = run_recipe(recipe, tmp_path / "run", source=source, log=lambda m: None)
    st = manifest["stages"]
    assert st["verify"]["counts"]["correct"] == 6 and st["verify"]["counts"]["incorrect"] == 2
    assert st["train_oxa_full"]["settings"]["ul_data"] == str(tmp_path / "run/distill/ul_set.jsonl")
    assert st["train_oxa_full"]["settings"]["model_overrides"]["rope_theta"] == 1e6  # the paper's settings reached
    assert st["rl_oxa_full"]["counts"]["global_steps"] == 1
    assert (tmp_path / "run/report/report.md").exists()
    assert all(not s["reused"] for s in st.values())


@pytest.mark.slow
def test_smollm2_gsm8k_recipe_wiring_with_a_tiny_model(tmp_path, tiny_model_dir, shared_data):
    """The smollm2-gsm8k recipe's quick profile end to end, with a tiny model in place of SmolLM2 (whose
    PPLs, in the hundreds, need another selection range): GSM8K solutions become teacher data, every
    stage runs, and the evaluation reads the shipped GSM8K test set."""
    recipe, source = load_recipe("smollm2-gsm8k", profile="quick", overrides=[
        f"models.base={tiny_model_dir}", f"vars.data_dir={shared_data}", "vars.mu=400", "vars.sigma=200",
        "vars.ppl_max=5000", "vars.bin_width=50", "vars.distill_tokens=8", "vars.eval_tokens=8",
        "vars.cutoff_len=2048"])  # the tiny tokenizer spends more tokens on a solution
    manifest = run_recipe(recipe, tmp_path / "run", source=source, log=lambda m: None)
    st = manifest["stages"]
    assert st["teacher"]["counts"]["records"] == 24 and st["verify"]["counts"]["correct"] == 24
    assert st["select_oxa"]["counts"]["records"] == 8
    samples = read_records(tmp_path / "run/eval_oxa_full/samples.jsonl")
    assert len(samples) == 4 and {s["benchmark"] for s in samples} == {"gsm8k"}
    assert (tmp_path / "run/report/report.md").exists()
