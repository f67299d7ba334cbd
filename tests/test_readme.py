"""The README's set-up lines and test command are what CI runs, so they cannot drift apart."""

import re

from conftest import ROOT


def _readme_lines() -> tuple[str, str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)\n```", text, re.S)
    assert block, "README must start with a bash block of set-up lines"
    install, run = block.group(1).splitlines()
    test = re.search(r"^Test: `(.+)`$", text, re.M)
    assert test, "README must state the test command as 'Test: `...`'"
    return install, run, test.group(1)


def test_readme_starts_with_install_and_demo_then_the_test_command():
    install, run, test = _readme_lines()
    assert "pip install" in install and run == "oxa demo"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert install in ci and test in ci
