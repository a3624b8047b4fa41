"""Tests for :mod:`brl_graph.train.sweep`: cells, commands, run folders and the results file."""
import json
import shlex

import pytest

from brl_graph.train.sweep import (MODELS, ResultsFile, metric_fields, model_overrides,
                                   read_metrics, run_folder, train_command)


def test_models_and_their_overrides_legacy_labels_included():
    assert MODELS == ("brl", "mpnn", "full", "brl-k1")
    assert model_overrides("brl-k1") == ["model.num_tokens=1"]
    assert model_overrides("brl") == []
    assert model_overrides("mpnn") == model_overrides("twin") == ["model.num_tokens=0"]
    assert model_overrides("full") == ["model.global_attn=full", "model.pre_norm=false"]
    with pytest.raises(ValueError, match="unknown model 'gat'"):
        model_overrides("gat")


def test_train_command_quotes_each_override():
    cmd = train_command("configs/x.yaml", ["train.seeds=[0, 1]", "out_dir=runs/a"])
    assert cmd.startswith("python train.py --config configs/x.yaml ")
    assert shlex.split(cmd)[4:] == ["train.seeds=[0, 1]", "out_dir=runs/a"]


def test_run_folder_resumes_a_run_started_under_a_legacy_label(tmp_path):
    def name(label):
        return f"runs/d-{label}-s0"

    assert run_folder(name, "mpnn", tmp_path) == "runs/d-mpnn-s0"
    assert run_folder(name, "twin", tmp_path) == "runs/d-mpnn-s0"
    (tmp_path / "runs" / "d-twin-s0").mkdir(parents=True)
    assert run_folder(name, "mpnn", tmp_path) == "runs/d-mpnn-s0"  # no checkpoint: nothing to resume
    (tmp_path / "runs" / "d-twin-s0" / "checkpoints").mkdir()
    (tmp_path / "runs" / "d-twin-s0" / "checkpoints" / "last.pt").write_bytes(b"")
    assert run_folder(name, "mpnn", tmp_path) == "runs/d-twin-s0"
    assert run_folder(name, "brl", tmp_path) == "runs/d-brl-s0"


def test_results_file_replaces_a_cell_keeps_table_order_and_merges_meta(tmp_path):
    results = ResultsFile(tmp_path / "r.json", key_fields=("model", "seed"))
    assert results.rows() == [] and results.done() == set()
    results.add({"model": "twin", "seed": 0, "test": 0.1}, {"dataset": "d"})  # an older driver's row
    results.add({"model": "full", "seed": 0, "test": 0.5}, {"widths": {"full": {"channels": 92}}})
    results.add({"model": "brl", "seed": 1, "test": 0.6}, {"widths": {"brl": {"channels": 64}}})
    results.add({"model": "brl", "seed": 0, "test": 0.2})
    results.add({"model": "mpnn", "seed": 0, "test": 0.3})  # the same cell as the twin row
    data = json.loads((tmp_path / "r.json").read_text())
    assert [(r["model"], r["seed"], r["test"]) for r in data["rows"]] == [
        ("brl", 0, 0.2), ("brl", 1, 0.6), ("mpnn", 0, 0.3), ("full", 0, 0.5)]
    assert data["config"] == {"dataset": "d",
                              "widths": {"full": {"channels": 92}, "brl": {"channels": 64}}}
    assert results.done() == {("brl", 0), ("brl", 1), ("mpnn", 0), ("full", 0)}


def test_results_file_sorts_other_fields_by_value_and_rejects_foreign_files(tmp_path):
    results = ResultsFile(tmp_path / "lr.json", key_fields=("task", "size", "model", "seed"))
    for task, size, model in [("tree", 2, "full"), ("ring", 200, "twin"), ("ring", 100, "full"),
                              ("ring", 100, "brl")]:
        results.add({"task": task, "size": size, "model": model, "seed": 0})
    assert [(r["task"], r["size"], r["model"]) for r in results.rows()] == [
        ("ring", 100, "brl"), ("ring", 100, "full"), ("ring", 200, "twin"), ("tree", 2, "full")]
    (tmp_path / "lr.json").write_text("[]")
    with pytest.raises(ValueError, match="not a sweep results file"):
        results.add({"task": "ring", "size": 1, "model": "brl", "seed": 0})
    with pytest.raises(ValueError, match="not a sweep results file"):
        results.rows()


def test_a_key_field_added_later_leaves_stored_rows_their_cells(tmp_path):
    # rows stored before "settings" joined the key keep their cell, and a variant
    # row of the same model is a cell of its own, sorted after the plain one
    old = ResultsFile(tmp_path / "lr.json", key_fields=("task", "size", "model", "seed"))
    old.add({"task": "tree", "size": 4, "model": "mpnn", "seed": 0, "metric": 1.0})
    results = ResultsFile(tmp_path / "lr.json",
                          key_fields=("task", "size", "model", "seed", "settings"))
    assert results.done() == {("tree", 4, "mpnn", 0, None)}
    results.add({"task": "tree", "size": 4, "model": "mpnn", "seed": 0,
                 "settings": "model.channels=32", "metric": 0.8})
    results.add({"task": "tree", "size": 4, "model": "mpnn", "seed": 0, "settings": None,
                 "metric": 0.9})  # replaces the stored plain row
    assert [(r.get("settings"), r["metric"]) for r in results.rows()] == [
        (None, 0.9), ("model.channels=32", 0.8)]


def test_read_metrics_refuses_an_unfinished_run_and_fields_come_from_it(tmp_path):
    metrics = {"finished": False, "epochs_completed": 2, "epochs": 5}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(SystemExit, match="stopped after 2 of 5 epochs"):
        read_metrics(tmp_path)
    metrics = {"finished": True, "epochs_completed": 5, "best_epoch": 4, "num_params": 10,
               "seconds": 9.0, "seconds_per_epoch": 1.8, "valid": {"ap": 0.5},
               "test": {"ap": 0.4}, "peak_memory_mb": 12.0, "peak_memory_kind": "rss"}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    fields = metric_fields(read_metrics(tmp_path), "ap")
    assert fields["valid"] == 0.5 and fields["test"] == 0.4 and fields["epochs"] == 5
    assert fields["peak_memory_mb"] == 12.0 and fields["finished"] is True
