r"""Where a BRL layer's global branch spends its time: pooling, mixing, reading.

Times forward + backward of the three parts of :class:`~brl_graph.nn.BRLConv`'s
global branch on one dense group of ``G`` graphs padded to ``L`` nodes, the
layout a molhiv batch takes (32 graphs, padded to their largest, about 60):

- ``pool``: the nodes write into the tokens (the attention pooling of
  :meth:`~brl_graph.nn.TokenReservoir.compress`, the mixer left out);
- ``mix``: the tokens attend to each other (:class:`~brl_graph.nn.TokenMixer`);
- ``read``: the nodes read the tokens back (``BRLConv._read``);
- ``branch``: all three as the layer runs them (``BRLConv._global_group``).

The parts are timed in turn within each round, so their ratios share the
machine's load; the figure per part is the median over rounds. Gradients are
of a fixed random projection of the output (a plain sum would be flat after
the layer's normalisations downstream, and is not what training sees).

Usage::

    python benchmarks/global_branch.py --graphs 32 --nodes 62 --rounds 7
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor

from brl_graph.io import atomic_write_json
from brl_graph.nn import BRLConv
from brl_graph.nn.plan import dense_groups

PARTS = ("pool", "mix", "read", "branch")


def make_parts(conv: BRLConv, x: Tensor, tokens: Tensor, group) -> Dict[str, Callable[[], Tensor]]:
    """One closure per part, each returning the part's output."""
    res = conv.reservoir
    identity = torch.nn.Identity()

    def pool() -> Tensor:
        mixer, res.mixer = res.mixer, identity  # the pooling alone
        try:
            return res.compress(x, tokens, group.mask_bias, group.empty)
        finally:
            res.mixer = mixer

    return {
        "pool": pool,
        "mix": lambda: res.mixer(tokens),
        "read": lambda: conv._read(x, tokens),
        "branch": lambda: conv._global_group(x.reshape(-1, x.size(-1))[group.dense_index]
                                             if group.dense_index is not None
                                             else x.reshape(-1, x.size(-1)), group, tokens)[0],
    }


def time_parts(parts: Dict[str, Callable[[], Tensor]], channels: int, iters: int,
               rounds: int, warmup: int) -> Dict[str, List[float]]:
    """Microseconds per forward + backward, one list of rounds per part."""
    probe = torch.randn(channels, generator=torch.Generator().manual_seed(0))

    def run(f: Callable[[], Tensor]) -> None:
        (f() @ probe).sum().backward()

    for f in parts.values():
        for _ in range(warmup):
            run(f)
    out: Dict[str, List[float]] = {name: [] for name in parts}
    for _ in range(rounds):
        for name, f in parts.items():
            t = time.perf_counter()
            for _ in range(iters):
                run(f)
            out[name].append((time.perf_counter() - t) / iters * 1e6)
    return out


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graphs", type=int, default=32, help="graphs G in the dense group")
    p.add_argument("--nodes", type=int, default=62, help="padded nodes L per graph")
    p.add_argument("--mean-nodes", type=int, default=26,
                   help="real nodes per graph (the rest is padding); <= --nodes")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--iters", type=int, default=50, help="forward + backward calls per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="write the rows to this JSON file")
    args = p.parse_args(argv)
    if not 0 < args.mean_nodes <= args.nodes:
        p.error(f"--mean-nodes must be in [1, --nodes={args.nodes}], got {args.mean_nodes}")
    for name in ("graphs", "channels", "tokens", "heads", "iters", "rounds"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.channels % args.heads:
        p.error(f"--heads ({args.heads}) must divide --channels ({args.channels})")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    G, L, C, K = args.graphs, args.nodes, args.channels, args.tokens
    # one graph at the padded size, the others at the mean: a batch's shape
    counts = torch.full((G,), args.mean_nodes)
    counts[0] = L
    group = dense_groups(torch.repeat_interleave(torch.arange(G), counts), G,
                         min_rows=G * L)[0]
    conv = BRLConv(C, None, num_tokens=K, heads=args.heads, norm="batch_norm").train()
    x = torch.randn(G, L, C)
    if group.mask is not None:
        x = x * group.mask[..., None]  # padding rows are zeros, as to_dense leaves them
    x.requires_grad_(True)
    tokens = torch.randn(G, K, C, requires_grad=True)
    times = time_parts(make_parts(conv, x, tokens, group), C, args.iters, args.rounds,
                       args.warmup)
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"global branch, G={G} graphs padded to L={L} (mean {args.mean_nodes} real), C={C}, "
          f"K={K}, H={args.heads}, {args.threads} thread(s); median of {args.rounds} rounds "
          f"x {args.iters} forward+backward")
    for name in PARTS:
        print(f"  {name:7s} {med[name]:9.0f} us  ({med[name] / med['branch']:.2f} of the branch)")
    if args.json is not None:
        command = "python " + " ".join(shlex.quote(a) for a in
                                       [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
        rows = [{"part": name, "us_fwd_bwd": med[name], "min_us": min(times[name]),
                 "max_us": max(times[name]), "graphs": G, "nodes": L,
                 "mean_nodes": args.mean_nodes, "channels": C, "num_tokens": K,
                 "heads": args.heads, "threads": args.threads, "torch": torch.__version__,
                 "command": command} for name in PARTS]
        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
