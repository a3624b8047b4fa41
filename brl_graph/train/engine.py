r"""The training engine behind ``train.py``: :func:`fit`.

One run trains a :class:`~brl_graph.nn.BRLGraphModel` on a benchmark from
:func:`brl_graph.data.load_dataset` (or a user's :func:`brl_graph.data.from_pyg`
benchmark), selects the epoch with the best validation metric and reports the
test metric at that epoch, which is the OGB and LRGB protocol.

Run folder ``out_dir/``::

    config.yaml              the fully resolved config
    log.csv                  one row per epoch (plus TensorBoard events if installed)
    checkpoints/last.pt      state after the latest epoch (resume point)
    checkpoints/best.pt      state after the best validation epoch
    metrics.json             best_epoch, epochs_completed, valid, test, num_params, world_size, seconds

Exact resume: the loader's shuffle comes from a generator re-seeded from
``(train.seed, epoch)`` at the start of every epoch, and the checkpoint written
at the end of each epoch holds the model, optimiser, scheduler, best-so-far,
history and every rank's Python, NumPy and torch generator states. A run
killed at any moment and resumed therefore replays exactly the epochs an
uninterrupted run would, and ends with the same metrics on CPU.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import random
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, Subset
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from .checkpoint import (CheckpointError, get_rng_state, load_checkpoint, save_checkpoint,
                         set_rng_state)
from .config import (ConfigError, ConfigLike, atomic_write_text, config_differences,
                     load_config, save_config)
from .distributed import (DistContext, all_gather_objects, all_reduce_sum, barrier, setup,
                          shard_range, teardown)
from .losses import task_loss
from .optim import make_optimizer

# Files of a run folder that a fresh run (with overwrite) removes first.
RUN_FILES = ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.json", "log.csv",
             "summary.json")


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN or infinite; the run stopped."""


# ----------------------------------------------------------------------------
# Building blocks: benchmark and model from a config.
# ----------------------------------------------------------------------------

def dataset_options(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The keyword arguments ``load_dataset`` receives besides ``root`` and ``cache_dir``."""
    data, model = config["data"], config["model"]
    options = {key: data[key] for key in ("nodes", "depth", "variant", "seed")
               if data[key] is not None}
    options.update(data["options"])
    # The positional encoding is computed by the loader and read by the model:
    # one key drives both so they cannot disagree.
    if model["pe"] == "rwse":
        options.update(pe="rwse", rwse_dim=model["pe_dim"])
    elif model["pe"] == "lap":
        options.update(pe="lap", lap_pe_dim=model["pe_dim"])
    return options


def build_bench(config: Mapping[str, Any]):
    """Loads the benchmark that ``config["data"]`` names."""
    from brl_graph.data import load_dataset

    data = config["data"]
    options = dataset_options(config)
    try:
        return load_dataset(data["name"], root=data["root"], cache_dir=data["cache_dir"],
                            **options)
    except (KeyError, ValueError) as err:  # unknown name or option, bad option value
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(f"cannot load data.name={data['name']!r} with options {options}: "
                          f"{message}") from err


def model_kwargs(model_cfg: Mapping[str, Any], bench, task_level: str) -> Dict[str, Any]:
    r"""The :class:`~brl_graph.nn.BRLGraphModel` arguments for a config's ``model``
    section and a benchmark's features.

    Molecule benchmarks with OGB integer features get the OGB atom and bond
    encoders; other benchmarks get linear encoders of their float features.
    """
    m = model_cfg
    kwargs: Dict[str, Any] = dict(
        out_channels=bench.out_channels, channels=m["channels"], num_layers=m["layers"],
        num_tokens=m["num_tokens"], heads=m["heads"], local=m["local"],
        global_attn=m["global"], dropout=m["dropout"], attn_dropout=m["attn_dropout"],
        causal=m["causal"], joint=m["joint"], task_level=task_level, pool=m["pool"],
    )
    if bench.atom_features:
        kwargs.update(node_encoder="atom", edge_encoder="bond")
    else:
        kwargs.update(node_encoder="linear", in_channels=bench.num_node_features)
        if bench.num_edge_features:
            kwargs.update(edge_encoder="linear", edge_dim=bench.num_edge_features)
    if getattr(bench, "node_readout", None):
        kwargs["readout_attr"] = bench.node_readout
    if m["pe"] == "rwse":
        kwargs["rwse_dim"] = m["pe_dim"]
    elif m["pe"] == "lap":
        kwargs["lap_pe_dim"] = m["pe_dim"]
    return kwargs


def build_model(config: Mapping[str, Any], bench) -> torch.nn.Module:
    r"""The :class:`~brl_graph.nn.BRLGraphModel` that ``config["model"]`` describes
    for this benchmark (see :func:`model_kwargs`)."""
    from brl_graph.nn import BRLGraphModel

    if bench.level not in ("graph", "node", "readout"):
        raise ConfigError(f"benchmark {getattr(bench, 'name', '?')!r} has level {bench.level!r}; "
                          "the training engine handles graph, node and readout levels only")
    return BRLGraphModel(**model_kwargs(config["model"], bench, bench.level))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_scheduler(optimizer: torch.optim.Optimizer, train_cfg: Mapping[str, Any],
                   steps_per_epoch: int, higher_is_better: bool):
    r"""The learning-rate schedule.

    ``cosine`` and ``none`` are per-step :class:`~torch.optim.lr_scheduler.LambdaLR`
    schedules with a linear warm-up over ``train.warmup_epochs``; cosine then
    decays to ``train.min_lr`` at the last step:
    :math:`\eta_t = \eta_{min} + \frac{1}{2}(\eta - \eta_{min})(1 + \cos(\pi t / T))`.
    ``plateau`` multiplies the rate by ``train.plateau_factor`` after
    ``train.plateau_patience`` evaluations without a better validation metric.
    """
    kind = train_cfg["scheduler"]
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if higher_is_better else "min",
            factor=train_cfg["plateau_factor"], patience=train_cfg["plateau_patience"],
            min_lr=train_cfg["min_lr"])
    warmup = train_cfg["warmup_epochs"] * steps_per_epoch
    total = max(1, train_cfg["epochs"] * steps_per_epoch - warmup)
    floor = train_cfg["min_lr"] / train_cfg["lr"]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "none":
            return 1.0
        progress = min(1.0, (step - warmup) / total)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ----------------------------------------------------------------------------
# Rank-0 decisions shared with every rank.
# ----------------------------------------------------------------------------

def _on_rank0(fn: Callable[[], Any], ctx: DistContext) -> Any:
    """Runs ``fn`` on rank 0 and hands its result, or its exception, to all ranks.

    Without this, an error on rank 0 (missing file, corrupt checkpoint) would
    leave the other ranks waiting forever at the next collective call.
    """
    result: Any = None
    error: Optional[BaseException] = None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as err:  # re-raised below on every rank
            error = err
    if ctx.distributed:
        box = [(result, error)]
        dist.broadcast_object_list(box, src=0)
        result, error = box[0]
    if error is not None:
        raise error
    return result


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

    _on_rank0(first, ctx)
    return holder["bench"] if ctx.is_main else build_bench(config)


# ----------------------------------------------------------------------------
# Loaders.
# ----------------------------------------------------------------------------

def _epoch_seed(seed: int, epoch: int) -> int:
    # Distinct, reproducible stream per (seed, epoch) for the shuffle.
    return (seed * 1_000_003 + epoch) % (2 ** 63)


def _train_loader(dataset, cfg: Mapping[str, Any], ctx: DistContext,
                  generator: torch.Generator) -> Tuple[DataLoader, Optional[DistributedSampler]]:
    t = cfg["train"]
    common = dict(batch_size=t["batch_size"], num_workers=t["num_workers"],
                  generator=generator, persistent_workers=False)
    if ctx.distributed:
        sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                     shuffle=True, seed=t["seed"], drop_last=False)
        return DataLoader(dataset, sampler=sampler, **common), sampler
    return DataLoader(dataset, shuffle=True, **common), None


def _eval_loader(dataset, cfg: Mapping[str, Any], ctx: DistContext) -> DataLoader:
    t = cfg["train"]
    shard = Subset(dataset, list(shard_range(len(dataset), ctx)))
    # Its own generator keeps evaluation from consuming the global RNG.
    return DataLoader(shard, batch_size=t["eval_batch_size"] or t["batch_size"], shuffle=False,
                      num_workers=t["num_workers"], generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------
# One epoch of training, one pass of evaluation.
# ----------------------------------------------------------------------------

def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _regression_loss(cfg: Mapping[str, Any], bench) -> str:
    choice = cfg["train"]["loss"]
    if choice != "auto":
        return choice
    return "l1" if bench.metric == "mae" else "mse"


def _train_epoch(model: torch.nn.Module, loader: DataLoader, optimizer, scheduler, bench,
                 cfg: Mapping[str, Any], ctx: DistContext, epoch: int,
                 ckpt_dir: Path) -> Tuple[float, int, float]:
    """Trains one epoch; returns (mean loss over graphs, graphs seen on all ranks, seconds)."""
    t = cfg["train"]
    model.train()
    regression = _regression_loss(cfg, bench)
    per_step_schedule = not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    total = len(loader) if t["limit_batches"] is None else min(len(loader), t["limit_batches"])
    bar = tqdm(total=total, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True,
               disable=not (t["progress"] and ctx.is_main), file=sys.stderr)
    loss_sum = torch.zeros((), dtype=torch.float64)
    graphs = 0
    start = time.perf_counter()
    for step, batch in enumerate(loader, start=1):
        if step > total:
            break
        batch = batch.to(ctx.device)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(ctx.device, t["bf16"]):
            out = model(batch)
        loss = task_loss(out, batch.y, bench.task, regression)
        # Every rank must take the same decision, or the others would hang
        # in the next gradient all-reduce.
        check = all_reduce_sum(loss.detach().float().reshape(1), ctx)
        if not torch.isfinite(check).all():
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step}: the run stopped "
                f"and the checkpoints in {ckpt_dir} (the last completed epoch) were left "
                "untouched. Lower train.lr, set train.clip, or look for inf/NaN in the data.")
        loss.backward()
        if t["clip"]:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip"])
            if not torch.isfinite(norm):
                raise NonFiniteLossError(
                    f"non-finite gradient norm at epoch {epoch}, step {step}: the run stopped "
                    f"and the checkpoints in {ckpt_dir} were left untouched.")
        optimizer.step()
        if per_step_schedule:
            scheduler.step()
        n = batch.num_graphs
        loss_sum += loss.detach().double().cpu() * n
        graphs += n
        bar.update(1)
        if step % 10 == 0 or step == total:
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{loss_sum.item() / max(graphs, 1):.4f}",
                            graphs_per_s=f"{graphs * ctx.world_size / max(elapsed, 1e-9):.0f}")
    bar.close()
    seconds = time.perf_counter() - start
    # On the training device: nccl reduces GPU tensors only.
    totals = all_reduce_sum(torch.tensor([loss_sum.item(), float(graphs)], dtype=torch.float64,
                                         device=ctx.device), ctx)
    mean_loss = totals[0].item() / max(totals[1].item(), 1.0)
    return mean_loss, int(totals[1].item()), seconds


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, ctx: DistContext,
            bf16: bool = False) -> Tuple[Tensor, Tensor]:
    """Predictions and labels of the whole split, gathered from every rank in order."""
    model.eval()
    preds: List[Tensor] = []
    ys: List[Tensor] = []
    for batch in loader:
        batch = batch.to(ctx.device)
        with _autocast(ctx.device, bf16):
            out = model(batch)
        preds.append(out.float().cpu())
        ys.append(batch.y.cpu())
    local = (torch.cat(preds), torch.cat(ys)) if preds else None
    parts = [p for p in all_gather_objects(local, ctx) if p is not None]
    if not parts:
        raise RuntimeError("evaluation split is empty")
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def evaluate(model: torch.nn.Module, loader: DataLoader, bench, ctx: DistContext,
             bf16: bool = False) -> Dict[str, float]:
    """The benchmark's metrics on a whole split (every rank gets the same dict)."""
    pred, y = predict(model, loader, ctx, bf16)
    return {key: float(value) for key, value in bench.evaluate(y, pred).items()}


# ----------------------------------------------------------------------------
# Run-folder writing (rank 0 only).
# ----------------------------------------------------------------------------

def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_finite_or_none(dict(obj)), indent=2) + "\n")


def _write_log(path: Path, history: List[Dict[str, Any]]) -> None:
    columns: List[str] = []
    for row in history:
        columns.extend(key for key in row if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())


def _is_better(value: float, best: Optional[float], higher_is_better: bool) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best


def _metrics(state: Dict[str, Any], bench, cfg: Mapping[str, Any], num_params: int,
             ctx: DistContext) -> Dict[str, Any]:
    best = state["best"]
    history = state["history"]
    return {
        "dataset": getattr(bench, "name", cfg["data"]["name"]),
        "metric": bench.metric,
        "higher_is_better": bool(bench.higher_is_better),
        "best_epoch": best["epoch"],
        "epochs_completed": state["epoch"],
        "epochs": cfg["train"]["epochs"],
        "finished": state["epoch"] >= cfg["train"]["epochs"],
        "valid": best["valid"],
        "test": best["test"],
        **({"train": best["train"]} if "train" in best else {}),
        "train_loss": history[-1]["train_loss"] if history else None,
        "num_params": num_params,
        "world_size": ctx.world_size,
        "seed": cfg["train"]["seed"],
        "seconds": state["seconds"],
        "seconds_per_epoch": (sum(r["seconds"] for r in history) / len(history)) if history else None,
        **_run_peak_memory(history, ctx),
    }


def _run_peak_memory(history: List[Dict[str, Any]], ctx: DistContext) -> Dict[str, Any]:
    """The run's memory high-water mark: this process's, or a larger one that an
    earlier process of the same run (before a resume) logged in ``history``."""
    now = _peak_memory(ctx)
    logged = [r["peak_memory_mb"] for r in history if r.get("peak_memory_mb") is not None]
    if logged and now["peak_memory_mb"] is not None:
        now["peak_memory_mb"] = max([now["peak_memory_mb"]] + logged)
    return now


def _peak_memory(ctx: DistContext) -> Dict[str, Any]:
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


def _tensorboard(out_dir: Path, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: TensorBoard is not a dependency
        return None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"), purge_step=purge_step)


# ----------------------------------------------------------------------------
# One seed.
# ----------------------------------------------------------------------------

def _prepare_run_dir(out_dir: Path, resume: bool, overwrite: bool, allow_fresh: bool) -> bool:
    """Checks the run folder; returns True when a checkpoint is to be resumed."""
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


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _find_unused_parameters(model: torch.nn.Module, loader: DataLoader, ctx: DistContext) -> bool:
    # DDP must know whether some parameters get no gradient (e.g. an encoder a
    # dataset does not use). One eval-mode pass (no dropout, so no RNG draw)
    # tells, and ranks agree by taking the maximum.
    batch = next(iter(loader)).to(ctx.device)
    model.eval()
    model(batch).float().sum().backward()
    unused = any(p.grad is None for p in model.parameters() if p.requires_grad)
    model.zero_grad(set_to_none=True)
    flag = all_reduce_sum(torch.tensor([float(unused)], device=ctx.device), ctx)
    return bool(flag.item() > 0)


def _run(cfg: Dict[str, Any], bench, ctx: DistContext, resume: bool, overwrite: bool,
         allow_fresh: bool = False) -> Dict[str, Any]:
    """Trains one seed into ``cfg["out_dir"]`` and returns its metrics."""
    t = cfg["train"]
    out_dir = Path(cfg["out_dir"])
    ckpt_dir = out_dir / "checkpoints"
    resuming = _on_rank0(lambda: _prepare_run_dir(out_dir, resume, overwrite, allow_fresh), ctx)

    _seed_everything(t["seed"])
    model = build_model(cfg, bench).to(ctx.device)
    num_params = count_parameters(model)
    optimizer = make_optimizer(model, lr=t["lr"], weight_decay=t["weight_decay"])

    generator = torch.Generator()
    train_loader, sampler = _train_loader(bench.train, cfg, ctx, generator)
    valid_loader = _eval_loader(bench.valid, cfg, ctx)
    train_eval_loader = _eval_loader(bench.train, cfg, ctx) if t["eval_train"] else None
    test_loader = _eval_loader(bench.test, cfg, ctx)
    steps = len(train_loader) if t["limit_batches"] is None else min(len(train_loader),
                                                                      t["limit_batches"])
    scheduler = make_scheduler(optimizer, t, steps, bench.higher_is_better)

    state: Dict[str, Any] = {"epoch": 0, "best": {"epoch": None, "valid": {}, "test": {}},
                             "history": [], "seconds": 0.0}
    if resuming:
        ckpt = _on_rank0(lambda: load_checkpoint(ckpt_dir / "last.pt"), ctx)
        diffs = config_differences(ckpt["config"], cfg)
        if diffs:
            raise CheckpointError(f"checkpoint {ckpt_dir / 'last.pt'} was written by a run with "
                                  "another config; differences: " + "; ".join(diffs))
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"checkpoint {ckpt_dir / 'last.pt'} does not match this "
                                  f"model or optimiser: {err}") from err
        state = {key: ckpt[key] for key in ("epoch", "best", "history", "seconds")}
        if len(ckpt["rng"]) == ctx.world_size:
            set_rng_state(ckpt["rng"][ctx.rank])
        else:
            set_rng_state(ckpt["rng"][0])
            warnings.warn(f"resuming with {ctx.world_size} processes from a checkpoint written by "
                          f"{len(ckpt['rng'])}: training continues, but not bit-identically to "
                          "an uninterrupted run")
        del ckpt
    else:
        # Dropout streams differ per rank; rank 0 matches a single-process run.
        torch.manual_seed(t["seed"] + ctx.rank)

    if ctx.is_main:
        save_config(cfg, out_dir / "config.yaml")
        if resuming:
            # The log and metrics may be one epoch ahead of last.pt if the kill
            # came between writes: rewrite them from the checkpoint's history.
            _write_log(out_dir / "log.csv", state["history"])
            _write_json(out_dir / "metrics.json", _metrics(state, bench, cfg, num_params, ctx))

    train_model: torch.nn.Module = model
    if ctx.distributed:
        find_unused = _find_unused_parameters(model, valid_loader if len(valid_loader) else
                                              train_loader, ctx)
        train_model = DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=find_unused)

    metric = bench.metric
    if ctx.is_main:
        mode = f"resuming after epoch {state['epoch']}" if resuming else "starting"
        print(f"{mode}: {cfg['data']['name']} ({bench.task}, metric {metric}) | "
              f"{len(bench.train)}/{len(bench.valid)}/{len(bench.test)} graphs | "
              f"{num_params:,} parameters | {ctx.device} x {ctx.world_size} | out_dir {out_dir}",
              flush=True)
    writer = _tensorboard(out_dir, state["epoch"] + 1) if ctx.is_main else None

    try:
        for epoch in range(state["epoch"] + 1, t["epochs"] + 1):
            generator.manual_seed(_epoch_seed(t["seed"], epoch))
            if sampler is not None:
                sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            loss, graphs, train_seconds = _train_epoch(train_model, train_loader, optimizer,
                                                       scheduler, bench, cfg, ctx, epoch, ckpt_dir)
            start = time.perf_counter()
            row: Dict[str, Any] = {"epoch": epoch, "train_loss": loss, "lr": lr}
            improved = False
            if epoch % t["eval_every"] == 0 or epoch == t["epochs"]:
                valid = evaluate(model, valid_loader, bench, ctx, t["bf16"])
                test = evaluate(model, test_loader, bench, ctx, t["bf16"])
                if train_eval_loader is not None:
                    scored = evaluate(model, train_eval_loader, bench, ctx, t["bf16"])
                    row.update({f"train_{k}": v for k, v in scored.items()})
                row.update({f"valid_{k}": v for k, v in valid.items()})
                row.update({f"test_{k}": v for k, v in test.items()})
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(valid[metric])
                best_value = state["best"]["valid"].get(metric)
                if _is_better(valid[metric], best_value, bench.higher_is_better):
                    state["best"] = {"epoch": epoch, "valid": valid, "test": test}
                    if train_eval_loader is not None:
                        state["best"]["train"] = scored
                    improved = True
            seconds = train_seconds + time.perf_counter() - start
            row.update({"seconds": seconds, "graphs_per_s": graphs / max(train_seconds, 1e-9),
                        "best": improved,
                        "peak_memory_mb": _peak_memory(ctx)["peak_memory_mb"]})
            state["epoch"] = epoch
            state["seconds"] += seconds
            state["history"].append(row)

            # Collective: every rank contributes its generator states.
            rng = all_gather_objects(get_rng_state(), ctx)
            if ctx.is_main:
                ckpt = {"epoch": epoch, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "best": state["best"], "history": state["history"], "rng": rng,
                        "config": cfg, "seconds": state["seconds"], "world_size": ctx.world_size,
                        "num_params": num_params}
                if improved:
                    save_checkpoint(ckpt, ckpt_dir / "best.pt")
                save_checkpoint(ckpt, ckpt_dir / "last.pt")
                _write_log(out_dir / "log.csv", state["history"])
                _write_json(out_dir / "metrics.json", _metrics(state, bench, cfg, num_params, ctx))
                if writer is not None:
                    for key, value in row.items():
                        if isinstance(value, (int, float)) and key != "epoch":
                            writer.add_scalar(key, value, epoch)
                    writer.flush()
                print(_summary_line(row, metric, t["epochs"]), flush=True)
            barrier(ctx)
    finally:
        if writer is not None:
            writer.close()

    metrics = _metrics(state, bench, cfg, num_params, ctx)
    if ctx.is_main:
        best = state["best"]
        if best["epoch"] is not None:
            print(f"best epoch {best['epoch']}: valid {metric} {best['valid'][metric]:.4f}, "
                  f"test {metric} {best['test'][metric]:.4f}", flush=True)
        print(f"results in {out_dir}/ (metrics.json, log.csv, checkpoints/best.pt)", flush=True)
    return metrics


def _summary_line(row: Mapping[str, Any], metric: str, epochs: int) -> str:
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}",
             f"loss {row['train_loss']:.4f}"]
    for split in ("valid", "test"):
        key = f"{split}_{metric}"
        if key in row:
            parts.append(f"{split} {metric} {row[key]:.4f}")
    parts.append(f"{row['seconds']:.1f} s")
    parts.append(f"{row['graphs_per_s']:.0f} graphs/s")
    return " | ".join(parts) + (" *" if row["best"] else "")


# ----------------------------------------------------------------------------
# The public entry point.
# ----------------------------------------------------------------------------

def _aggregate(runs: Dict[int, Dict[str, Any]]) -> Dict[str, Any]:
    """Mean and sample standard deviation (ddof=1; 0 for one seed) per metric."""
    first = next(iter(runs.values()))
    summary: Dict[str, Any] = {"seeds": list(runs), "metric": first["metric"],
                               "num_params": first["num_params"],
                               "world_size": first["world_size"]}
    for split in ("valid", "test"):
        summary[split] = {}
        for key in first[split]:
            values = [r[split].get(key) for r in runs.values()]
            clean = [v for v in values if v is not None and math.isfinite(v)]
            mean = float(np.mean(clean)) if clean else float("nan")
            std = float(np.std(clean, ddof=1)) if len(clean) > 1 else 0.0
            summary[split][key] = {"mean": mean, "std": std, "values": values}
    summary["seconds"] = sum(r["seconds"] for r in runs.values())
    summary["runs"] = {str(seed): r for seed, r in runs.items()}
    return summary


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
    ctx = setup(cfg["train"]["device"])
    try:
        if bench is None:
            bench = _load_bench_collectively(cfg, ctx)
        elif getattr(bench, "name", None):
            cfg["data"]["name"] = bench.name
        seeds = cfg["train"]["seeds"]
        if seeds is None:
            return _run(cfg, bench, ctx, resume, overwrite)

        root = Path(cfg["out_dir"])

        def check_root() -> None:
            if resume and not (root / "config.yaml").exists():
                raise CheckpointError(f"nothing to resume: {root / 'config.yaml'} does not exist")
            if not resume and (root / "config.yaml").exists() and not overwrite:
                raise FileExistsError(
                    f"{root} already holds a run; pass --resume to continue it, --overwrite "
                    "to start it again, or choose another out_dir=...")
            save_config(cfg, root / "config.yaml")

        _on_rank0(check_root, ctx)
        runs: Dict[int, Dict[str, Any]] = {}
        for seed in seeds:
            run_cfg = copy.deepcopy(cfg)
            run_cfg["train"]["seed"] = seed
            run_cfg["train"]["seeds"] = None
            run_cfg["out_dir"] = str(root / f"seed_{seed}")
            runs[seed] = _run(run_cfg, bench, ctx, resume, overwrite, allow_fresh=True)
        summary = _aggregate(runs)
        if ctx.is_main:
            _write_json(root / "summary.json", summary)
            metric = summary["metric"]
            test = summary["test"].get(metric)
            if test is not None:
                print(f"test {metric} over {len(seeds)} seeds: {test['mean']:.4f} ± "
                      f"{test['std']:.4f} (summary in {root / 'summary.json'})", flush=True)
        return summary
    finally:
        teardown(ctx)
