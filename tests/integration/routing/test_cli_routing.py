"""``--cascade``, ``--threshold`` and ``--cache`` on the real command line (subprocesses), against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from azvision.emulator import Emulator

from .conftest import Trained, prediction_calls


def azvision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "azvision", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )


def flags(trained: Trained, emu: Emulator) -> list[str]:
    return ["--model-path", str(trained.export_dir), "--endpoint", emu.endpoint, "--key", emu.prediction_key,
            "--project-id", trained.project_id, "--iteration", "prod"]  # fmt: skip


def test_classify_through_a_cached_cascade(trained: Trained, service: Emulator, tmp_path: Path) -> None:
    folder = Path(trained.paths[0]).parents[1]
    out, cache = tmp_path / "out.jsonl", tmp_path / "cache.sqlite"
    args = ["classify", str(folder), "--cascade", "onnx,custom_vision", "--threshold", "0.999",
            "--cache", str(cache), *flags(trained, service), "--json", "-q"]  # fmt: skip
    first = azvision(*args, "--output", str(out))
    assert first.returncode == 0, first.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["source"] for r in records] == trained.paths
    cloud = [r for r in records if r["backend"] == "custom_vision"]
    assert cloud and len(cloud) < len(records)
    assert all(r["notes"][0].startswith("cascade: onnx") for r in records)
    summary = json.loads(first.stdout.splitlines()[-1])
    usage = summary["routing"]["usage"]
    assert usage["calls"] == {"onnx": len(records), "custom_vision": len(cloud)}
    assert usage["cost_usd"] == round(0.002 * len(cloud), 6) and usage["cache_misses"] == len(records)
    assert prediction_calls(service) == len(cloud)

    second = azvision(*args, "--output", str(tmp_path / "again.jsonl"))
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout.splitlines()[-1])["routing"]["usage"]
    assert again["backend_calls"] == 0 and again["cache_hits"] == len(records)
    assert prediction_calls(service) == len(cloud)


def test_evaluate_and_compare_report_calls_per_backend_and_cost(
    trained: Trained, service: Emulator, tmp_path: Path
) -> None:
    folder = str(Path(trained.paths[0]).parents[1])
    report = tmp_path / "report"
    result = azvision("evaluate", folder, "--cascade", "onnx,custom_vision", "--threshold", "0.999",
                      *flags(trained, service), "--report", str(report), "--no-plot")  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    stages = {s["name"]: s for s in metrics["routing"]["stages"]}
    assert stages["onnx"]["calls"] == metrics["total"] == len(trained.paths)
    assert stages["custom_vision"]["calls"] == prediction_calls(service) > 0
    assert "calls: onnx 18, custom_vision" in result.stdout and "list prices" in result.stdout

    compared = tmp_path / "compare"
    result = azvision("compare", folder, "--backend", "onnx", "--cascade", "onnx,custom_vision",
                      *flags(trained, service), "--report", str(compared), "--no-plot", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    comparison = json.loads((compared / "comparison.json").read_text())
    entries = {entry["backend"]: entry for entry in comparison["backends"]}
    assert set(entries) == {"onnx", "cascade"} and "routing" not in entries["onnx"]
    assert entries["cascade"]["routing"]["usage"]["calls"]["onnx"] == len(trained.paths)
    assert (compared / "cascade" / "metrics.json").is_file()


def test_routing_flags_are_checked_before_anything_runs(trained: Trained, tmp_path: Path) -> None:
    image = trained.paths[0]
    alone = azvision(
        "classify", image, "--backend", "onnx", "--model-path", str(trained.export_dir), "--threshold", "0.8"
    )
    assert alone.returncode == 2 and "--threshold applies to a cascade" in alone.stderr
    both = azvision("classify", image, "--backend", "onnx", "--cascade", "onnx,custom_vision")
    assert both.returncode == 2 and "not both" in both.stderr
    one = azvision("classify", image, "--cascade", "onnx")
    assert one.returncode == 2 and "two or more" in one.stderr


def test_compare_with_a_cache_answers_a_second_run_from_it(
    trained: Trained, service: Emulator, tmp_path: Path
) -> None:
    folder = str(Path(trained.paths[0]).parents[1])
    cache = str(tmp_path / "cache.sqlite")
    args = ["compare", folder, "--backend", "onnx", "--backend", "custom_vision", "--cache", cache,
            *flags(trained, service), "--no-plot", "--json"]  # fmt: skip
    first = azvision(*args, "--report", str(tmp_path / "one"))
    assert first.returncode == 0, first.stderr
    calls = prediction_calls(service)
    assert calls == len(trained.paths)
    second = azvision(*args, "--report", str(tmp_path / "two"))
    assert second.returncode == 0, second.stderr
    entries = {e["backend"]: e for e in json.loads(second.stdout.splitlines()[-1])["backends"]}
    for name in ("onnx", "custom_vision"):
        usage = entries[name]["routing"]["usage"]
        assert (usage["cache_hits"], usage["backend_calls"]) == (len(trained.paths), 0)
    assert prediction_calls(service) == calls


def test_a_refused_key_in_a_cascade_is_reported_without_the_key(
    trained: Trained, service: Emulator, tmp_path: Path
) -> None:
    wrong = "wrong-key-DISTINCTIVE-7c1e"
    image = trained.paths[0]
    args = ["classify", image, "--cascade", "onnx,custom_vision", "--threshold", "1.0",
            "--model-path", str(trained.export_dir), "--endpoint", service.endpoint, "--key", wrong,
            "--project-id", trained.project_id, "--iteration", "prod", "--cache", str(tmp_path / "c.sqlite")]  # fmt: skip
    done = azvision(*args)
    assert done.returncode == 1
    record = json.loads(done.stdout.splitlines()[0])
    assert record["error"]["type"] == "AuthenticationError"
    assert wrong not in done.stdout + done.stderr
    assert wrong.encode() not in (tmp_path / "c.sqlite").read_bytes()
