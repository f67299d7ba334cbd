"""`oxa steps` as a library stage: annotation, ProcessBench-style numbers, resumption, bad input."""

from __future__ import annotations

import json

import pytest

from oxa.errors import OxaError, RecordError
from oxa.io import ResumableWriter, read_records, write_records
from oxa.prm import CheckerPRM, StepsConfig, annotate_steps_file, planted_records, split_steps
from oxa.synth.checker import check_steps
from oxa.synth.problems import Problem


@pytest.fixture()
def planted_file(tmp_path):
    path = tmp_path / "planted.jsonl"
    write_records(path, planted_records(12, seed=3))
    return path


def test_annotations_locate_the_checkers_first_error(planted_file, tmp_path):
    out = tmp_path / "out.jsonl"
    summary = annotate_steps_file(StepsConfig(input=planted_file, output=out, label_field="label",
                                              group_field="error_kind", batch_size=7, progress=False))
    rows = read_records(out)
    source = read_records(planted_file)
    assert [r["id"] for r in rows] == [r["id"] for r in source] and summary.records == len(rows) == 60
    for r in rows:
        report = check_steps(Problem.from_record(r), r["response"])
        spans = r["step_spans"]
        assert len(spans) == len(r["step_scores"]) == len(split_steps(r["response"]))
        if report.correct:
            assert r["first_error_step"] == -1 and r["first_error_offset"] is None
            continue
        k = r["first_error_step"]
        assert r["step_scores"][k] == 0.0 and set(r["step_scores"][:k]) <= {1.0}
        assert r["first_error_offset"] == spans[k][0]
        wrong = r["response"][spans[k][0] : spans[k][1]]
        if report.first_error < len(report.steps):
            assert wrong == report.steps[report.first_error].line
        else:
            assert "\\boxed" in wrong and r["response"][: r["first_error_offset"]].endswith("</think>\n")
    assert summary.flagged == 48
    assert (summary.bench.error_acc, summary.bench.correct_acc, summary.bench.f1) == (1.0, 1.0, 1.0)
    assert summary.bench.groups["operand"]["n_error"] == 12
    assert "F1 100.0%" in summary.line()


def test_records_with_their_own_steps_list(tmp_path):
    """ProcessBench's format: a 'steps' list and a 'label'; offsets refer to the steps joined by the separator."""
    record = planted_records(1, seed=5)[1]  # a wrong one
    steps = split_steps(record["response"]).texts
    path = tmp_path / "pb.jsonl"
    write_records(path, [{**record, "steps": steps}])
    annotate_steps_file(StepsConfig(input=path, output=tmp_path / "o.jsonl", steps_field="steps", progress=False))
    [row] = read_records(tmp_path / "o.jsonl")
    assert row["first_error_step"] == record["label"]
    joined = "\n".join(steps)
    start, end = row["step_spans"][record["label"]]
    assert joined[start:end] == steps[record["label"]] and row["first_error_offset"] == start


class CountingPRM(CheckerPRM):
    """The checker, counting what it scores, and failing after ``fail_after`` batches (an interruption)."""

    def __init__(self, fail_after: int | None = None):
        super().__init__()
        self.batches, self.seen, self.fail_after = 0, 0, fail_after

    def score(self, items):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt
        self.batches += 1
        self.seen += len(items)
        return super().score(items)


def test_an_interrupted_run_resumes_without_redoing_or_losing_work(planted_file, tmp_path):
    out = tmp_path / "out.jsonl"
    cfg = StepsConfig(input=planted_file, output=out, batch_size=8, progress=False)
    first = CountingPRM(fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        annotate_steps_file(cfg, prm=first)
    assert not out.exists() and len(ResumableWriter.load(out.with_name(out.name + ".partial"))) == 24
    second = CountingPRM()
    summary = annotate_steps_file(cfg, prm=second)
    assert second.seen == 60 - 24 and summary.scored == 36 and summary.records == 60
    reference = tmp_path / "ref.jsonl"
    annotate_steps_file(StepsConfig(input=planted_file, output=reference, progress=False))
    assert out.read_text() == reference.read_text()
    assert not list(tmp_path.glob("out.jsonl.*"))


def test_resuming_with_another_threshold_is_refused(planted_file, tmp_path):
    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        annotate_steps_file(StepsConfig(input=planted_file, output=out, batch_size=8, progress=False),
                            prm=CountingPRM(fail_after=1))
    with pytest.raises(OxaError, match="threshold"):
        annotate_steps_file(StepsConfig(input=planted_file, output=out, threshold=0.9, progress=False))


def test_bad_records_are_named_or_skipped(tmp_path):
    good = planted_records(1, seed=0)[0]
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({"query": "q"}) + "\n" + json.dumps({**good, "label": "x"}) + "\n")
    with pytest.raises(RecordError, match="in.jsonl: record 2: field 'response' is missing"):
        annotate_steps_file(StepsConfig(input=path, output=tmp_path / "o.jsonl", progress=False))
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(json.dumps(good) + "\n" + json.dumps({**good, "label": "x"}) + "\n")
    with pytest.raises(RecordError, match="labelled.jsonl: record 2: field 'label' must be a step index"):
        annotate_steps_file(StepsConfig(input=labelled, output=tmp_path / "o.jsonl", label_field="label",
                                        progress=False))
    summary = annotate_steps_file(StepsConfig(input=path, output=tmp_path / "o.jsonl", label_field="label",
                                              skip_bad=True, progress=False))
    assert summary.records == 1 and summary.skipped == 2


def test_every_setting_is_described():
    from oxa.prm import CorrectorConfig, PRMTrainConfig, StepSplit

    for cls in (StepsConfig, PRMTrainConfig, CorrectorConfig, StepSplit):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name}"


@pytest.mark.distributed
def test_two_processes_write_what_one_process_writes(planted_file, tmp_path):
    import os
    import subprocess
    import sys

    single = tmp_path / "single.jsonl"
    annotate_steps_file(StepsConfig(input=planted_file, output=single, progress=False))
    script = tmp_path / "run_steps.py"
    script.write_text("import sys\nfrom pathlib import Path\nfrom oxa.prm import StepsConfig, annotate_steps_file\n"
                      "annotate_steps_file(StepsConfig(input=Path(sys.argv[1]), output=Path(sys.argv[2]), "
                      "batch_size=5, progress=False))\n")
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    out = tmp_path / "two.jsonl"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(planted_file), str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_text() == single.read_text()
    assert not list(tmp_path.glob("two.jsonl.*"))
