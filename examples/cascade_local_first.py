"""Local model first, the cloud only when it is unsure, repeats from a cache: print who answered each image.

The ONNX export answers what it is sure of on this machine (free); the rest goes to the published Custom
Vision iteration (``CUSTOM_VISION_PREDICTION_*`` settings from the environment); every answer is kept in a
SQLite cache, so a second run makes no call at all. The last line is what the run cost at list prices::

    python examples/cascade_local_first.py photos/ --model-path export.zip --cache answers.sqlite
"""

from __future__ import annotations

import argparse
from pathlib import Path

from azvision import CachedClassifier, Cascade, CustomVisionBackend, OnnxBackend, Prediction

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="images, in sub-folders or not")
    parser.add_argument("--model-path", required=True, help="the ONNX export: zip or folder")
    parser.add_argument("--threshold", type=float, default=0.8, help="below it, ask the cloud")
    parser.add_argument("--cache", default="azvision-cache.sqlite", help="the SQLite answer cache")
    args = parser.parse_args(argv)

    images = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    local = OnnxBackend(args.model_path)
    cloud = CustomVisionBackend(labels=local.labels)  # the environment's resource, in the export's labels
    router = CachedClassifier(Cascade([local, cloud], threshold=args.threshold), args.cache)
    failed = 0
    with router:
        for image, outcome in zip(images, router.classify_many(images), strict=True):
            if isinstance(outcome, Prediction):
                how = "cache" if "cache: hit" in outcome.notes else outcome.backend
                print(f"{image}\t{outcome.label}\t{outcome.confidence:.2f}\t{how}")
            else:
                failed += 1
                print(f"{image}\t!\t{type(outcome).__name__}: {outcome}")
        usage = router.stats().usage
    calls = ", ".join(f"{name} {n}" for name, n in usage.calls.items())
    print(f"calls: {calls}; cache hits {usage.cache_hits}; cost ${usage.cost_usd:.4f} at list prices")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
