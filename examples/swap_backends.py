"""The same code with different backends: classify a few images with each and print the answers side by side.

Every backend answers with the same ``Prediction``, so swapping one for another is a change of name and
settings, not of code. Give each backend as ``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE``; what is not given is
read from that backend's environment variables (``CUSTOM_VISION_PREDICTION_*``, ``VISION_*``,
``AZUREML_*``)::

    python examples/swap_backends.py photos/ custom_vision onnx:model_path=export/ image_analysis
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import azvision
from azvision import Classifier, Prediction

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}


def backend_spec(text: str) -> tuple[str, dict[str, str]]:
    """``"onnx:model_path=export/"`` → ``("onnx", {"model_path": "export/"})``."""
    name, _, settings = text.partition(":")
    options = {}
    for pair in filter(None, settings.split(",")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"backend settings are KEY=VALUE, got {pair!r} in {text!r}")
        options[key.strip()] = value
    return name, options


def top_label(clf: Classifier, images: list[Path]) -> list[str]:
    """The one function that uses a backend, whichever it is: the top label of each image (or the error).

    A failed image yields its ``AzVisionError`` in its place; the batch goes on.
    """
    answers = []
    for outcome in clf.classify_many(images):
        if isinstance(outcome, Prediction):
            answers.append(f"{outcome.label} {outcome.confidence:.0%}" if outcome.label else "(no label)")
        else:
            answers.append(f"! {type(outcome).__name__}")
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("backends", nargs="+", help="NAME or NAME:KEY=VALUE,KEY=VALUE")
    parser.add_argument("--limit", type=int, default=8, help="classify this many images (default 8)")
    args = parser.parse_args(argv)

    images = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[: args.limit]
    columns: dict[str, list[str]] = {}
    for spec in args.backends:
        name, options = backend_spec(spec)
        with azvision.create_classifier(name, **options) as clf:
            header = f"{name} ({options['mode']})" if "mode" in options else name
            columns[header] = top_label(clf, images)

    widths = [max(len(header), *(len(a) for a in answers)) for header, answers in columns.items()]
    image_width = max([len("image"), *(len(str(p.relative_to(args.folder))) for p in images)])
    print(
        "  ".join(["image".ljust(image_width), *(h.ljust(w) for h, w in zip(columns, widths, strict=True))])
    )
    for row, image in enumerate(images):
        cells = [answers[row].ljust(w) for answers, w in zip(columns.values(), widths, strict=True)]
        print("  ".join([str(image.relative_to(args.folder)).ljust(image_width), *cells]))
    failed = sum(answer.startswith("!") for answers in columns.values() for answer in answers)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
