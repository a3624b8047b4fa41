"""What every section of the results document shares: the verdict type, number
formatting, Markdown tables, statistics over seeds and the plot writer."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from brl_graph.io import atomic_write

#: ``(status, one-line evidence)``; status is ``holds``, ``fails``, ``partial`` or ``untested``.
Verdict = Tuple[str, str]
NOT_RUN = "not run"
MACHINE = ("a 2-core shared CPU VM, PyTorch CPU build, 1 thread per process; "
           "other jobs ran on the same cores, so times are noisy upper bounds")
DEVICE_COMMAND = "bash benchmarks/device_check.sh OUT_DIR [STEP ...]"
#: The command that writes the document, as the document quotes it.
GENERATOR = "experiments/make_results.py"


def fmt(value: Any, digits: int = 3) -> str:
    """A number as the table shows it; ``None``/NaN as an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.2e}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def commands_block(commands: Sequence[str]) -> str:
    """Commands as an indented Markdown code block, one per line."""
    return "\n".join(f"    {c}" for c in commands)


def slope(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    """Least-squares slope of log y against log x (the empirical exponent)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    m = sum(values) / len(values)
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return m, math.sqrt(var)


def clear_gap(above: Tuple[float, float], below: Tuple[float, float]) -> bool:
    """Whether mean ``above[0]`` exceeds ``below[0]`` by more than the larger of the
    two stds (``(mean, std)`` pairs): a gap that seed noise alone does not explain."""
    return above[0] - below[0] > max(above[1], below[1])


def grouped(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
            ) -> Dict[tuple, List[Mapping[str, Any]]]:
    """Rows grouped by the values of ``keys``, in first-seen order."""
    groups: Dict[tuple, List[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    return groups


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Path) -> None:
    """Writes ``fig`` as PNG atomically and closes it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    pyplot().close(fig)
