"""Classify a large batch at your service quota: streamed, in input order, nothing lost.

Custom Vision S0 takes 10 prediction requests a second (20 without storing the images), Image Analysis S1
20 a second; above that the service answers 429. This script keeps a batch under the quota and survives
the 429s and 5xx answers that happen anyway:

* the paths come from a generator and are never held in a list (a million paths take no memory);
* ``max_rps`` paces requests on the client, so the quota is rarely hit at all;
* azvision's one retry layer honours ``Retry-After`` and backs off on 5xx, within a total deadline
  per image (the vendor clients' own retries are off, so nothing is retried twice over);
* each result is written as one JSON line as soon as it arrives, in input order; a failed image gets
  its error on its line and the batch goes on.

The backend and its settings come from the environment (``AZVISION_BACKEND`` and the backend's own
variables, e.g. ``CUSTOM_VISION_PREDICTION_ENDPOINT``/``_KEY``/``_PROJECT_ID``/``_ITERATION_NAME``)::

    python examples/batch_at_quota.py photos/ --max-rps 10 --output results.jsonl
    python examples/batch_at_quota.py photos/ --repeat 50 --max-rps 10   # the folder 50 times over

Exit status: 0 every image answered, 1 some failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import azvision

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}


def stream_paths(folder: Path, repeat: int) -> Iterator[Path]:
    """Every image below ``folder``, ``repeat`` times over, one at a time."""
    for _ in range(repeat):
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--backend", help="backend name (default: the AZVISION_BACKEND variable)")
    parser.add_argument("--max-rps", type=float, default=10.0, help="requests per second (default 10: S0)")
    parser.add_argument("--repeat", type=int, default=1, help="go through the folder this many times")
    parser.add_argument(
        "--deadline", type=float, default=120.0, help="seconds one image may take, retries included"
    )
    parser.add_argument("--output", type=Path, help="JSONL file for the results (default: stdout)")
    args = parser.parse_args(argv)

    retry = azvision.RetryPolicy(max_attempts=8, deadline=args.deadline)
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    done = failed = 0
    started = time.monotonic()
    try:
        with azvision.create_classifier(args.backend, max_rps=args.max_rps, retry=retry) as clf:
            # zip() pairs each outcome with its path: classify_many yields exactly one per input, in order.
            paths = stream_paths(args.folder, args.repeat)
            for path, outcome in zip(
                stream_paths(args.folder, args.repeat), clf.classify_many(paths), strict=True
            ):
                done += 1
                if isinstance(outcome, azvision.AzVisionError):
                    failed += 1
                    error = {"type": type(outcome).__name__, "message": str(outcome)}
                    record = {"source": str(path), "label": None, "error": error}
                else:
                    record = {
                        "source": str(path),
                        "label": outcome.label,
                        "confidence": outcome.confidence,
                        "error": None,
                    }
                out.write(json.dumps(record) + "\n")
                out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    elapsed = time.monotonic() - started
    rate = done / elapsed if elapsed > 0 else 0.0
    print(
        f"{done} images in {elapsed:.1f} s ({rate:.1f}/s, cap {args.max_rps:g}/s), {failed} failed",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
