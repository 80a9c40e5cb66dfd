"""The command line's frame: version, backend listing, command registration, emulator launch, progress."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

import azvision
from tests.unit.test_cli_classify import _fake_backend, run, write_image

pytestmark = pytest.mark.usefixtures(_fake_backend.__name__)
app_module = importlib.import_module("azvision.cli.app")  # the module (``azvision.cli.app`` is the Typer app)


def test_version_and_backends() -> None:
    assert run("--version").stdout.strip() == f"azvision {azvision.__version__}"
    listed = [json.loads(line) for line in run("backends", "--json").stdout.splitlines()]
    by_name = {row["name"]: row for row in listed}
    assert {"custom_vision", "image_analysis", "azure_ml", "onnx", "fake_colour"} <= set(by_name)
    assert by_name["custom_vision"]["status"] == "ok"
    assert by_name["fake_colour"]["target"].endswith(":ColourBackend")


def test_later_commands_register_when_their_module_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_module._register_if_present("azvision_no_such_command")  # not written yet: silently skipped
    (tmp_path / "hello_cmd.py").write_text(
        "import typer\n\ndef register(app):\n    app.command('hello')(lambda: typer.echo('hello'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(app_module.app, "registered_commands", list(app_module.app.registered_commands))
    app_module._register_if_present("hello_cmd")
    assert run("hello").stdout == "hello\n"


def test_a_command_module_with_a_broken_import_is_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_cmd.py").write_text("import azvision_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="azvision_missing_dependency"):
        app_module._register_if_present("broken_cmd")


def test_emulator_without_its_extra_exits_2_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "azvision.emulator._server", raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = run("emulator")
    assert result.exit_code == 2
    assert "pip install 'azvision[emulator]'" in result.stderr and "Traceback" not in result.stderr


def test_emulator_option_errors(tmp_path: Path) -> None:
    assert "NAME=SCORE_PY" in run("emulator", "--aml-endpoint", "oops").stderr
    missing = run("emulator", "--aml-endpoint", f"clf={tmp_path / 'score.py'}")
    assert missing.exit_code == 2 and "no such scoring script" in missing.stderr
    assert run("emulator", "--fail-rate", "1.5").exit_code == 2


def test_progress_bar_on_a_terminal_and_not_with_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        write_image(tmp_path / "in" / f"{i}.png", "red")
    monkeypatch.setattr("azvision.cli.classify.stderr_is_tty", lambda: True)
    shown = run("classify", str(tmp_path / "in"), "-b", "fake_colour", "-o", str(tmp_path / "o.jsonl"))
    assert shown.exit_code == 0 and "classifying" in shown.stderr and "3" in shown.stderr
    quiet = run("classify", str(tmp_path / "in"), "-b", "fake_colour", "-o", str(tmp_path / "o.jsonl"), "-q")
    assert quiet.stderr == ""


def test_check_classifies_one_probe_and_says_ok() -> None:
    result = run("check", "-b", "fake_colour")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok: fake_colour answered in ") and result.stdout.count("\n") == 1
    as_json = json.loads(run("check", "-b", "fake_colour", "--json").stdout)
    assert as_json["ok"] is True and as_json["label"] in {"red", "green", "blue"}


def test_check_names_the_fix_in_one_line_and_exits_1() -> None:
    result = run("check", "-b", "fake_colour", "--key", "sk-refused-5678", "--opt", "leak_key:=true")
    assert result.exit_code == 1
    assert result.stderr == (
        "azvision: error: fake_colour: AuthenticationError: the key *** was refused (HTTP 401) "
        "(the service refused the key; check --key)\n"
    )


def test_check_usage_errors_exit_2() -> None:
    result = run("check")
    assert result.exit_code == 2 and "missing backend" in result.stderr
