"""``python -m benchmarks [--quick] [--only NAME ...] [--output FILE] [--strict]``.

Runs the benchmarks, prints one table (benchmark, measured, target, ratio, PASS/MISS) and writes every row,
with the machine and the settings, as JSON (default ``benchmarks/results/latest.json``).

Example::

    python -m benchmarks --quick --only quota --only overhead
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from . import BENCHMARKS
from ._common import Lab, Result, Settings, machine

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "latest.json"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), help="run only this one")
    parser.add_argument("--quick", action="store_true", help="fewer images: a smoke run, not the figures")
    parser.add_argument("--seed", type=int, default=0, help="the emulator's fault seed")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON goes")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


def _number(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}"
    if value != value or value != int(value):  # NaN (a crashed benchmark) or a fraction
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(int(value))


def format_table(results: list[Result]) -> str:
    """The results as an aligned text table.

    Example:
        >>> print(format_table([Result("local", 0.97, "x", target=0.9, ratio=0.97)]))  # doctest: +NORMALIZE_WHITESPACE
        benchmark  measured  target  ratio  verdict
        local      0.97 x    ≥ 0.90 x  0.97   PASS
    """
    rows = [("benchmark", "measured", "target", "ratio", "verdict")]
    for r in results:
        target = (
            ""
            if r.target is None
            else f"{'≥' if r.better == 'higher' else '≤'} {_number(r.target, r.unit)} {r.unit}"
        )
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        rows.append((r.name, f"{_number(r.value, r.unit)} {r.unit}", target, ratio, r.verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    """Run, print, write; the exit status is 1 if a benchmark crashed (or, with ``--strict``, missed)."""
    args = _parse(argv)
    settings = Settings(quick=args.quick, seed=args.seed)
    names = args.only or list(BENCHMARKS)
    results: list[Result] = []
    timings: dict[str, float] = {}
    crashed = False
    with Lab(settings) as lab:
        for name in names:
            print(f"[{name}] running…", file=sys.stderr, flush=True)
            started = time.perf_counter()
            try:
                rows = importlib.import_module(BENCHMARKS[name]).run(lab)
            except Exception:
                crashed = True
                traceback.print_exc()
                rows = [Result(f"{name}: crashed", float("nan"), "", note="see the traceback above")]
            timings[name] = round(time.perf_counter() - started, 1)
            print(f"[{name}] {timings[name]} s", file=sys.stderr, flush=True)
            results += rows
    table = format_table(results)
    print(table)
    for r in results:
        if r.note:
            print(f"  {r.name}: {r.note}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {"quick": settings.quick, "seed": settings.seed, "only": names},
        "seconds": timings,
        "results": [r.to_json() for r in results],
    }
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n", "utf-8")
    print(f"written to {args.output}", file=sys.stderr)
    missed = any(r.verdict == "MISS" for r in results)
    return 1 if crashed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
