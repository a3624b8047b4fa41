r"""Causal long-range benchmark: multi-query associative recall.

Compares attention kinds inside the same small causal language model,
trained with the same budget (steps, batch, learning rate, seed, data):

- ``brl``: :class:`brl_graph.nn.BRLAttention` with ``causal=True`` in its
  default reservoir mode (a sliding window of ``--window`` positions plus
  ``--num-tokens`` compressed tokens, pooled by a prefix softmax);
- ``blocks``: the same layer in ``mode="blocks"``: the window plus
  ``--block-tokens`` learned-pooled tokens per completed block of
  ``--block-size`` positions, read by content, and the ``--top-k`` best
  blocks read at full resolution;
- ``window``: the same layer with ``num_tokens=0`` (sliding window only);
- ``linear``: causal linear attention (:class:`~brl_graph.nn.models.LinearCausalAttention`,
  :math:`\phi(k)^\top v` prefix state, :math:`\phi = \mathrm{elu} + 1`), whose
  state per layer (:math:`H D^2 = C D` numbers) equals the reservoir's
  :math:`K C` at the defaults (:math:`C = 32, H = 4, K = 8`);
- ``full``: full causal attention,
  :func:`torch.nn.functional.scaled_dot_product_attention` with
  ``is_causal=True``.

The default run trains ``brl``, ``window`` and ``full``; pass ``--models`` for
the others.

Task
----
A sequence of length :math:`L` is laid out as

.. code-block:: text

    BOS k_1 v_1 k_2 v_2 ... k_N v_N  f f f ... f  q_1 q_2 ... q_M

with :math:`N` distinct keys drawn from ``--num-keys`` key tokens, values drawn
independently (with replacement) from ``--num-values`` value tokens, filler
tokens drawn from ``--num-filler`` filler tokens (disjoint from keys and
values), and :math:`M` distinct query keys drawn from the :math:`k_n`. At the
position of query :math:`q_m` the model must output the value that followed
that key in the list. The loss and the accuracy count these :math:`M`
answer positions only; chance is ``1 / num_values``. Queries sit at the very
end, so an answer lies at least :math:`L - 2N - M - 1` positions away from its
evidence. Longer sequences (evaluation at 1k-8k after training at 128) only
add filler.

Sizes
-----
The defaults were chosen on the full-attention reference, not on BRL: with
the 600-step CPU budget, full attention learns the task when trained at
:math:`L = 128` (train accuracy 0.999) but stays near chance when trained at
:math:`L = 256` (0.13 after 600 steps, width 64), so training runs at 128 and
the long lengths are evaluation only. At :math:`L = 128` the evidence is
already at least 103 positions from every query, beyond the 62-position
receptive field of two window layers of width 32; at 1k-8k it is 30-250
windows away.

Model
-----
Token embedding plus a *previous-token* embedding (a width-2 causal
convolution over tokens, as in H3/Mamba-style token shift) so that a value
position knows its key without positional encodings; no positional encoding
otherwise, so nothing in the model is tied to the training length. Then
``--layers`` pre-norm blocks ``x + Attn(LN(x))``, ``x + MLP(LN(x))`` (MLP
width :math:`2C`), a final layer norm and a linear head over the whole vocabulary.

Timing
------
``fwd_bwd_ms`` is the median over ``--time-repeats`` passes (after one
warm-up) of one forward + backward of the loss on a batch of ``--time-batch``
sequences of the evaluated length, in train mode, on the thread count
``--threads``. On a shared machine the numbers are noisy; every pass is kept
in ``times_ms``.

Usage::

    python experiments/causal_recall.py --json benchmarks/results/causal_recall.json

(the defaults: train at :math:`L = 128` for 600 steps of 16 sequences,
evaluate at 128, 1k, 2k, 4k and 8k). The recall/cost table of every kind
(``benchmarks/results/causal_recall_modes.json``) runs the slow reservoir
model in its own process and merges the two runs::

    python experiments/causal_recall.py --models full blocks window linear --steps 3000 \
        --schedule constant --eval-lens 128 2048 8192 --json run_a.json
    python experiments/causal_recall.py --models brl --steps 3000 \
        --schedule constant --eval-lens 128 2048 8192 --json run_b.json
    python experiments/causal_recall.py --merge run_a.json run_b.json \
        --json benchmarks/results/causal_recall_modes.json

Output: ``--json`` gets ``{"config": {...}, "rows": [...]}`` with one row
``{"model", "train_len", "eval_len", "accuracy", "fwd_bwd_ms", ...}`` per
(model, evaluated length); written atomically. A table is printed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module

from brl_graph.io import atomic_write_json
from brl_graph.nn.models import ATTENTION_KINDS, BOS, RecallLM

KINDS = ATTENTION_KINDS  # the model's attention kinds, all of them runnable here
DEFAULT_MODELS = ("brl", "window", "full")
# After the linear warm-up: cosine decay to zero over the budget, or constant.
SCHEDULES = ("cosine", "constant")
IGNORE = -100


# ---------------------------------------------------------------- task
@dataclass(frozen=True)
class RecallTask:
    r"""Vocabulary and sizes of the associative-recall task.

    Token ids: ``0`` is BOS, then ``num_keys`` keys, ``num_values`` values and
    ``num_filler`` filler tokens, in that order.

    Args:
        num_pairs (int): Key-value pairs :math:`N` per sequence.
        num_queries (int): Queries :math:`M \le N` per sequence.
        num_keys (int): Size of the key vocabulary (:math:`\ge N`).
        num_values (int): Size of the value vocabulary.
        num_filler (int): Size of the filler vocabulary.
    """
    num_pairs: int = 8
    num_queries: int = 8
    num_keys: int = 16
    num_values: int = 16
    num_filler: int = 16

    def __post_init__(self) -> None:
        if self.num_pairs < 1 or self.num_queries < 1:
            raise ValueError(f"need num_pairs >= 1 and num_queries >= 1, got "
                             f"{self.num_pairs} and {self.num_queries}")
        if self.num_queries > self.num_pairs:
            raise ValueError(f"num_queries ({self.num_queries}) must not exceed "
                             f"num_pairs ({self.num_pairs}): queries are distinct listed keys")
        if self.num_keys < self.num_pairs:
            raise ValueError(f"num_keys ({self.num_keys}) must be >= num_pairs "
                             f"({self.num_pairs}): keys in one list are distinct")
        if self.num_values < 2 or self.num_filler < 1:
            raise ValueError(f"need num_values >= 2 and num_filler >= 1, got "
                             f"{self.num_values} and {self.num_filler}")

    @property
    def key_offset(self) -> int:
        return 1

    @property
    def value_offset(self) -> int:
        return 1 + self.num_keys

    @property
    def filler_offset(self) -> int:
        return 1 + self.num_keys + self.num_values

    @property
    def vocab_size(self) -> int:
        return self.filler_offset + self.num_filler

    def min_length(self) -> int:
        """Shortest sequence: BOS, the list and the queries, with one filler token."""
        return 1 + 2 * self.num_pairs + 1 + self.num_queries


def make_batch(task: RecallTask, batch_size: int, length: int,
               generator: torch.Generator) -> Tuple[Tensor, Tensor]:
    r"""Draws ``batch_size`` sequences of the task, deterministically from ``generator``.

    Returns:
        (tokens, targets): both :obj:`[batch_size, length]` int64; ``targets``
        holds the answer value id at query positions and ``-100`` elsewhere.
    """
    if length < task.min_length():
        raise ValueError(f"length {length} is too short for the task: need >= "
                         f"{task.min_length()} (BOS + {task.num_pairs} pairs + 1 filler + "
                         f"{task.num_queries} queries)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    B, N, M = batch_size, task.num_pairs, task.num_queries
    keys = torch.rand(B, task.num_keys, generator=generator).argsort(dim=1)[:, :N]
    values = torch.randint(task.num_values, (B, N), generator=generator)
    order = torch.rand(B, N, generator=generator).argsort(dim=1)[:, :M]  # which pairs
    tokens = task.filler_offset + torch.randint(task.num_filler, (B, length),
                                                generator=generator)
    tokens[:, 0] = BOS
    tokens[:, 1:1 + 2 * N:2] = task.key_offset + keys
    tokens[:, 2:2 + 2 * N:2] = task.value_offset + values
    tokens[:, length - M:] = task.key_offset + keys.gather(1, order)
    targets = torch.full((B, length), IGNORE, dtype=torch.long)
    targets[:, length - M:] = task.value_offset + values.gather(1, order)
    return tokens, targets


def read_answers(tokens: Sequence[int], task: RecallTask) -> Dict[int, int]:
    r"""Brute-force reader: recovers ``{query position: answer token}`` from one sequence.

    Scans the sequence left to right; a key token directly followed by a value
    token is a list entry, and a key token at a position where the list is
    already known and that is not followed by a value is a query. Independent
    of :func:`make_batch` beyond the vocabulary layout.
    """
    def is_key(t: int) -> bool:
        return task.key_offset <= t < task.value_offset

    def is_value(t: int) -> bool:
        return task.value_offset <= t < task.filler_offset

    memory: Dict[int, int] = {}
    answers: Dict[int, int] = {}
    for i, t in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if is_key(t) and nxt is not None and is_value(nxt):
            if t in memory:
                raise ValueError(f"key {t} is listed twice (position {i})")
            memory[t] = nxt
        elif is_key(t):
            if t not in memory:
                raise ValueError(f"query key {t} at position {i} was never listed")
            answers[i] = memory[t]
    return answers


# ---------------------------------------------------------------- model
def _device_of(model: Module) -> torch.device:
    return next(model.parameters()).device


def answer_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy over the answer positions only (``targets != -100``)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


# ---------------------------------------------------------------- runs
@dataclass(frozen=True)
class Budget:
    """Training budget shared by every model."""
    steps: int = 600
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    seed: int = 0
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {list(SCHEDULES)}")


def train_model(model: RecallLM, task: RecallTask, budget: Budget, length: int,
                log_every: int = 0) -> Dict[str, Any]:
    r"""Trains ``model`` with AdamW, linear warm-up then cosine decay, gradient
    clipping at 1.0, on a fresh stream of batches seeded by ``budget.seed``
    (identical for every model).

    Returns:
        dict: ``train_seconds``, ``final_loss`` (mean of the last 10% of steps),
        ``final_train_acc`` (same window) and ``train_curve``: ``[step, mean
        loss, mean accuracy]`` over each ``log_every`` steps.
    """
    gen = torch.Generator().manual_seed(budget.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)

    def lr_at(step: int) -> float:
        if step < budget.warmup_steps:
            return (step + 1) / budget.warmup_steps
        if budget.schedule == "constant":
            return 1.0
        t = (step - budget.warmup_steps) / max(1, budget.steps - budget.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses: List[float] = []
    accs: List[float] = []
    curve: List[List[float]] = []
    device = _device_of(model)
    model.train()
    start = time.perf_counter()
    for step in range(budget.steps):
        tokens, targets = (t.to(device) for t in make_batch(task, budget.batch_size, length, gen))
        logits = model(tokens)
        loss = answer_loss(logits, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{model.kind}: non-finite loss {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if not torch.isfinite(norm):  # clipping a NaN norm would step NaN into the weights
            raise FloatingPointError(f"{model.kind}: non-finite gradient norm at step {step}")
        opt.step()
        sched.step()
        losses.append(loss.item())
        sel = targets != IGNORE
        accs.append((logits.detach().argmax(-1)[sel] == targets[sel]).float().mean().item())
        if log_every and (step + 1) % log_every == 0:
            curve.append([step + 1, statistics.mean(losses[-log_every:]),
                          statistics.mean(accs[-log_every:])])
            print(f"  [{model.kind}] step {step + 1}/{budget.steps} loss {curve[-1][1]:.3f} "
                  f"acc {curve[-1][2]:.3f} ({time.perf_counter() - start:.0f}s)", flush=True)
    tail = max(1, budget.steps // 10)
    return {"train_seconds": time.perf_counter() - start,
            "final_loss": statistics.mean(losses[-tail:]),
            "final_train_acc": statistics.mean(accs[-tail:]), "train_curve": curve}


@torch.no_grad()
def evaluate(model: RecallLM, task: RecallTask, length: int, num_seqs: int, seed: int,
             batch_size: int = 8) -> Tuple[float, int]:
    """Accuracy over the answer positions of ``num_seqs`` held-out sequences.

    Returns:
        (accuracy, number of answers).
    """
    gen = torch.Generator().manual_seed(seed)
    device = _device_of(model)
    model.eval()
    correct = total = 0
    for start in range(0, num_seqs, batch_size):
        tokens, targets = (t.to(device) for t in
                           make_batch(task, min(batch_size, num_seqs - start), length, gen))
        pred = model(tokens).argmax(-1)
        sel = targets != IGNORE
        correct += int((pred[sel] == targets[sel]).sum())
        total += int(sel.sum())
    model.train()
    return correct / total, total


def time_fwd_bwd(model: RecallLM, task: RecallTask, length: int, batch_size: int,
                 repeats: int, seed: int) -> List[float]:
    """Wall-clock milliseconds of ``repeats`` forward + backward passes (after one
    warm-up); on CUDA each pass is bracketed by device synchronisation."""
    gen = torch.Generator().manual_seed(seed)
    device = _device_of(model)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    tokens, targets = (t.to(device) for t in make_batch(task, batch_size, length, gen))
    model.train()
    times: List[float] = []
    for i in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        sync()
        t0 = time.perf_counter()
        answer_loss(model(tokens), targets).backward()
        sync()
        if i > 0:
            times.append(1000.0 * (time.perf_counter() - t0))
    model.zero_grad(set_to_none=True)
    return times


def build_model(kind: str, task: RecallTask, args: argparse.Namespace) -> RecallLM:
    """A freshly initialised model; the init seed is the same for every kind."""
    torch.manual_seed(args.seed)
    model = RecallLM(kind, task.vocab_size, dim=args.dim, layers=args.layers, heads=args.heads,
                     window=args.window, num_tokens=args.num_tokens, block_size=args.block_size,
                     block_tokens=args.block_tokens, top_k=args.top_k)
    return model.to(args.device)


def state_size(kind: str, args: argparse.Namespace, length: int) -> Dict[str, int]:
    r"""What one layer keeps and reads when decoding the next position at ``length``.

    ``state_per_layer``: numbers held per layer (keys and values of the
    positions or tokens kept, the linear state, the reservoir's pooled values
    and log-normalisers). ``keys_read``: keys one query scores per head.
    Counted from the definitions of the layers, not measured.
    """
    C, H, w = args.dim, args.heads, min(args.window, length)
    D = C // H
    if kind == "full":
        return {"state_per_layer": 2 * length * C, "keys_read": length}
    if kind == "window":
        return {"state_per_layer": 2 * w * C, "keys_read": w}
    if kind == "brl":
        K = args.num_tokens
        return {"state_per_layer": 2 * w * C + K * (C + H), "keys_read": w + K}
    if kind == "linear":
        return {"state_per_layer": C * D + C, "keys_read": 0}
    if kind == "blocks":
        n_tok = (length // args.block_size) * args.block_tokens
        top = min(args.top_k, length // args.block_size)
        # With top-k the keys and values of every position must be kept.
        kv = 2 * length * C if top > 0 else 2 * w * C
        return {"state_per_layer": kv + 2 * n_tok * C,
                "keys_read": w + n_tok + top * args.block_size}
    raise ValueError(f"unknown attention kind {kind!r}; choose from {list(KINDS)}")


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_table(rows: List[Dict[str, Any]]) -> str:
    """Plain-text table: accuracy and fwd+bwd time per model and evaluated length."""
    lines = [f"{'model':<8} {'params':>8} {'train_len':>9} {'eval_len':>8} {'accuracy':>9} "
             f"{'fwd_bwd_ms':>11} {'state':>9} {'keys_read':>9}"]
    for r in rows:
        ms = "-" if r["fwd_bwd_ms"] is None else f"{r['fwd_bwd_ms']:.1f}"
        lines.append(f"{r['model']:<8} {r['params']:>8} {r['train_len']:>9} {r['eval_len']:>8} "
                     f"{r['accuracy']:>9.3f} {ms:>11} {r.get('state_per_layer', '-'):>9} "
                     f"{r.get('keys_read', '-'):>9}")
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace) -> Dict[str, Any]:
    """Trains every requested kind, evaluates and times it; returns the JSON payload."""
    torch.set_num_threads(args.threads)
    task = RecallTask(num_pairs=args.num_pairs, num_queries=args.num_queries,
                      num_keys=args.num_keys, num_values=args.num_values,
                      num_filler=args.num_filler)
    budget = Budget(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                    warmup_steps=min(args.warmup_steps, args.steps), seed=args.seed,
                    schedule=args.schedule)
    for n in [args.train_len, *args.eval_lens]:
        if n < task.min_length():
            raise ValueError(f"length {n} is shorter than the task needs ({task.min_length()})")
    wall = time.perf_counter()
    rows: List[Dict[str, Any]] = []
    config = {
        "command": "python experiments/causal_recall.py " + " ".join(
            shlex.quote(a) for a in (args.argv or [])),
        "task": {**asdict(task), "vocab_size": task.vocab_size,
                 "chance": 1.0 / task.num_values},
        "budget": asdict(budget) | {"train_len": args.train_len, "optimizer": "AdamW",
                                    "schedule": f"linear warm-up + {args.schedule}",
                                    "grad_clip": 1.0},
        "model": {"dim": args.dim, "layers": args.layers, "heads": args.heads,
                  "window": args.window, "num_tokens": args.num_tokens,
                  "block_size": args.block_size, "block_tokens": args.block_tokens,
                  "top_k": args.top_k,
                  "positional_encoding": "none (previous-token embedding)"},
        "eval": {"num_seqs": args.eval_seqs, "seed": args.seed + 1,
                 "time_batch": args.time_batch, "time_repeats": args.time_repeats},
        "machine": {"platform": platform.platform(), "processor": cpu_model(),
                    "cpu_count": os.cpu_count(), "threads": args.threads,
                    "torch": torch.__version__, "device": args.device,
                    "gpu": (torch.cuda.get_device_name() if args.device == "cuda" else None)},
    }
    for kind in args.models:
        model = build_model(kind, task, args)
        params = sum(p.numel() for p in model.parameters())
        print(f"== {kind}: {params} parameters", flush=True)
        stats = train_model(model, task, budget, args.train_len, log_every=args.log_every)
        for length in args.eval_lens:
            acc, n_ans = evaluate(model, task, length, args.eval_seqs, seed=args.seed + 1)
            times = (time_fwd_bwd(model, task, length, args.time_batch, args.time_repeats,
                                  seed=args.seed + 2) if args.time_repeats > 0 else [])
            row = {"model": kind, "train_len": args.train_len, "eval_len": length,
                   "accuracy": acc, "num_answers": n_ans,
                   "fwd_bwd_ms": statistics.median(times) if times else None,
                   "times_ms": times, "params": params, **state_size(kind, args, length),
                   **stats}
            rows.append(row)
            print(f"  [{kind}] L={length}: acc {acc:.3f}  fwd+bwd "
                  f"{row['fwd_bwd_ms'] if times else '-'} ms", flush=True)
        config["wall_seconds"] = time.perf_counter() - wall
        if args.json:
            atomic_write_json(Path(args.json), {"config": config, "rows": rows})
    config["wall_seconds"] = time.perf_counter() - wall
    payload = {"config": config, "rows": rows}
    if args.json:
        atomic_write_json(Path(args.json), payload)
    return payload


# Config sections that must agree for runs to be merged into one table.
MERGE_KEYS = ("task", "budget", "model", "eval")


def merge_runs(payloads: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    r"""Merges runs of *different* models under the *same* task, budget, model sizes
    and evaluation into one payload (e.g. the slow reservoir model run in its own
    process beside the others).

    Every row gets the ``command`` of its run; ``config["commands"]`` lists them
    all. Times measured in different processes are comparable only as far as the
    machine was equally loaded: compare times within one run.

    Raises:
        ValueError: no payloads, a config section that differs, or a model present
            in two runs.
    """
    if not payloads:
        raise ValueError("merge_runs needs at least one run")
    first = payloads[0]["config"]
    rows: List[Dict[str, Any]] = []
    seen: Dict[str, str] = {}
    for p in payloads:
        cfg = p["config"]
        for key in MERGE_KEYS:
            if cfg.get(key) != first.get(key):
                raise ValueError(f"cannot merge runs whose config[{key!r}] differ: "
                                 f"{first.get(key)} vs {cfg.get(key)}")
        for r in p["rows"]:
            if seen.setdefault(r["model"], cfg["command"]) != cfg["command"]:
                raise ValueError(f"model {r['model']!r} appears in two runs")
            rows.append({**r, "command": cfg["command"]})
    commands = [p["config"]["command"] for p in payloads]
    config = {**first, "commands": commands,
              "command": " && ".join(commands),
              "wall_seconds": sum(p["config"].get("wall_seconds", 0.0) for p in payloads)}
    return {"config": config, "rows": rows}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=KINDS)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                   help="learning rate after the warm-up: cosine decay to zero, or constant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-len", type=int, default=128)
    p.add_argument("--eval-lens", type=int, nargs="+", default=[128, 1024, 2048, 4096, 8192])
    p.add_argument("--eval-seqs", type=int, default=32)
    p.add_argument("--time-batch", type=int, default=1)
    p.add_argument("--time-repeats", type=int, default=3,
                   help="timed fwd+bwd passes per length (0 skips timing)")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--num-tokens", type=int, default=8)
    p.add_argument("--block-size", type=int, default=32, help="blocks kind: block length b")
    p.add_argument("--block-tokens", type=int, default=1,
                   help="blocks kind: tokens c per block")
    p.add_argument("--top-k", type=int, default=2,
                   help="blocks kind: blocks read at full resolution per query (0: tokens only)")
    p.add_argument("--num-pairs", type=int, default=8)
    p.add_argument("--num-queries", type=int, default=8)
    p.add_argument("--num-keys", type=int, default=16)
    p.add_argument("--num-values", type=int, default=16)
    p.add_argument("--num-filler", type=int, default=16)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 by default because on a shared machine more "
                        "threads per process oversubscribe the cores")
    p.add_argument("--log-every", type=int, default=50,
                   help="print and record the training curve every N steps (0: never)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where models train and are timed; batches are drawn on the CPU from "
                        "the same seeded stream either way")
    p.add_argument("--json", type=str, default=None, help="output path of the results JSON")
    p.add_argument("--merge", nargs="+", default=None, metavar="RUN_JSON",
                   help="instead of running: merge these results files (different models, "
                        "same config) into --json")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda requested but torch.cuda.is_available() is False")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    for name in ("steps", "batch_size", "eval_seqs", "time_batch", "dim", "layers", "heads",
                 "window", "threads", "block_size", "block_tokens"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_tokens < 1:
        p.error(f"--num-tokens must be >= 1 (the 'window' model is the num_tokens=0 twin), "
                f"got {args.num_tokens}")
    if args.top_k < 0:
        p.error(f"--top-k must be >= 0, got {args.top_k}")
    if "blocks" in args.models and args.window < args.block_size:
        p.error(f"--window ({args.window}) must be >= --block-size ({args.block_size}) for the "
                f"blocks model")
    if args.time_repeats < 0:
        p.error(f"--time-repeats must be >= 0, got {args.time_repeats}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.merge:
        if not args.json:
            raise SystemExit("--merge needs --json (the merged output)")
        payload = merge_runs([json.loads(Path(f).read_text()) for f in args.merge])
        atomic_write_json(Path(args.json), payload)
        print(format_table(payload["rows"]))
        return 0
    payload = run_benchmark(args)
    print()
    print(format_table(payload["rows"]))
    print(f"wall time: {payload['config']['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
