"""Benchmark 6 — import time, and what ``import azvision`` drags in.

Each import runs in a fresh interpreter (median of several), timed inside it so interpreter start-up is
left out: ``import azvision`` against ``import azure.ai.ml`` (only when azure-ai-ml is installed: it is
an optional extra, never a dependency). Target: ``import azvision`` imports none of the optional parts
(onnxruntime, the emulator's server, uvicorn, starlette, azure-ai-ml).
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys

from ._common import Result

NAME = "import"
RUNS = 7
FORBIDDEN = ("onnxruntime", "onnx", "azvision.emulator._server", "uvicorn", "starlette", "azure.ai.ml")
_PROBE = (
    "import json, sys, time\n"
    "t = time.perf_counter()\n"
    "import {module}\n"
    "print(json.dumps({{'seconds': time.perf_counter() - t, 'modules': sorted(sys.modules)}}))\n"
)


def _import(module: str) -> tuple[float, list[str]]:
    """Median import seconds over fresh interpreters, and the modules the last one loaded."""
    times, modules = [], []
    for _ in range(RUNS):
        done = subprocess.run(
            [sys.executable, "-c", _PROBE.format(module=module)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        answer = json.loads(done.stdout)
        times.append(answer["seconds"])
        modules = answer["modules"]
    return statistics.median(times), modules


def run(lab: object) -> list[Result]:
    """Time both imports; list the optional modules ``import azvision`` loaded."""
    ours, modules = _import("azvision")
    loaded = sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    theirs = _import("azure.ai.ml")[0] if importlib.util.find_spec("azure.ai.ml") else None
    return [
        Result(
            "import: azvision" + ("" if theirs is None else " / azure.ai.ml"),
            ours * 1000,
            "ms",
            ratio=None if theirs is None else ours / theirs,
            note=(
                "azure-ai-ml is not installed here (optional extra 'ml'): only azvision was timed"
                if theirs is None
                else f"azure.ai.ml: {theirs * 1000:.0f} ms"
            )
            + f"; median of {RUNS} fresh interpreters",
            details={"azvision_s": ours, "azure_ai_ml_s": theirs, "modules_loaded": len(modules)},
        ),
        Result(
            "import: optional modules loaded by import azvision",
            len(loaded),
            "modules",
            target=0,
            better="lower",
            note=", ".join(loaded) or "none of " + ", ".join(FORBIDDEN),
        ),
    ]
