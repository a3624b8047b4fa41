r"""Generates ``docs/RESULTS.md`` (and its plots) from ``benchmarks/results/*.json``.

The document's sections live in :mod:`brl_graph.results`; this is its command line.

Inputs (all optional)::

    scaling.json         benchmarks/scaling.py        list of rows
    step_time.json       benchmarks/step_time.py      list of rows
    long_range.json      experiments/long_range.py    {"rows": [...]}
    causal_recall.json   experiments/causal_recall.py {"config": {...}, "rows": [...]}
    oversquashing.json   experiments/oversquashing.py {"rows": [...]}
    ogbg-molhiv.json     experiments/graph_property.py {"config": {...}, "rows": [...]}
    peptides-func.json   experiments/graph_property.py {"config": {...}, "rows": [...]}
    gpu_check.json       pytest -m cuda tests/device --device-report  {"environment", "checks"}
    scaling_gpu.json     benchmarks/scaling.py --device cuda   list of rows (``superseded`` rows:
                         older code, named in the text, out of the table)
    step_time_gpu.json   benchmarks/step_time.py --device cuda list of rows (beside step_time.json)
    causal_recall_gpu.json  experiments/causal_recall.py --device cuda
    causal_recall_modes*.json  experiments/causal_recall.py (every attention kind; ``--merge``);
                               one recall/cost table each, e.g. ``_mqar`` at MQAR sizes

Usage::

    python experiments/make_results.py            # writes docs/RESULTS.md, docs/*.png
    python experiments/make_results.py --no-plots --out /tmp/RESULTS.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from brl_graph.io import atomic_write_text
from brl_graph.results import load_results, render

ROOT = Path(__file__).resolve().parents[1]


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--out", default=str(ROOT / "docs" / "RESULTS.md"))
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    atomic_write_text(out, render(load_results(Path(args.results)),
                                  None if args.no_plots else out.parent))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
