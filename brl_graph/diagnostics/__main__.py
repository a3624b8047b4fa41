"""``python -m brl_graph.diagnostics``: over-squashing report of a dataset and models.

Example::

    python -m brl_graph.diagnostics --dataset peptides-func --root ../shared/datasets \\
        --cache-dir /tmp/brl_cache --max-graphs 200 --out runs/diag --model both --layers 4
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import torch

from brl_graph.diagnostics.report import MODEL_CHOICES, SPLITS, parse_options, run_report
from brl_graph.nn.model import LOCAL_CONVS
from brl_graph.train import CheckpointError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m brl_graph.diagnostics",
        description="Effective resistance (with and without BRL tokens) and Jacobian "
                    "sensitivity by hop of BRL and its MPNN twin on a dataset; writes "
                    "OUT/report.json, two PNG plots and prints a table.")
    p.add_argument("--dataset", help="a load_dataset name (default: the checkpoint's)")
    p.add_argument("--root", help="raw data folder (may be read-only)")
    p.add_argument("--cache-dir", help="processed data folder")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra load_dataset option, e.g. --option nodes=10 (repeatable)")
    p.add_argument("--split", default="train", choices=SPLITS)
    p.add_argument("--max-graphs", type=int, default=200,
                   help="random graphs of the split to measure (seeded)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--checkpoint", action="append", default=[], metavar="PATH",
                   help="a training checkpoint (repeatable: e.g. a BRL run and an MPNN run); "
                        "without one, models are built at random initialisation")
    p.add_argument("--model", default="both", choices=MODEL_CHOICES,
                   help="random-init models: BRL, its MPNN twin (no tokens), or both")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--num-tokens", type=int, default=8,
                   help="BRL tokens, also the K of the resistance-with-tokens summary")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--local", default="gine", choices=LOCAL_CONVS, help="local MPNN conv")
    p.add_argument("--targets", type=int, default=4, help="target nodes per graph")
    p.add_argument("--sensitivity", default="estimate", choices=("estimate", "exact"),
                   help="exact: C_out backward passes per target; estimate: --probes")
    p.add_argument("--probes", type=int, default=8, help="random probes of the estimate")
    p.add_argument("--no-pyg", action="store_true",
                   help="skip the comparison with torch_geometric.utils.total_influence")
    p.add_argument("--max-nodes", type=int, default=2048, help="nodes per Jacobian batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="device of the models (cpu, cuda, ...)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of torch and of BLAS (0: the libraries' defaults); "
                        "1 is usually fastest: the work is many small solves and "
                        "backward passes that gain little from threads")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 0:
        print(f"error: --threads must be >= 0, got {args.threads}", file=sys.stderr)
        return 2
    limits, threads = None, torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        try:  # SciPy's BLAS has its own thread pool, which torch does not control
            from threadpoolctl import threadpool_limits
            limits = threadpool_limits(args.threads)
        except ImportError:
            print("note: threadpoolctl is not installed; BLAS threads are not limited",
                  file=sys.stderr)
    try:
        run_report(args.dataset, args.out, root=args.root, cache_dir=args.cache_dir,
                   options=parse_options(args.option), split=args.split,
                   max_graphs=args.max_graphs, checkpoints=args.checkpoint, model=args.model,
                   layers=args.layers, channels=args.channels, num_tokens=args.num_tokens,
                   heads=args.heads, local=args.local, targets=args.targets,
                   sensitivity=args.sensitivity, probes=args.probes,
                   pyg_compare=not args.no_pyg, seed=args.seed, max_nodes=args.max_nodes,
                   device=args.device)
    except (ValueError, KeyError, FileNotFoundError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:  # leave the process as it was (main() may be called in-process)
        torch.set_num_threads(threads)
        if limits is not None:
            limits.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
