r"""Long-range benchmark: RingTransfer and Tree-NeighborsMatch, BRL vs its twins.

The models under one budget per table row (same data, epochs, batch size,
optimiser, width and depth; only the global branch differs):

- ``brl``: :class:`~brl_graph.nn.BRLGraphModel` with its K learned tokens
  (``model.global_attn=brl``, ``model.num_tokens`` from the config);
- ``mpnn``: the MPNN-only twin, ``model.num_tokens=0`` (GINE layers only);
- ``full``: GPSConv-style multihead full attention, ``model.global_attn=full``;
- ``brl-k1``: BRL with one token, ``model.num_tokens=1`` (the classic virtual
  node, read and written by attention): does it take *several* tokens?

Tasks, as in their papers:

- RingTransfer (Bodnar et al.): ``configs/ring-transfer.yaml`` with
  ``data.nodes=n`` and 3 layers; metric = test accuracy at the best
  validation epoch (chance 0.2);
- Tree-NeighborsMatch (Alon & Yahav, ICLR 2021): ``configs/tree-neighbors-match.yaml``
  with ``data.depth=r`` and ``r + 1`` layers; metric = training accuracy at
  the best validation epoch (the paper reports training accuracy), valid
  and test kept beside it, plus the best training accuracy of any epoch;
- ``tree-published``: the same task under the authors' protocol,
  ``configs/tree-neighbors-match-published.yaml`` (upward edges, 100 passes
  per logged epoch, lr halved on a plateau of train accuracy, stop at 1.0 or
  after 20 logged epochs without gain); metric = best train accuracy, with
  the passes, optimiser steps and stop reason of the run.

Every (task, size, model, seed) is one ``python train.py`` subprocess, run by
:mod:`brl_graph.train.sweep` in its own ``runs/long_range/<task>-<size>-<model>-s<seed>-.../``,
and one row of the JSON file, rewritten atomically (under a file lock, so two
processes can share it) after each row. Rows already in the file are skipped, and a run
whose folder holds a checkpoint is resumed, so the script can be killed and
restarted. Each row stores the exact ``python train.py ...`` command that
reproduces it.

Usage::

    python experiments/long_range.py --json benchmarks/results/long_range.json \
        --tasks ring --sizes 100 200 --models brl mpnn full
    # r = 5 and 6 of the published protocol on a GPU, one process each (the JSON is shared)
    python experiments/long_range.py --tasks tree-published --sizes 5 --models brl \
        --device cuda --tree-log-passes 10 --runs ${BRL_RUNS:?}/long_range &
    python experiments/long_range.py --tasks tree-published --sizes 6 --models brl \
        --device cuda --tree-log-passes 10 --runs ${BRL_RUNS:?}/long_range

    # one setting changed, in rows of their own (``settings``): the twin at the
    # authors' width of 32 at r = 4
    python experiments/long_range.py --tasks tree-published --sizes 4 --models mpnn \
        --set model.channels=32 --runs ${BRL_RUNS:?}/long_range

A row trained off the CPU names its device and machine (``device``,
``machine``); the file's ``config.machine`` stays the CPU rows' machine.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from brl_graph.labels import FULL, MPNN, canonical_model
from brl_graph.results.long_range import BF16_OVERRIDE, trained_in_bf16
from brl_graph.runtime import machine_text, prefer_passive_omp_wait
from brl_graph.train.sweep import (MODELS, ResultsFile, metric_fields, model_overrides,
                                   run_folder, run_train, train_command)

prefer_passive_omp_wait()  # before torch loads, in the train.py runs

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("ring", "tree", "tree-published")
CONFIGS = {"ring": "configs/ring-transfer.yaml", "tree": "configs/tree-neighbors-match.yaml",
           "tree-published": "configs/tree-neighbors-match-published.yaml"}
# ``settings`` is the --set overrides of a row (absent or None for none): a row that
# changes one setting (e.g. the twin at the authors' width) is a cell of its own.
KEY_FIELDS = ("task", "size", "model", "seed", "settings")
# --set may change what the protocol leaves open, not what the driver sets itself.
DRIVER_KEYS = {"train.seed": "--seeds", "train.device": "--device", "train.bf16": "--bf16",
               "train.progress": None, "out_dir": "--runs"}


def budget_overrides(task: str, size: int, args: argparse.Namespace) -> List[str]:
    """The training budget of one table row: identical for every model of one call."""
    # The precision is part of the budget: the row stores it, and its cell says so
    # (a table may then mix fp32 and bf16 cells, each labelled).
    return (task_budget(task, size, args) + ([BF16_OVERRIDE] if args.bf16 else [])
            + settings(args))


def settings(args: argparse.Namespace) -> List[str]:
    """The ``--set`` overrides in one canonical form: the last value of each key,
    sorted by key, so that the same config is always the same cell and folder."""
    last = {item.partition("=")[0]: item for item in args.set}
    return [last[key] for key in sorted(last)]


def settings_of(args: argparse.Namespace) -> Optional[str]:
    """The row's ``settings`` key: its ``--set`` overrides, or ``None``."""
    return " ".join(settings(args)) or None


def settings_slug(args: argparse.Namespace) -> str:
    """A run-folder suffix for the ``--set`` overrides, whole keys and values kept
    (``-model.channels=32``), so that no two settings share a run folder and a
    variant never resumes the plain row's run; characters a folder name should
    not hold become ``_``, with a digest of the text when any did."""
    text = "-".join(settings(args))
    if not text:
        return ""
    safe = re.sub(r"[^A-Za-z0-9_.=-]", "_", text)
    return "-" + safe + ("" if safe == text else "-" + hashlib.sha1(text.encode()).hexdigest()[:8])


def check_settings(args: argparse.Namespace) -> None:
    """Refuses ``--set`` overrides that would not do what the row would claim."""
    if not args.set:
        return
    if set(args.tasks) != {"tree-published"}:
        raise SystemExit("--set makes variant rows of the tree-published task only (their table "
                         "is in RESULTS' published-protocol section); run it with "
                         "--tasks tree-published")
    for item in args.set:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set {item!r} is not KEY=VALUE")
        if key in DRIVER_KEYS:
            instead = DRIVER_KEYS[key]
            raise SystemExit(f"--set {key}: the driver sets it itself"
                             + (f"; use {instead}" if instead else ""))
        for model in args.models:
            if any(o.partition("=")[0] == key
                   for o in task_model_overrides("tree-published", model)):
                raise SystemExit(f"--set {key}: model {model!r} sets it itself; a variant of "
                                 "it must change another setting (or leave the model out: "
                                 "--models)")
    from brl_graph.train.config import ConfigError, load_config
    try:  # a typo fails here, not in the first train.py run
        load_config(ROOT / CONFIGS["tree-published"], settings(args))
    except ConfigError as err:
        raise SystemExit(f"--set: {err}") from err


def task_budget(task: str, size: int, args: argparse.Namespace) -> List[str]:
    """The task's own budget overrides (data size, depth, epochs, batch)."""
    if task == "ring":
        return [f"data.nodes={size}", "model.num_layers=3",
                f"data.options.num_train={args.ring_train}",
                f"data.options.num_valid={args.ring_eval}",
                f"data.options.num_test={args.ring_eval}",
                f"train.epochs={args.ring_epochs}", f"train.batch_size={args.ring_batch}"]
    if task == "tree":
        return [f"data.depth={size}", f"model.num_layers={size + 1}",
                f"train.epochs={args.tree_epochs}", f"train.batch_size={args.tree_batch}",
                f"train.scheduler={args.tree_scheduler}", "train.eval_train=true"]
    if task == "tree-published":
        # Alon & Yahav's protocol lives in the config (plateau on train accuracy, stop
        # rule, 100 passes per logged epoch); only the per-depth settings of their
        # scripts are passed: batch 64 up to r = 3 and 1024 above, and at r = 2 a
        # logged epoch of 1,000 passes.
        out = [f"data.depth={size}", f"model.num_layers={size + 1}",
               f"train.batch_size={64 if size <= 3 else 1024}"]
        if args.tree_log_passes:
            return out + log_every(size, args.tree_log_passes)
        if size == 2:
            out += ["train.passes_per_epoch=1000", "train.epochs=50"]
        return out
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


# The authors' protocol, in passes over the training set: one logged epoch per
# LOG passes (1,000 at r = 2), the lr halved after 10 logged epochs without gain,
# a stop after 20, and 50,000 passes at most.
PUBLISHED_LOG, PUBLISHED_LOG_R2, PUBLISHED_PASSES = 100, 1000, 50_000
PLATEAU_LOGS, STOP_LOGS = 10, 20


def log_every(size: int, passes: int) -> List[str]:
    """Overrides that log (and checkpoint) every ``passes`` passes while keeping
    the published protocol's patiences and cap in passes.

    At r >= 5 a logged epoch of 100 passes takes hours on a CPU, longer than a
    working session, and a run resumes only from a logged epoch's checkpoint.
    The plateau and stop rules are then checked more often, with patiences
    scaled to the same number of passes. (ReduceLROnPlateau halves the lr once
    the epochs without gain *exceed* its patience: the authors' 10 logged epochs
    halve after 1,100 passes, these after 1,000 plus one finer epoch. Kept so
    that runs started under it resume: up to the seventeenth session no
    published-protocol run had its lr halved (the ``lr`` column of each log.csv),
    so no row differs.)
    """
    log = PUBLISHED_LOG_R2 if size == 2 else PUBLISHED_LOG
    if passes < 1 or log % passes:
        raise SystemExit(f"--tree-log-passes {passes} must divide the protocol's {log} "
                         f"passes per logged epoch at r = {size}")
    scale = log // passes
    return [f"train.passes_per_epoch={passes}", f"train.epochs={PUBLISHED_PASSES // passes}",
            f"train.plateau_patience={PLATEAU_LOGS * scale}",
            f"train.stop_patience={STOP_LOGS * scale}"]


def task_model_overrides(task: str, model: str) -> List[str]:
    """``model``'s overrides for ``task``.

    The published recipe conditions the tokens on the root
    (``model.readout_query``). The twin and full attention have no reservoir, so
    it means nothing to them; false keeps their configs what they were before the
    recipe took it, and their earlier runs resume (a resume refuses any config
    difference).
    """
    out = model_overrides(model)
    if task == "tree-published" and canonical_model(model) in (MPNN, FULL):
        out.append("model.readout_query=false")
    return out


def row_overrides(task: str, size: int, model: str, seed: int,
                  args: argparse.Namespace) -> List[str]:
    return (budget_overrides(task, size, args) + task_model_overrides(task, model)
            + [f"train.seed={seed}", f"train.device={args.device}", "train.progress=false",
               f"out_dir={run_dir(task, size, model, seed, args)}"])


def run_dir(task: str, size: int, model: str, seed: int, args: argparse.Namespace) -> str:
    """Run folder (relative to the repository); the epoch budget is in the name so a
    row rerun under another budget never resumes the old run."""
    if task == "ring":
        budget = f"e{args.ring_epochs}-t{args.ring_train}"
    elif task == "tree":
        budget = f"e{args.tree_epochs}-b{args.tree_batch}-{args.tree_scheduler}"
    else:
        # The head is in the name since the config's became one linear layer: a run
        # never resumes a checkpoint of the two-layer head that earlier rows used.
        budget = (f"published-head{published_head_layers()}"
                  + (f"-log{args.tree_log_passes}" if args.tree_log_passes else ""))
    budget += settings_slug(args)
    if args.bf16:
        budget += "-bf16"
    if args.device != "cpu":  # a GPU run never resumes a CPU run's checkpoint, nor the reverse
        budget += "-" + args.device.replace(":", "")
    return run_folder(lambda label: f"{args.runs}/{task}-{size}-{label}-s{seed}-{budget}",
                      model, ROOT)


def published_head_layers() -> int:
    """The prediction head's depth in the published protocol's config."""
    from brl_graph.train.config import load_config
    return int(load_config(ROOT / CONFIGS["tree-published"])["model"]["head_layers"])


def _max_train_accuracy(out_dir: Path) -> Optional[float]:
    """Best training accuracy of any epoch, read from ``log.csv``."""
    log = out_dir / "log.csv"
    if not log.exists():
        return None
    with open(log, encoding="utf-8") as f:
        values = [float(r["train_accuracy"]) for r in csv.DictReader(f)
                  if r.get("train_accuracy") not in (None, "")]
    return max(values) if values else None


def run_row(task: str, size: int, model: str, seed: int,
            args: argparse.Namespace) -> Dict[str, Any]:
    overrides = row_overrides(task, size, model, seed, args)
    out_dir = run_dir(task, size, model, seed, args)
    m, wall, resumed = run_train(CONFIGS[task], overrides, out_dir, root=ROOT,
                                 threads=args.threads)
    fields = metric_fields(m, "accuracy")
    row: Dict[str, Any] = {
        "task": task, "size": size, "model": model, "seed": seed, "settings": settings_of(args),
        **{k: fields[k] for k in ("epochs", "best_epoch", "valid", "test", "seconds",
                                  "seconds_per_epoch", "num_params")},
        "wall_seconds": wall, "chance": 0.2 if task == "ring" else 1.0 / 2 ** size,
        "budget": budget_overrides(task, size, args),
        "command": train_command(CONFIGS[task], overrides), "resumed": resumed,
    }
    if args.device != "cpu":
        row.update(device=args.device, machine=machine_text(args.device, args.threads))
    if task == "ring":
        row["metric_name"] = "test accuracy at best valid epoch"
        row["metric"] = row["test"]
    elif task == "tree":
        row["metric_name"] = "train accuracy at best valid epoch"
        row["metric"] = m.get("train", {}).get("accuracy")
        row["train_max"] = _max_train_accuracy(ROOT / out_dir)
    else:
        row["metric_name"] = "best train accuracy (published protocol)"
        row["train_max"] = row["metric"] = m.get("train_best", {}).get("accuracy")
        row.update({k: m.get(k) for k in ("passes", "optimizer_steps", "passes_per_epoch",
                                           "stopped", "finished")})
    return row


def skip_row(task: str, size: int, model: str, seed: int, reason: str,
             args: argparse.Namespace) -> Dict[str, Any]:
    overrides = row_overrides(task, size, model, seed, args)
    return {"task": task, "size": size, "model": model, "seed": seed,
            "settings": settings_of(args), "metric": None,
            "skipped": reason, "command": train_command(CONFIGS[task], overrides)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", default="benchmarks/results/long_range.json")
    p.add_argument("--runs", default="runs/long_range", help="run folders (relative to the repo)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--sizes", nargs="+", type=int, default=None,
                   help="ring n / tree r (default: 100 200 500 1000 / 2 3 4 5 6)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, type=canonical_model,
                   help="models to compare (legacy label: twin for mpnn)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--ring-train", type=int, default=1000, help="RingTransfer training graphs")
    p.add_argument("--ring-eval", type=int, default=200, help="RingTransfer valid and test graphs")
    p.add_argument("--ring-epochs", type=int, default=6)
    p.add_argument("--ring-batch", type=int, default=16)
    p.add_argument("--tree-epochs", type=int, default=20)
    p.add_argument("--tree-batch", type=int, default=64)
    p.add_argument("--tree-scheduler", choices=("none", "plateau", "cosine"), default="none",
                   help="constant lr by default: a plateau schedule halves the lr through the "
                        "task's long flat phase at chance and starves every model")
    p.add_argument("--tree-log-passes", type=int, default=None, metavar="N",
                   help="tree-published: log and checkpoint every N passes (N divides 100, "
                        "or 1000 at r = 2), the patiences and the 50,000-pass cap kept in "
                        "passes; for runs whose 100 passes outlast a session")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast (train.bf16=true): on a CPU with AVX-512 BF16, "
                        "1.6-1.8x the training throughput of fp32 at r = 4 (docs/RECIPE.md); "
                        "the row's budget and its RESULTS cell say so")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every run of the call, e.g. model.channels=32: "
                        "part of the budget, of the run folder and of the rows' key (their "
                        "own cells, in their own table); tree-published only")
    p.add_argument("--skip", action="append", default=[], metavar="MODEL:TASK:SIZE=REASON",
                   help="record a row as skipped with REASON instead of running it")
    p.add_argument("--rerun", action="store_true",
                   help="run rows again (e.g. under a new budget) even if already in the JSON")
    p.add_argument("--threads", type=int, default=1, help="OMP/torch threads per run")
    p.add_argument("--device", default="cpu", type=device_name,
                   help="train.device of every run: cpu (default), cuda or cuda:N")
    return p


def device_name(name: str) -> str:
    """``--device``: cpu, cuda or cuda:N (a row must say which machine trained it)."""
    if name == "cpu" or name == "cuda" or re.fullmatch(r"cuda:\d+", name):
        return name
    raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {name!r}")


def precision_note(results: ResultsFile, key: tuple, args: argparse.Namespace) -> str:
    """Says when the stored row was trained at another precision or on another
    device than asked for (the row key has neither: ``--rerun`` replaces the
    stored row)."""
    stored = [r for r in results.rows() if results.key(r) == key]
    if not stored:
        return ""
    notes = []
    was_bf16 = trained_in_bf16(stored[0])
    if was_bf16 != args.bf16:
        notes.append(f"stored in {'bf16' if was_bf16 else 'fp32'}, asked for "
                     f"{'bf16' if args.bf16 else 'fp32'}")
    device = stored[0].get("device", "cpu")
    if device != args.device:
        notes.append(f"trained on {device}, asked for {args.device}")
    return f" ({'; '.join(notes)}: --rerun replaces it)" if notes else ""


def parse_skips(items: List[str]) -> Dict[tuple, str]:
    """``MODEL:TASK:SIZE=REASON`` items as ``{(task, size, model): reason}``."""
    skips: Dict[tuple, str] = {}
    for item in items:
        spec, sep, reason = item.partition("=")
        parts = spec.split(":")
        if not sep or len(parts) != 3 or not reason:
            raise SystemExit(f"--skip {item!r} is not MODEL:TASK:SIZE=REASON")
        skips[(parts[1], int(parts[2]), canonical_model(parts[0]))] = reason
    return skips


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    check_settings(args)
    results = ResultsFile(ROOT / args.json if not os.path.isabs(args.json) else Path(args.json),
                          KEY_FIELDS)
    skips = parse_skips(args.skip)
    setting = settings_of(args)  # one for the whole call
    with_setting = f" ({setting})" if setting else ""
    # Budgets may differ between table rows (sizes) and are stored in each row.
    # the CPU rows' machine; a GPU row carries its own (run_row)
    meta = {"script": "python experiments/long_range.py"}
    if args.device == "cpu":
        meta["machine"] = machine_text("cpu", args.threads)
    for task in args.tasks:
        sizes = args.sizes or ([100, 200, 500, 1000] if task == "ring" else [2, 3, 4, 5, 6])
        for size in sizes:
            for model in args.models:
                for seed in args.seeds:
                    key = (task, size, model, seed, setting)
                    if key in results.done() and not args.rerun:
                        print(f"skip {task} {size} {model} s{seed}{with_setting}: already in "
                              f"{results.path}"
                              + precision_note(results, key, args),
                              flush=True)
                        continue
                    if (task, size, model) in skips:
                        row = skip_row(task, size, model, seed, skips[(task, size, model)], args)
                    else:
                        row = run_row(task, size, model, seed, args)
                    results.add(row, meta)
                    print(f"ROW {json.dumps(row)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
