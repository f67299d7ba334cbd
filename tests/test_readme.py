"""The README against what exists: its set-up and test lines are what CI runs, every `oxa` command in its
code blocks parses with the real CLI (sub-command, flags and values), and the files and script flags it
names exist."""

from __future__ import annotations

import ast
import re
import shlex

import pytest
import typer

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
ClickError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")  # of the click typer uses


def _setup_lines() -> tuple[str, str, str]:
    block = re.search(r"```bash\n(.*?)\n```", README, re.S)
    assert block, "README must start with a bash block of set-up lines"
    install, run = block.group(1).splitlines()
    test = re.search(r"^Test: `(.+)`$", README, re.M)
    assert test, "README must state the test command as 'Test: `...`'"
    return install, run, test.group(1)


def _commands() -> list[list[str]]:
    """Every command line of the README's bash blocks and of its inline `python benchmarks/...` spans, as
    words, continuation lines joined, comments dropped."""
    out = []
    lines = re.findall(r"`([^`\n]*python benchmarks/[^`\n]*)`", README)
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        lines += block.replace("\\\n", " ").splitlines()
    for line in lines:
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out


def _oxa_invocations() -> list[list[str]]:
    """The arguments after `oxa` (or after `-m oxa.cli` under torchrun) of every README command."""
    calls = []
    for words in _commands():
        for i, word in enumerate(words):
            if word == "oxa" or (word == "oxa.cli" and words[i - 1] == "-m"):
                calls.append(words[i + 1:])
                break
    return calls


def test_install_and_test_lines_are_what_ci_runs():
    install, run, test = _setup_lines()
    assert "pip install" in install and run == "oxa demo"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert install in ci and test in ci
    assert ci.index(install) < ci.index(test)  # installed as the README says, then tested


def test_every_oxa_command_in_the_readme_parses_with_the_real_cli():
    """Each sub-command exists and each flag and value is accepted (click parses, nothing runs)."""
    from oxa.cli import app

    group = typer.main.get_command(app)
    calls = _oxa_invocations()
    assert len(calls) > 20 and {c[0] for c in calls} >= {"verify", "score", "select", "train", "eval", "report", "demo"}
    failures = []
    for args in calls:
        with typer.Context(group, info_name="oxa") as parent:
            command = group.get_command(parent, args[0])
            if command is None:
                failures.append(f"oxa {shlex.join(args)}: no sub-command {args[0]!r}")
                continue
            try:
                command.make_context(args[0], list(args[1:]), parent=parent)
            except ClickError as e:
                failures.append(f"oxa {shlex.join(args)}: {e.format_message()}")
    assert failures == []


def test_a_wrong_flag_would_be_caught():
    """The check above can fail: a flag the CLI does not have, or a value of the wrong type, is refused."""
    from oxa.cli import app

    group = typer.main.get_command(app)
    with typer.Context(group, info_name="oxa") as parent:
        with pytest.raises(ClickError, match="No such option: --sigmaa"):
            group.get_command(parent, "select").make_context("select", ["in.jsonl", "-o", "x", "--sigmaa", "1"], parent=parent)
        with pytest.raises(typer.BadParameter):
            group.get_command(parent, "select").make_context("select", ["in.jsonl", "-o", "x", "--n", "many"], parent=parent)


def test_files_and_script_flags_the_readme_names_exist():
    for path in sorted(set(re.findall(r"(?<![\w/.])((?:configs|benchmarks)/[\w./-]+\.(?:yaml|json|py))", README))):
        assert (ROOT / path).is_file(), path
    scripts = [w[w.index("python"):] for w in _commands() if "python" in w and w.index("python") + 1 < len(w)
               and w[w.index("python") + 1].startswith("benchmarks/")]
    assert len(scripts) > 5
    for words in scripts:
        source = (ROOT / words[1]).read_text(encoding="utf-8")
        options = {arg.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
                   and getattr(node.func, "attr", None) == "add_argument" for arg in node.args
                   if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}
        flags = {w.split("=")[0] for w in words[2:] if w.startswith("--")}
        assert flags <= options, (words[1], sorted(flags - options))
