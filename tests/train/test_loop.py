import warnings

import pytest
import torch
from torch_geometric.loader import DataLoader

from brl_graph.train import ConstantPredictionWarning, build_model, evaluate, load_config
from brl_graph.train.distributed import DistContext
from brl_graph.train.loop import is_constant

from .conftest import tiny_config

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def test_is_constant():
    assert is_constant(torch.ones(3, 2))
    assert not is_constant(torch.tensor([[1.0, 2.0], [1.0, 2.5]]))
    assert not is_constant(torch.ones(1, 2))  # one graph says nothing


def test_a_dead_head_is_reported_and_blocks_every_gradient(tmp_path, readout_bench):
    model = build_model(load_config(tiny_config(tmp_path)), readout_bench)
    loader = DataLoader(readout_bench.valid, batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantPredictionWarning)  # a healthy model: no warning
        evaluate(model, loader, readout_bench, CPU)
    # Every ReLU unit of the head negative on every input, as the r = 5 tree run ended.
    with torch.no_grad():
        model.head[0].bias.fill_(-1e3)
    n = len(readout_bench.valid)
    with pytest.warns(ConstantPredictionWarning, match=f"all {n} predictions of the valid split"):
        evaluate(model, loader, readout_bench, CPU, split="valid")
    # Only rank 0 warns: every rank holds the same gathered predictions.
    rank1 = DistContext(rank=1, world_size=1, local_rank=0, device=torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantPredictionWarning)
        evaluate(model, loader, readout_bench, rank1)
    # Why it matters: nothing before the head's last layer gets a gradient, so training
    # cannot bring the model back.
    model.train()
    torch.nn.functional.cross_entropy(model(next(iter(loader))), next(iter(loader)).y).backward()
    last = {f"head.{len(model.head) - 1}.{n}" for n, _ in model.head[-1].named_parameters()}
    assert all(p.grad is None or not p.grad.any()
               for n, p in model.named_parameters() if n not in last)
    assert model.head[-1].bias.grad.abs().sum() > 0


def test_shared_structure_tasks_get_the_stacked_loader(tmp_path, readout_bench):
    from brl_graph.data import load_dataset
    from brl_graph.data.loader import SharedStructureLoader
    from brl_graph.train.loop import make_loaders

    cfg = load_config(tiny_config(tmp_path, batch_size=16, eval_train=True))
    tree = load_dataset("tree-neighbors-match", depth=2, edges="upward")
    loaders = make_loaders(tree, cfg, CPU, torch.Generator().manual_seed(0))
    for loader in (loaders.train, loaders.valid, loaders.test, loaders.train_eval):
        assert isinstance(loader, SharedStructureLoader)
    assert loaders.steps_per_pass == len(DataLoader(tree.train, batch_size=16))
    # Graphs of their own structures keep PyG's loader.
    loaders = make_loaders(readout_bench, cfg, CPU, torch.Generator().manual_seed(0))
    assert isinstance(loaders.train, DataLoader) and isinstance(loaders.test, DataLoader)


def test_fit_trains_the_same_with_either_loader(tmp_path, monkeypatch):
    import csv

    from brl_graph.data import load_dataset
    from brl_graph.train import fit

    tree = load_dataset("tree-neighbors-match", depth=2, edges="upward")

    def losses(out, stacked):
        if not stacked:
            monkeypatch.setattr("brl_graph.train.loop.stackable", lambda dataset: False)
        fit(tiny_config(out, epochs=2, batch_size=8, passes_per_epoch=2, eval_train=True,
                        limit_batches=5), bench=tree)
        monkeypatch.undo()
        with open(out / "log.csv", encoding="utf-8") as f:
            return [{k: v for k, v in row.items() if "loss" in k or "accuracy" in k}
                    for row in csv.DictReader(f)]

    stacked, collated = losses(tmp_path / "stacked", True), losses(tmp_path / "collated", False)
    assert len(stacked) == 2 and stacked[0]
    assert stacked == collated
