r"""A plain PyG GINE, the reference our MPNN twin must match on OGB molecules.

The model is what a PyG user writes for ``ogbg-mol*`` in a few lines, with
nothing of brl_graph's layers in it: OGB atom encoder; per layer a bond
encoder of its own, :class:`~torch_geometric.nn.GINEConv` whose MLP is
``Linear(C, 2C) -> BatchNorm -> ReLU -> Linear(2C, C)``, then BatchNorm, ReLU,
dropout and a residual connection; mean pooling and a linear head. Adam at a
constant learning rate, batch 32. The data, split, loss and metric are the
library's (``load_dataset`` and ``Benchmark.evaluate``), so the numbers stand
next to ``train.py``'s.

Usage::

    python benchmarks/reference_gine.py --root ../shared/datasets --epochs 2 --seed 0
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Dict, Optional, Sequence

import torch
from torch import Tensor
from torch.nn import BatchNorm1d, Linear, ReLU, Sequential
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GINEConv, global_mean_pool


class PlainGINE(torch.nn.Module):
    """The reference model (see the module docstring)."""

    def __init__(self, out_channels: int, channels: int = 64, num_layers: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        from ogb.graphproppred.mol_encoder import AtomEncoder, BondEncoder

        self.atom = AtomEncoder(channels)
        self.bonds = torch.nn.ModuleList(BondEncoder(channels) for _ in range(num_layers))
        self.convs = torch.nn.ModuleList(
            GINEConv(Sequential(Linear(channels, 2 * channels), BatchNorm1d(2 * channels), ReLU(),
                                Linear(2 * channels, channels)))
            for _ in range(num_layers))
        self.norms = torch.nn.ModuleList(BatchNorm1d(channels) for _ in range(num_layers))
        self.dropout = dropout
        self.head = Linear(channels, out_channels)

    def forward(self, data) -> Tensor:
        h = self.atom(data.x)
        for bond, conv, norm in zip(self.bonds, self.convs, self.norms):
            out = torch.relu(norm(conv(h, data.edge_index, bond(data.edge_attr))))
            h = h + torch.nn.functional.dropout(out, self.dropout, self.training)
        return self.head(global_mean_pool(h, data.batch))


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, bench) -> Dict[str, float]:
    model.eval()
    preds, ys = [], []
    for batch in loader:
        preds.append(model(batch))
        ys.append(batch.y)
    return bench.evaluate(torch.cat(ys), torch.cat(preds))


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from brl_graph.data import load_dataset
    from brl_graph.train import task_loss

    torch.manual_seed(args.seed)
    bench = load_dataset(args.dataset, root=args.root)
    if not bench.atom_features:
        raise SystemExit(f"{args.dataset} has no OGB atom features: this reference is for ogbg-mol*")
    model = PlainGINE(bench.out_channels, args.channels, args.layers, args.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    train = DataLoader(bench.train, batch_size=args.batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(args.seed))
    valid = DataLoader(bench.valid, batch_size=256)
    test = DataLoader(bench.test, batch_size=256)
    history = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        start = time.perf_counter()
        for batch in train:
            optimizer.zero_grad()
            task_loss(model(batch), batch.y, bench.task).backward()
            optimizer.step()
        row = {"epoch": epoch, "seconds": time.perf_counter() - start,
               "valid": evaluate(model, valid, bench)[bench.metric],
               "test": evaluate(model, test, bench)[bench.metric]}
        history.append(row)
        print(f"epoch {epoch}: valid {bench.metric} {row['valid']:.4f} | test {row['test']:.4f} "
              f"| {row['seconds']:.0f} s", flush=True)
    best = max(history, key=lambda r: r["valid"])
    return {"model": "plain-pyg-gine", "dataset": args.dataset, "seed": args.seed,
            "epochs": args.epochs, "best_epoch": best["epoch"], "valid": best["valid"],
            "test": best["test"], "history": history,
            "num_params": sum(p.numel() for p in model.parameters())}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ogbg-molhiv")
    p.add_argument("--root", default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write the result here")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(args)
    print(f"best epoch {result['best_epoch']}: valid {result['valid']:.4f}, test {result['test']:.4f}")
    if args.json:
        from brl_graph.io import atomic_write_json
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
