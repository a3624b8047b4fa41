r"""The training loop's pieces: loaders, the learning-rate schedule, one epoch of
training, prediction and evaluation.

Nothing here writes files. Distribution shows only in the loaders (a
:class:`~torch.utils.data.DistributedSampler`, evaluation shards) and in three
collective calls marked ``# DDP``; in a single process they are no-ops.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import DistributedSampler, Subset
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from ..data.loader import SharedStructureLoader, stackable
from .distributed import DistContext, all_gather_objects, all_reduce_sum, shard_range, unwrap
from .losses import task_loss
from .optim import WeightAverage

#: Either loader yields the same batches; see :mod:`brl_graph.data.loader`.
Loader = Union[DataLoader, SharedStructureLoader]


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN or infinite; the run stopped."""


class ConstantPredictionWarning(UserWarning):
    """Every graph of an evaluated split got the same prediction: the model's
    output no longer depends on its input."""


# ----------------------------------------------------------------------------
# Loaders.
# ----------------------------------------------------------------------------

def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible shuffle stream per ``(seed, epoch)``."""
    return (seed * 1_000_003 + epoch) % (2 ** 63)


def train_loader(dataset, cfg: Mapping[str, Any], ctx: DistContext,
                 generator: torch.Generator) -> Tuple[Loader, Optional[DistributedSampler]]:
    """The shuffled training loader (and its sampler under DDP, else ``None``);
    its order comes from ``generator``, re-seeded by the caller every epoch."""
    t = cfg["train"]
    common = dict(batch_size=t["batch_size"], num_workers=t["num_workers"],
                  generator=generator, persistent_workers=False)
    if ctx.distributed:  # DDP
        sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                     shuffle=True, seed=t["seed"], drop_last=False)
        return DataLoader(dataset, sampler=sampler, **common), sampler
    if _stacks(dataset, t):
        return SharedStructureLoader(dataset, t["batch_size"], shuffle=True,
                                     generator=generator), None
    return DataLoader(dataset, shuffle=True, **common), None


def _stacks(dataset, train_cfg: Mapping[str, Any]) -> bool:
    """Whether ``dataset`` gets :class:`SharedStructureLoader`: the same batches in the
    same order as PyG's loader, sliced from stacked tensors. Loader workers keep PyG's,
    which can collate in them."""
    return train_cfg["num_workers"] == 0 and stackable(dataset)


def eval_loader(dataset, cfg: Mapping[str, Any], ctx: DistContext) -> Loader:
    """This rank's contiguous shard of ``dataset``, in order."""
    t = cfg["train"]
    shard = Subset(dataset, list(shard_range(len(dataset), ctx)))
    batch_size = t["eval_batch_size"] or t["batch_size"]
    # Its own generator keeps evaluation from consuming the global RNG.
    generator = torch.Generator().manual_seed(0)
    if _stacks(shard, t):
        return SharedStructureLoader(shard, batch_size, generator=generator)
    return DataLoader(shard, batch_size=batch_size, shuffle=False,
                      num_workers=t["num_workers"], generator=generator)


@dataclass
class Loaders:
    """The loaders of one run. ``train_eval`` is ``None`` unless ``train.eval_train``.

    A logged epoch is ``passes`` passes over the training set of
    ``steps_per_pass`` optimizer steps each.
    """
    train: Loader
    sampler: Optional[DistributedSampler]
    valid: Loader
    test: Loader
    train_eval: Optional[Loader]
    steps_per_pass: int
    passes: int

    @property
    def steps_per_epoch(self) -> int:
        return self.steps_per_pass * self.passes


def make_loaders(bench, cfg: Mapping[str, Any], ctx: DistContext,
                 generator: torch.Generator) -> Loaders:
    """Every loader a run needs; ``steps_per_pass`` honours ``train.limit_batches``."""
    t = cfg["train"]
    train, sampler = train_loader(bench.train, cfg, ctx, generator)
    steps = len(train) if t["limit_batches"] is None else min(len(train), t["limit_batches"])
    return Loaders(train=train, sampler=sampler, valid=eval_loader(bench.valid, cfg, ctx),
                   test=eval_loader(bench.test, cfg, ctx),
                   train_eval=eval_loader(bench.train, cfg, ctx) if t["eval_train"] else None,
                   steps_per_pass=steps, passes=t["passes_per_epoch"])


# ----------------------------------------------------------------------------
# Learning-rate schedule.
# ----------------------------------------------------------------------------

def make_scheduler(optimizer: torch.optim.Optimizer, train_cfg: Mapping[str, Any],
                   steps_per_epoch: int, higher_is_better: bool):
    r"""The learning-rate schedule.

    ``cosine`` and ``none`` are per-step :class:`~torch.optim.lr_scheduler.LambdaLR`
    schedules with a linear warm-up over ``train.warmup_epochs``; cosine then
    decays to ``train.min_lr`` at the last step:
    :math:`\eta_t = \eta_{min} + \frac{1}{2}(\eta - \eta_{min})(1 + \cos(\pi t / T))`.
    ``plateau`` multiplies the rate by ``train.plateau_factor`` after
    ``train.plateau_patience`` evaluations without a better metric on the split
    ``train.plateau_monitor`` names (:func:`step_on_evaluation` feeds it).
    ``steps_per_epoch`` counts every pass of a logged epoch.
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


def steps_every_batch(scheduler) -> bool:
    """Whether ``scheduler`` steps after every batch (else once per evaluation)."""
    return not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def step_on_evaluation(scheduler, scores: Mapping[str, Mapping[str, float]], monitor: str,
                       metric: str) -> None:
    """Feeds a plateau schedule the ``metric`` of split ``monitor`` (``valid`` or
    ``train``) after an evaluation; per-step schedules ignore evaluations."""
    if not steps_every_batch(scheduler):
        scheduler.step(scores[monitor][metric])


# ----------------------------------------------------------------------------
# One epoch of training, one pass of evaluation.
# ----------------------------------------------------------------------------

def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on ``device`` when ``enabled``, else a no-op context."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def regression_loss(train_cfg: Mapping[str, Any], bench) -> str:
    """``train.loss``, with ``auto`` resolved: ``l1`` for an MAE metric, else ``mse``."""
    choice = train_cfg["loss"]
    if choice != "auto":
        return choice
    return "l1" if bench.metric == "mae" else "mse"


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on stderr, shown only when ``enabled`` and stderr is a terminal:
    a redirected run's log file gets the per-epoch summary lines, not bar redraws."""
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr,
                disable=not (enabled and sys.stderr.isatty()))


@dataclass
class EpochStats:
    """What one logged epoch of training did."""
    loss: float      # mean training loss over every graph of every pass
    graphs: int      # graphs seen, all ranks and passes together
    steps: int       # optimizer steps taken
    seconds: float


def epoch_batches(loaders: Loaders, epoch: int):
    """The training batches of a logged epoch: ``loaders.passes`` passes of at
    most ``loaders.steps_per_pass`` batches.

    Each pass reshuffles: the loader draws its order from the generator the
    caller seeded for this epoch, so the passes of an epoch are reproducible
    and a resume (always at an epoch boundary) replays them exactly.
    """
    for index in range(loaders.passes):
        if loaders.sampler is not None:  # DDP: the sampler's order is seeded by the pass
            # Numbered from 1, so one pass per epoch keeps the old order (= epoch).
            loaders.sampler.set_epoch((epoch - 1) * loaders.passes + index + 1)
        for step, batch in enumerate(loaders.train):
            if step == loaders.steps_per_pass:
                break
            yield batch


def train_epoch(model: torch.nn.Module, loaders: Loaders, optimizer, scheduler, bench,
                cfg: Mapping[str, Any], ctx: DistContext, epoch: int,
                ckpt_dir: Path, average: Optional[WeightAverage] = None) -> EpochStats:
    """Trains one logged epoch (``loaders.passes`` passes; ``ckpt_dir`` is named in errors);
    ``average``, when given, follows the weights after every optimiser step.

    Raises:
        NonFiniteLossError: a non-finite loss or gradient norm, on every rank
            at once; nothing has been stepped with it.
    """
    t = cfg["train"]
    model.train()
    regression = regression_loss(t, bench)
    per_step_schedule = steps_every_batch(scheduler)
    steps = loaders.steps_per_epoch
    bar = progress_bar(steps, f"epoch {epoch}", t["progress"] and ctx.is_main)
    loss_sum = torch.zeros((), dtype=torch.float64)
    graphs = 0
    taken = 0
    start = time.perf_counter()
    for step, batch in enumerate(epoch_batches(loaders, epoch), start=1):
        batch = batch.to(ctx.device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(ctx.device, t["bf16"]):
            out = model(batch)
        loss = task_loss(out, batch.y, bench.task, regression)
        # DDP: every rank must take the same decision, or the others would
        # hang in the next gradient all-reduce.
        check = all_reduce_sum(loss.detach().float().reshape(1), ctx)
        if not torch.isfinite(check).all():
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at epoch {epoch}, step {step}: the run stopped "
                f"and the checkpoints in {ckpt_dir} (the last completed epoch) were left "
                "untouched. Lower train.lr, set train.clip, or look for inf/NaN in the data.")
        loss.backward()
        # The norm is checked with clipping off too: a finite loss can still
        # give inf/NaN gradients, and one step with them would put NaN weights
        # into the next checkpoint. A max norm of inf measures without scaling.
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip"] or float("inf"))
        if not torch.isfinite(norm):
            raise NonFiniteLossError(
                f"non-finite gradient norm at epoch {epoch}, step {step}: the run stopped "
                f"and the checkpoints in {ckpt_dir} were left untouched. Lower train.lr, "
                "turn off train.bf16, or look for an operation with an infinite derivative "
                "(sqrt or log at 0) or inf/NaN in the data.")
        optimizer.step()
        if average is not None:
            average.update(unwrap(model))
        taken += 1
        if per_step_schedule:
            scheduler.step()
        n = batch.num_graphs
        loss_sum += loss.detach().double().cpu() * n
        graphs += n
        bar.update(1)
        if step % 10 == 0 or step == steps:
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{loss_sum.item() / max(graphs, 1):.4f}",
                            graphs_per_s=f"{graphs * ctx.world_size / max(elapsed, 1e-9):.0f}")
    bar.close()
    seconds = time.perf_counter() - start
    # DDP: totals over ranks, on the training device (nccl reduces GPU tensors only).
    totals = all_reduce_sum(torch.tensor([loss_sum.item(), float(graphs)], dtype=torch.float64,
                                         device=ctx.device), ctx)
    mean_loss = totals[0].item() / max(totals[1].item(), 1.0)
    return EpochStats(loss=mean_loss, graphs=int(totals[1].item()), steps=taken, seconds=seconds)


@torch.no_grad()
def predict(model: torch.nn.Module, loader: Loader, ctx: DistContext,
            bf16: bool = False) -> Tuple[Tensor, Tensor]:
    """Predictions and labels of the whole split, gathered from every rank in order."""
    model.eval()
    preds: List[Tensor] = []
    ys: List[Tensor] = []
    for batch in loader:
        batch = batch.to(ctx.device)
        with autocast(ctx.device, bf16):
            out = model(batch)
        preds.append(out.float().cpu())
        ys.append(batch.y.cpu())
    local = (torch.cat(preds), torch.cat(ys)) if preds else None
    parts = [p for p in all_gather_objects(local, ctx) if p is not None]  # DDP
    if not parts:
        raise RuntimeError("evaluation split is empty")
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def evaluate(model: torch.nn.Module, loader: Loader, bench, ctx: DistContext,
             bf16: bool = False, split: Optional[str] = None) -> Dict[str, float]:
    """The benchmark's metrics on a whole split (every rank gets the same dict).

    Warns (:class:`ConstantPredictionWarning`, on rank 0) when every prediction
    of the split is the same, naming :obj:`split` (e.g. ``"valid"``). Under :obj:`bf16` the predictions are compared as
    rounded to bfloat16, so a spread below its precision counts as none.
    """
    pred, y = predict(model, loader, ctx, bf16)
    if ctx.is_main and is_constant(pred):
        # Seen at Tree-NeighborsMatch r = 5: every ReLU unit of the head was negative on every
        # graph, so the gradient to all earlier layers was exactly zero and the run could never
        # leave chance. Say so instead of logging chance-level metrics in silence.
        which = f"the {split}" if split else "this"
        warnings.warn(f"all {pred.size(0)} predictions of {which} split are identical: the "
                      "model's output no longer depends on its input. If every ReLU unit of the "
                      "head is dead, no gradient reaches the layers before it and training "
                      "cannot recover", ConstantPredictionWarning, stacklevel=2)
    return {key: float(value) for key, value in bench.evaluate(y, pred).items()}


def is_constant(pred: Tensor) -> bool:
    """Whether ``pred`` holds at least two rows and all of them are equal."""
    return pred.size(0) > 1 and bool((pred == pred[:1]).all())


def is_better(value: Optional[float], best: Optional[float], higher_is_better: bool) -> bool:
    """Whether a finite ``value`` improves on ``best`` (``None``: nothing yet)."""
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best
