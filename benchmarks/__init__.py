"""azvision benchmarks: side-by-side ratios in one run against the emulator (``nox -s bench``).

Each ``bench_<name>.py`` module has ``NAME`` and ``run(lab) -> list[Result]``; ``python -m benchmarks``
runs them all (or ``--only NAME``), prints one table and writes ``benchmarks/results/latest.json``.
Timings are ratios measured in the same run, never assertions in the test suite.

Example:
    >>> from benchmarks import BENCHMARKS
    >>> list(BENCHMARKS)
    ['quota', 'faults', 'overhead', 'memory', 'local', 'import', 'azure_openai', 'routing', 'export', 'spark', 'review']
"""

from __future__ import annotations

BENCHMARKS = {
    "quota": "benchmarks.bench_quota",
    "faults": "benchmarks.bench_faults",
    "overhead": "benchmarks.bench_overhead",
    "memory": "benchmarks.bench_memory",
    "local": "benchmarks.bench_local",
    "import": "benchmarks.bench_import",
    "azure_openai": "benchmarks.bench_azure_openai",
    "routing": "benchmarks.bench_routing",
    "export": "benchmarks.bench_export",
    "spark": "benchmarks.bench_spark",
    "review": "benchmarks.bench_review",
}
