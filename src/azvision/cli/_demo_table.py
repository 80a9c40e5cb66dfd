"""The demo's results: one `DemoRow` per backend, the table they make and the notes under it.

Example:
    >>> rows = [DemoRow("onnx", "ONNX, local", "onnx", "ok", accuracy=1.0)]
    >>> results_table(rows).row_count, footnotes(rows)[1]
    (1, '  none')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rich.table import Table

__all__ = ["DemoRow", "Status", "footnotes", "format_pct", "format_usd", "next_steps", "results_table"]

Status = Literal["ok", "skipped", "failed"]
_ROUNDING = {
    "accuracy": 4,
    "latency_p50_ms": 1,
    "latency_p95_ms": 1,
    "images_per_second": 2,
    "cost_per_1000_usd": 6,
}


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo's table (and of its ``--json`` summary).

    Example:
        >>> DemoRow("onnx", "ONNX, local", "onnx", "ok", accuracy=1.0).to_dict()["accuracy"]
        1.0
    """

    id: str
    name: str
    backend: str
    status: Status
    accuracy: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    images_per_second: float | None = None
    cost_per_1000_usd: float | None = None
    images: int = 0
    failed: int = 0
    note: str = ""
    cost_basis: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values (milliseconds to 0.1, dollars to 0.000001)."""
        row = asdict(self)
        for name, digits in _ROUNDING.items():
            if row[name] is not None:
                row[name] = round(row[name], digits)
        return row


def format_pct(value: float | None, *, signed: bool = False) -> str:
    """A share as ``12.3%`` (``+1.2%`` when ``signed``), or ``–`` when unknown.

    Example:
        >>> format_pct(0.1234), format_pct(-0.012, signed=True), format_pct(None)
        ('12.3%', '-1.2%', '–')
    """
    if value is None:
        return "–"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_usd(value: float | None) -> str:
    """Dollars as the tables show them: ``$2.00``, ``$0.0064``, ``$0``, or ``–`` when unknown.

    Example:
        >>> format_usd(2.0), format_usd(0.00641), format_usd(None)
        ('$2.00', '$0.0064', '–')
    """
    if value is None:
        return "–"
    return "$0" if value == 0 else f"${value:.2f}" if value >= 0.1 else f"${value:.4f}"


def results_table(rows: list[DemoRow]) -> Table:
    """The side-by-side table, one row per backend; fits 80 columns (notes go to `footnotes`).

    Example:
        >>> results_table([DemoRow("onnx", "ONNX, local", "onnx", "ok", accuracy=1.0)]).row_count
        1
    """
    table = Table(title="azvision demo: held-out images through every backend", title_justify="left")
    table.add_column("backend", no_wrap=True)
    for column in ("accuracy", "p50 ms", "p95 ms", "img/s", "$/1k img"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        if row.status != "ok":
            table.add_row(row.name, row.status.upper(), "–", "–", "–", "–")
            continue
        table.add_row(
            row.name,
            format_pct(row.accuracy) if row.accuracy is not None else "n/a",
            _num(row.latency_p50_ms),
            _num(row.latency_p95_ms),
            _num(row.images_per_second, 1),
            format_usd(row.cost_per_1000_usd),
        )
    return table


def footnotes(rows: list[DemoRow]) -> list[str]:
    """The lines under the table: each row's notes, then what each cost figure is based on.

    Example:
        >>> footnotes([DemoRow("x", "X", "onnx", "skipped", note="no model")])[1]
        '  X: skipped: no model'
    """
    lines = ["notes:"]
    for row in rows:
        if row.note:
            status = "" if row.status == "ok" else f"{row.status}: "
            lines.append(f"  {row.name}: {status}{row.note}")
    if len(lines) == 1:
        lines.append("  none")
    lines.append("cost basis (list prices recalled from Azure's pricing pages, not fetched live):")
    lines += [f"  {row.name}: {row.cost_basis}" for row in rows if row.cost_basis]
    return lines


def next_steps(workdir: Path) -> str:
    """What to run next on the files the demo left in `workdir`.

    Example:
        >>> next_steps(Path("demo")).splitlines()[1]
        '  azvision classify demo/data/test --backend onnx --model-path demo/export'
    """
    test, export = workdir / "data" / "test", workdir / "export"
    return "\n".join(
        (
            "Try it yourself (offline, on the files the demo left behind):",
            f"  azvision classify {test} --backend onnx --model-path {export}",
            f"  azvision evaluate {test} --backend onnx --model-path {export} --report {workdir / 'report'}",
        )
    )
