r"""Seconds per pass over a synthetic task's training split: PyG's DataLoader
against :class:`~brl_graph.data.loader.SharedStructureLoader`, which
:func:`brl_graph.train.fit` now uses for tasks whose graphs share one structure.

Only the loading is timed (no model). The loaders run side by side in one
process: each round makes one whole pass with each, in turn, and the figure per
loader is the median over rounds. Before timing, the first pass's batches are
compared key for key; the script stops if they differ.

Usage::

    python benchmarks/loader_time.py --depths 4 6 --batch-size 1024
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from brl_graph.data import load_dataset
from brl_graph.data.loader import SharedStructureLoader

#: PyG's loader first: the reference the other's batches must equal.
LOADERS = [DataLoader, SharedStructureLoader]


def one_pass(loader_cls: type, dataset: Dataset, batch_size: int,
             seed: int) -> Tuple[float, List[Batch]]:
    """Seconds for one shuffled pass, and the batches it made."""
    loader = loader_cls(dataset, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    batches = list(loader)
    return time.perf_counter() - start, batches


def check_equal(dataset: Dataset, batch_size: int) -> None:
    """Stops the script unless both loaders make the same batches in one pass."""
    (_, theirs), (_, ours) = (one_pass(cls, dataset, batch_size, 0) for cls in LOADERS)
    if len(theirs) != len(ours):
        raise SystemExit(f"the loaders make {len(theirs)} and {len(ours)} batches")
    for a, b in zip(theirs, ours):
        if sorted(a.keys()) != sorted(b.keys()) or a.num_graphs != b.num_graphs:
            raise SystemExit(f"the loaders' batches differ in keys or size: {a} against {b}")
        for key in a.keys():
            if a[key].dtype != b[key].dtype or not torch.equal(a[key], b[key]):
                raise SystemExit(f"the loaders' batches differ in {key!r}")


def time_depth(depth: int, batch_size: int, rounds: int) -> Tuple[int, List[float]]:
    """The training split's size at depth ``depth``, and each loader's median
    seconds per pass, in the order of :data:`LOADERS`."""
    dataset = load_dataset("tree-neighbors-match", depth=depth, edges="upward").train
    check_equal(dataset, batch_size)
    seconds: List[List[float]] = [[] for _ in LOADERS]
    for r in range(rounds):
        for times, cls in zip(seconds, LOADERS):
            times.append(one_pass(cls, dataset, batch_size, r + 1)[0])
    return len(dataset), [statistics.median(times) for times in seconds]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depths", type=int, nargs="+", default=[4, 6], help="tree depths r")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.rounds < 1 or args.batch_size < 1:
        raise SystemExit("--rounds and --batch-size must be at least 1")
    torch.set_num_threads(args.threads)
    print(f"tree-neighbors-match, upward edges, batch {args.batch_size}, {args.threads} thread(s), "
          f"median of {args.rounds} rounds; batches checked equal")
    for depth in args.depths:
        graphs, (old, new) = time_depth(depth, args.batch_size, args.rounds)
        print(f"r = {depth} ({graphs} graphs): pyg DataLoader {old:.3f} s/pass "
              f"({graphs / old:,.0f} graphs/s) | SharedStructureLoader {new:.3f} s/pass "
              f"({graphs / new:,.0f} graphs/s) | {old / new:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
