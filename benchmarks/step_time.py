r"""Training-step time on real small-graph batches: BRL, its MPNN twin and GPS.

One *step* is what :func:`brl_graph.train.fit` does per batch: forward, loss,
backward, gradient clipping and the optimiser update, with the optimiser
:func:`brl_graph.train.make_optimizer` builds. Batches are real ones from the
benchmark's training split (the first ``--batches`` of a seeded shuffle),
collated once up front, so the loader is not timed.

The models are timed *side by side in one process*: each round runs every
model for the same batches, in turn, and the figure per model is the median
over rounds. Their ratios are therefore measured under the same machine load.

Usage::

    python benchmarks/step_time.py --dataset ogbg-molhiv --root ../shared/datasets
    python benchmarks/step_time.py --dataset peptides-func --root ../shared/datasets \
        --batch-size 128 --json benchmarks/results/step_time.json --append
    python benchmarks/step_time.py --root ../shared/datasets --device cuda \
        --json benchmarks/results/step_time_gpu.json                      # on a GPU

On a GPU the batches are moved there once, up front, and each round's clock is
read after :func:`torch.cuda.synchronize`, so a round counts the kernels its
steps queued.
"""
from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from brl_graph.io import update_json_locked
from brl_graph.labels import BRL, FULL, MPNN, canonical_model

# label -> BRLGraphModel overrides; "full" is PyG's GPSConv with multihead attention.
# Rows written before the labels of brl_graph.labels say twin and gps (--models takes both).
MODELS: Dict[str, Dict[str, Any]] = {
    BRL: {"global_attn": "brl"},
    MPNN: {"global_attn": "none"},
    FULL: {"global_attn": "full"},
}


def load_batches(dataset: str, root: Optional[str], batch_size: int, count: int,
                 pe: str, pe_dim: int, seed: int = 0,
                 options: Optional[Dict[str, Any]] = None) -> tuple[list, Any]:
    from torch_geometric.loader import DataLoader

    from brl_graph.data import load_dataset

    options = dict(options or {})
    if pe == "rwse":
        options.update(pe="rwse", rwse_dim=pe_dim)
    bench = load_dataset(dataset, root=root, **options)
    loader = DataLoader(bench.train, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            break
    return batches, bench


#: (model.dropout, model.attn_dropout): one timing setting.
Setting = Tuple[float, float]


def build(model: str, bench, args: argparse.Namespace, setting: Setting = (0.0, 0.0)
          ) -> torch.nn.Module:
    """The model ``fit`` would build for this benchmark (``brl_graph.train.build_model``)."""
    from brl_graph.train import build_model, load_config

    cfg = load_config({"model": {"channels": args.channels, "num_layers": args.layers,
                                 "num_tokens": args.num_tokens, "heads": args.heads,
                                 "norm": args.norm, "pe": args.pe, "pe_dim": args.pe_dim,
                                 "dropout": setting[0], "attn_dropout": setting[1],
                                 # GPSConv is post-norm only
                                 "pre_norm": args.pre_norm and model != FULL,
                                 "fold": args.fold, **MODELS[model]}})
    torch.manual_seed(0)
    return build_model(cfg, bench)


def make_step(model: torch.nn.Module, bench, lr: float):
    from brl_graph.train import make_optimizer
    from brl_graph.train.losses import task_loss

    optimizer = make_optimizer(model, lr=lr, weight_decay=0.0)
    model.train()

    def step(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = task_loss(model(batch), batch.y, bench.task, "mse")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def settings_of(args: argparse.Namespace) -> List[Setting]:
    """The dropout settings to time: ``--dropout`` and ``--attn-dropout`` zipped."""
    if len(args.dropout) != len(args.attn_dropout):
        raise SystemExit(f"--dropout has {len(args.dropout)} values and --attn-dropout "
                         f"{len(args.attn_dropout)}: give one attention dropout per dropout")
    return list(zip(args.dropout, args.attn_dropout))


def synchronize(device: torch.device) -> None:
    """Waits for the kernels queued on ``device`` (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_models(models: Sequence[str], bench, batches: list, args: argparse.Namespace,
                settings: Sequence[Setting] = ((0.0, 0.0),),
                device: torch.device = torch.device("cpu"),
                ) -> Dict[Tuple[str, Setting], Dict[str, Any]]:
    """Every (model, dropout setting) cell, timed in turn within each round."""
    cells = [(m, s) for s in settings for m in models]
    models_of = {c: build(c[0], bench, args, c[1]).to(device) for c in cells}
    batches = [b.to(device) for b in batches]
    steps = {c: make_step(models_of[c], bench, 1e-3) for c in cells}
    params = {c: sum(p.numel() for p in models_of[c].parameters()) for c in cells}
    for c in cells:  # warm-up: allocator, first-call dispatch
        for batch in batches[:args.warmup]:
            steps[c](batch)
    per_round: Dict[Tuple[str, Setting], List[float]] = {c: [] for c in cells}
    for _ in range(args.rounds):
        for c in cells:
            synchronize(device)
            start = time.perf_counter()
            for batch in batches:
                steps[c](batch)
            synchronize(device)
            per_round[c].append((time.perf_counter() - start) / len(batches))
    graphs = sum(b.num_graphs for b in batches) / len(batches)
    out = {}
    for c in cells:
        ms = 1e3 * statistics.median(per_round[c])
        out[c] = {"ms_per_step": ms, "graphs_per_s": graphs / (ms / 1e3),
                  "min_ms": 1e3 * min(per_round[c]), "max_ms": 1e3 * max(per_round[c]),
                  "num_params": params[c]}
    return out


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ogbg-molhiv")
    p.add_argument("--root", default=None, help="folder with the raw data (read-only is fine)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                   type=canonical_model)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=20, help="distinct batches per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--num-tokens", type=int, default=8)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--norm", default="batch_norm")
    p.add_argument("--pre-norm", action="store_true",
                   help="pre-norm BRL and twin layers (model.pre_norm, molhiv's recipe); "
                        "'full' stays post-norm, as PyG's GPSConv has no pre-norm form")
    p.add_argument("--fold", action="store_true",
                   help="folded reservoir projections in BRL (model.fold); the twin and "
                        "GPS have no reservoir and are built as without it")
    p.add_argument("--dropout", type=float, nargs="+", default=[0.0],
                   help="model.dropout; several values are timed side by side, each with "
                        "the --attn-dropout at the same position (molhiv's recipe: 0.05)")
    p.add_argument("--attn-dropout", type=float, nargs="+", default=[0.0],
                   help="model.attn_dropout (molhiv's recipe: 0.2)")
    p.add_argument("--pe", choices=["none", "rwse"], default="none")
    p.add_argument("--pe-dim", type=int, default=16)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra load_dataset argument, e.g. nodes=20 for ring-transfer")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda, cuda:N or auto (cuda when there is one) (default: cpu)")
    p.add_argument("--json", type=Path, default=None, help="append rows to this JSON list")
    return p.parse_args(argv)


def device_of(name: str) -> torch.device:
    """The device to time on (the CPU or a CUDA GPU, whose queued kernels
    :func:`synchronize` waits for); a clear exit otherwise."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not (name == "cpu" or name == "cuda" or name.startswith("cuda:")):
        raise SystemExit(f"--device {name}: expected cpu, cuda, cuda:N or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def where(device: torch.device) -> str:
    """The processor the steps ran on, for the row: the GPU's name, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    settings = settings_of(args)  # before any data is loaded
    device = device_of(args.device)
    torch.set_num_threads(args.threads)
    from brl_graph.train.config_io import parse_value

    options = {}
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option {item!r} is not of the form KEY=VALUE")
        options[key] = parse_value(raw)
    batches, bench = load_batches(args.dataset, args.root, args.batch_size, args.batches,
                                  args.pe, args.pe_dim, options=options)
    result = time_models(args.models, bench, batches, args, settings, device)
    nodes = sum(b.num_nodes for b in batches) / len(batches)
    print(f"{args.dataset}: batch {args.batch_size} graphs (~{nodes:.0f} nodes), "
          f"{args.channels} ch, {args.layers} layers, K={args.num_tokens}, norm={args.norm}"
          f"{' (pre-norm)' if args.pre_norm else ''}{', BRL folded' if args.fold else ''}, "
          f"{args.threads} thread(s), {where(device)}; median of {args.rounds} rounds x {len(batches)} steps")
    for (m, s), r in result.items():
        twin = result.get((MPNN, s))
        ratio = r["ms_per_step"] / twin["ms_per_step"] if twin else float("nan")
        print(f"  {m:5s} dropout {s[0]:.2f}/{s[1]:.2f} {r['ms_per_step']:7.1f} ms/step  "
              f"{r['graphs_per_s']:7.0f} graphs/s  ({ratio:.2f}x mpnn, {r['num_params']:,} params)")
    if args.json is not None:
        command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
        rows = [{"dataset": args.dataset, "model": m, "batch_size": args.batch_size,
                 "channels": args.channels, "layers": args.layers, "num_tokens": args.num_tokens,
                 "norm": args.norm, "pre_norm": args.pre_norm and m != FULL,
                 # settings of the run: the twin (and GPS) timed beside a pre-norm or
                 # folded BRL keep rows of their own
                 "run_pre_norm": args.pre_norm, "fold": args.fold,
                 "dropout": s[0], "attn_dropout": s[1],
                 "threads": args.threads, "torch": torch.__version__, "device": device.type,
                 "machine": where(device), "command": command, **r}
                for (m, s), r in result.items()]

        def key(row: Dict[str, Any]) -> tuple:
            # rows without dropout fields were timed without dropout
            # a GPU row is kept apart per GPU; CPU rows have always been this machine's
            device = row.get("device", "cpu")
            return (row["dataset"], row["model"], row["batch_size"], device,
                    row.get("machine") if device != "cpu" else None,
                    row.get("dropout", 0.0),
                    row.get("attn_dropout", 0.0),
                    row.get("run_pre_norm", row.get("pre_norm", False)), row.get("fold", False))

        def upsert(old: Any) -> List[Dict[str, Any]]:
            new = {key(r) for r in rows}
            return [row for row in (old or []) if key(row) not in new] + rows

        update_json_locked(args.json, upsert)
        print(f"rows in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
