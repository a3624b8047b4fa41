"""Tests for ``experiments/long_range.py`` (a script: loaded from its path)."""
import json
import shlex

import pytest


@pytest.fixture(scope="module")
def lr(experiment_script):
    yield from experiment_script("long_range")


def _args(lr, tmp_path, *extra):
    return lr.build_parser().parse_args(["--json", str(tmp_path / "lr.json"),
                                         "--runs", str(tmp_path / "runs"), *extra])


def test_budget_is_identical_across_models_and_named_in_the_run_dir(lr, tmp_path):
    args = _args(lr, tmp_path, "--tree-epochs", "7", "--tree-batch", "32")
    budgets = {m: [o for o in lr.row_overrides("tree", 3, m, 0, args)
                   if not o.startswith(("out_dir=", "model."))] for m in lr.MODELS}
    assert budgets["brl"] == budgets["mpnn"] == budgets["full"]
    assert {"data.depth=3", "model.num_layers=4", "train.epochs=7", "train.batch_size=32",
            "train.scheduler=none"} <= set(lr.budget_overrides("tree", 3, args)
                                            + lr.row_overrides("tree", 3, "brl", 0, args))
    other = _args(lr, tmp_path, "--tree-epochs", "7", "--tree-batch", "64")
    assert lr.run_dir("tree", 3, "brl", 0, args) != lr.run_dir("tree", 3, "brl", 0, other)
    with pytest.raises(ValueError, match="unknown model"):
        lr.row_overrides("tree", 3, "gat", 0, args)
    with pytest.raises(ValueError, match="unknown task"):
        lr.budget_overrides("zinc", 3, args)


def test_published_tree_rows_pass_only_the_authors_per_depth_settings(lr, tmp_path):
    # The protocol (schedule, stop rule, passes, epochs) comes from the config: the
    # driver must not override it with the fixed-budget variant's settings.
    args = _args(lr, tmp_path)
    r3 = lr.budget_overrides("tree-published", 3, args)
    assert r3 == ["data.depth=3", "model.num_layers=4", "train.batch_size=64"]
    assert "train.batch_size=1024" in lr.budget_overrides("tree-published", 4, args)
    assert {"train.passes_per_epoch=1000", "train.epochs=50"} <= set(
        lr.budget_overrides("tree-published", 2, args))
    overrides = lr.row_overrides("tree-published", 5, "brl", 0, args)
    assert not any(o.startswith(("train.scheduler=", "train.clip=")) for o in overrides)
    assert lr.run_dir("tree-published", 3, "brl", 0, args) != lr.run_dir("tree", 3, "brl", 0, args)


def test_published_recipe_conditions_brl_tokens_and_leaves_the_others_as_they_were(lr, tmp_path):
    from brl_graph.train.config import load_config
    args = _args(lr, tmp_path)
    config = lr.ROOT / lr.CONFIGS["tree-published"]
    for model, expected in (("brl", True), ("brl-k1", True), ("mpnn", False), ("full", False)):
        overrides = lr.row_overrides("tree-published", 4, model, 0, args)
        assert load_config(config, overrides)["model"]["readout_query"] is expected, model
    # the other tasks' configs never took it
    assert "model.readout_query=false" not in lr.row_overrides("tree", 4, "mpnn", 0, args)


def test_max_train_accuracy_reads_the_best_epoch(lr, tmp_path):
    (tmp_path / "log.csv").write_text(
        "epoch,train_loss,train_accuracy\n1,2.0,0.25\n2,1.0,0.875\n3,1.5,0.5\n")
    assert lr._max_train_accuracy(tmp_path) == 0.875
    assert lr._max_train_accuracy(tmp_path / "missing") is None


def test_tree_row_end_to_end_and_rerun_skip(lr, tmp_path, capsys):
    argv = ["--json", str(tmp_path / "lr.json"), "--runs", str(tmp_path / "runs"),
            "--tasks", "tree", "--sizes", "2", "--models", "mpnn", "--tree-epochs", "3",
            "--tree-batch", "16", "--skip", "full:tree:2=too slow here"]
    assert lr.main(argv + ["--models", "twin", "full"]) == 0  # twin: the legacy label
    rows = {r["model"]: r for r in json.loads((tmp_path / "lr.json").read_text())["rows"]}
    twin, full = rows["mpnn"], rows["full"]
    assert full["skipped"] == "too slow here" and full["metric"] is None
    assert twin["epochs"] == 3 and twin["chance"] == 0.25
    assert 0 <= twin["metric"] <= twin["train_max"] <= 1
    words = shlex.split(twin["command"])
    assert "model.num_tokens=0" in words and "train.scheduler=none" in words
    capsys.readouterr()
    assert lr.main(argv) == 0
    assert "already in" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="MODEL:TASK:SIZE=REASON"):
        lr.main(argv + ["--skip", "full:tree"])


def test_published_tree_can_log_more_often_with_the_protocol_kept_in_passes(lr, tmp_path):
    args = _args(lr, tmp_path, "--tree-log-passes", "25")
    r5 = lr.budget_overrides("tree-published", 5, args)
    assert r5 == ["data.depth=5", "model.num_layers=6", "train.batch_size=1024",
                  "train.passes_per_epoch=25", "train.epochs=2000",
                  "train.plateau_patience=40", "train.stop_patience=80"]
    # r = 2 logs every 1,000 passes in the protocol: patiences scale from there
    assert {"train.passes_per_epoch=250", "train.epochs=200", "train.plateau_patience=40",
            "train.stop_patience=80"} <= set(lr.budget_overrides(
                "tree-published", 2, _args(lr, tmp_path, "--tree-log-passes", "250")))
    # another budget, another run folder: a run never resumes under a different budget
    assert lr.run_dir("tree-published", 5, "brl", 0, args) != lr.run_dir(
        "tree-published", 5, "brl", 0, _args(lr, tmp_path))
    assert "-log25" in lr.run_dir("tree-published", 5, "brl", 0, args)
    # the config's head is in the name: no resuming the two-layer head's earlier runs
    assert "s0-published-head1-log25" in lr.run_dir("tree-published", 5, "brl", 0, args)
    with pytest.raises(SystemExit, match="must divide"):
        lr.budget_overrides("tree-published", 5, _args(lr, tmp_path, "--tree-log-passes", "30"))
    # the overrides are valid config keys and values
    from brl_graph.train.config import load_config
    cfg = load_config("configs/tree-neighbors-match-published.yaml", r5)
    assert cfg["train"]["passes_per_epoch"] * cfg["train"]["epochs"] == 50_000


def test_bf16_is_part_of_the_budget_and_of_the_run_folder(lr, tmp_path):
    fp32, bf16 = _args(lr, tmp_path), _args(lr, tmp_path, "--bf16")
    assert "train.bf16=true" not in lr.budget_overrides("tree-published", 5, fp32)
    assert lr.budget_overrides("tree-published", 5, bf16) == (
        lr.budget_overrides("tree-published", 5, fp32) + ["train.bf16=true"])
    # every model of a row runs at the same precision
    assert all("train.bf16=true" in lr.row_overrides("ring", 100, m, 0, bf16) for m in lr.MODELS)
    # an fp32 run never resumes as bf16, nor the reverse
    assert lr.run_dir("tree-published", 5, "brl", 0, bf16).endswith("-published-head1-bf16")
    assert lr.run_dir("tree-published", 5, "brl", 0, bf16) != lr.run_dir(
        "tree-published", 5, "brl", 0, fp32)
    from brl_graph.train.config import load_config
    cfg = load_config("configs/tree-neighbors-match-published.yaml",
                      lr.budget_overrides("tree-published", 5, bf16))
    assert cfg["train"]["bf16"] is True


def test_a_stored_row_of_another_precision_is_named_when_skipped(lr, tmp_path):
    results = lr.ResultsFile(tmp_path / "lr.json", lr.KEY_FIELDS)
    key = ("tree-published", 4, "brl", 0, None)
    results.add({"task": "tree-published", "size": 4, "model": "brl", "seed": 0,
                 "budget": ["data.depth=4"], "metric": 1.0})
    note = lr.precision_note(results, key, _args(lr, tmp_path, "--bf16"))
    assert "stored in fp32, asked for bf16" in note and "--rerun" in note
    assert lr.precision_note(results, key, _args(lr, tmp_path)) == ""
    assert lr.precision_note(results, ("tree-published", 5, "brl", 0, None),
                             _args(lr, tmp_path, "--bf16")) == ""


def test_device_goes_to_every_run_and_a_gpu_row_names_its_machine(lr, tmp_path, monkeypatch):
    args = _args(lr, tmp_path, "--device", "cuda")
    assert "train.device=cuda" in lr.row_overrides("tree-published", 5, "brl", 0, args)
    assert "train.device=cpu" in lr.row_overrides("tree-published", 5, "brl", 0, _args(lr, tmp_path))
    metrics = {"valid": {"accuracy": 1.0}, "test": {"accuracy": 1.0}, "best_epoch": 1,
               "epochs_completed": 1, "num_params": 10, "seconds": 60.0,
               "seconds_per_epoch": 60.0, "train_best": {"accuracy": 1.0}}
    monkeypatch.setattr(lr, "run_train", lambda *a, **k: (metrics, 61.0, False))
    monkeypatch.setattr(lr, "machine_text", lambda device, threads: f"GPU text for {device}")
    row = lr.run_row("tree-published", 5, "brl", 0, args)
    assert row["device"] == "cuda" and row["machine"] == "GPU text for cuda"
    assert "device" not in lr.run_row("tree-published", 5, "brl", 0, _args(lr, tmp_path))
    # its own run folder, and a clear error for a device a row could not name
    assert lr.run_dir("tree-published", 5, "brl", 0, args).endswith("-published-head1-cuda")
    with pytest.raises(SystemExit):
        _args(lr, tmp_path, "--device", "auto")
    results = lr.ResultsFile(tmp_path / "stored.json", lr.KEY_FIELDS)
    results.add(dict(row, task="tree-published", size=5, model="brl", seed=0, budget=[]))
    assert "trained on cuda, asked for cpu" in lr.precision_note(
        results, ("tree-published", 5, "brl", 0, None), _args(lr, tmp_path))


def test_set_makes_a_variant_with_its_own_budget_folder_and_cell(lr, tmp_path, monkeypatch):
    plain, narrow = _args(lr, tmp_path), _args(lr, tmp_path, "--set", "model.channels=32")
    assert lr.budget_overrides("tree-published", 4, narrow) == (
        lr.budget_overrides("tree-published", 4, plain) + ["model.channels=32"])
    assert "model.channels=32" in lr.row_overrides("tree-published", 4, "mpnn", 0, narrow)
    # a variant never resumes the plain row's run, nor the reverse
    folder = lr.run_dir("tree-published", 4, "mpnn", 0, narrow)
    assert folder.endswith("-published-head1-model.channels=32")
    assert folder != lr.run_dir("tree-published", 4, "mpnn", 0, plain)
    metrics = {"valid": {"accuracy": 0.2}, "test": {"accuracy": 0.2}, "best_epoch": 1,
               "epochs_completed": 1, "num_params": 10, "seconds": 60.0,
               "seconds_per_epoch": 60.0, "train_best": {"accuracy": 0.8}}
    monkeypatch.setattr(lr, "run_train", lambda *a, **k: (metrics, 61.0, False))
    argv = ["--json", str(tmp_path / "lr.json"), "--runs", str(tmp_path / "runs"),
            "--tasks", "tree-published", "--sizes", "4", "--models", "mpnn"]
    assert lr.main(argv) == 0 and lr.main(argv + ["--set", "model.channels=32"]) == 0
    rows = json.loads((tmp_path / "lr.json").read_text())["rows"]
    assert [r["settings"] for r in rows] == [None, "model.channels=32"]  # two cells, not one
    assert "model.channels=32" in shlex.split(rows[1]["command"])


def test_set_is_canonical_and_its_folders_never_collide(lr, tmp_path):
    def folder(*sets):
        args = _args(lr, tmp_path, *[w for s in sets for w in ("--set", s)])
        return lr.run_dir("tree-published", 4, "mpnn", 0, args), lr.settings_of(args)
    # the order of --set and a repeated key do not make another cell
    a = folder("model.channels=32", "model.dropout=0.1")
    assert a == folder("model.dropout=0.1", "model.channels=16", "model.channels=32")
    assert a[1] == "model.channels=32 model.dropout=0.1"
    # the section prefix and odd characters are kept apart
    assert folder("data.seed=1")[0] != folder("train.seed=1")[0]
    odd, other = folder("train.seeds=[1,23]")[0], folder("train.seeds=[12,3]")[0]
    assert odd != other and "[" not in odd and "," not in odd


@pytest.mark.parametrize("extra, message", [
    (["--set", "model.channels"], "not KEY=VALUE"),
    (["--set", "=32"], "not KEY=VALUE"),
    (["--set", "train.seed=3"], "use --seeds"),
    (["--set", "train.bf16=true"], "use --bf16"),
    (["--set", "out_dir=x"], "use --runs"),
    (["--set", "model.num_tokens=4"], "sets it itself"),
    (["--set", "model.readout_query=true"], "sets it itself"),  # the twin has no reservoir
    (["--set", "model.chanels=32"], "unknown config key 'model.chanels'"),
    (["--set", "model.channels=32", "--tasks", "ring"], "of the tree-published task only"),
])
def test_set_refuses_what_would_not_do_what_the_row_says(lr, tmp_path, extra, message):
    argv = ["--json", str(tmp_path / "lr.json"), "--runs", str(tmp_path / "runs"),
            "--tasks", "tree-published", "--sizes", "4", "--models", "mpnn", *extra]
    with pytest.raises(SystemExit, match=message):
        lr.main(argv)
    assert not (tmp_path / "lr.json").exists()
