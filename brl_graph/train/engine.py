r"""The training engine behind ``train.py``: :func:`fit`.

One run trains a :class:`~brl_graph.nn.BRLGraphModel` on a benchmark from
:func:`brl_graph.data.load_dataset` (or a user's :func:`brl_graph.data.from_pyg`
benchmark), selects the epoch with the best validation metric and reports the
test metric at that epoch, which is the OGB and LRGB protocol.

The pieces live by responsibility: :mod:`.build` turns the config into a
benchmark and a model, :mod:`.loop` trains an epoch and evaluates,
:mod:`.records` writes the run folder (config, log, metrics, TensorBoard),
:mod:`.checkpoint` saves and reads checkpoints, and :mod:`.distributed` holds
the few DDP calls. This file wires them together: seeds, resume and the epoch
loop.

Exact resume: the loader's shuffle comes from a generator re-seeded from
``(train.seed, epoch)`` at the start of every epoch, and the checkpoint written
at the end of each epoch holds the model, optimiser, scheduler, best-so-far,
history and every rank's Python, NumPy and torch generator states; the stop
rule (:mod:`.stopping`) is rebuilt from the history. A run killed at any moment
and resumed therefore replays exactly the epochs an uninterrupted run would,
and ends with the same metrics on CPU.

A logged epoch is ``train.passes_per_epoch`` passes over the training set; a
plateau schedule is stepped, and the stop rule consulted, after each
evaluation, on the split each one monitors.
"""
from __future__ import annotations

import copy
import random
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch

from brl_graph.runtime import torch_threads

from .build import build_bench, build_model, count_parameters
from .checkpoint import (CheckpointError, get_rng_state, load_checkpoint, save_checkpoint,
                         set_rng_state)
from .config import ConfigLike, config_differences, load_config, rename_deprecated
from .distributed import (DistContext, all_gather_objects, barrier, broadcast_buffers, on_rank0,
                          setup, teardown, wrap_ddp)
from .loop import (Loaders, epoch_seed, evaluate, is_better, make_loaders, make_scheduler,
                   step_on_evaluation, train_epoch)
from .optim import WeightAverage, make_optimizer
from .records import (RunRecords, aggregate, budget_columns, peak_memory, prepare_run_dir,
                      prepare_seeds_root, write_summary)
from .stopping import stop_rule


def fit(config: ConfigLike = None, bench=None, *, resume: bool = False, overwrite: bool = False,
        overrides: Optional[List[str]] = None) -> Dict[str, Any]:
    r"""Trains and evaluates a model as ``config`` says.

    Args:
        config: a YAML path, a (partial) nested dict merged over
            :data:`~brl_graph.train.config.DEFAULTS`, or ``None`` for the defaults.
        bench: a benchmark (e.g. from :func:`brl_graph.data.from_pyg`); when
            ``None`` it is loaded from ``config["data"]``.
        resume: continue from ``out_dir/checkpoints/last.pt``.
        overwrite: start again in an ``out_dir`` that already holds a run.
        overrides: dotted ``key=value`` strings applied over ``config``.

    Returns:
        The contents of ``metrics.json``: ``best_epoch``, ``epochs_completed``,
        ``valid`` and ``test`` metrics at the best validation epoch,
        ``train_best``, ``stopped``, ``passes``, ``optimizer_steps``,
        ``num_params``, ``world_size``, ``seconds``, ... With ``train.seeds``,
        the aggregate written to ``out_dir/summary.json`` instead, with
        ``mean``, ``std`` and ``values`` per metric and each seed's metrics
        under ``runs``.

    Raises:
        ConfigError: unknown keys or bad values.
        CheckpointError: ``resume`` with a missing, corrupt or mismatched checkpoint.
        FileExistsError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite``.
        NonFiniteLossError: the loss became NaN or infinite.
    """
    cfg = load_config(config, overrides)
    # Small graphs make many small ops, which one thread runs fastest: on 2
    # cores a molhiv epoch took 2.4x longer with 2 threads than with 1.
    with torch_threads(cfg["train"]["threads"]):
        ctx = setup(cfg["train"]["device"])
        try:
            if bench is None:
                bench = _load_bench_collectively(cfg, ctx)
            elif getattr(bench, "name", None):
                cfg["data"]["name"] = bench.name
            if cfg["train"]["seeds"] is None:
                return _run(cfg, bench, ctx, resume, overwrite)
            return _run_seeds(cfg, bench, ctx, resume, overwrite)
        finally:
            teardown(ctx)


def _run(cfg: Dict[str, Any], bench, ctx: DistContext, resume: bool, overwrite: bool,
         allow_fresh: bool = False) -> Dict[str, Any]:
    """Trains one seed into ``cfg["out_dir"]`` and returns its metrics."""
    t = cfg["train"]
    out_dir = Path(cfg["out_dir"])
    ckpt_dir = out_dir / "checkpoints"
    resuming = on_rank0(lambda: prepare_run_dir(out_dir, resume, overwrite, allow_fresh), ctx)

    # Model, optimiser, data and schedule: the same on every rank.
    _seed_everything(t["seed"])
    model = build_model(cfg, bench).to(ctx.device)
    optimizer = make_optimizer(model, lr=t["lr"], weight_decay=t["weight_decay"])
    # With train.ema_decay the weight average is what is evaluated, selected and exported.
    average = WeightAverage(model, t["ema_decay"]) if t["ema_decay"] else None
    generator = torch.Generator()  # the training shuffle, re-seeded every epoch
    loaders = make_loaders(bench, cfg, ctx, generator)
    scheduler = make_scheduler(optimizer, t, loaders.steps_per_epoch, bench.higher_is_better)

    # Start at epoch 0, or where checkpoints/last.pt left off.
    if resuming:
        state = _resume(ckpt_dir / "last.pt", cfg, ctx, model, optimizer, scheduler, average)
    else:
        state = {"epoch": 0, "best": {"epoch": None, "valid": {}, "test": {}},
                 "history": [], "seconds": 0.0}
        # Dropout streams differ per rank; rank 0 matches a single-process run.
        torch.manual_seed(t["seed"] + ctx.rank)
    # The stop rule's state is a function of the logged metrics: a resumed run
    # replays them and stands exactly where the interrupted one stood.
    stop = stop_rule(t, bench.higher_is_better).replay(
        state["history"], f"{t['stop_monitor']}_{bench.metric}")
    state["stop"] = stop.record(t["stop_monitor"])
    records = RunRecords(cfg, bench, count_parameters(model), ctx)
    records.start(state, resuming)
    train_model = wrap_ddp(model, loaders.valid if len(loaders.valid) else loaders.train,
                           ctx)  # DDP

    try:
        for epoch in range(state["epoch"] + 1, t["epochs"] + 1):
            if stop.stopped:  # fired after the previous epoch, or before a resume
                break
            generator.manual_seed(epoch_seed(t["seed"], epoch))
            lr = optimizer.param_groups[0]["lr"]
            trained = train_epoch(train_model, loaders, optimizer, scheduler, bench, cfg, ctx,
                                  epoch, ckpt_dir, average)
            start = time.perf_counter()
            row: Dict[str, Any] = {"epoch": epoch, "train_loss": trained.loss, "lr": lr,
                                   **budget_columns(state["history"], loaders.passes,
                                                    trained.steps)}
            improved = False
            if epoch % t["eval_every"] == 0 or epoch == t["epochs"]:
                evaluated = model if average is None else average.module
                # DDP: each rank's batch-norm statistics moved with its own last
                # batches; score with rank 0's, the ones the checkpoint keeps.
                broadcast_buffers(evaluated, ctx)
                scores = _evaluate_splits(evaluated, loaders, bench, ctx, t["bf16"])
                for split, values in scores.items():
                    row.update({f"{split}_{k}": v for k, v in values.items()})
                step_on_evaluation(scheduler, scores, t["plateau_monitor"], bench.metric)
                stop.update(epoch, scores.get(t["stop_monitor"], {}).get(bench.metric))
                improved = _update_best(state, epoch, scores, bench)
            seconds = trained.seconds + time.perf_counter() - start
            row.update({"seconds": seconds,
                        "graphs_per_s": trained.graphs / max(trained.seconds, 1e-9),
                        "best": improved, "peak_memory_mb": peak_memory(ctx)["peak_memory_mb"]})
            state["epoch"] = epoch
            state["seconds"] += seconds
            state["history"].append(row)
            state["stop"] = stop.record(t["stop_monitor"])

            rng = all_gather_objects(get_rng_state(), ctx)  # DDP: every rank's generators

            def save(improved: bool = improved) -> None:
                ckpt = {"epoch": epoch, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "best": state["best"], "history": state["history"], "rng": rng,
                        "config": cfg, "seconds": state["seconds"], "world_size": ctx.world_size,
                        "num_params": records.num_params,
                        "average": None if average is None else average.state_dict()}
                if improved:
                    save_checkpoint(ckpt, ckpt_dir / "best.pt")
                save_checkpoint(ckpt, ckpt_dir / "last.pt")

            on_rank0(save, ctx)  # DDP: a refused save (non-finite weights) stops every rank
            records.epoch(state, row)
            barrier(ctx)  # DDP
    finally:
        records.close()
    return records.finish(state)


def _evaluate_splits(model: torch.nn.Module, loaders: Loaders, bench, ctx: DistContext,
                     bf16: bool) -> Dict[str, Dict[str, float]]:
    """The benchmark's metrics per split: train (with ``train.eval_train``), valid, test.

    ``model`` is the one that is checkpointed as the run's result: the epoch's
    final weights, or their average with ``train.ema_decay``.

    The train metric comes from an evaluation pass over the training split with
    the epoch's final weights, not from counting hits during the training
    passes (as Alon & Yahav do): it is then the metric of the model that is
    checkpointed, free of dropout and of the weights' drift within the epoch,
    and costs one forward pass, about 1/3 of a training pass (0.3% of an epoch
    of 100 passes).
    """
    scores: Dict[str, Dict[str, float]] = {}
    if loaders.train_eval is not None:
        scores["train"] = evaluate(model, loaders.train_eval, bench, ctx, bf16, "train")
    scores["valid"] = evaluate(model, loaders.valid, bench, ctx, bf16, "valid")
    scores["test"] = evaluate(model, loaders.test, bench, ctx, bf16, "test")
    return scores


def _update_best(state: Dict[str, Any], epoch: int, scores: Mapping[str, Mapping[str, float]],
                 bench) -> bool:
    """Makes ``epoch`` ``state["best"]`` if its validation metric is better (the
    OGB/LRGB model selection); returns whether it did."""
    valid = scores["valid"][bench.metric]
    if not is_better(valid, state["best"]["valid"].get(bench.metric), bench.higher_is_better):
        return False
    state["best"] = {"epoch": epoch, **scores}
    return True


def _resume(path: Path, cfg: Mapping[str, Any], ctx: DistContext, model: torch.nn.Module,
            optimizer: torch.optim.Optimizer, scheduler,
            average: Optional[WeightAverage] = None) -> Dict[str, Any]:
    """Loads ``path`` into the model, optimiser, scheduler and this rank's
    generators; returns the training state (epoch, best, history, seconds)."""
    ckpt = on_rank0(lambda: load_checkpoint(path), ctx)
    # A checkpoint written before a config key was renamed holds the old name.
    diffs = config_differences(rename_deprecated(ckpt["config"], warn=False), cfg)
    if diffs:
        raise CheckpointError(f"checkpoint {path} was written by a run with another config; "
                              "differences: " + "; ".join(diffs))
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if average is not None:
            average.load_state_dict(ckpt["average"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path} does not match this model or optimiser: "
                              f"{err}") from err
    if len(ckpt["rng"]) == ctx.world_size:
        set_rng_state(ckpt["rng"][ctx.rank])
    else:
        set_rng_state(ckpt["rng"][0])
        warnings.warn(f"resuming with {ctx.world_size} processes from a checkpoint written by "
                      f"{len(ckpt['rng'])}: training continues, but not bit-identically to "
                      "an uninterrupted run")
    return {key: ckpt[key] for key in ("epoch", "best", "history", "seconds")}


def _run_seeds(cfg: Dict[str, Any], bench, ctx: DistContext, resume: bool,
               overwrite: bool) -> Dict[str, Any]:
    """Trains every seed of ``train.seeds`` into ``out_dir/seed_<s>/`` and
    writes their aggregate to ``out_dir/summary.json``."""
    root = Path(cfg["out_dir"])
    on_rank0(lambda: prepare_seeds_root(root, cfg, resume, overwrite), ctx)
    runs: Dict[int, Dict[str, Any]] = {}
    for seed in cfg["train"]["seeds"]:
        run_cfg = copy.deepcopy(cfg)
        run_cfg["train"]["seed"] = seed
        run_cfg["train"]["seeds"] = None
        run_cfg["out_dir"] = str(root / f"seed_{seed}")
        runs[seed] = _run(run_cfg, bench, ctx, resume, overwrite, allow_fresh=True)
    summary = aggregate(runs)
    if ctx.is_main:
        write_summary(root, summary, len(runs))
    return summary


def _load_bench_collectively(config: Mapping[str, Any], ctx: DistContext):
    """Loads the benchmark on every rank, rank 0 first.

    Rank 0 processes and caches the data; the others then read the cache
    instead of racing to write it.
    """
    if not ctx.distributed:
        return build_bench(config)
    holder: Dict[str, Any] = {}

    def first() -> None:
        holder["bench"] = build_bench(config)

    on_rank0(first, ctx)
    return holder["bench"] if ctx.is_main else build_bench(config)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
