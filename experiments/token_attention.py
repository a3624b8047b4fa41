r"""What a trained model's tokens pool: per reservoir and token, the node it weights
most, how sharply, and whether that changes from graph to graph
(:func:`brl_graph.diagnostics.token_focus`).

A token that puts most of its weight on the same node of every graph is a
*slot*: it carries that node's state, and only that. On Tree-NeighborsMatch the
script also gives the accuracy by the root's key (the leaf to be found) and the
leaves that the slots cover, which together say whether the model solves the
task by looking the key up or by carrying a fixed set of leaves.

Usage::

    python experiments/token_attention.py RUN/checkpoints/last.pt --split test --graphs 256
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Dict, List, Sequence, Set, Tuple

import torch
from torch import Tensor
from torch_geometric.loader import DataLoader

from brl_graph.diagnostics import TokenFocus, token_attention, token_focus
from brl_graph.train.build import build_bench, build_model
from brl_graph.train.checkpoint import load_model_checkpoint
from brl_graph.train.config import load_config

# A slot: most of the token's weight on one node, and nearly the same weights in
# every graph. Both bounds are loose on purpose; slots seen so far have mass
# 0.96-1.00 and variation under 0.05.
SLOT_MASS = 0.5
SLOT_VARIATION = 0.1


def is_slot(row: TokenFocus) -> bool:
    return row.top_mass >= SLOT_MASS and row.variation <= SLOT_VARIATION


def subtree_leaves(node: int, num_nodes: int, first_leaf: int) -> List[int]:
    """The leaf keys (1-based) under heap node ``node`` (children of i: 2i+1, 2i+2)."""
    frontier, leaves = [node], []
    while frontier:
        i = frontier.pop()
        if i >= first_leaf:
            leaves.append(i - first_leaf + 1)
        else:
            frontier += [c for c in (2 * i + 1, 2 * i + 2) if c < num_nodes]
    return sorted(leaves)


def root_keys(data, num_leaves: int) -> Tensor:
    """Each tree's root key (1..L), ``[B]``: the root is node 0 of each tree, and
    PairOneHot puts the key's one-hot in the first L + 1 features."""
    x = data.x.view(getattr(data, "num_graphs", 1), -1, data.x.size(-1))
    return x[:, 0, :num_leaves + 1].argmax(-1)


def root_key(graph, num_leaves: int) -> int:
    """One tree's root key (1..L)."""
    return int(root_keys(graph, num_leaves)[0])


def tree_key_hits(model: torch.nn.Module, split, num_leaves: int) -> Tuple[Tensor, Tensor]:
    """Correct predictions and trees on ``split`` for each root key 1..L (index 0:
    key 1). The split is stratified by label, not by key, so the counts differ."""
    hits, count = torch.zeros(num_leaves + 1), torch.zeros(num_leaves + 1)
    model.eval()
    with torch.no_grad():
        for batch in DataLoader(split, batch_size=1024):
            pred = model(batch).argmax(-1)
            keys = root_keys(batch, num_leaves)
            hits.index_add_(0, keys, (pred == batch.y.view(-1)).float())
            count.index_add_(0, keys, torch.ones(batch.num_graphs))
    return hits[1:], count[1:]


def print_focus(rows: Sequence[TokenFocus], num_nodes: int, names: Dict[int, str]) -> None:
    print(f"| reservoir | token | top node | mean weight | entropy (max {math.log(num_nodes):.2f})"
          " | variation | slot |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.layer} | {r.token} | {names.get(r.top_node, r.top_node)} | "
              f"{r.top_mass:.2f} | {r.entropy:.2f} | {r.variation:.2f} | "
              f"{'yes' if is_slot(r) else ''} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a run's checkpoints/last.pt or best.pt")
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test")
    parser.add_argument("--graphs", type=int, default=256,
                        help="graphs of the split whose weights are summarised")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.graphs <= 0:
        parser.error(f"--graphs must be positive, got {args.graphs}")
    torch.set_num_threads(args.threads)

    state, saved = load_model_checkpoint(args.checkpoint)
    cfg = load_config(saved)
    bench = build_bench(cfg)
    model = build_model(cfg, bench)
    model.load_state_dict(state)
    split = getattr(bench, args.split)
    graphs = [split[i] for i in range(min(args.graphs, len(split)))]
    sizes = sorted({g.num_nodes for g in graphs})
    if len(sizes) != 1:
        raise SystemExit(f"this report compares node i across graphs, so it needs graphs that "
                         f"share one node layout; the {args.split} split has graphs of "
                         f"{sizes[0]} to {sizes[-1]} nodes (use token_attention per graph)")
    per_graph = [token_attention(model, g) for g in graphs]
    rows = token_focus(per_graph)
    num_nodes = graphs[0].num_nodes
    print(f"{args.checkpoint}: {args.split} split, {len(graphs)} graphs of {num_nodes} nodes")

    if bench.name != "tree-neighbors-match":
        print_focus(rows, num_nodes, {})
        return 0
    num_leaves = (num_nodes + 1) // 2
    first_leaf = num_leaves - 1
    names = {i: (f"leaf {i - first_leaf + 1}" if i >= first_leaf else f"node {i}")
             for i in range(num_nodes)}
    print_focus(rows, num_nodes, names)
    covered: Set[int] = set()
    for r in rows:
        if is_slot(r):
            covered.update(subtree_leaves(r.top_node, num_nodes, first_leaf))
    # A lookup shows as weight on the leaf the root asks for, which moves from tree to tree.
    targets = [first_leaf + root_key(g, num_leaves) - 1 for g in graphs]
    on_target = [sum(float(layers[i].reshape(-1, num_nodes)[:, t].max())
                     for layers, t in zip(per_graph, targets)) / len(graphs)
                 for i in range(len(per_graph[0]))]
    print("\nlargest weight a token puts on the target leaf, mean over trees, per reservoir: "
          + " ".join(f"{i}:{m:.2f}" for i, m in enumerate(on_target))
          + f" (a token spread evenly over the leaves: {1 / num_leaves:.3f})")
    hits, count = tree_key_hits(model, split, num_leaves)
    acc = [float(h / c) if c else None for h, c in zip(hits, count)]
    good = {k + 1 for k, a in enumerate(acc) if a is not None and a >= 0.9}
    print(f"\n{args.split} accuracy by the root's key ('-': no tree asks for it): "
          + " ".join(f"{k + 1}:" + ("-" if a is None else f"{a:.2f}") for k, a in enumerate(acc)))
    print(f"overall {float(hits.sum() / count.sum()):.3f} over {int(count.sum())} trees")
    print(f"keys under a slot: {sorted(covered)}")
    print(f"keys answered >= 0.9: {sorted(good)}")
    print(f"both: {len(good & covered)}; answered without a slot: {sorted(good - covered)}; "
          f"slot but not answered: {sorted(covered - good)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
