from pathlib import Path
from typing import Annotated, Optional

import pytest
import typer
from typer.testing import CliRunner

from oxa.config import StageConfig, resolve
from oxa.errors import OxaError
from oxa.records import Fields


class DemoConfig(StageConfig):
    n: int = 10
    mu: float = 2.5
    fields: Fields = Fields()


def _app(seen: list) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def run(
        config: Annotated[Optional[Path], typer.Option("--config")] = None,
        n: Annotated[int, typer.Option("--n")] = 10,
        mu: Annotated[float, typer.Option("--mu")] = 2.5,
        fields_query: Annotated[str, typer.Option("--query-field")] = "query",
    ) -> None:
        seen.append(resolve(DemoConfig, config, {"n": n, "mu": mu, "fields.query": fields_query}))

    @app.command()
    def other() -> None:
        pass

    return app


def test_yaml_is_overlaid_by_given_flags_only(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("n: 50\nmu: 3.0\nfields:\n  query: problem\n")
    seen: list = []
    result = CliRunner().invoke(_app(seen), ["run", "--config", str(cfg), "--n", "7"])
    assert result.exit_code == 0, result.output
    assert seen[0].n == 7 and seen[0].mu == 3.0 and seen[0].fields.query == "problem"
    CliRunner().invoke(_app(seen), ["run", "--query-field", "question"])
    assert seen[1].n == 10 and seen[1].fields.query == "question"
    CliRunner().invoke(_app(seen), ["run", "--config", str(cfg), "--query-field", "question"])
    assert seen[2].n == 50 and seen[2].fields.query == "question"


def test_unknown_key_and_bad_type_name_the_file_and_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("n: 5\nsigmaa: 0.1\n")
    with pytest.raises(OxaError, match=r"c.yaml: invalid settings: sigmaa: Extra inputs"):
        resolve(DemoConfig, cfg, {})
    cfg.write_text("n: lots\n")
    with pytest.raises(OxaError, match=r"n: Input should be a valid integer"):
        resolve(DemoConfig, cfg, {})
    cfg.write_text("- 1\n- 2\n")
    with pytest.raises(OxaError, match="must be a mapping"):
        resolve(DemoConfig, cfg, {})


def test_a_flag_whose_parameter_is_misnamed_fails_loudly():
    app = typer.Typer()

    @app.command()
    def run(query_field: Annotated[str, typer.Option("--query-field")] = "query") -> None:
        resolve(DemoConfig, None, {"fields.query": query_field})

    @app.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(app, ["run"])
    assert isinstance(result.exception, ValueError) and "fields_query" in str(result.exception)
