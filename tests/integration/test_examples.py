"""Every script in ``examples/`` and the example notebook, run as a user would, against the emulator.

The scripts read their settings from the environment (the Azure samples' variable names), so each test
points those variables at an emulator that already holds a trained, published and exported project, runs
the script in its own interpreter and checks what it printed. The notebook is executed with nbclient and
its rendered HTML outputs are checked.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from azvision import CustomVisionTrainer
from azvision.datasets import Dataset
from azvision.emulator import Emulator
from azvision.synthetic import make_dataset

EXAMPLES = Path(__file__).parents[2] / "examples"
SCRIPT_TIMEOUT_S = 120


@dataclass(frozen=True)
class Published:
    emulator: Emulator
    test: Dataset
    test_dir: Path
    export_dir: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    """A project trained on generated shapes, published as "examples" and exported, plus held-out images."""
    root = tmp_path_factory.mktemp("examples")
    train = make_dataset(root / "train", per_class=10, seed=0)
    test = make_dataset(root / "test", per_class=3, seed=1)
    with Emulator() as emulator:
        trainer = CustomVisionTrainer(
            emulator.endpoint, emulator.training_key, prediction_resource_id=emulator.prediction_resource_id
        )
        with trainer:
            result = trainer.train_from_folder(
                train, project="examples", publish_name="examples", export_dir=root / "export"
            )
        env = {
            "CUSTOM_VISION_PREDICTION_ENDPOINT": emulator.endpoint,
            "CUSTOM_VISION_PREDICTION_KEY": emulator.prediction_key,
            "CUSTOM_VISION_PROJECT_ID": result.project.id,
            "CUSTOM_VISION_ITERATION_NAME": "examples",
            "VISION_ENDPOINT": emulator.endpoint,
            "VISION_KEY": emulator.vision_key,
        }
        assert result.export_dir is not None
        yield Published(emulator, test, root / "test", result.export_dir, env)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """An empty folder to be an example's ``TMPDIR``, to see what it leaves behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


def leftovers(tmpdir: Path) -> list[str]:
    """The folders an example made under ``TMPDIR`` and left behind (other libraries' files aside)."""
    return [path.name for path in tmpdir.iterdir() if path.name.startswith("azvision-")]


def run_example(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<script>`` in a fresh interpreter with only ``env`` as Azure settings."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("CUSTOM_VISION_", "VISION_", "AZUREML_"))
    }
    clean.pop("AZVISION_BACKEND", None)
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )


def jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def truth_of(path: str | Path) -> str:
    return Path(path).parent.name


def test_classify_folder_reads_custom_vision_settings_from_the_environment(published: Published) -> None:
    done = run_example(
        "classify_folder.py",
        str(published.test_dir),
        env={**published.env, "AZVISION_BACKEND": "custom_vision"},
    )
    assert done.returncode == 0, done.stderr
    lines = jsonl(done.stdout)
    assert [line["source"] for line in lines] == sorted(str(item.path) for item in published.test)
    assert all(line["label"] == truth_of(str(line["source"])) for line in lines)
    assert all(0.5 < float(str(line["confidence"])) <= 1.0 for line in lines)
    summary = done.stderr.strip().splitlines()[-1]
    assert summary.startswith("9 images · ") and summary.endswith(" · 0 failed")
    assert all(f"{label}: 3" in summary for label in ("circle", "square", "triangle"))


def test_classify_folder_reports_a_broken_image_on_its_line_and_exits_1(
    published: Published, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    for item in list(published.test)[:2]:
        (folder / item.label).mkdir(parents=True, exist_ok=True)
        (folder / item.label / item.path.name).write_bytes(item.path.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")

    done = run_example(
        "classify_folder.py",
        str(folder),
        "--backend",
        "onnx",
        "--option",
        f"model_path={published.export_dir}",
        env={},
    )
    assert done.returncode == 1
    by_name = {Path(str(line["source"])).name: line for line in jsonl(done.stdout)}
    broken = by_name["broken.jpg"]["error"]
    assert isinstance(broken, dict) and broken["type"] == "InvalidImageError"
    good = [line for name, line in by_name.items() if name != "broken.jpg"]
    assert len(good) == 2
    assert all(line["label"] == truth_of(str(line["source"])) for line in good)
    assert done.stderr.strip().endswith("· 1 failed")


def test_swap_backends_gives_the_same_labels_through_the_service_and_the_export(published: Published) -> None:
    done = run_example(
        "swap_backends.py",
        str(published.test_dir),
        "custom_vision",
        f"onnx:model_path={published.export_dir}",
        "image_analysis:mode=categories",
        "--limit",
        "9",
        env=published.env,
    )
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["image", "custom_vision", "onnx", "image_analysis", "(categories)"]
    assert len(rows) == 9
    for row in rows:
        image, service_label, service_pct, onnx_label, onnx_pct, category, *_ = row.split()
        assert service_label == onnx_label == truth_of(image)
        assert service_pct.endswith("%") and onnx_pct.endswith("%")
        assert category.endswith("_")  # one of the 86 category names, e.g. "others_"


def throttled(stats: dict[str, dict[str, int]]) -> int:
    return sum(counts.get("429", 0) for route, counts in stats.items() if "imageanalysis" in route)


def test_batch_at_quota_stays_under_the_quota_and_absorbs_429s_above_it(
    published: Published, tmp_path: Path
) -> None:
    with Emulator(rate_limit_tps=8) as limited:
        env = {
            "AZVISION_BACKEND": "image_analysis",
            "VISION_ENDPOINT": limited.endpoint,
            "VISION_KEY": limited.vision_key,
        }
        out = tmp_path / "paced.jsonl"
        paced = run_example(
            "batch_at_quota.py",
            str(published.test_dir),
            "--repeat",
            "2",
            "--max-rps",
            "7",
            "--output",
            str(out),
            env=env,
        )
        assert paced.returncode == 0, paced.stderr
        expected = sorted(str(item.path) for item in published.test) * 2
        lines = jsonl(out.read_text())
        assert [line["source"] for line in lines] == expected
        assert all(line["error"] is None and line["label"] for line in lines)
        assert throttled(limited.stats()) == 0
        took = re.search(r"in ([\d.]+) s", paced.stderr)
        assert took is not None and float(took.group(1)) >= (len(expected) - 1) / 7 * 0.9

        limited.reset()
        eager = run_example(
            "batch_at_quota.py", str(published.test_dir), "--repeat", "2", "--max-rps", "100", env=env
        )
        assert eager.returncode == 0, eager.stderr
        lines = jsonl(eager.stdout)
        assert [line["source"] for line in lines] == expected
        assert all(line["error"] is None for line in lines)
        assert throttled(limited.stats()) > 0  # the quota was hit, and every image still got its answer
        assert f"{len(expected)} images in" in eager.stderr and "0 failed" in eager.stderr


@pytest.mark.slow
def test_train_and_classify_example_trains_and_both_classifiers_agree_with_the_truth(scratch: Path) -> None:
    done = run_example("train_and_classify.py", env={"TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr
    assert leftovers(scratch) == []  # its generated images and export are gone
    rows = [line.split() for line in done.stdout.splitlines() if " truth " in line]
    assert len(rows) >= 9
    # "<file> truth <label> service <label> onnx <label>"
    right = sum(row[2] == row[4] == row[6] for row in rows)
    assert right / len(rows) >= 0.9


@pytest.mark.slow
def test_async_batch_example_streams_both_batches_in_input_order(scratch: Path) -> None:
    done = run_example("async_batch.py", env={"TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("  ")]
    expected = [f"{kind}_{i:03d}.jpg" for kind in ("circle", "square", "triangle") for i in range(4)]
    for name in ("service", "onnx"):
        mine = [row for row in rows if row[0] == name]
        assert [row[1] for row in mine] == expected  # one line per image, in input order
        assert sum(row[2] == row[1].split("_")[0] for row in mine) >= 11
    summary = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"12 images through both in [\d.]+ s: service 1[12]/12 right, onnx 1[12]/12 right", summary
    )
    assert leftovers(scratch) == []


def test_packaged_scoring_script_is_the_documented_example() -> None:
    from azvision.cli.demo import scoring_script

    assert scoring_script().read_bytes() == (EXAMPLES / "aml" / "score.py").read_bytes()


def example_imports() -> Iterator[tuple[str, str]]:
    """``(where, module)`` for every import in the example scripts and in the notebook's code cells."""
    sources = {path.name: path.read_text() for path in EXAMPLES.rglob("*.py")}
    notebook = json.loads((EXAMPLES / "notebook.ipynb").read_text())
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            sources[f"notebook.ipynb cell {index}"] = "".join(cell["source"])
    for where, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                yield from ((where, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                yield where, node.module


def test_examples_import_only_public_azvision_modules() -> None:
    imported = list(example_imports())
    assert ("notebook.ipynb cell 1", "azvision.synthetic") in imported
    private = [
        (where, name)
        for where, name in imported
        if name.startswith("azvision") and any(part.startswith("_") for part in name.split("."))
    ]
    assert private == []


# --- the notebook -------------------------------------------------------------------------------------


def outputs_of(notebook: Any, tag: str) -> list[Any]:
    cells = [cell for cell in notebook.cells if tag in cell.metadata.get("tags", [])]
    assert len(cells) == 1, tag
    return list(cells[0].outputs)


def html_of(outputs: list[Any]) -> list[str]:
    return [str(out["data"]["text/html"]) for out in outputs if "text/html" in out.get("data", {})]


@pytest.mark.slow
def test_notebook_runs_and_renders_predictions_and_the_comparison(
    tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    monkeypatch.setenv("TMPDIR", str(scratch))  # the kernel's temporary folders go here
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    assert leftovers(scratch) == []

    setup = "".join(str(out.get("text", "")) for out in outputs_of(notebook, "setup"))
    assert "36 training and 12 held-out images of circle, square, triangle" in setup

    (one,) = html_of(outputs_of(notebook, "one-prediction"))
    assert 'class="azvision-prediction"' in one
    assert '<img src="data:image/png;base64,' in one
    assert "circle_000.jpg" in one  # the first held-out image: its name is the title
    first_label = re.search(r'<span style="width:120px">([^<]+)</span>', one)
    assert first_label is not None and first_label.group(1) == "circle"

    many = html_of(outputs_of(notebook, "many-predictions"))
    assert len(many) == 8  # four images, each through the service and the export
    for remote, offline in zip(many[::2], many[1::2], strict=True):
        title = re.search(r"<b>([^<]+)</b>", remote)
        assert title is not None
        for html in (remote, offline):
            top = re.search(r'<span style="width:120px">([^<]+)</span>', html)
            assert top is not None and top.group(1) == Path(title.group(1)).name.split("_")[0]
        assert "(custom_vision)" in remote and "(onnx)" in offline

    (table,) = html_of(outputs_of(notebook, "comparison"))
    accuracies = dict(re.findall(r"<tr><td>([^<]+)</td><td>([\d.]+)%</td>", table))
    assert set(accuracies) == {"Custom Vision", "ONNX (local)"}
    assert all(float(value) >= 90.0 for value in accuracies.values())

    detection = outputs_of(notebook, "detection")
    printed = "".join(str(out.get("text", "")) for out in detection)
    found = re.search(r"mAP@0.5 on 6 held-out scenes: ([\d.]+)", printed)
    assert found is not None and float(found.group(1)) >= 0.5, printed
    (boxed,) = html_of(detection)
    assert 'class="azvision-prediction"' in boxed and "scene_000.jpg" in boxed
