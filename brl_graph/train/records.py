r"""The run folder and its records, written by rank 0.

Run folder ``out_dir/``::

    config.yaml              the fully resolved config
    log.csv                  one row per epoch (plus TensorBoard events if installed)
    checkpoints/last.pt      state after the latest epoch (resume point)
    checkpoints/best.pt      state after the best validation epoch
    metrics.json             best_epoch, epochs_completed, valid, test, num_params, world_size,
                             seconds, the budget (passes, optimizer_steps), train_best and
                             why the run stopped (stop)

With ``train.seeds``, ``out_dir/`` holds ``config.yaml``, one such folder per
seed (``seed_<s>/``) and ``summary.json``. Every file is written atomically.
"""
from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch

from brl_graph.io import atomic_write_text, write_json

from .checkpoint import CheckpointError
from .config import save_config
from .distributed import DistContext
from .loop import is_better
from .stopping import EPOCHS, TARGET

# Files of a run folder that a fresh run (with overwrite) removes first.
RUN_FILES = ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.json", "log.csv",
             "summary.json")


def prepare_run_dir(out_dir: Path, resume: bool, overwrite: bool, allow_fresh: bool) -> bool:
    """Checks the run folder; returns True when a checkpoint is to be resumed.

    ``allow_fresh``: ``resume`` may start from epoch 1 when nothing was written
    yet (a seed of a multi-seed run that had not started).
    """
    last = out_dir / "checkpoints" / "last.pt"
    started = (out_dir / "config.yaml").exists() or last.exists()
    if resume:
        if last.exists():
            return True
        if started or allow_fresh:
            print(f"no checkpoint in {out_dir / 'checkpoints'} yet (killed during the first "
                  "epoch?): starting from epoch 1", flush=True)
            return False
        raise CheckpointError(f"nothing to resume: {last} does not exist (is out_dir right?); "
                              "run without --resume to start")
    if started:
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} already holds a run; pass --resume (fit(..., resume=True)) to "
                "continue it, --overwrite to start it again, or choose another out_dir=...")
        for name in RUN_FILES:
            (out_dir / name).unlink(missing_ok=True)
    return False


def prepare_seeds_root(root: Path, cfg: Mapping[str, Any], resume: bool,
                       overwrite: bool) -> None:
    """Checks and writes the ``config.yaml`` of a multi-seed run's folder."""
    if resume and not (root / "config.yaml").exists():
        raise CheckpointError(f"nothing to resume: {root / 'config.yaml'} does not exist")
    if not resume and (root / "config.yaml").exists() and not overwrite:
        raise FileExistsError(
            f"{root} already holds a run; pass --resume to continue it, --overwrite "
            "to start it again, or choose another out_dir=...")
    save_config(cfg, root / "config.yaml")


def write_log(path: Path, history: List[Dict[str, Any]]) -> None:
    """``log.csv``: one row per epoch; a column per key seen in any row."""
    columns: List[str] = []
    for row in history:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())


def budget_columns(history: List[Mapping[str, Any]], passes: int, steps: int) -> Dict[str, int]:
    """The log columns ``passes`` and ``steps``: passes over the training set and
    optimizer steps since the run began, after an epoch of ``passes`` passes
    and ``steps`` steps that follows ``history``."""
    last = history[-1] if history else {}
    # A row logged before these columns existed (one pass per epoch) has neither.
    done_passes = last.get("passes", len(history))
    done_steps = last.get("steps", 0)
    return {"passes": done_passes + passes, "steps": done_steps + steps}


def best_train(history: List[Mapping[str, Any]], metric: str,
               higher_is_better: bool) -> Optional[Dict[str, Any]]:
    """The evaluation with the best train metric (``train.eval_train``): its
    epoch and train scores, e.g. ``{"epoch": 40, "accuracy": 1.0}``; ``None``
    when the train split was never scored."""
    best: Optional[Mapping[str, Any]] = None
    key = f"train_{metric}"
    for row in history:
        if key in row and is_better(row[key], best[key] if best else None, higher_is_better):
            best = row
    if best is None:
        return None
    return {"epoch": best["epoch"],
            **{k[len("train_"):]: v for k, v in best.items()
               if k.startswith("train_") and k != "train_loss"}}


def peak_memory(ctx: DistContext) -> Dict[str, Any]:
    """This process's memory high-water mark so far, in MiB.

    On CUDA: the largest allocation by PyTorch on the device. On CPU: the
    peak resident set size of the process (dataset and interpreter included).
    """
    if ctx.device.type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(ctx.device) / 2**20,
                "peak_memory_kind": "cuda_max_allocated"}
    try:
        import resource
    except ImportError:  # not on POSIX
        return {"peak_memory_mb": None, "peak_memory_kind": None}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    return {"peak_memory_mb": rss * scale / 2**20, "peak_memory_kind": "process_max_rss"}


def run_peak_memory(history: List[Dict[str, Any]], ctx: DistContext) -> Dict[str, Any]:
    """The run's memory high-water mark: this process's, or a larger one that an
    earlier process of the same run (before a resume) logged in ``history``."""
    now = peak_memory(ctx)
    logged = [r["peak_memory_mb"] for r in history if r.get("peak_memory_mb") is not None]
    if logged and now["peak_memory_mb"] is not None:
        now["peak_memory_mb"] = max([now["peak_memory_mb"]] + logged)
    return now


def run_metrics(state: Mapping[str, Any], bench, cfg: Mapping[str, Any], num_params: int,
                ctx: DistContext) -> Dict[str, Any]:
    """The content of ``metrics.json`` for the training ``state`` so far."""
    best = state["best"]
    history = state["history"]
    t = cfg["train"]
    stop = state.get("stop") or {}
    stopped = stop.get("reason") or (EPOCHS if state["epoch"] >= t["epochs"] else None)
    last = history[-1] if history else {}
    return {
        "dataset": getattr(bench, "name", cfg["data"]["name"]),
        "metric": bench.metric,
        "higher_is_better": bool(bench.higher_is_better),
        "best_epoch": best["epoch"],
        "epochs_completed": state["epoch"],
        "epochs": cfg["train"]["epochs"],
        "finished": stopped is not None,
        # Why the run ended ("target", "patience", "epochs"; None while it runs)
        # and the stop rule's state: monitor, best, best_epoch, without_gain.
        "stopped": stopped,
        "stop": stop,
        "valid": best["valid"],
        "test": best["test"],
        **({"train": best["train"]} if "train" in best else {}),
        # The best train metric of the run, whichever epoch valid selected.
        "train_best": best_train(history, bench.metric, bool(bench.higher_is_better)),
        "train_loss": history[-1]["train_loss"] if history else None,
        # The budget spent: passes over the training set and optimizer steps.
        "passes_per_epoch": t["passes_per_epoch"],
        "passes": last.get("passes", len(history)),
        "optimizer_steps": last.get("steps"),
        "num_params": num_params,
        "world_size": ctx.world_size,
        "seed": cfg["train"]["seed"],
        "seconds": state["seconds"],
        "seconds_per_epoch": (sum(r["seconds"] for r in history) / len(history)) if history else None,
        **run_peak_memory(history, ctx),
    }


def summary_line(row: Mapping[str, Any], metric: str, epochs: int) -> str:
    """The line printed after each epoch (``*`` marks a new best)."""
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}",
             f"loss {row['train_loss']:.4f}"]
    for split in ("train", "valid", "test"):
        key = f"{split}_{metric}"
        if key in row:
            parts.append(f"{split} {metric} {row[key]:.4f}")
    parts.append(f"{row['seconds']:.1f} s")
    parts.append(f"{row['graphs_per_s']:.0f} graphs/s")
    return " | ".join(parts) + (" *" if row["best"] else "")


def _tensorboard(out_dir: Path, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: TensorBoard is not a dependency
        return None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"), purge_step=purge_step)


class RunRecords:
    """Writes a run folder's ``config.yaml``, ``log.csv``, ``metrics.json`` and
    TensorBoard events, and prints progress; every method is a no-op on ranks
    other than 0 except :meth:`metrics`."""

    def __init__(self, cfg: Mapping[str, Any], bench, num_params: int, ctx: DistContext) -> None:
        self.cfg = cfg
        self.bench = bench
        self.num_params = num_params
        self.ctx = ctx
        self.out_dir = Path(cfg["out_dir"])
        self._writer = None

    def metrics(self, state: Mapping[str, Any]) -> Dict[str, Any]:
        return run_metrics(state, self.bench, self.cfg, self.num_params, self.ctx)

    def start(self, state: Mapping[str, Any], resuming: bool) -> None:
        """Writes ``config.yaml``, announces the run and opens TensorBoard."""
        if not self.ctx.is_main:
            return
        save_config(self.cfg, self.out_dir / "config.yaml")
        if resuming:
            # The log and metrics may be one epoch ahead of last.pt if the kill
            # came between writes: rewrite them from the checkpoint's history.
            write_log(self.out_dir / "log.csv", state["history"])
            write_json(self.out_dir / "metrics.json", self.metrics(state))
        bench, ctx = self.bench, self.ctx
        mode = f"resuming after epoch {state['epoch']}" if resuming else "starting"
        print(f"{mode}: {self.cfg['data']['name']} ({bench.task}, metric {bench.metric}) | "
              f"{len(bench.train)}/{len(bench.valid)}/{len(bench.test)} graphs | "
              f"{self.num_params:,} parameters | {ctx.device} x {ctx.world_size} | "
              f"out_dir {self.out_dir}", flush=True)
        self._writer = _tensorboard(self.out_dir, state["epoch"] + 1)

    def epoch(self, state: Mapping[str, Any], row: Mapping[str, Any]) -> None:
        """Records the epoch that ``row`` (the last of ``state["history"]``) describes."""
        if not self.ctx.is_main:
            return
        write_log(self.out_dir / "log.csv", state["history"])
        write_json(self.out_dir / "metrics.json", self.metrics(state))
        if self._writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self._writer.add_scalar(key, value, row["epoch"])
            self._writer.flush()
        print(summary_line(row, self.bench.metric, self.cfg["train"]["epochs"]), flush=True)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self, state: Mapping[str, Any]) -> Dict[str, Any]:
        """Prints the best epoch and returns the final metrics."""
        if self.ctx.is_main:
            best, metric = state["best"], self.bench.metric
            stop = state.get("stop") or {}
            if stop.get("reason"):
                print(f"stopped after epoch {stop['epoch']}: {stop['monitor']} {metric} "
                      + (f"reached {stop['target']}" if stop["reason"] == TARGET else
                         f"without gain for {stop['without_gain']} evaluations")
                      + f" (best {stop['best']} at epoch {stop['best_epoch']})", flush=True)
            if best["epoch"] is not None:
                print(f"best epoch {best['epoch']}: valid {metric} {best['valid'][metric]:.4f}, "
                      f"test {metric} {best['test'][metric]:.4f}", flush=True)
            print(f"results in {self.out_dir}/ (metrics.json, log.csv, checkpoints/best.pt)",
                  flush=True)
        return self.metrics(state)


def aggregate(runs: Mapping[int, Mapping[str, Any]]) -> Dict[str, Any]:
    """``summary.json`` of a multi-seed run: mean and sample standard deviation
    (ddof=1; 0 for one seed) per metric, and each seed's metrics under ``runs``.

    A metric is summarised over the seeds that have a finite value for it; ``n``
    counts them and ``missing`` names the others (a seed that never logged the
    metric, or logged NaN), so a mean over fewer seeds never passes for one over all.
    """
    first = next(iter(runs.values()))
    summary: Dict[str, Any] = {"seeds": list(runs), "metric": first["metric"],
                               "num_params": first["num_params"],
                               "world_size": first["world_size"]}
    for split in ("valid", "test"):
        summary[split] = {}
        keys = dict.fromkeys(key for r in runs.values() for key in r[split])  # union, in order
        for key in keys:
            values = [r[split].get(key) for r in runs.values()]
            finite = {seed: v for seed, v in zip(runs, values)
                      if v is not None and math.isfinite(v)}
            clean = list(finite.values())
            mean = float(np.mean(clean)) if clean else float("nan")
            std = float(np.std(clean, ddof=1)) if len(clean) > 1 else 0.0
            summary[split][key] = {"mean": mean, "std": std, "values": values, "n": len(clean),
                                   "missing": [seed for seed in runs if seed not in finite]}
    summary["seconds"] = sum(r["seconds"] for r in runs.values())
    summary["runs"] = {str(seed): r for seed, r in runs.items()}
    return summary


def write_summary(root: Path, summary: Mapping[str, Any], num_seeds: int) -> None:
    """Writes ``root/summary.json`` and prints the test metric's mean and spread."""
    write_json(root / "summary.json", summary)
    metric = summary["metric"]
    test = summary["test"].get(metric)
    if test is None or test["n"] == 0:
        print(f"test {metric}: no seed of {num_seeds} produced a value "
              f"(summary in {root / 'summary.json'})", flush=True)
        return
    over = (f"{num_seeds} seeds" if test["n"] == num_seeds else
            f"{test['n']} of {num_seeds} seeds (no value: seed "
            + ", ".join(str(s) for s in test["missing"]) + ")")
    print(f"test {metric} over {over}: {test['mean']:.4f} ± "
          f"{test['std']:.4f} (summary in {root / 'summary.json'})", flush=True)


__all__ = ["RUN_FILES", "RunRecords", "aggregate", "best_train", "budget_columns",
           "peak_memory", "prepare_run_dir", "prepare_seeds_root", "run_metrics", "run_peak_memory", "summary_line",
           "write_log", "write_summary"]

