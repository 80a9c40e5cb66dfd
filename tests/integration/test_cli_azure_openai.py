"""``azvision evaluate`` and ``compare`` with the Azure OpenAI backend against the emulator: its cost per
1,000 images comes from the tokens the run's answers used."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("openai")

from azvision import AzureOpenAIBackend
from azvision._pricing import PRICES, TokenTally
from azvision.cli.app import app
from azvision.datasets import Dataset
from azvision.emulator import Emulator

from .conftest import SHAPES, ShapeDataset

runner = CliRunner()


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def write_folder(root: Path, images: dict[str, list[bytes]]) -> Path:
    for label, blobs in images.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(blobs):
            (root / label / f"{i}.png").write_bytes(data)
    return root


def aoai_flags(emu: Emulator, examples: Path) -> list[str]:
    return ["--endpoint", emu.endpoint, "--key", emu.openai_key, "--deployment", "gpt-4o",
            "--labels", ",".join(SHAPES), "--examples", str(examples)]  # fmt: skip


def test_evaluate_prices_azure_openai_by_its_tokens(
    emu: Emulator, shape_dataset: ShapeDataset, tmp_path: Path
) -> None:
    examples = write_folder(tmp_path / "examples", {s: shape_dataset.train[s][:2] for s in SHAPES})
    held_out = write_folder(tmp_path / "test", {s: shape_dataset.test[s][:2] for s in SHAPES})
    report = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(held_out),
            "-b",
            "azure_openai",
            *aoai_flags(emu, examples),
            "-r",
            str(report),
            "--no-plot",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    # the same run through the Python API: its answers' usage, priced by the list
    tally = TokenTally()
    with AzureOpenAIBackend(
        emu.endpoint, emu.openai_key, deployment="gpt-4o", labels=SHAPES, examples=examples
    ) as clf:
        for item in Dataset.from_folder(held_out).items:
            tally.add(clf.classify(item.path))
    per_image = tally.per_image()
    assert per_image is not None and per_image[0] > 7 * 85  # six examples and the image, plus the text
    prompt, completion = per_image
    expected = (
        prompt * PRICES["azure_openai.gpt-4o.input"].usd
        + completion * PRICES["azure_openai.gpt-4o.output"].usd
    ) / 1000
    assert printed["cost_per_1000_usd"] == pytest.approx(expected)
    assert json.loads((report / "metrics.json").read_text())["cost_per_1000_usd"] == pytest.approx(expected)
    assert printed["cost_basis"].startswith("Azure OpenAI gpt-4o (Global Standard): $2.50 / $10.00 per 1M")
    assert emu.openai_key not in result.stdout + result.stderr


def test_compare_shows_azure_openai_cost_beside_image_analysis(
    emu: Emulator, shape_dataset: ShapeDataset, tmp_path: Path
) -> None:
    examples = write_folder(tmp_path / "examples", {s: shape_dataset.train[s][:1] for s in SHAPES})
    held_out = write_folder(tmp_path / "test", {s: shape_dataset.test[s][:1] for s in SHAPES})
    report = tmp_path / "cmp"
    flags = aoai_flags(emu, examples)
    flags[flags.index("--key") + 1] = emu.vision_key  # the shared --key is Image Analysis'
    result = runner.invoke(
        app,
        [
            "compare",
            str(held_out),
            "-b",
            "azure_openai",
            "-b",
            "image_analysis",
            *flags,
            "--opt",
            f"azure_openai.key={emu.openai_key}",
            "-r",
            str(report),
            "--no-plot",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    rows = {row["backend"]: row for row in json.loads((report / "comparison.json").read_text())["backends"]}
    assert rows["image_analysis"]["cost_per_1000_usd"] == PRICES["image_analysis.tags"].usd
    aoai = rows["azure_openai"]["cost_per_1000_usd"]
    assert aoai is not None and 0 < aoai < 10
    text = " ".join(result.stdout.split())
    assert "$/1k img" in text and f"${aoai:.2f}" in text and "tokens an image measured here" in text
