"""``azvision classify --output``: locking, ``--resume`` and ``--retry-failed`` on real files.

The backend is the colour backend of ``test_cli_classify`` (a real :class:`BaseBackend` subclass).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from pathlib import Path

import pytest

from .test_cli_classify import _fake_backend, lines, photos, run, write_image

__all__ = ["_fake_backend", "photos"]  # fixtures, used by name

ODD_NAME = b"caf\xe9-\xff.png"  # Latin-1 bytes: not valid UTF-8


def summary(result: object) -> dict[str, object]:
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_file_name_that_is_not_utf8_is_written_and_resumed(tmp_path: Path, suffix: str) -> None:
    folder = tmp_path / "odd"
    write_image(folder / "a.png", "red")
    odd = os.path.join(os.fsencode(folder), ODD_NAME)
    write_image(Path(os.fsdecode(odd)), "blue")
    out = tmp_path / f"out{suffix}"
    first = run("classify", str(folder), "-b", "fake_colour", "-o", str(out), "--json")
    assert first.exit_code == 0, first.stderr
    assert ODD_NAME in out.read_bytes()  # the name's own bytes, as `ls` shows them
    again = run("classify", str(folder), "-b", "fake_colour", "-o", str(out), "--resume", "--json")
    assert again.exit_code == 0, again.stderr
    assert summary(again)["written"] == 0 and summary(again)["skipped"] == 2


def test_a_file_name_that_is_not_utf8_on_stdout_is_an_escaped_json_line(tmp_path: Path) -> None:
    odd = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), ODD_NAME)))
    write_image(odd, "green")
    result = run("classify", str(odd), "-b", "fake_colour", "-q")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["source"] == str(odd)  # reads back to the same name


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"my notes\nthe last line has no newline"),
        ("notes.jsonl", b'{"name": "not ours"}\n'),
        ("notes.jsonl", b""),  # placeholder replaced below: a good line, then a partial foreign one
        ("notes.csv", b"a,b\n1,2"),
        ("notes.csv", b"just text"),
    ],
)
def test_resume_refuses_a_file_that_is_not_azvision_output_without_touching_it(
    photos: Path, tmp_path: Path, name: str, content: bytes
) -> None:
    out = tmp_path / name
    if not content:
        ok = run("classify", str(photos / "img00.png"), "-b", "fake_colour", "-o", str(out), "-q")
        assert ok.exit_code == 0
        content = out.read_bytes() + b"and then some notes"
    out.write_bytes(content)
    before = out.stat()
    result = run("classify", str(photos), "-b", "fake_colour", "-o", str(out), "--resume", "-q")
    assert result.exit_code == 2
    assert f"cannot resume {out}" in result.stderr and "left as it was" in result.stderr
    assert out.read_bytes() == content
    assert out.stat().st_mtime_ns == before.st_mtime_ns


def test_inputs_are_matched_on_their_resolved_path(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.jsonl"
    assert run("classify", "photos", "-b", "fake_colour", "-o", str(out), "-q").exit_code == 0
    for spelling in ("./photos", str(photos), "photos/../photos/"):
        again = run("classify", spelling, "-b", "fake_colour", "-o", str(out), "--resume", "--json")
        assert again.exit_code == 0, again.stderr
        assert summary(again)["written"] == 0 and summary(again)["skipped"] == 12, spelling
    assert len(lines(out)) == 12


@pytest.mark.parametrize("resume", [False, True])
def test_a_second_writer_of_the_same_output_is_refused(photos: Path, tmp_path: Path, resume: bool) -> None:
    out = tmp_path / "out.jsonl"
    assert run("classify", str(photos / "img00.png"), "-b", "fake_colour", "-o", str(out)).exit_code == 0
    content = out.read_bytes()
    with out.open("rb") as held:  # what a running `azvision classify -o out.jsonl` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        args = ["classify", str(photos), "-b", "fake_colour", "-o", str(out)]
        result = run(*args, *(["--resume"] if resume else []))
    assert result.exit_code == 2
    assert f"{out} is being written by another azvision run" in result.stderr
    assert result.stderr.count("\n") == 1
    assert out.read_bytes() == content


def test_the_lock_is_released_when_a_run_ends(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert run("classify", str(photos / "img00.png"), "-b", "fake_colour", "-o", str(out)).exit_code == 0
    with out.open("rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise if the run still held it


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_retry_failed_reruns_exactly_the_failed_lines_in_place(
    photos: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"out{suffix}"
    first = run("classify", str(photos), "-b", "fake_colour", "-o", str(out), "--opt", "fail_on=green", "-q")
    assert first.exit_code == 1
    before = out.read_text().splitlines(keepends=True)
    inode = out.stat().st_ino
    result = run("classify", "-b", "fake_colour", "-o", str(out), "--retry-failed", "--json")
    assert result.exit_code == 0, result.stderr
    assert summary(result)["retried"] == 4 and summary(result)["classified"] == 4
    after = out.read_text().splitlines(keepends=True)
    if suffix == ".csv":
        rows = list(csv.reader(io.StringIO("".join(after))))
        assert rows[0][0] == "source"
        sources, labels = [r[0] for r in rows[1:]], [r[1] for r in rows[1:]]
    else:
        sources, labels = [r["source"] for r in lines(out)], [r["label"] for r in lines(out)]
    assert sources == [str(photos / f"img{i:02d}.png") for i in range(12)]
    assert labels == ["red", "green", "blue"] * 4
    kept = [i for i, line in enumerate(before) if "ServiceError" not in line]
    assert [after[i] for i in kept] == [before[i] for i in kept]  # the good lines, byte for byte
    assert out.stat().st_ino != inode  # a new file renamed over the old one
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_retry_failed_interrupted_leaves_the_file_as_it_was(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    args = ["classify", str(photos), "-b", "fake_colour", "-o", str(out), "--concurrency", "1"]
    assert run(*args, "--opt", "fail_on=red", "-q").exit_code == 1
    content = out.read_bytes()
    result = run(*args, "--retry-failed", "--opt", "interrupt_after:=2")
    assert result.exit_code == 130
    assert out.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    finished = run(*args, "--retry-failed", "--json")
    assert finished.exit_code == 0 and summary(finished)["retried"] == 4
    assert [r["error"] for r in lines(out)] == [None] * 12


def test_retry_failed_then_appends_new_inputs(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    first_four = [str(photos / f"img{i:02d}.png") for i in range(4)]
    run("classify", *first_four, "-b", "fake_colour", "-o", str(out), "--opt", "fail_on=blue", "-q")
    result = run("classify", str(photos), "-b", "fake_colour", "-o", str(out), "--retry-failed", "--json")
    assert result.exit_code == 0, result.stderr
    got = summary(result)
    assert (got["retried"], got["skipped"], got["written"]) == (1, 3, 9)
    assert [r["source"] for r in lines(out)] == [str(photos / f"img{i:02d}.png") for i in range(12)]


def test_retry_failed_needs_output(photos: Path) -> None:
    result = run("classify", str(photos), "-b", "fake_colour", "--retry-failed")
    assert result.exit_code == 2 and "--retry-failed needs --output" in result.stderr


def test_settings_failures_end_with_one_line_naming_the_fix(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run("classify", str(photos), "-b", "fake_colour", "--key", "sk-wrong-0000", "--opt",
                 "leak_key:=true", "-o", str(out), "-q")  # fmt: skip
    assert result.exit_code == 1
    hint = [line for line in result.stderr.splitlines() if "failed with" in line]
    assert hint == [
        "azvision: error: 12 inputs failed with AuthenticationError from fake_colour: "
        "the service refused the key; check --key"
    ]
    assert "sk-wrong-0000" not in result.stderr
