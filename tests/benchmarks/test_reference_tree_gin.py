import json

import pytest
import torch


@pytest.fixture(scope="module")
def rtg(benchmark_script):
    yield from benchmark_script("reference_tree_gin")


def test_parameter_count_follows_the_published_architecture(rtg):
    # r = 4, width 32: an embedding of our 2(16 + 1) one-hot inputs (theirs are 2 * 16
    # wide, 64 weights fewer), 5 GIN layers (two 32 x 32 maps with batch norm each,
    # plus a layer norm), a bias-free head
    c, f, out, layers = 32, 34, 16, 5
    per_layer = 2 * (c * c + c) + 2 * 2 * c + 2 * c
    expected = f * c + c + layers * per_layer + c * out
    model = rtg.AuthorsGIN(f, out, layers, c)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert expected < 14_000  # about 13k, as the published GIN at r = 4


def test_prediction_is_read_at_the_root_and_flows_upward_only(rtg):
    from brl_graph.data import load_dataset
    from torch_geometric.loader import DataLoader

    bench = load_dataset("tree-neighbors-match", depth=2, edges="upward")
    model = rtg.AuthorsGIN(bench.num_node_features, bench.num_classes, 3).eval()
    batch = next(iter(DataLoader(bench.train, batch_size=4)))
    x, edge_index, root = rtg._inputs(batch, bench.node_readout)
    assert root.tolist() == [0, 7, 14, 21]
    # a self-loop at every node, and every other edge from a child to its parent
    loop = edge_index[0] == edge_index[1]
    assert int(loop.sum()) == batch.num_nodes
    src, dst = edge_index[:, ~loop] % 7  # heap order within each tree of 7 nodes
    assert torch.equal(dst, (src - 1) // 2) and int((~loop).sum()) == 4 * 6
    x = x.clone().requires_grad_(True)
    model(x, edge_index, root)[0].sum().backward()
    # the first tree's root sees its own 7 nodes and nothing of the other trees
    touched = x.grad.abs().sum(-1) > 0
    assert touched[:7].all() and not touched[7:].any()


def test_run_writes_a_row_and_resumes_exactly(rtg, tmp_path):
    out_json = tmp_path / "rows.json"
    common = ["--depth", "2", "--log-passes", "2", "--out", str(tmp_path / "run")]
    assert rtg.main(common + ["--max-passes", "2", "--json", str(out_json)]) == 0
    with pytest.raises(SystemExit, match="--resume"):
        rtg.main(common + ["--max-passes", "4"])
    assert rtg.main(common + ["--max-passes", "4", "--resume", "--json", str(out_json)]) == 0
    rows = json.loads(out_json.read_text())
    assert len(rows) == 1  # the resumed run replaced its own row
    resumed = rows[0]
    assert resumed["passes"] == 4 and resumed["stop"] == "max_passes"
    assert resumed["published_train"] == 1.0
    assert 0 <= resumed["train_max"] <= 1 and 0 <= resumed["test"] <= 1
    # the authors' 11 and 20 logged epochs of 1,000 passes at r = 2, kept in passes
    assert resumed["lr_halved_after"] == 11_000 and resumed["stop_after"] == 20_000

    straight_json = tmp_path / "straight.json"
    assert rtg.main(["--depth", "2", "--log-passes", "2", "--max-passes", "4",
                     "--out", str(tmp_path / "straight"), "--json", str(straight_json)]) == 0
    straight = json.loads(straight_json.read_text())[0]
    assert straight["history"] == resumed["history"]
    a = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    timing = ("seconds",)  # wall time is the only thing that may differ
    assert ({k: v for k, v in a["progress"].items() if k not in timing}
            == {k: v for k, v in b["progress"].items() if k not in timing})
    assert a["settings"] == b["settings"]
    assert a["scheduler"] == b["scheduler"]
    # a resume under other settings is refused, naming them
    with pytest.raises(SystemExit, match="other settings.*'lr': \\(0.001, 0.1\\)"):
        rtg.main(common + ["--max-passes", "6", "--resume", "--lr", "0.1"])


def test_the_row_reports_the_highest_train_accuracy_logged(rtg, tmp_path):
    common = ["--depth", "2", "--log-passes", "2", "--out", str(tmp_path / "run")]
    assert rtg.main(common + ["--max-passes", "4"]) == 0
    ckpt = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=False)
    # as the r = 3 run ended: a plateau reference of 0.99995, then 1.0 (a gain under 1e-4)
    state["progress"]["history"][-2:] = [{**h, "passes": p, "train": t} for h, p, t in
                                         zip(state["progress"]["history"][-2:], (2, 4),
                                             (0.99995, 1.0))]
    state["progress"].update(best_train=0.99995, best_pass=2, stop="target")
    torch.save(state, ckpt)
    out = tmp_path / "rows.json"
    assert rtg.main(common + ["--max-passes", "4", "--resume", "--json", str(out)]) == 0
    row = json.loads(out.read_text())[0]
    assert row["train_max"] == 1.0 and row["best_pass"] == 4 and row["stop"] == "target"


def test_bad_arguments_are_refused(rtg):
    with pytest.raises(SystemExit, match="--log-passes must be at least 1"):
        rtg.parse_args(["--depth", "2", "--log-passes", "0"])
    with pytest.raises(SystemExit, match="must be a multiple of the passes per logged epoch"):
        rtg.parse_args(["--depth", "4", "--max-passes", "150"])  # logged every 100 at r = 4
    assert rtg.parse_args(["--depth", "2", "--max-passes", "2000"]).max_passes == 2000
