r"""Process-group set-up under ``torchrun`` and whole-split gathering of predictions.

Under ``torchrun`` the environment holds ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` then starts a process group (``nccl`` on GPUs,
``gloo`` on CPU). Without them it returns a single-process context, so the
same engine code runs both ways.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, List, Optional

import torch
import torch.distributed as dist

from .config_io import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run.

    Attributes:
        rank: global rank (0 writes files and prints).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: the device this process trains on.
    """
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` when CUDA is available, else ``cpu``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name!r} but CUDA is not available; "
                              "use train.device=cpu or auto")
        if name == "cuda":
            return torch.device("cuda", local_rank)
    return torch.device(name)


def setup(device: str = "auto") -> DistContext:
    """Initialises the process group when launched by ``torchrun``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    elif dev.type == "cuda":
        torch.cuda.set_device(dev)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown(ctx: DistContext) -> None:
    """Destroys the process group started by :func:`setup`."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_gather_objects(obj: Any, ctx: DistContext) -> List[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not ctx.distributed:
        return [obj]
    out: List[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sums a tensor over ranks (identity in a single process)."""
    if ctx.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def shard_range(n: int, ctx: DistContext) -> range:
    r"""This rank's contiguous slice of ``n`` items for evaluation.

    Contiguous slices without padding cover every item exactly once, so the
    concatenation of all ranks' predictions in rank order is the split in its
    original order, with no duplicates to drop (unlike a padded
    :class:`~torch.utils.data.DistributedSampler`).
    """
    start = n * ctx.rank // ctx.world_size
    stop = n * (ctx.rank + 1) // ctx.world_size
    return range(start, stop)


def on_rank0(fn: Callable[[], Any], ctx: DistContext) -> Any:
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


def wrap_ddp(model: torch.nn.Module, loader: Any, ctx: DistContext) -> torch.nn.Module:
    """``model`` itself in a single process, else wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`.

    DDP must know whether some parameters get no gradient (e.g. an encoder a
    dataset does not use). One eval-mode pass over the first batch of
    ``loader`` (no dropout, so no RNG draw) tells, and ranks agree by taking
    the maximum.
    """
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    batch = next(iter(loader)).to(ctx.device)
    model.eval()
    model(batch).float().sum().backward()
    unused = any(p.grad is None for p in model.parameters() if p.requires_grad)
    model.zero_grad(set_to_none=True)
    flag = all_reduce_sum(torch.tensor([float(unused)], device=ctx.device), ctx)
    return DistributedDataParallel(
        model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
        find_unused_parameters=bool(flag.item() > 0))


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Gives every rank rank 0's buffers of ``module`` (e.g. batch-norm statistics);
    nothing in a single process."""
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a :func:`wrap_ddp` wrapper (``model`` itself in one process)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model
