"""Tests for ``experiments/token_attention.py`` (a script: loaded from its path)."""
from pathlib import Path

import pytest
import torch
from torch_geometric.loader import DataLoader

from brl_graph.train.build import build_bench, build_model
from brl_graph.train.config import load_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tree-neighbors-match-published.yaml"


@pytest.fixture(scope="module")
def tok(experiment_script):
    yield from experiment_script("token_attention")


def test_subtree_leaves_of_a_depth_2_heap(tok):
    # 7 nodes, leaves are nodes 3..6 with keys 1..4
    assert tok.subtree_leaves(0, 7, 3) == [1, 2, 3, 4]
    assert tok.subtree_leaves(1, 7, 3) == [1, 2]
    assert tok.subtree_leaves(2, 7, 3) == [3, 4]
    assert tok.subtree_leaves(5, 7, 3) == [3]


def test_tree_report_from_a_checkpoint(tok, tmp_path, capsys):
    torch.manual_seed(0)
    cfg = load_config(str(CONFIG), ["data.depth=2", "model.num_layers=3", "model.channels=8",
                                    "model.heads=2", "model.num_tokens=2"])
    bench = build_bench(cfg)
    model = build_model(cfg, bench)
    path = tmp_path / "last.pt"
    torch.save({"model": model.state_dict(), "config": cfg}, path)
    assert tok.main([str(path), "--graphs", "6"]) == 0
    out = capsys.readouterr().out
    assert "test split, 6 graphs of 7 nodes" in out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3 * 2  # header, rule, 3 reservoirs x 2 tokens
    assert "keys under a slot:" in out and "keys answered >= 0.9:" in out
    line = next(x for x in out.splitlines() if x.startswith("largest weight a token puts"))
    weights = [float(item.split(":")[1]) for item in line.split("reservoir: ")[1].split(" (")[0].split()]
    assert len(weights) == 3 and all(0.0 <= w <= 1.0 for w in weights)
    for g in bench.test:  # the root's key names the leaf whose value is the label
        leaf = 3 + tok.root_key(g, 4) - 1
        assert int(g.x[leaf, 5:].argmax()) - 1 == int(g.y)

    # the hits and trees by key add up to the split's accuracy, which the report prints
    hits, count = tok.tree_key_hits(model, bench.test, num_leaves=4)
    batch = next(iter(DataLoader(bench.test, batch_size=len(bench.test))))
    with torch.no_grad():
        overall = (model(batch).argmax(-1) == batch.y.view(-1)).float().mean()
    assert int(count.sum()) == len(bench.test)
    assert float(hits.sum() / count.sum()) == pytest.approx(float(overall))
    assert f"overall {float(overall):.3f} over {len(bench.test)} trees" in out


def test_rejects_a_non_positive_graph_count(tok, tmp_path):
    with pytest.raises(SystemExit):
        tok.main([str(tmp_path / "none.pt"), "--graphs", "0"])
