r"""Graph-property benchmarks (ogbg-molhiv, Peptides-func, ...): BRL vs its twins.

Three models under one training budget (data, epochs, batch size, optimiser,
schedule, depth), at matched parameter counts:

- ``brl``: the config's :class:`~brl_graph.nn.BRLGraphModel`, K learned tokens;
- ``mpnn``: the MPNN-only twin, ``model.num_tokens=0``, widened;
- ``full``: GPSConv-style multihead full attention, ``model.global_attn=full``, widened
  (post-norm: PyG's GPSConv has no pre-norm form).

The twins' width (``model.channels``, a multiple of ``model.heads``) is the one
whose parameter count is closest to BRL's, found by building the models (no
training). Every row stores its width, parameter count and the ratio to BRL.

Each (model, seed) is one ``python train.py`` subprocess run by
:mod:`brl_graph.train.sweep`, so the peak memory in its ``metrics.json``
belongs to that run alone. Runs live in
``<runs>/<dataset>-<model>-s<seed>-e<epochs>/`` and a run killed part-way is
resumed from its last checkpoint on the next call; rows already in the JSON
file are skipped (``--rerun`` repeats them). The JSON file is rewritten
atomically, under a lock, after each row; each row holds the exact command
that reproduces it. The metric is the benchmark's own (``Evaluator``-style
dict): test value at the best validation epoch.

Usage::

    python experiments/graph_property.py --config configs/ogbg-molhiv.yaml \
        --root ../shared/datasets --epochs 4 --seeds 0 1 \
        --json benchmarks/results/ogbg-molhiv.json
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from brl_graph.labels import BRL, FULL, MPNN, canonical_model
from brl_graph.runtime import machine_text, prefer_passive_omp_wait
from brl_graph.train.sweep import (MODELS, ResultsFile, metric_fields, model_overrides,
                                   run_folder, run_train, train_command)

prefer_passive_omp_wait()  # before torch loads, here and in the train.py runs

ROOT = Path(__file__).resolve().parents[1]
KEY_FIELDS = ("model", "seed")


def budget_overrides(args: argparse.Namespace) -> List[str]:
    """The training budget shared by every model and seed of one table."""
    out = [f"train.epochs={args.epochs}", f"train.warmup_epochs={args.warmup_epochs}"]
    if args.root:
        out.append(f"data.root={args.root}")
    return out + list(args.set)


def closest_width(params_at: Callable[[int], int], target: int, step: int,
                  lo: int, hi: int) -> int:
    """The multiple of ``step`` in ``[lo, hi]`` whose parameter count is closest
    to ``target``. Parameter counts grow with width, so a bisection finds the
    crossing and the nearer of its two neighbours wins."""
    if lo % step or hi % step or not 0 < lo <= hi:
        raise ValueError(f"need 0 < lo <= hi, both multiples of step={step}; got {lo}, {hi}")
    a, b = lo // step, hi // step
    while a < b:  # first width with params >= target
        mid = (a + b) // 2
        if params_at(mid * step) < target:
            a = mid + 1
        else:
            b = mid
    candidates = [w for w in (a - 1, a) if lo // step <= w <= hi // step]
    return step * min(candidates, key=lambda w: abs(params_at(w * step) - target))


def matched_widths(config: str, base: Sequence[str], models: Sequence[str]) -> Dict[str, Dict[str, int]]:
    """``{model: {"channels": C, "num_params": P}}`` with BRL at the config's width
    and every other model at the width closest to BRL's parameter count."""
    from brl_graph.train import build_bench, build_model, count_parameters
    from brl_graph.train.config import load_config

    cfg = load_config(config, list(base))
    bench = build_bench(cfg)

    def params(model: str, channels: int) -> int:
        c = load_config(config, list(base) + model_overrides(model) + [f"model.channels={channels}"])
        return count_parameters(build_model(c, bench))

    width = int(cfg["model"]["channels"])
    heads = int(cfg["model"]["heads"])
    target = params(BRL, width)
    out = {BRL: {"channels": width, "num_params": target}}
    for m in models:
        if m == BRL:
            continue
        w = closest_width(lambda c: params(m, c), target, heads, heads, 8 * width)
        out[m] = {"channels": w, "num_params": params(m, w)}
    return out


def run_dir(dataset: str, model: str, seed: int, args: argparse.Namespace) -> str:
    """Run folder (relative to the repository); the epoch budget is in the name so
    a rerun under another budget never resumes the old run."""
    return run_folder(lambda label: f"{args.runs}/{dataset}-{label}-s{seed}-e{args.epochs}",
                      model, ROOT)


def row_overrides(model: str, seed: int, channels: int, dataset: str,
                  args: argparse.Namespace) -> List[str]:
    return (budget_overrides(args) + model_overrides(model)
            + [f"model.channels={channels}", f"train.seed={seed}", "train.seeds=null",
               f"train.device={args.device}", "train.progress=false",
               f"out_dir={run_dir(dataset, model, seed, args)}"])


def run_row(config: str, dataset: str, model: str, seed: int, width: Dict[str, int],
            args: argparse.Namespace) -> Dict[str, Any]:
    """Trains one (model, seed) in a subprocess and returns its JSON row."""
    overrides = row_overrides(model, seed, width["channels"], dataset, args)
    try:
        metrics, wall, resumed = run_train(config, overrides, run_dir(dataset, model, seed, args),
                                           root=ROOT, threads=args.threads)
    except SystemExit as err:
        raise SystemExit(f"{model} seed {seed}: {err}") from None
    row = row_from_metrics(config, dataset, model, seed, width, metrics, overrides, args)
    row.update(wall_seconds=wall, resumed=resumed)
    return row


def row_from_metrics(config: str, dataset: str, model: str, seed: int, width: Dict[str, int],
                     metrics: Dict[str, Any], overrides: Sequence[str],
                     args: argparse.Namespace) -> Dict[str, Any]:
    """The JSON row of a (model, seed) from its run's ``metrics.json``."""
    metric = metrics["metric"]
    return {"dataset": dataset, "model": model, "seed": seed, "metric_name": metric,
            "higher_is_better": metrics["higher_is_better"], **metric_fields(metrics, metric),
            "channels": width["channels"], "budget": budget_overrides(args),
            "threads": args.threads, "command": train_command(config, overrides)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="the benchmark's YAML config (BRL model)")
    p.add_argument("--json", required=True, help="results file (rows are added or replaced)")
    p.add_argument("--root", default=None, help="data.root for the dataset")
    p.add_argument("--runs", default="runs/graph_property", help="run folders (relative to the repo)")
    p.add_argument("--models", nargs="+", default=[BRL, MPNN, FULL], choices=MODELS,
                   type=canonical_model, help="models to compare (legacy label: twin for mpnn)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override applied to every model (part of the budget)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="OMP/torch threads per run")
    p.add_argument("--rerun", action="store_true", help="run rows already in the JSON again")
    p.add_argument("--dry-run", action="store_true",
                   help="print the matched widths and commands, train nothing")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.epochs < 1 or args.warmup_epochs < 0:
        raise SystemExit("need --epochs >= 1 and --warmup-epochs >= 0")
    for item in args.set:
        if "=" not in item:
            raise SystemExit(f"--set {item!r} is not KEY=VALUE")
    config = os.path.relpath(Path(args.config).resolve(), ROOT)
    results = ResultsFile(Path(args.json) if os.path.isabs(args.json) else ROOT / args.json,
                          KEY_FIELDS)

    from brl_graph.train.config import load_config
    dataset = load_config(config, budget_overrides(args))["data"]["name"]
    widths = matched_widths(config, budget_overrides(args), args.models)
    for m, w in widths.items():
        print(f"{m}: channels={w['channels']}, {w['num_params']:,} parameters", flush=True)
    given = list(argv) if argv is not None else sys.argv[1:]
    meta = {"machine": machine_text(args.device, args.threads),
            "command": " ".join(["python experiments/graph_property.py"]
                                + [shlex.quote(a) for a in given]),
            "script": "python experiments/graph_property.py", "config": config,
            "dataset": dataset, "budget": budget_overrides(args), "widths": widths}
    # Seeds outer: every model gets seed s before any gets s + 1, so a session
    # that stops early leaves complete seeds behind.
    for seed in args.seeds:
        for model in args.models:
            if args.dry_run:
                print(train_command(config, row_overrides(model, seed, widths[model]["channels"],
                                                          dataset, args)))
                continue
            if (model, seed) in results.done() and not args.rerun:
                print(f"skip {model} s{seed}: already in {results.path}", flush=True)
                continue
            row = run_row(config, dataset, model, seed, widths[model], args)
            row["param_ratio_to_brl"] = row["num_params"] / widths[BRL]["num_params"]
            row["driver"] = meta["command"]  # a table may gather rows of several calls
            results.add(row, meta)
            print(f"ROW {json.dumps(row)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
