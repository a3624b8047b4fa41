r"""Graph-property benchmarks (ogbg-molhiv, Peptides-func, ...): BRL vs its twins.

Three models under one training budget (data, epochs, batch size, optimiser,
schedule, depth), at matched parameter counts:

- ``brl``: the config's :class:`~brl_graph.nn.BRLGraphModel`, K learned tokens;
- ``twin``: the MPNN-only twin, ``model.num_tokens=0``, widened;
- ``full``: GPSConv-style multihead full attention, ``model.global_attn=full``, widened.

The twins' width (``model.channels``, a multiple of ``model.heads``) is the one
whose parameter count is closest to BRL's, found by building the models (no
training). Every row stores its width, parameter count and the ratio to BRL.

Each (model, seed) is one ``python train.py`` subprocess, so the peak memory
in its ``metrics.json`` belongs to that run alone. Runs live in
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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from brl_graph.io import update_json_locked  # noqa: E402
from brl_graph.runtime import prefer_passive_omp_wait  # noqa: E402

prefer_passive_omp_wait()  # before torch loads, here and in the train.py runs

MODELS = ("brl", "twin", "full")
MODEL_OVERRIDES = {"brl": [], "twin": ["model.num_tokens=0"], "full": ["model.global_attn=full"]}


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
    from brl_graph.train.config import load_config
    from brl_graph.train import build_bench, build_model, count_parameters

    cfg = load_config(config, list(base))
    bench = build_bench(cfg)

    def params(model: str, channels: int) -> int:
        c = load_config(config, list(base) + MODEL_OVERRIDES[model] + [f"model.channels={channels}"])
        return count_parameters(build_model(c, bench))

    width = int(cfg["model"]["channels"])
    heads = int(cfg["model"]["heads"])
    target = params("brl", width)
    out = {"brl": {"channels": width, "num_params": target}}
    for m in models:
        if m == "brl":
            continue
        w = closest_width(lambda c: params(m, c), target, heads, heads, 8 * width)
        out[m] = {"channels": w, "num_params": params(m, w)}
    return out


def run_dir(dataset: str, model: str, seed: int, args: argparse.Namespace) -> str:
    """Run folder (relative to the repository); the epoch budget is in the name so
    a rerun under another budget never resumes the old run."""
    return f"{args.runs}/{dataset}-{model}-s{seed}-e{args.epochs}"


def row_overrides(model: str, seed: int, channels: int, dataset: str,
                  args: argparse.Namespace) -> List[str]:
    if model not in MODEL_OVERRIDES:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    return (budget_overrides(args) + MODEL_OVERRIDES[model]
            + [f"model.channels={channels}", f"train.seed={seed}", "train.seeds=null",
               f"train.device={args.device}", "train.progress=false",
               f"out_dir={run_dir(dataset, model, seed, args)}"])


def command_for(config: str, overrides: Sequence[str]) -> str:
    """The ``train.py`` command line of one row (add ``--resume`` to continue it)."""
    return " ".join(["python", "train.py", "--config", config]
                    + [shlex.quote(o) for o in overrides])


def row_key(row: Dict[str, Any]) -> tuple:
    return (row["model"], int(row["seed"]))


def add_row(path: Path, row: Dict[str, Any], meta: Dict[str, Any]) -> None:
    """Adds (or replaces) ``row`` in ``path`` atomically, under an exclusive lock."""
    def update(data: Any) -> Dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise ValueError(f"{path} is not a graph_property results file (no 'rows' list)")
        rows = [r for r in data["rows"] if row_key(r) != row_key(row)] + [row]
        rows.sort(key=lambda r: (MODELS.index(r["model"]), r["seed"]))
        data["rows"] = rows
        config = data.setdefault("config", {})
        # A call with fewer models must not drop the widths an earlier call recorded.
        widths = {**config.get("widths", {}), **meta.get("widths", {})}
        config.update(meta)
        if widths:
            config["widths"] = widths
        return data

    update_json_locked(path, update, default=lambda: {"rows": []})


def existing_rows(path: Path) -> List[Dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return list(data.get("rows", [])) if isinstance(data, dict) else []


def run_row(config: str, dataset: str, model: str, seed: int, width: Dict[str, int],
            args: argparse.Namespace) -> Dict[str, Any]:
    """Trains one (model, seed) in a subprocess and returns its JSON row."""
    overrides = row_overrides(model, seed, width["channels"], dataset, args)
    out_dir = ROOT / run_dir(dataset, model, seed, args)
    resume = (out_dir / "checkpoints" / "last.pt").exists()
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", config]
    cmd += ["--resume"] if resume else ["--overwrite"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    start = time.perf_counter()
    done = subprocess.run(cmd + overrides, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{model} seed {seed}: train.py exited with {done.returncode}; "
                         f"the run folder {out_dir} keeps its checkpoints for a resume")
    row = row_from_run(config, dataset, model, seed, width, args)
    row.update(wall_seconds=wall, resumed=resume)
    return row


def row_from_run(config: str, dataset: str, model: str, seed: int, width: Dict[str, int],
                 args: argparse.Namespace) -> Dict[str, Any]:
    """The JSON row of a (model, seed) whose run folder holds its ``metrics.json``."""
    overrides = row_overrides(model, seed, width["channels"], dataset, args)
    out_dir = ROOT / run_dir(dataset, model, seed, args)
    with open(out_dir / "metrics.json", encoding="utf-8") as f:
        m = json.load(f)
    if not m.get("finished"):
        raise SystemExit(f"{out_dir}: the run stopped after {m.get('epochs_completed')} of "
                         f"{m.get('epochs')} epochs; run this script again to resume it")
    metric = m["metric"]
    return {
        "dataset": dataset, "model": model, "seed": seed, "metric_name": metric,
        "higher_is_better": m["higher_is_better"],
        "test": m["test"].get(metric), "valid": m["valid"].get(metric),
        "best_epoch": m["best_epoch"], "epochs": m["epochs_completed"],
        "finished": m["finished"], "channels": width["channels"],
        "num_params": m["num_params"], "seconds": m["seconds"],
        "seconds_per_epoch": m["seconds_per_epoch"],
        "peak_memory_mb": m.get("peak_memory_mb"), "peak_memory_kind": m.get("peak_memory_kind"),
        "budget": budget_overrides(args), "threads": args.threads,
        "command": command_for(config, overrides),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="the benchmark's YAML config (BRL model)")
    p.add_argument("--json", required=True, help="results file (rows are added or replaced)")
    p.add_argument("--root", default=None, help="data.root for the dataset")
    p.add_argument("--runs", default="runs/graph_property", help="run folders (relative to the repo)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
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
    path = Path(args.json) if os.path.isabs(args.json) else ROOT / args.json

    from brl_graph.train.config import load_config
    dataset = load_config(config, budget_overrides(args))["data"]["name"]
    widths = matched_widths(config, budget_overrides(args), args.models)
    for m, w in widths.items():
        print(f"{m}: channels={w['channels']}, {w['num_params']:,} parameters", flush=True)
    given = list(argv) if argv is not None else sys.argv[1:]
    meta = {"machine": f"2-core shared CPU VM, no GPU, {args.threads} thread(s) per run",
            "command": " ".join(["python experiments/graph_property.py"]
                                + [shlex.quote(a) for a in given]),
            "script": "python experiments/graph_property.py", "config": config,
            "dataset": dataset, "budget": budget_overrides(args), "widths": widths}
    # Seeds outer: every model gets seed s before any gets s + 1, so a session
    # that stops early leaves complete seeds behind.
    for seed in args.seeds:
        for model in args.models:
            if args.dry_run:
                print(command_for(config, row_overrides(model, seed, widths[model]["channels"],
                                                       dataset, args)))
                continue
            done = {row_key(r) for r in existing_rows(path)}
            if (model, seed) in done and not args.rerun:
                print(f"skip {model} s{seed}: already in {path}", flush=True)
                continue
            row = run_row(config, dataset, model, seed, widths[model], args)
            row["param_ratio_to_brl"] = row["num_params"] / widths["brl"]["num_params"]
            row["driver"] = meta["command"]  # a table may gather rows of several calls
            add_row(path, row, meta)
            print(f"ROW {json.dumps(row)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
