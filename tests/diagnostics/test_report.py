import json

import pytest
import torch
from torch_geometric.data import Data

from brl_graph.diagnostics import total_effective_resistance
from brl_graph.diagnostics.__main__ import main
from brl_graph.diagnostics.report import (choose_targets, format_table, model_from_config, model_sensitivity,
                                          parse_options, random_model_config, run_report,
                                          select_graphs)
from brl_graph.train import CheckpointError, load_model_checkpoint

SMALL = dict(layers=2, channels=16, heads=2, num_tokens=4, targets=3, max_graphs=6)


def quiet(*args, **kwargs):
    pass


def check_report(report, out):
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["num_graphs"] == report["num_graphs"]
    for name in ("sensitivity_by_hop.png", "resistance_hist.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return on_disk


def test_ring_transfer_report(tmp_path):
    out = tmp_path / "ring"
    report = run_report("ring-transfer", out, cache_dir=str(tmp_path / "cache"),
                        options={"nodes": 10}, log=quiet, **SMALL)
    on_disk = check_report(report, out)
    assert report["num_graphs"] == 6 and report["dataset"] == "ring-transfer"
    res = report["resistance"]
    # A ring of n nodes has R_tot = (n^3 - n) / 12.
    assert res["r_tot"]["mean"] == pytest.approx((10 ** 3 - 10) / 12)
    assert res["r_tot_tokens"]["max"] < res["r_tot"]["min"] and res["ratio"]["min"] > 1
    assert res["by_hop"]["graph"][1] == pytest.approx(9 / 10)  # cycle: h (n - h) / n
    brl, mpnn = report["models"]["brl"], report["models"]["mpnn"]
    assert brl["num_tokens"] == 4 and mpnn["num_tokens"] == 0
    assert mpnn["sensitivity"]["mass_beyond_layers"] == 0.0
    assert brl["sensitivity"]["mass_beyond_layers"] > 0.0
    assert all(v == 0.0 for h, v in mpnn["sensitivity"]["by_hop"].items() if h > 2)
    assert all(v > 0.0 for v in brl["sensitivity"]["by_hop"].values())
    assert brl["sensitivity"]["num_targets"] == 6 * 3
    for m in (brl, mpnn):
        cmp = m["pyg_comparison"]
        assert len(cmp["ours_total_by_hop"]) == len(cmp["pyg_total_by_hop"]) == cmp["max_hops"] + 1
        assert cmp["max_abs_diff_over_max"] < 1e-4
    # JSON keys are strings; the table names both models.
    assert "0" in on_disk["models"]["brl"]["sensitivity"]["by_hop"]
    table = format_table(report)
    assert "brl" in table and "mpnn" in table and "mass beyond L hops" in table


def test_tree_neighbors_match_single_model_exact(tmp_path):
    out = tmp_path / "tree"
    report = run_report("tree-neighbors-match", out, options={"depth": 2}, model="mpnn",
                        sensitivity="exact", pyg_compare=False, log=quiet, **SMALL)
    check_report(report, out)
    assert list(report["models"]) == ["mpnn"]
    sens = report["models"]["mpnn"]["sensitivity"]
    assert sens["method"] == "exact" and sens["backward_passes_per_target"] == 16
    assert "pyg_comparison" not in report["models"]["mpnn"]


def test_estimate_matches_exact_on_average(tmp_path):
    bench_report = run_report("ring-transfer", tmp_path / "a", cache_dir=str(tmp_path / "c"),
                              options={"nodes": 8}, model="brl", sensitivity="exact",
                              pyg_compare=False, log=quiet, **SMALL)
    exact = bench_report["models"]["brl"]["sensitivity"]["by_hop"]
    est_report = run_report("ring-transfer", tmp_path / "b", cache_dir=str(tmp_path / "c"),
                            options={"nodes": 8}, model="brl", sensitivity="estimate", probes=64,
                            pyg_compare=False, log=quiet, **SMALL)
    est = est_report["models"]["brl"]["sensitivity"]["by_hop"]
    assert est.keys() == exact.keys()
    for h in exact:
        assert est[h] == pytest.approx(exact[h], rel=0.25)


def test_checkpoint_round_trip(tmp_path):
    config = {"data": {"name": "ring-transfer", "nodes": 8},
              "model": {"num_layers": 2, "channels": 16, "heads": 2, "num_tokens": 3},
              "train": {"epochs": 1}}
    from brl_graph.data import load_dataset
    bench = load_dataset("ring-transfer", nodes=8)
    torch.manual_seed(1)
    net = model_from_config(config["model"], bench)
    path = tmp_path / "best.pt"
    torch.save({"model": net.state_dict(), "config": config, "epoch": 3}, path)
    state, cfg = load_model_checkpoint(path)
    assert cfg["data"]["name"] == "ring-transfer" and set(state) == set(net.state_dict())

    out = tmp_path / "ckpt"
    # No --dataset: the checkpoint's data section names it.
    report = run_report(None, out, checkpoints=[path], targets=2, max_graphs=4,
                        pyg_compare=False, log=quiet)
    check_report(report, out)
    (label, entry), = report["models"].items()
    assert label == "brl" and entry["source"] == str(path) and entry["num_tokens"] == 3
    assert report["resistance"]["num_tokens"] == 3

    # The report measures the checkpoint's weights, not a fresh initialisation.
    _, graphs = select_graphs(bench, "train", 4, 0)
    direct = model_sensitivity(net.eval(), graphs, choose_targets(graphs, 2, 0), method="exact")
    fresh = run_report(None, tmp_path / "ckpt2", checkpoints=[path], targets=2, max_graphs=4,
                       sensitivity="exact", pyg_compare=False, log=quiet)
    got = fresh["models"]["brl"]["sensitivity"]["by_hop"]
    assert got == pytest.approx(direct["by_hop"], rel=1e-5)


def test_training_checkpoint(tmp_path):
    from brl_graph.train import fit

    run = tmp_path / "run"
    fit({"out_dir": str(run), "data": {"name": "ring-transfer", "nodes": 6,
                                        "cache_dir": str(tmp_path / "cache")},
         "model": {"num_layers": 2, "channels": 8, "heads": 2, "num_tokens": 2},
         "train": {"epochs": 1, "limit_batches": 1, "progress": False}})
    out = tmp_path / "diag"
    code = main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--max-graphs", "3",
                 "--targets", "2", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    entry = report["models"]["brl"]
    assert entry["layers"] == 2 and entry["num_tokens"] == 2 and entry["channels"] == 8
    assert entry["pyg_comparison"]["max_abs_diff_over_max"] < 1e-4


def test_bad_checkpoints_and_options_are_named(tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save({"weight": torch.ones(2)}, bare)
    with pytest.raises(CheckpointError, match="'model'.*'config'"):
        load_model_checkpoint(bare)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model_checkpoint(tmp_path / "missing.pt")
    mismatched = tmp_path / "mismatch.pt"
    torch.save({"model": {"nonsense": torch.ones(1)},
                "config": {"data": {"name": "ring-transfer", "nodes": 8}, "model": {"num_layers": 1}}},
               mismatched)
    with pytest.raises(ValueError, match="does not fit"):
        run_report(None, tmp_path / "x", checkpoints=[mismatched], max_graphs=2, log=quiet)
    with pytest.raises(ValueError, match="key=value"):
        parse_options(["nodes"])
    assert parse_options(["nodes=10", "variant=ring", "pe=[1, 2]"]) == {
        "nodes": 10, "variant": "ring", "pe": [1, 2]}
    with pytest.raises(ValueError, match="kind"):
        random_model_config("gps", 2, 16, 4, 2, "gine")
    with pytest.raises(ValueError, match="unknown config key 'model.layerz'"):
        model_from_config({"layerz": 2}, None)


def test_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["--dataset", "ring-transfer", "--option", "nodes=8", "--cache-dir",
                 str(tmp_path / "cache"), "--max-graphs", "3", "--out", str(out), "--layers", "2",
                 "--channels", "8", "--heads", "2", "--num-tokens", "2", "--targets", "2",
                 "--no-pyg"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "R_tot per graph" in printed and "mass beyond L hops" in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"brl", "mpnn"}
    assert main(["--dataset", "no-such-dataset", "--out", str(out)]) == 2
    assert "unknown dataset" in capsys.readouterr().err


def test_real_molesol_report(tmp_path, shared_datasets):
    out = tmp_path / "esol"
    report = run_report("ogbg-molesol", out, root=str(shared_datasets),
                        cache_dir=str(tmp_path / "cache"), pyg_compare=False, log=quiet,
                        **{**SMALL, "max_graphs": 8})
    check_report(report, out)
    res = report["resistance"]
    assert res["num_graphs"] == 8 and res["ratio"]["count"] == 8 - res["num_disconnected"]
    assert report["models"]["mpnn"]["sensitivity"]["mass_beyond_layers"] == 0.0
    # Per-graph totals agree with the library function on the same graph.
    from brl_graph.data import load_dataset
    bench = load_dataset("ogbg-molesol", root=str(shared_datasets), cache_dir=str(tmp_path / "cache"))
    first: Data = bench.train[report["graph_indices"][0]]
    assert res["per_graph"]["r_tot"][0] == pytest.approx(
        total_effective_resistance(first.edge_index, first.num_nodes))
