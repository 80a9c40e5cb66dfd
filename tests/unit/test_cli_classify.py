"""``azvision classify`` (and the small commands) through typer's CliRunner, with an in-process backend.

The fake backend is a real :class:`BaseBackend` subclass: images go through the real loader, batches
through the real engine. It labels an image by its dominant colour and can misbehave on request.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

import azvision
from azvision import AuthenticationError, Label, Prediction, ServiceError
from azvision._config import Secret, secret_setting
from azvision._images import ImageLimits, LoadedImage
from azvision._registry import _registered
from azvision.backends._base import BaseBackend
from azvision.cli import app
from azvision.cli.classify import iter_inputs

KEY = "sk-DISTINCTIVE-fake-key-7d1e9a"
COLOURS = {"red": (220, 30, 20), "green": (20, 200, 40), "blue": (20, 40, 220)}


class ColourBackend(BaseBackend):
    """Labels by dominant colour; ``interrupt_after`` sends the process a real SIGINT (Ctrl-C), ``fail_on``
    makes images of one colour fail, ``leak_key`` puts the key in an error (as a careless backend might)."""

    name = "fake_colour"
    image_limits = ImageLimits(service="fake")

    def __init__(
        self,
        *,
        key: str | Secret | None = None,
        interrupt_after: int | None = None,
        leak_key: bool = False,
        fail_on: str | None = None,
        jitter: float = 0.0,
        concurrency: int | None = None,
    ) -> None:
        super().__init__(concurrency=concurrency)
        self._key = secret_setting(key, arg="key", env=None, required=False)
        self._interrupt_after = interrupt_after
        self._leak_key = leak_key
        self._fail_on = fail_on
        self._jitter = jitter
        self._calls = 0
        self._lock = threading.Lock()

    def _predict(self, image: LoadedImage) -> Prediction:
        with self._lock:
            self._calls += 1
            call = self._calls
        if self._interrupt_after is not None and call == self._interrupt_after + 1:
            time.sleep(0.2)  # lets the CLI write the results already made, as a human's Ctrl-C would
            os.kill(os.getpid(), signal.SIGINT)
        if self._leak_key and self._key is not None:
            raise AuthenticationError(f"the key {self._key.get()} was refused", status_code=401)
        if image.url is not None:
            return Prediction(labels=[Label(name="remote", confidence=1.0)], backend=self.name)
        r, g, b = image.pil().resize((1, 1)).getpixel((0, 0))  # type: ignore[misc]
        if self._jitter:
            time.sleep(self._jitter * ((r * 7 + g * 13 + b) % 5) / 4)
        scores = dict(zip(COLOURS, (r, g, b), strict=True))
        total = sum(scores.values()) or 1
        labels = [Label(name=n, confidence=v / total) for n, v in scores.items()]
        if max(scores, key=lambda n: scores[n]) == self._fail_on:
            # a per-image failure (a 404 would be a wrong model, which stops a batch after three)
            raise ServiceError(f"cannot score {self._fail_on} images", status_code=422)
        return Prediction(labels=labels, backend=self.name, model="v1")


@pytest.fixture(autouse=True)
def _fake_backend() -> Iterator[None]:
    azvision.register_backend("fake_colour", ColourBackend)
    yield
    _registered.pop("fake_colour", None)


runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def write_image(path: Path, colour: str, shade: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    r, g, b = COLOURS[colour]
    Image.new("RGB", (32, 24), (r, max(g - shade, 0), b)).save(path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for i in range(12):
        write_image(root / f"img{i:02d}.png", list(COLOURS)[i % 3], shade=i)
    return root


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_results_are_jsonl_in_input_order_even_when_answers_arrive_out_of_order(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    result = run("classify", str(photos), "-b", "fake_colour", "--opt", "jitter:=0.02", "--concurrency", "6",
                 "-o", str(out), "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    records = lines(out)
    assert [r["source"] for r in records] == [str(photos / f"img{i:02d}.png") for i in range(12)]
    assert [r["label"] for r in records] == [list(COLOURS)[i % 3] for i in range(12)]
    first = records[0]
    assert set(first) >= {"source", "label", "confidence", "labels", "backend", "error"}
    assert first["error"] is None and first["backend"] == "fake_colour"
    assert set(first["labels"][0]) == {"name", "confidence", "box"}
    assert first["confidence"] == first["labels"][0]["confidence"]
    assert result.stdout == ""


def test_stdout_is_jsonl_without_output(photos: Path) -> None:
    result = run("classify", str(photos / "img00.png"), str(photos / "img01.png"), "-b", "fake_colour", "-q")
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in records] == ["red", "green"]


def test_a_failed_input_keeps_its_line_and_exits_1(photos: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    out = tmp_path / "out.jsonl"
    inputs = [str(photos / "img00.png"), str(broken), str(photos / "img01.png")]
    result = run("classify", *inputs, "-b", "fake_colour", "-o", str(out))
    assert result.exit_code == 1
    records = lines(out)
    assert [r["source"] for r in records] == inputs
    assert records[1]["error"]["type"] == "InvalidImageError" and records[1]["label"] is None
    assert records[0]["error"] is None and records[2]["label"] == "green"
    assert "2 classified, 1 failed in" in result.stderr  # failures are not counted as classified


@pytest.mark.parametrize("missing", ["nosuchdir/", "missing.jpg"])
def test_a_missing_folder_or_file_is_a_usage_error(photos: Path, tmp_path: Path, missing: str) -> None:
    out = tmp_path / "out.jsonl"
    result = run("classify", str(photos / "img00.png"), str(tmp_path / missing), "-b", "fake_colour",
                 "-o", str(out))  # fmt: skip
    assert result.exit_code == 2
    assert f"no such file or folder: {tmp_path / missing}" in result.stderr
    assert result.stderr.count("\n") == 1 and not out.exists()


def test_an_empty_folder_is_warned_about_and_counted(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    out = tmp_path / "out.jsonl"
    result = run("classify", str(tmp_path / "empty"), str(photos / "img00.png"), "-b", "fake_colour",
                 "-o", str(out), "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert f"warning: no images in the folder {tmp_path / 'empty'}" in result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["empty_folders"] == 1 and summary["classified"] == 1
    assert len(lines(out)) == 1


def test_csv_output_shape(photos: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    out = tmp_path / "out.csv"
    result = run(
        "classify", str(photos / "img00.png"), str(broken), "-b", "fake_colour", "-o", str(out), "-q"
    )
    assert result.exit_code == 1
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["source", "label", "confidence", "error_type", "error_message"]
    assert rows[1][:2] == [str(photos / "img00.png"), "red"] and 0.5 < float(rows[1][2]) <= 1
    assert rows[1][3:] == ["", ""]
    assert rows[2][:4] == [str(broken), "", "", "InvalidImageError"] and "empty" in rows[2][4]


def test_resume_skips_done_inputs_and_drops_a_partial_last_line(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    first_two = [str(photos / "img00.png"), str(photos / "img01.png")]
    assert run("classify", *first_two, "-b", "fake_colour", "-o", str(out), "-q").exit_code == 0
    with out.open("a") as handle:
        handle.write('{"source": "' + str(photos / "img02.png") + '", "lab')  # killed mid-line
    result = run("classify", str(photos), "-b", "fake_colour", "-o", str(out), "--resume", "--json")
    assert result.exit_code == 0, result.stderr
    records = lines(out)
    assert [r["source"] for r in records] == [str(photos / f"img{i:02d}.png") for i in range(12)]
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["written"] == summary["classified"] == 10
    assert summary["skipped"] == 2 and summary["failed"] == 0


def test_resume_counts_earlier_failures_in_the_exit_status(photos: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"junk")
    out = tmp_path / "out.csv"
    assert run("classify", str(broken), "-b", "fake_colour", "-o", str(out), "-q").exit_code == 1
    again = run("classify", str(broken), str(photos / "img00.png"), "-b", "fake_colour", "-o", str(out),
                "--resume", "-q")  # fmt: skip
    assert again.exit_code == 1
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert [r[0] for r in rows] == ["source", str(broken), str(photos / "img00.png")]


def test_ctrl_c_stops_with_130_leaves_whole_lines_and_resume_finishes(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    args = ["classify", str(photos), "-b", "fake_colour", "-o", str(out), "--concurrency", "1"]
    result = run(*args, "--opt", "interrupt_after:=4")
    assert result.exit_code == 130
    assert "--resume" in result.stderr and "Traceback" not in result.stderr
    written = lines(out)  # every line parses
    assert len(written) < 12
    assert f"{len(written)} result(s) written" in result.stderr
    result = run(*args, "--resume", "-q")
    assert result.exit_code == 0
    assert [r["source"] for r in lines(out)] == [str(photos / f"img{i:02d}.png") for i in range(12)]


def test_folder_walk_is_recursive_sorted_and_skips_hidden_and_non_images(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for name in ("z.gif", "b.png", "a.jpg", "sub/c.PNG", ".hidden/x.png", ".y.png"):
        write_image(root / name, "red")
    (root / "notes.txt").write_text("hello")
    got = list(iter_inputs([str(root), "https://example.com/cat.jpg", str(tmp_path / "nope.png")]))
    expected = [str(root / n) for n in ("a.jpg", "b.png", "sub/c.PNG", "z.gif")]
    assert got == [*expected, "https://example.com/cat.jpg", str(tmp_path / "nope.png")]


def test_urls_go_to_the_backend_as_urls() -> None:
    result = run("classify", "https://example.com/cat.jpg", "-b", "fake_colour", "-q")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["label"] == "remote"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x.png"], "missing backend"),
        (["x.png", "-b", "no_such_backend"], "unknown backend"),
        (["x.png", "-b", "fake_colour", "--resume"], "--resume needs --output"),
        (["x.png", "-b", "fake_colour", "--task", "detection"], "--task is not an option"),
        (["x.png", "-b", "fake_colour", "--opt", "nonsense"], "--opt takes"),
        (["x.png", "-b", "fake_colour", "--config", "/no/such.toml"], "cannot read the config file"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_never_echo_the_key(args: list[str], message: str) -> None:
    result = run("classify", *args, "--key", KEY)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert KEY not in result.stdout + result.stderr


def test_a_key_a_backend_leaks_into_an_error_is_redacted(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run("classify", str(photos / "img00.png"), "-b", "fake_colour", "--key", KEY, "--opt",
                 "leak_key:=true", "-o", str(out), "--json")  # fmt: skip
    assert result.exit_code == 1
    record = lines(out)[0]
    assert record["error"]["type"] == "AuthenticationError" and "***" in record["error"]["message"]
    assert KEY not in out.read_text() + result.stdout + result.stderr


def test_key_reaches_the_backend_as_a_secret(photos: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "azvision.toml"
    cfg.write_text(f'backend = "fake_colour"\nkey = "{KEY}"\n[fake_colour]\nleak_key = true\n')
    out = tmp_path / "out.jsonl"
    result = run("classify", str(photos / "img00.png"), "--config", str(cfg), "-o", str(out), "-q")
    assert result.exit_code == 1
    assert lines(out)[0]["error"]["type"] == "AuthenticationError"  # the config's key arrived
    assert KEY not in out.read_text() + result.stdout + result.stderr


def test_backend_from_environment(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZVISION_BACKEND", "fake_colour")
    result = run("classify", str(photos / "img02.png"), "-q")
    assert result.exit_code == 0 and json.loads(result.stdout)["label"] == "blue"


def test_progress_has_a_total_for_folders_less_what_resume_skips(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("azvision.cli.classify.stderr_is_tty", lambda: True)
    out = tmp_path / "out.jsonl"
    run("classify", str(photos / "img00.png"), str(photos / "img01.png"), "-b", "fake_colour", "-o", str(out))
    result = run("classify", str(photos), "-b", "fake_colour", "-o", str(out), "--resume")
    assert result.exit_code == 0
    assert "10/10" in result.stderr and "/?" not in result.stderr
