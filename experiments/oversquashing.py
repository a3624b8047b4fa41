r"""Over-squashing summary: runs ``python -m brl_graph.diagnostics`` per dataset.

For each dataset the diagnostics command measures, on up to ``--max-graphs``
seeded graphs, the total effective resistance :math:`R_{tot}` of the graph
and of the graph with the K BRL tokens added as virtual nodes, and the
Jacobian sensitivity :math:`\|\partial h_t / \partial x_u\|` by hop distance
of a BRL model and of its MPNN-only twin (trained checkpoints where given,
else random initialisation). This script runs each command in a subprocess,
prints it, and writes the summary numbers (with the command and the path of
the full ``report.json``) to ``benchmarks/results/oversquashing.json``,
rewritten atomically after each dataset; datasets already in the file are
skipped unless ``--rerun``.

Usage::

    python experiments/oversquashing.py --root ../shared/datasets --cache-dir /tmp/brl_cache \
        --peptides-checkpoints runs/peptides_1epoch/brl/checkpoints/best.pt \
                               runs/peptides_1epoch/twin/checkpoints/best.pt
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from brl_graph.io import atomic_write_json
from brl_graph.runtime import machine_text

ROOT = Path(__file__).resolve().parents[1]


def summarise(report: Dict[str, Any]) -> Dict[str, Any]:
    """The numbers RESULTS.md shows, taken from one ``report.json``."""
    res = report["resistance"]
    out: Dict[str, Any] = {
        "dataset": report["dataset"], "split": report["split"],
        "num_graphs": report["num_graphs"], "mean_nodes": report["mean_nodes"],
        "num_tokens": res.get("num_tokens"),
        "num_disconnected": res.get("num_disconnected"),
        "r_tot": res["r_tot"], "r_tot_tokens": res["r_tot_tokens"],
        "r_avg": res.get("r_avg"), "r_avg_tokens": res.get("r_avg_tokens"),
        "ratio": res.get("ratio"), "models": {},
    }
    for label, entry in report.get("models", {}).items():
        sens = entry["sensitivity"]
        out["models"][label] = {
            "source": entry["source"], "kind": entry["kind"], "layers": entry["layers"],
            "num_tokens": entry["num_tokens"], "method": sens.get("method"),
            "by_hop": sens["by_hop"],
        }
    out["seconds"] = report.get("seconds")
    return out


def parse_options(items: List[str], datasets: List[str]) -> List[Tuple[str, str]]:
    """``(dataset, "key=value")`` per ``--option DATASET:KEY=VALUE``. An item without
    the dataset prefix is an error; one naming a dataset outside ``--datasets`` is
    left out with a note (one command line can then serve several runs), never
    silently."""
    options = []
    for item in items:
        ds, sep, kv = item.partition(":")
        if not sep or "=" not in kv:
            raise SystemExit(f"error: --option {item!r} is not of the form DATASET:KEY=VALUE")
        if ds not in datasets:
            print(f"note: --option {item!r} is not used: {ds!r} is not one of --datasets "
                  f"{datasets}", file=sys.stderr, flush=True)
            continue
        options.append((ds, kv))
    return options


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", default="benchmarks/results/oversquashing.json")
    p.add_argument("--root", default="../shared/datasets")
    p.add_argument("--cache-dir", default="/tmp/brl_cache")
    p.add_argument("--out", default="runs/diag", help="folder of the full reports")
    p.add_argument("--max-graphs", type=int, default=200)
    p.add_argument("--datasets", nargs="+",
                   default=["peptides-func", "ogbg-molhiv", "ogbg-molesol"])
    p.add_argument("--peptides-checkpoints", nargs="*", default=[],
                   help="trained BRL and twin checkpoints for peptides-func "
                        "(without them: random initialisation)")
    p.add_argument("--option", action="append", default=[], metavar="DATASET:KEY=VALUE",
                   help="extra load_dataset option for one dataset (e.g. ogbg-molhiv:pe=rwse)")
    p.add_argument("--training-budget", default=None,
                   help="how the peptides checkpoints were trained (the exact commands), "
                        "stored in the JSON beside the numbers")
    p.add_argument("--rerun", action="store_true")
    args = p.parse_args(argv)
    options = parse_options(args.option, args.datasets)

    path = ROOT / args.json
    data = json.loads(path.read_text()) if path.exists() else {"rows": []}
    for name in args.datasets:
        if any(r["dataset"] == name for r in data["rows"]) and not args.rerun:
            print(f"skip {name}: already in {path}", flush=True)
            continue
        out = f"{args.out}/{name}"
        cmd = ["python", "-m", "brl_graph.diagnostics", "--root", args.root,
               "--cache-dir", args.cache_dir, "--max-graphs", str(args.max_graphs), "--out", out]
        cmd += [arg for ds, kv in options if ds == name for arg in ("--option", kv)]
        if name == "peptides-func" and args.peptides_checkpoints:
            for ck in args.peptides_checkpoints:
                cmd += ["--checkpoint", ck]
            cmd += ["--dataset", name]
        else:
            cmd += ["--dataset", name, "--model", "both"]
        printable = " ".join(shlex.quote(c) for c in cmd)
        print(f"RUN {printable}", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable] + cmd[1:], cwd=ROOT, check=True,
                       env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        report = json.loads((ROOT / out / "report.json").read_text())
        row = summarise(report)
        row.update({"command": printable, "report": f"{out}/report.json",
                    "wall_seconds": time.perf_counter() - start,
                    "trained": bool(name == "peptides-func" and args.peptides_checkpoints)})
        if row["trained"]:
            row["training_budget"] = args.training_budget
        data["rows"] = [r for r in data["rows"] if r["dataset"] != name] + [row]
        data["machine"] = machine_text("cpu", 1)  # the diagnostics' default --threads
        atomic_write_json(path, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
