r"""Scaling benchmark: one graph-transformer layer's forward + backward.

Compares, on one random graph per size (about 8 directed edges per node,
:obj:`--channels` features on nodes and edges), the cost of

- ``mpnn``: :class:`brl_graph.nn.BRLConv` with ``num_tokens=0``, the
  local-only (MPNN) twin;
- ``brl``: :class:`brl_graph.nn.BRLConv` with ``num_tokens=8, heads=4``;
- ``full`` / ``performer``: PyG's
  :class:`torch_geometric.nn.GPSConv` with ``heads=4`` and
  ``attn_type="multihead"`` / ``"performer"``,

all with the same local conv, ``GINEConv(Sequential(Linear(C, C), ReLU(),
Linear(C, C)))`` fed an :obj:`edge_attr` of width :math:`C`. Every layer uses
per-node layer norm (``norm="layer_norm"`` with ``mode="node"``; for
``GPSConv`` it is passed explicitly, so the models differ only in their global
branch) and no dropout. ``--layers L`` stacks :math:`L` such layers (BRL
layers carry their tokens from layer to layer), the "full model" setting;
``--checkpoint`` recomputes each layer's activations in the backward pass
(:func:`torch.utils.checkpoint.checkpoint`), which is how a 4-layer model
fits a 1M-node graph in a few GB. ``--bf16`` runs each forward under bfloat16
autocast (the loss is summed in float32). ``--tf32`` keeps float32 tensors but
lets CUDA matmuls round their inputs to TF32 on tensor cores (PyTorch's default
for matmuls is off). ``--fold`` builds the BRL layers with folded reservoir
projections (``BRLConv(fold=True)``); it applies to ``brl`` only, and section 7
of the results compares a folded row with the plain twin row of its precision.
``--profile N`` adds one profiled fwd+bwd per row and stores its N costliest
operators (self time on the device, or on the CPU) in the row's ``profile``, to
show where a layer's time goes.

Usage::

    python benchmarks/scaling.py --sizes 4096 32768 131072 \
        --models mpnn brl full performer --json out.json
    python benchmarks/scaling.py --sizes 1048576 --models mpnn brl --layers 4 \
        --checkpoint --json out.json --append     # add rows, keep the others
    python benchmarks/scaling.py --sizes 1048576 --models mpnn brl --device cuda \
        --tf32 --profile 15                       # where the fp32 time goes

Method
------
Each (model, size) row runs in a **fresh subprocess** of this script
(``--_worker``), so no row inherits allocator state, caches or threads from
another. The parent kills a worker (its whole process group) once
``--max-seconds`` of wall time have passed since it was started; the row then
says ``"skipped": "<reason>"``. Before starting a worker the parent also skips
a row that

- would obviously not fit in memory: a coarse upper estimate of the inputs
  and the saved activations (:func:`estimate_bytes`, including
  :math:`3 \cdot H N^2 \cdot 4` bytes per layer for ``full`` when
  PyTorch would take the quadratic "math" attention path) exceeds 90% of the
  available memory (``MemAvailable`` on CPU, free device memory on CUDA);
- or, unless ``--no-extrapolate``, whose fwd+bwd time, extrapolated from the
  same model's two previous sizes with their empirical exponent (clamped to
  [1, 2.5]; exponent 1 with only one previous size), predicts that even one
  timed pass plus the memory pass would overrun ``--max-seconds``.

Inside a worker:

1. build the graph and the model (seeded), run one priming fwd+bwd on a
   64-node graph so lazy one-time initialisation (thread pools, kernels)
   is not charged to any measurement;
2. **time**: ``--warmup`` untimed passes, then ``--repeats`` timed passes of
   ``loss = out.sum(); loss.backward()`` in train mode, reporting the median
   (``time.perf_counter``; on CUDA bracketed by ``torch.cuda.synchronize``).
   When the time left before ``--max-seconds`` cannot fit every pass, the
   worker drops, in this order, extra repeats, warm-ups and the memory pass
   (``peak_mem_mb`` is then ``null``), and records what it did (``repeats``,
   ``warmup``). If not even one pass fits after the warm-up, the last warm-up
   pass is the timing (``warmup_used_as_timed``): the priming pass has
   already paid the one-time costs, and such a pass lasts many seconds;
3. **peak memory** of one more fwd+bwd, net of everything that existed before
   it (inputs, parameters, previously freed memory):

   - on CUDA: ``torch.cuda.max_memory_allocated()`` after
     ``torch.cuda.reset_peak_memory_stats()``, minus
     ``torch.cuda.memory_allocated()`` before the pass (``mem_method =
     "cuda_max_allocated"``);
   - on CPU: the increase of the process's peak resident set size. Before
     the pass the worker lowers glibc's mmap threshold to 64 KiB
     (``mallopt``) and calls ``malloc_trim(0)``, so freed memory goes back to
     the OS and every sizeable tensor of the pass is freshly mapped; it then
     reads the current RSS (``VmRSS``), resets the kernel's high-water mark
     by writing ``5`` to ``/proc/self/clear_refs``, runs the pass and reads
     ``VmHWM``. ``peak_mem_mb = VmHWM - VmRSS_before`` (``mem_method =
     "rss_hwm_delta"``). This counts every resident byte the pass adds,
     including allocator and autograd overhead, so it is an honest upper
     bound of the tensor memory. Where ``clear_refs`` cannot be written the
     worker falls back to ``ru_maxrss`` (``"ru_maxrss_delta"``), which only
     gives a number when the pass set a new process-wide peak; otherwise
     ``peak_mem_mb`` is ``null``.

   The timing passes run under the default allocator settings; only the
   final memory pass runs with the lowered mmap threshold.

On a machine shared with other jobs, wall-clock times are noisy; the JSON
keeps every timed pass (``times_ms``) next to the median.

Output: ``--json`` gets a list of rows ``{"model", "num_nodes", "num_edges",
"fwd_bwd_ms", "peak_mem_mb", "device", "layers", "channels", "checkpoint",
"command", ...}``; skipped rows hold ``null`` measurements and a ``"skipped"``
reason. The file is rewritten atomically after every row; with ``--append``
the rows already in it are kept, except those this run measures again (same
model, size, depth, width, device, checkpointing, bf16, tf32 and fold; ``profile`` is not part of
that key, so a rerun without ``--profile`` drops a stored profile). A table and the target ratios of the
issue (with PASS / FAIL) are printed.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from brl_graph.io import atomic_write_json
from brl_graph.labels import BRL, FULL, MPNN, PERFORMER, canonical_model

# Row labels (brl_graph.labels); rows and commands written before them say local,
# gps-multihead and gps-performer, which --models still accepts.
MODELS = (MPNN, BRL, FULL, PERFORMER)
# PyG GPSConv's attn_type of the GPS models.
GPS_ATTENTION = {FULL: "multihead", PERFORMER: "performer"}
EDGES_PER_NODE = 8
HEADS = 4
NUM_TOKENS = 8
RESULT_MARK = "@@scaling-result "
PROGRESS_MARK = "@@scaling-progress "
MIB = 1024.0 * 1024.0
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RowSpec:
    """What one worker measures."""
    model: str
    num_nodes: int
    channels: int = 64
    layers: int = 1
    repeats: int = 5
    warmup: int = 1
    device: str = "cpu"
    threads: int = 0
    seed: int = 0
    checkpoint: bool = False
    bf16: bool = False
    tf32: bool = False
    fold: bool = False
    profile: int = 0  # ops kept from one profiled pass (0: none)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose from {list(MODELS)}")
        if self.num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {self.num_nodes}")
        if self.channels < HEADS or self.channels % HEADS != 0:
            raise ValueError(f"channels must be a positive multiple of heads={HEADS}, "
                             f"got {self.channels}")
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={self.repeats}, "
                             f"warmup={self.warmup}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda' (resolve 'auto' first), "
                             f"got {self.device!r}")
        if self.tf32 and self.device != "cuda":
            raise ValueError("tf32 applies to CUDA matmuls only; use it with device 'cuda'")
        if self.tf32 and self.bf16:
            raise ValueError("tf32 and bf16 are two precisions: choose one")
        if self.fold and self.model != BRL:
            raise ValueError(f"fold applies to {BRL!r} rows only, got model {self.model!r}")
        if self.profile < 0:
            raise ValueError(f"profile must be >= 0, got {self.profile}")

    @property
    def num_edges(self) -> int:
        return EDGES_PER_NODE * self.num_nodes


# ---------------------------------------------------------------- estimates
def estimate_bytes(model: str, num_nodes: int, channels: int, layers: int,
                   quadratic_attention: bool, checkpoint: bool = False) -> int:
    r"""Coarse estimate of a worker's peak memory in bytes, on the high side.

    Inputs (:obj:`edge_index` int64, :obj:`edge_attr` and :obj:`x` float32)
    plus, per layer, about :math:`3EC + 8NC` floats of fwd+bwd memory (the
    GINE messages dominate; one CPU run measured :math:`2.9 EC` floats for
    ``mpnn`` and ``brl`` at :math:`N = 131072`), :math:`100NC` for
    ``performer``'s random features (measured :math:`\approx 88NC` above the
    edge term) and, for ``full`` on the quadratic attention path,
    :math:`3 H N^2` (attention probabilities, their gradient and a temporary).
    With ``checkpoint``, only one layer's activations live at a time, plus
    each layer's input and output node states. Only meant to skip rows that
    obviously cannot fit.
    """
    n, e, c = num_nodes, EDGES_PER_NODE * num_nodes, channels
    inputs = 16 * e + 4 * e * c + 4 * n * c
    node_floats = 100 if model == PERFORMER else 8
    per_layer = 4 * (3 * e * c + node_floats * n * c)
    if model == FULL and quadratic_attention:
        per_layer += 4 * 3 * HEADS * n * n
    if checkpoint:
        return inputs + per_layer + layers * 4 * 2 * n * c
    return inputs + layers * per_layer


def attention_is_quadratic(device: str) -> bool:
    """Whether ``torch.nn.MultiheadAttention`` would materialise :math:`N^2` scores.

    Asks PyTorch which fused SDPA kernel it would pick for GPSConv's call
    (float32, a key-padding mask broadcast over queries, gradients on).
    ``torch._fused_sdp_choice`` is private; if it is missing or errors, the
    answer is the conservative one (quadratic).
    """
    import torch
    try:
        from torch.nn.attention import SDPBackend
        q = torch.randn(1, HEADS, 8, 16, device=device, requires_grad=True)
        mask = torch.zeros(1, HEADS, 1, 8, device=device)
        choice = torch._fused_sdp_choice(q, q, q, mask, 0.0, False)
        return int(choice) == int(SDPBackend.MATH.value)
    except Exception:  # noqa: BLE001 - any failure means "assume the worst"
        return True


def available_bytes(device: str) -> int:
    """Memory a new worker could use: ``MemAvailable`` on CPU, free memory on CUDA."""
    if device == "cuda":
        import torch
        free, _ = torch.cuda.mem_get_info()
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def memory_skip_reason(spec: RowSpec, avail: int, quadratic_attention: bool) -> Optional[str]:
    """A skip reason when :func:`estimate_bytes` exceeds 90% of ``avail``, else ``None``."""
    need = estimate_bytes(spec.model, spec.num_nodes, spec.channels, spec.layers,
                          quadratic_attention, spec.checkpoint)
    if need > 0.9 * avail:
        return (f"estimated {need / MIB:.0f} MiB needed > 90% of {avail / MIB:.0f} MiB "
                f"available (not run)")
    return None


def extrapolation_skip_reason(spec: RowSpec, previous: Sequence[Dict[str, Any]],
                              max_seconds: float) -> Optional[str]:
    """A skip reason when the extrapolated fwd+bwd time cannot fit ``max_seconds``.

    ``previous`` are measured rows of the same model (any order). With two or
    more, the exponent :math:`p` of :math:`t \\propto N^p` comes from the two
    largest (clamped to [1, 2.5]); with one, :math:`p = 1`. The row is skipped
    when two passes (one timed, one for memory) would exceed ``max_seconds``.
    """
    pts = sorted((r["num_nodes"], r["fwd_bwd_ms"]) for r in previous
                 if r.get("fwd_bwd_ms") and r["num_nodes"] < spec.num_nodes)
    if not pts:
        return None
    n1, t1 = pts[-1]
    p = 1.0
    if len(pts) >= 2:
        n0, t0 = pts[-2]
        if n1 > n0 and t1 > 0 and t0 > 0:
            p = min(2.5, max(1.0, math.log(t1 / t0) / math.log(n1 / n0)))
    predicted_s = t1 / 1e3 * (spec.num_nodes / n1) ** p
    if 2 * predicted_s > max_seconds:
        return (f"predicted {predicted_s:.0f} s per fwd+bwd (from {n1} nodes, exponent "
                f"{p:.2f}); 2 passes exceed --max-seconds={max_seconds:g} (not run)")
    return None


# ---------------------------------------------------------------- worker
def _build_layer(model: str, channels: int, fold: bool = False):
    from torch.nn import Linear, ReLU, Sequential
    from torch_geometric.nn import GINEConv, GPSConv

    from brl_graph.nn import BRLConv

    c = channels
    gine = GINEConv(Sequential(Linear(c, c), ReLU(), Linear(c, c)))
    norm_kwargs = {"mode": "node"}
    if model in (MPNN, BRL):
        return BRLConv(c, gine, num_tokens=0 if model == MPNN else NUM_TOKENS, heads=HEADS,
                       norm="layer_norm", norm_kwargs=norm_kwargs, fold=fold)
    return GPSConv(c, gine, heads=HEADS, attn_type=GPS_ATTENTION[model], norm="layer_norm",
                   norm_kwargs=norm_kwargs)


def build_model(model: str, channels: int, layers: int, checkpoint: bool = False,
                fold: bool = False):
    """A stack of ``layers`` layers of kind ``model``; BRL layers pass their tokens on.

    With ``checkpoint``, each layer's activations are recomputed in the
    backward pass instead of stored (:func:`torch.utils.checkpoint.checkpoint`),
    which trades about one extra forward pass for memory.
    """
    import functools

    import torch
    from torch.utils.checkpoint import checkpoint as recompute

    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.carries_tokens = model in (MPNN, BRL)
            self.layers = torch.nn.ModuleList(_build_layer(model, channels, fold)
                                              for _ in range(layers))

        def forward(self, x, edge_index, edge_attr):
            tokens = None
            for layer in self.layers:
                call = functools.partial(recompute, layer, use_reentrant=False) \
                    if checkpoint else layer
                if self.carries_tokens:
                    x, tokens = call(x, edge_index, tokens=tokens, edge_attr=edge_attr)
                else:
                    x = call(x, edge_index, edge_attr=edge_attr)
            return x

    return Stack()


def random_graph(num_nodes: int, channels: int, device: str, generator):
    """``x [N, C]``, ``edge_index [2, 8N]`` (uniform endpoints, sorted by source) and ``edge_attr [8N, C]``."""
    import torch
    e = EDGES_PER_NODE * num_nodes
    # Drawn where the generator lives: on CUDA, a multi-million-edge graph drawn
    # on the host would take longer than the passes it is timed for.
    at = generator.device
    edge_index = torch.randint(0, num_nodes, (2, e), generator=generator, device=at)
    edge_index = edge_index[:, torch.argsort(edge_index[0] * num_nodes + edge_index[1])]
    x = torch.randn(num_nodes, channels, generator=generator, device=at)
    edge_attr = torch.randn(e, channels, generator=generator, device=at)
    return x.to(device), edge_index.to(device), edge_attr.to(device)


def _proc_status_kib(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _glibc() -> Optional[ctypes.CDLL]:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name or "libc.so.6")
        lib.mallopt, lib.malloc_trim  # noqa: B018 - raises AttributeError if not glibc
        return lib
    except (OSError, AttributeError):
        return None


def _cpu_peak_mb(step: Callable[[], None]) -> tuple[Optional[float], str]:
    """Peak RSS increase (MiB) of one ``step()``; see the module docstring."""
    libc = _glibc()
    suffix = ""
    if libc is not None:
        M_MMAP_THRESHOLD = -3
        libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)
        libc.malloc_trim(0)
    else:
        suffix = "(no-glibc-mallopt)"
    gc.collect()
    before = _proc_status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        can_reset = before is not None
    except OSError:
        can_reset = False
    if can_reset:
        step()
        hwm = _proc_status_kib("VmHWM")
        if hwm is not None:
            return max(0.0, (hwm - before) / 1024.0), "rss_hwm_delta" + suffix
    # Fallback: ru_maxrss (KiB on Linux) only moves when the pass sets a new peak.
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_before = before if before is not None else max_before
    step()
    max_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if max_after > max_before:
        return (max_after - rss_before) / 1024.0, "ru_maxrss_delta" + suffix
    return None, "ru_maxrss_delta(no new peak; unknown)" + suffix


def _emit(mark: str, payload: Dict[str, Any]) -> None:
    print(mark + json.dumps(payload), flush=True)


def run_worker(spec: RowSpec, deadline: float) -> Dict[str, Any]:
    """Measure one row in this process (see the module docstring); ``deadline`` is ``time.time()``."""
    import torch

    if spec.threads > 0:
        torch.set_num_threads(spec.threads)
    device = spec.device
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but torch.cuda.is_available() is False")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    gen = torch.Generator(device=device).manual_seed(spec.seed)
    torch.manual_seed(spec.seed)
    if spec.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    model = build_model(spec.model, spec.channels, spec.layers,
                        spec.checkpoint, spec.fold).to(device).train()

    def autocast():
        # bf16 autocast wraps the forward only; backward replays its casts.
        if spec.bf16:
            return torch.autocast(device_type=device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def make_step(x, edge_index, edge_attr) -> Callable[[], None]:
        def step() -> None:
            model.zero_grad(set_to_none=True)
            with autocast():
                loss = model(x, edge_index, edge_attr).float().sum()
            loss.backward()
        return step

    make_step(*random_graph(64, spec.channels, device, gen))()  # priming pass
    x, edge_index, edge_attr = random_graph(spec.num_nodes, spec.channels, device, gen)
    step = make_step(x, edge_index, edge_attr)

    def timed() -> float:
        sync()
        t = time.perf_counter()
        step()
        sync()
        return time.perf_counter() - t

    def fits(passes: int, per_pass: float) -> bool:
        return time.time() + passes * per_pass < deadline - 1.0  # 1 s to report back

    # Under a tight deadline, passes are given up in this order: extra repeats,
    # warm-ups, the memory pass; one timed pass is always kept.
    last: Optional[float] = None
    warmups = 0
    for _ in range(spec.warmup):
        if last is not None and not fits(3, last):  # this + one timed + memory pass
            break
        last = timed()
        warmups += 1
        _emit(PROGRESS_MARK, {"warmup_ms": last * 1e3})
    times: List[float] = []
    warmup_as_timed = False
    for i in range(spec.repeats):
        if i == 0 and last is not None and not fits(1, last):
            # Not even one more pass fits: the last warm-up (run after the
            # priming pass, so one-time costs are already paid) is the timing.
            times.append(last)
            warmups -= 1
            warmup_as_timed = True
            break
        if i > 0 and not fits(2, last):  # this + memory pass
            break
        last = timed()
        times.append(last)
        _emit(PROGRESS_MARK, {"timed_ms": last * 1e3})

    peak_mb: Optional[float] = None
    if not fits(1, last):
        mem_method = "not measured: no time left before --max-seconds"
    elif device == "cuda":
        sync()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        sync()
        peak_mb = (torch.cuda.max_memory_allocated() - base) / MIB
        mem_method = "cuda_max_allocated"
    else:
        peak_mb, mem_method = _cpu_peak_mb(step)
    profile = None
    # A profiled pass runs slower than a plain one, and the profiler takes seconds to
    # start: a kill here would lose the whole row, timings included.
    if spec.profile and fits(2, last + 5.0):
        profile = profile_step(step, device, spec.profile)

    return {
        "model": spec.model,
        "num_nodes": spec.num_nodes,
        "num_edges": int(edge_index.size(1)),
        "fwd_bwd_ms": statistics.median(times) * 1e3,
        "peak_mem_mb": peak_mb,
        "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "layers": spec.layers,
        "channels": spec.channels,
        "checkpoint": spec.checkpoint,
        "bf16": spec.bf16,
        "tf32": spec.tf32,
        "fold": spec.fold,
        "profile": profile,
        "repeats": len(times),
        "warmup": warmups,
        "warmup_used_as_timed": warmup_as_timed,
        "threads": torch.get_num_threads(),
        "mem_method": mem_method,
        "times_ms": [t * 1e3 for t in times],
    }


# ---------------------------------------------------------------- parent
def profile_step(step: Callable[[], None], device: str, keep: int) -> List[Dict[str, Any]]:
    """The ``keep`` operators with the most self time in one profiled call of ``step``.

    On CUDA an operator's self time is that of the kernels it launched itself; on
    the CPU its own CPU time. Either way a composite operator's children are not
    counted again in it."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        if device == "cuda":
            torch.cuda.synchronize()

    def self_us(e) -> float:
        if device != "cuda":
            return e.self_cpu_time_total
        # PyTorch 2.4 renamed the CUDA fields to "device"; keep both spellings.
        return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)

    # Operators only: on CUDA each kernel is also listed as an event of its own,
    # and its time is already in the self time of the operator that launched it.
    ops = [e for e in prof.key_averages() if e.device_type == DeviceType.CPU and self_us(e) > 0]
    return [{"name": e.key, "calls": e.count, "self_ms": self_us(e) / 1e3}
            for e in sorted(ops, key=self_us, reverse=True)[:keep]]


def format_profiles(rows: Sequence[Dict[str, Any]]) -> str:
    """Each profiled row's costliest ops, one block per row."""
    blocks = []
    for r in rows:
        if not r.get("profile"):
            continue
        total = sum(op["self_ms"] for op in r["profile"])
        lines = [f"{r['model']} @ {r['num_nodes']} ({r['fwd_bwd_ms']:.1f} ms fwd+bwd; "
                 f"the ops below: {total:.1f} ms of self time)"]
        lines += [f"  {op['self_ms']:>9.2f} ms {op['calls']:>6}x  {op['name'][:80]}"
                  for op in r["profile"]]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def skipped_row(spec: RowSpec, reason: str) -> Dict[str, Any]:
    """A row for a (model, size) that was not measured."""
    return {"model": spec.model, "num_nodes": spec.num_nodes, "num_edges": spec.num_edges,
            "fwd_bwd_ms": None, "peak_mem_mb": None, "device": spec.device,
            "layers": spec.layers, "channels": spec.channels, "checkpoint": spec.checkpoint,
            "bf16": spec.bf16, "tf32": spec.tf32, "fold": spec.fold, "skipped": reason}


def _last_marked(text: str, mark: str) -> Optional[Dict[str, Any]]:
    found = None
    for line in text.splitlines():
        if line.startswith(mark):
            found = json.loads(line[len(mark):])
    return found


def measure_row(spec: RowSpec, max_seconds: float) -> Dict[str, Any]:
    """Measure ``spec`` in a fresh subprocess, killed after ``max_seconds`` of wall time.

    Returns the worker's row, or a row with ``"skipped"`` when it timed out or
    failed (the reason names what happened and, for a failure, the error's
    last line).
    """
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    deadline = time.time() + max_seconds
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker",
           json.dumps(asdict(spec)), "--_deadline", repr(deadline)]
    env = dict(os.environ)
    # The worker imports brl_graph from this checkout even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(REPO_ROOT), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session: only what we started
        out, err = proc.communicate()
        seen = [json.loads(line[len(PROGRESS_MARK):]) for line in out.splitlines()
                if line.startswith(PROGRESS_MARK)]
        detail = "; no fwd+bwd finished"
        if seen:
            detail = f"; first fwd+bwd took {next(iter(seen[0].values())):.0f} ms"
        return skipped_row(spec, f"exceeded --max-seconds={max_seconds:g} (killed){detail}")
    result = _last_marked(out, RESULT_MARK)
    if proc.returncode != 0 or result is None:
        tail = (err.strip().splitlines() or ["no error output"])[-1]
        return skipped_row(spec, f"worker failed with exit code {proc.returncode}: {tail}")
    return result


def _find(rows: Sequence[Dict[str, Any]], model: str, n: int) -> Optional[Dict[str, Any]]:
    for r in rows:
        if canonical_model(r["model"]) == model and r["num_nodes"] == n:
            return r
    return None


def _ratio(rows: Sequence[Dict[str, Any]], key: str, a: tuple, b: tuple) -> tuple:
    """``(value or None, why-not)`` for ``rows[a][key] / rows[b][key]``."""
    ra, rb = _find(rows, *a), _find(rows, *b)
    for (model, n), r in ((a, ra), (b, rb)):
        if r is None:
            return None, f"{model}@{n} not run"
        if r.get("skipped"):
            return None, f"{model}@{n} skipped"
        if r.get(key) is None:
            return None, f"{model}@{n} has no {key}"
    if not rb[key]:
        return None, f"{b[0]}@{b[1]} {key} is 0"
    return ra[key] / rb[key], ""


def target_checks(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The issue's targets, each ``{"name", "value", "target", "status"}``.

    ``status`` is ``"PASS"``, ``"FAIL"`` or ``"N/A (<why>)"``. The brl/mpnn
    ratio uses the largest size at which both were measured.
    """
    both = [r["num_nodes"] for r in rows if r["model"] == "brl" and r.get("fwd_bwd_ms")
            and (_find(rows, MPNN, r["num_nodes"]) or {}).get("fwd_bwd_ms")]
    big = max(both) if both else 131072
    specs = [
        (f"brl / mpnn time @ {big}", "fwd_bwd_ms", (BRL, big), (MPNN, big), "<=", 1.5),
        ("full / brl time @ 32768", "fwd_bwd_ms", (FULL, 32768),
         ("brl", 32768), ">=", 20.0),
        ("performer / brl time @ 131072", "fwd_bwd_ms", (PERFORMER, 131072),
         ("brl", 131072), ">=", 2.0),
        ("brl peak mem 131072 / 32768", "peak_mem_mb", ("brl", 131072), ("brl", 32768),
         "<=", 4.6),
    ]
    checks = []
    for name, key, a, b, op, bound in specs:
        value, why = _ratio(rows, key, a, b)
        if value is None:
            status = f"N/A ({why})"
        else:
            ok = value <= bound if op == "<=" else value >= bound
            status = "PASS" if ok else "FAIL"
        checks.append({"name": name, "value": value, "target": f"{op} {bound:g}",
                       "status": status})
    return checks


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """A fixed-width table of the rows."""
    head = f"{'model':<14} {'nodes':>8} {'edges':>9} {'fwd+bwd ms':>11} {'peak MiB':>9} " \
           f"{'runs':>4}  note"
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: (r["num_nodes"], MODELS.index(canonical_model(r["model"])))):
        ms = "-" if r.get("fwd_bwd_ms") is None else f"{r['fwd_bwd_ms']:.1f}"
        mem = "-" if r.get("peak_mem_mb") is None else f"{r['peak_mem_mb']:.1f}"
        runs = r.get("repeats", "-")
        note = ("skipped: " + r["skipped"]) if r.get("skipped") else ""
        lines.append(f"{r['model']:<14} {r['num_nodes']:>8} {r['num_edges']:>9} {ms:>11} "
                     f"{mem:>9} {runs!s:>4}  {note}")
    return "\n".join(lines)


def format_checks(checks: Sequence[Dict[str, Any]]) -> str:
    lines = []
    for c in checks:
        value = "-" if c["value"] is None else f"{c['value']:.2f}x"
        lines.append(f"{c['name']:<36} {value:>9}  target {c['target']:<7} {c['status']}")
    return "\n".join(lines)


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when available, else ``cpu``; ``cuda`` must be available."""
    if device == "cpu":
        return "cpu"
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    return "cuda"


def run_benchmark(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Measure every (size, model) pair, smallest size first; returns the rows."""
    device = resolve_device(args.device)
    if args.tf32 and device != "cuda":
        raise SystemExit("--tf32 applies to CUDA matmuls only, and --device auto found no GPU")
    quadratic = attention_is_quadratic(device)
    rows: List[Dict[str, Any]] = []
    json_path = Path(args.json) if args.json else None
    kept = load_kept_rows(json_path, args) if args.append else []
    command = invocation(args)
    for n in sorted(set(args.sizes)):
        for model in args.models:
            spec = RowSpec(model=model, num_nodes=n, channels=args.channels, layers=args.layers,
                           repeats=args.repeats, warmup=args.warmup, device=device,
                           threads=args.threads, seed=args.seed, checkpoint=args.checkpoint,
                           bf16=args.bf16, tf32=args.tf32, fold=args.fold,
                           profile=args.profile)
            reason = memory_skip_reason(spec, available_bytes(device), quadratic)
            if reason is None and not args.no_extrapolate:
                reason = extrapolation_skip_reason(
                    spec, [r for r in rows if r["model"] == model], args.max_seconds)
            t0 = time.perf_counter()
            row = skipped_row(spec, reason) if reason else measure_row(spec, args.max_seconds)
            row["command"] = command
            rows.append(row)
            took = time.perf_counter() - t0
            shown = "skipped: " + row["skipped"] if row.get("skipped") else \
                f"{row['fwd_bwd_ms']:.1f} ms, {row['peak_mem_mb'] if row['peak_mem_mb'] is None else round(row['peak_mem_mb'], 1)} MiB"
            print(f"[{model} @ {n}] {shown}  ({took:.0f} s)", flush=True)
            if json_path is not None:
                atomic_write_json(json_path, kept + rows)
    return kept + rows


def row_key(row: Mapping[str, Any]) -> Tuple[Any, ...]:
    """What makes two rows measure the same thing (a rerun replaces the older row)."""
    return (canonical_model(row["model"]), row["num_nodes"], row.get("layers", 1), row.get("channels"),
            row.get("device"), bool(row.get("checkpoint", False)), bool(row.get("bf16", False)),
            bool(row.get("tf32", False)), bool(row.get("fold", False)))


def load_kept_rows(path: Optional[Path], args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Rows already in ``path`` that this run will not measure again (for ``--append``)."""
    if path is None:
        raise SystemExit("--append needs --json")
    if not path.exists():
        return []
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"--append: {path} is not valid JSON ({e}); refusing to overwrite it")
    if not isinstance(old, list):
        raise SystemExit(f"--append: {path} holds a {type(old).__name__}, expected a list of rows")
    device = resolve_device(args.device)
    redo = {(m, n, args.layers, args.channels, device, args.checkpoint, args.bf16, args.tf32,
             args.fold) for n in args.sizes for m in args.models}
    # rows marked superseded (older code, kept for the record) are never replaced
    return [r for r in old if r.get("superseded") or row_key(r) not in redo]


def invocation(args: argparse.Namespace) -> str:
    """The command line that reproduces this run's rows."""
    parts = ["python benchmarks/scaling.py", "--sizes", *map(str, sorted(set(args.sizes))),
             "--models", *args.models]
    if args.layers != 1:
        parts += ["--layers", str(args.layers)]
    if args.channels != 64:
        parts += ["--channels", str(args.channels)]
    if args.json:
        parts += ["--json", str(args.json)]
    if args.checkpoint:
        parts.append("--checkpoint")
    if args.bf16:
        parts.append("--bf16")
    if args.tf32:
        parts.append("--tf32")
    if args.fold:
        parts.append("--fold")
    if args.profile:
        parts += ["--profile", str(args.profile)]
    if args.append:
        parts.append("--append")
    parts += ["--threads", str(args.threads), "--max-seconds", f"{args.max_seconds:g}",
              "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    if args.device != "cpu":
        parts += ["--device", args.device]
    return " ".join(parts)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[4096, 32768, 131072],
                   help="numbers of nodes, one random graph each (up to ~1M for mpnn/brl)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                   type=canonical_model)
    p.add_argument("--json", type=str, default=None, help="write the rows here (atomic)")
    p.add_argument("--append", action="store_true",
                   help="keep the rows already in --json, replacing only those this run measures")
    p.add_argument("--repeats", type=int, default=5, help="timed passes (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes before timing")
    p.add_argument("--max-seconds", type=float, default=300.0,
                   help="wall-time limit per row, worker start-up included")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--layers", type=int, default=1, help="stacked layers (4 = full model)")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--checkpoint", action="store_true",
                   help="recompute each layer's activations in backward (activation checkpointing)")
    p.add_argument("--bf16", action="store_true",
                   help="run each pass under bfloat16 autocast (CUDA, or CPU where supported)")
    p.add_argument("--tf32", action="store_true",
                   help="let CUDA matmuls use TF32 tensor cores on float32 tensors")
    p.add_argument("--fold", action="store_true",
                   help="BRL rows: folded reservoir projections (BRLConv(fold=True))")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="profile one more fwd+bwd per row and keep its N costliest ops")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per worker (0 = torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-extrapolate", action="store_true",
                   help="never skip a row on an extrapolated time; let --max-seconds kill it")
    p.add_argument("--_worker", type=str, default=None, help=argparse.SUPPRESS)
    p.add_argument("--_deadline", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if any(n < 1 for n in args.sizes):
        p.error(f"--sizes must be positive, got {args.sizes}")
    if args.max_seconds <= 0:
        p.error(f"--max-seconds must be positive, got {args.max_seconds}")
    if args.repeats < 1 or args.warmup < 0 or args.layers < 1:
        p.error("need --repeats >= 1, --warmup >= 0 and --layers >= 1")
    if args.channels < HEADS or args.channels % HEADS:
        p.error(f"--channels must be a positive multiple of {HEADS}, got {args.channels}")
    if args.tf32 and args.bf16:
        p.error("--tf32 and --bf16 are two precisions: choose one")
    if args.fold and any(m != BRL for m in args.models):
        p.error("--fold applies to brl only: time the twin and the GPS models without it")
    if args.tf32 and args.device == "cpu":
        p.error("--tf32 applies to CUDA matmuls only: use it with --device cuda")
    if args.profile < 0:
        p.error(f"--profile must be >= 0, got {args.profile}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args._worker is not None:
        spec = RowSpec(**json.loads(args._worker))
        deadline = args._deadline if args._deadline is not None else math.inf
        _emit(RESULT_MARK, run_worker(spec, deadline))
        return 0
    t0 = time.perf_counter()
    rows = run_benchmark(args)
    print()
    print(format_table(rows))
    print()
    print(format_checks(target_checks(rows)))
    profiles = format_profiles(rows)
    if profiles:
        print("\nCostliest ops of one profiled fwd+bwd (self time):\n" + profiles)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
