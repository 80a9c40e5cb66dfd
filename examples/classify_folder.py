"""Classify every image in a folder with any backend: one JSON line per image, then a count per label.

The backend and its settings come from the environment, the way the Azure samples configure them, so the
same script runs against Azure, a local ONNX export or the emulator::

    export AZVISION_BACKEND=custom_vision
    export CUSTOM_VISION_PREDICTION_ENDPOINT=https://<resource>.cognitiveservices.azure.com/
    export CUSTOM_VISION_PREDICTION_KEY=<key>
    export CUSTOM_VISION_PROJECT_ID=<project id>
    export CUSTOM_VISION_ITERATION_NAME=<publish name>
    python examples/classify_folder.py photos/ > results.jsonl

    python examples/classify_folder.py photos/ --backend onnx --option model_path=export/

Exit status: 0 when every image got an answer, 1 when some failed (their lines carry the error).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import azvision

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def images_in(folder: Path) -> list[Path]:
    """Image files below ``folder``, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["model_path=export/", "threshold=0.2"]`` → keyword arguments for the backend."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--option takes KEY=VALUE, got {pair!r}")
        options[key.strip()] = value
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("--backend", help="backend name (default: the AZVISION_BACKEND variable)")
    parser.add_argument("--option", action="append", default=[], help="backend keyword as KEY=VALUE")
    parser.add_argument("--max-rps", type=float, help="stay under this many requests per second")
    args = parser.parse_args(argv)

    paths = images_in(args.folder)
    labels: Counter[str] = Counter()
    failures = 0
    # Settings not given here come from the backend's environment variables.
    with azvision.create_classifier(args.backend, **parse_options(args.option)) as clf:
        for path, outcome in zip(paths, clf.classify_many(paths, max_rps=args.max_rps), strict=True):
            if isinstance(outcome, azvision.AzVisionError):
                failures += 1
                line = {
                    "source": str(path),
                    "error": {"type": type(outcome).__name__, "message": str(outcome)},
                }
            else:
                labels[outcome.label or "(no label)"] += 1
                line = {
                    "source": str(path),
                    "label": outcome.label,
                    "confidence": round(outcome.confidence, 4),
                }
            print(json.dumps(line), flush=True)

    summary = ", ".join(f"{label}: {count}" for label, count in labels.most_common())
    print(f"{len(paths)} images · {summary or 'no labels'} · {failures} failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
