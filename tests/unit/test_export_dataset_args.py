"""export_dataset checks its arguments before any network call (the endpoint here answers nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from azvision import ConfigurationError, CustomVisionTrainer
from azvision.training import DatasetExport, NotExported


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "yolo"}, "unknown export format 'yolo'"),
        ({"validation_split": 0.0}, "validation_split must be between 0 and 1"),
        ({"validation_split": 1.0}, "validation_split must be between 0 and 1"),
        ({"format": "folder", "validation_split": 0.2}, "not folder"),
    ],
)
def test_bad_arguments_fail_before_any_call(options: dict[str, object], message: str, tmp_path: Path) -> None:
    with CustomVisionTrainer("http://127.0.0.1:9", "key") as trainer:  # nothing listens on port 9
        with pytest.raises(ConfigurationError, match=message):
            trainer.export_dataset("p", tmp_path / "out", **options)  # type: ignore[arg-type]
        (tmp_path / "file").write_text("x")
        with pytest.raises(ConfigurationError, match="is a file"):
            trainer.export_dataset("p", tmp_path / "file")
    assert not (tmp_path / "out").exists()


def test_the_summary_counts_untagged_apart_from_failures() -> None:
    report = DatasetExport(
        project_id="p",
        project_name="flowers",
        task="multiclass",
        format="automl",
        out_dir=Path("out"),
        tagged=3,
        exported=2,
        not_exported=(
            NotExported(image_id="a", reason="untagged"),
            NotExported(image_id="b", reason="download failed: HTTP 500"),
        ),
    )
    summary = report.summary()
    assert (summary["untagged"], summary["failed"], report.complete) == (1, 1, False)
