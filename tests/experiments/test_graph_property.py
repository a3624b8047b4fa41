"""Tests for ``experiments/graph_property.py`` (a script: loaded from its path)."""
import json
import shlex

import pytest


@pytest.fixture(scope="module")
def gp(experiment_script):
    yield from experiment_script("graph_property")


# A tiny offline benchmark: the script works on any config, not only molecules.
TINY = ["--config", "configs/ring-transfer.yaml", "--set", "data.nodes=12",
        "--set", "data.options.num_train=16", "--set", "data.options.num_valid=8",
        "--set", "data.options.num_test=8", "--set", "model.num_layers=2",
        "--set", "model.channels=16", "--set", "train.batch_size=8"]


@pytest.mark.parametrize("target", [1, 150, 1000, 1600, 10_000])
def test_closest_width_is_nearest_multiple(gp, target):
    calls = []

    def params(c):
        calls.append(c)
        return c * c

    w = gp.closest_width(params, target, step=4, lo=4, hi=64)
    brute = min(range(4, 65, 4), key=lambda c: abs(c * c - target))
    assert w == brute
    assert len(calls) <= 12  # a bisection, not a scan of every width


def test_closest_width_rejects_bad_range(gp):
    with pytest.raises(ValueError, match="multiples of step"):
        gp.closest_width(lambda c: c, 10, step=4, lo=3, hi=16)


def test_matched_widths_minimise_parameter_gap(gp):
    from brl_graph.train.config import load_config
    from brl_graph.train import build_bench, build_model, count_parameters

    args = gp.build_parser().parse_args(TINY + ["--json", "x.json", "--epochs", "1"])
    base = gp.budget_overrides(args)
    widths = gp.matched_widths("configs/ring-transfer.yaml", base, ["brl", "mpnn", "full"])
    assert widths["brl"]["channels"] == 16
    target = widths["brl"]["num_params"]
    bench = build_bench(load_config("configs/ring-transfer.yaml", base))

    def params(model, c):
        cfg = load_config("configs/ring-transfer.yaml",
                          base + gp.model_overrides(model) + [f"model.channels={c}"])
        return count_parameters(build_model(cfg, bench))

    for model in ("mpnn", "full"):
        c = widths[model]["channels"]
        assert c % 4 == 0 and widths[model]["num_params"] == params(model, c)
        gap = abs(params(model, c) - target)
        for other in (c - 4, c + 4):
            if other >= 4:
                assert gap <= abs(params(model, other) - target)
    assert widths["mpnn"]["channels"] > 16  # the MPNN twin lacks the token weights, so it widens


def test_bad_arguments_are_reported(gp, tmp_path):
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        gp.main(TINY + ["--json", str(tmp_path / "x.json"), "--epochs", "1", "--set", "oops"])
    with pytest.raises(SystemExit, match="epochs"):
        gp.main(TINY + ["--json", str(tmp_path / "x.json"), "--epochs", "0"])


def test_end_to_end_rows_commands_and_resume_skip(gp, tmp_path, capsys):
    out = tmp_path / "tiny.json"
    argv = TINY + ["--json", str(out), "--runs", str(tmp_path / "runs"), "--epochs", "1",
                   "--seeds", "0", "--models", "brl", "twin"]  # legacy label
    assert gp.main(argv) == 0
    data = json.loads(out.read_text())
    rows = {r["model"]: r for r in data["rows"]}
    assert data["config"]["command"].startswith("python experiments/graph_property.py --config")
    assert "--epochs 1" in data["config"]["command"]
    assert set(rows) == {"brl", "mpnn"}
    for model, r in rows.items():
        assert r["metric_name"] == "accuracy" and 0.0 <= r["test"] <= 1.0
        assert r["epochs"] == 1 and r["finished"] is True
        assert r["peak_memory_mb"] > 0 and r["seconds_per_epoch"] > 0
        assert r["num_params"] == data["config"]["widths"][model]["num_params"]
        assert r["driver"] == data["config"]["command"]  # the call that produced the row
        # The stored command is the one that trained the row (its out_dir holds the run).
        words = shlex.split(r["command"])
        assert words[:4] == ["python", "train.py", "--config", "configs/ring-transfer.yaml"]
        out_dir = next(w.split("=", 1)[1] for w in words if w.startswith("out_dir="))
        metrics = json.loads((tmp_path / "runs" / out_dir.rsplit("/", 1)[1]
                              / "metrics.json").read_text())
        assert metrics["test"]["accuracy"] == r["test"]
        assert f"model.channels={r['channels']}" in words
    assert rows["mpnn"]["param_ratio_to_brl"] == pytest.approx(
        rows["mpnn"]["num_params"] / rows["brl"]["num_params"])
    assert rows["mpnn"]["channels"] > rows["brl"]["channels"]
    capsys.readouterr()
    assert gp.main(argv[:-1] + ["mpnn"]) == 0  # everything already in the JSON: nothing is trained again
    assert capsys.readouterr().out.count("already in") == 2


def test_the_rows_name_the_machine_they_ran_on(gp):
    cpu = gp.machine_text("cpu", 1)
    assert "no GPU" in cpu and "1 thread(s) per run" in cpu
    gpu = gp.machine_text("cuda", 4)
    assert "no GPU" not in gpu and "CPU cores" in gpu
