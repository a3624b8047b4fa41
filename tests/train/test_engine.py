import csv
import json

import pytest
import torch

from brl_graph.train import (CheckpointError, ConfigError, NonFiniteLossError, build_model,
                             evaluate, fit, load_checkpoint, load_config)
from brl_graph.train.distributed import setup
from brl_graph.train.loop import eval_loader

from .conftest import tiny_config, toy_regression_bench


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_fit_writes_run_folder_and_selects_best_valid(tmp_path, readout_bench):
    out = tmp_path / "run"
    metrics = fit(tiny_config(out, epochs=4), bench=readout_bench)
    for name in ("config.yaml", "log.csv", "metrics.json", "checkpoints/last.pt",
                 "checkpoints/best.pt"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["epochs_completed"] == 4 and saved["world_size"] == 1
    # The process's peak RSS: at least the model and the interpreter, far below the machine.
    assert saved["peak_memory_kind"] == "process_max_rss"
    assert 50 < saved["peak_memory_mb"] < 20_000
    assert saved["num_params"] == sum(p.numel() for p in build_model(
        load_config(tiny_config(out)), readout_bench).parameters())
    rows = _rows(out / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert saved["peak_memory_mb"] >= max(float(r["peak_memory_mb"]) for r in rows)
    # OGB/LRGB protocol: best validation epoch, and the test value of that epoch.
    valid = [float(r["valid_accuracy"]) for r in rows]
    best = valid.index(max(valid))
    assert saved["best_epoch"] == best + 1
    assert saved["test"]["accuracy"] == pytest.approx(float(rows[best]["test_accuracy"]))
    assert metrics["valid"] == saved["valid"]
    # best.pt holds the model of the best epoch: re-evaluating it reproduces the metric.
    cfg = load_config(out / "config.yaml")
    model = build_model(cfg, readout_bench)
    model.load_state_dict(load_checkpoint(out / "checkpoints" / "best.pt")["model"])
    ctx = setup("cpu")
    again = evaluate(model, eval_loader(readout_bench.valid, cfg, ctx), readout_bench, ctx)
    assert again["accuracy"] == pytest.approx(saved["valid"]["accuracy"])


def test_existing_run_needs_resume_or_overwrite(tmp_path, readout_bench):
    cfg = tiny_config(tmp_path / "run", epochs=1)
    fit(cfg, bench=readout_bench)
    with pytest.raises(FileExistsError, match="--resume"):
        fit(cfg, bench=readout_bench)
    assert fit(cfg, bench=readout_bench, overwrite=True)["epochs_completed"] == 1
    with pytest.raises(CheckpointError, match="nothing to resume"):
        fit(tiny_config(tmp_path / "other"), bench=readout_bench, resume=True)


def test_resume_extends_a_run_exactly(tmp_path, regression_bench):
    # scheduler=none: the schedule then does not depend on train.epochs.
    straight = fit(tiny_config(tmp_path / "a", epochs=4, scheduler="none"),
                   bench=regression_bench)
    fit(tiny_config(tmp_path / "b", epochs=2, scheduler="none"), bench=regression_bench)
    resumed = fit(tiny_config(tmp_path / "b", epochs=4, scheduler="none"),
                  bench=regression_bench, resume=True)
    for key in ("best_epoch", "epochs_completed", "valid", "test", "train_loss"):
        assert resumed[key] == straight[key], key
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(_rows(tmp_path / "b" / "log.csv")) == 4


def test_a_loader_worker_changes_nothing_but_where_batches_are_collated(tmp_path,
                                                                          regression_bench):
    # configs/ogbg-molhiv.yaml collates in one worker: the shuffle is drawn in
    # the main process, so batches, dropout masks and results are the same.
    cfg = dict(epochs=2, scheduler="none")
    model = {"dropout": 0.2, "attn_dropout": 0.2}
    main = fit({**tiny_config(tmp_path / "a", **cfg), "model": {
        **tiny_config(tmp_path)["model"], **model}}, bench=regression_bench)
    worker = fit({**tiny_config(tmp_path / "b", num_workers=1, **cfg), "model": {
        **tiny_config(tmp_path)["model"], **model}}, bench=regression_bench)
    for key in ("best_epoch", "valid", "test", "train_loss"):
        assert worker[key] == main[key], key
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_of_a_run_written_with_the_old_key_names(tmp_path, regression_bench):
    # A run folder from before model.layers / model.global were renamed: its
    # config.yaml and checkpoint hold the old names. It resumes exactly.
    import yaml

    from brl_graph.train import save_checkpoint

    straight = fit(tiny_config(tmp_path / "a", epochs=3, scheduler="none"),
                   bench=regression_bench)
    out = tmp_path / "b"
    fit(tiny_config(out, epochs=2, scheduler="none"), bench=regression_bench)

    def to_old(cfg):
        model = cfg["model"]
        model["layers"] = model.pop("num_layers")
        model["global"] = model.pop("global_attn")
        return cfg

    for name in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(out / "checkpoints" / name)
        ckpt["config"] = to_old(ckpt["config"])
        save_checkpoint({k: v for k, v in ckpt.items() if k not in ("format", "version")},
                        out / "checkpoints" / name)
    saved = to_old(yaml.safe_load((out / "config.yaml").read_text()))
    (out / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    assert "layers" in load_checkpoint(out / "checkpoints" / "last.pt")["config"]["model"]

    with pytest.warns(FutureWarning, match="model.layers"):
        resumed = fit(out / "config.yaml", bench=regression_bench, resume=True,
                      overrides=["train.epochs=3"])
    for key in ("best_epoch", "epochs_completed", "valid", "test", "train_loss"):
        assert resumed[key] == straight[key], key
    # The config is rewritten with the current names.
    assert load_config(out / "config.yaml")["model"]["num_layers"] == 2
    assert "layers" not in yaml.safe_load((out / "config.yaml").read_text())["model"]


def test_resume_rejects_mismatch_and_corruption(tmp_path, readout_bench):
    out = tmp_path / "run"
    fit(tiny_config(out, epochs=1), bench=readout_bench)
    changed = tiny_config(out, epochs=2)
    changed["model"]["channels"] = 32
    with pytest.raises(CheckpointError, match="model.channels"):
        fit(changed, bench=readout_bench, resume=True)
    last = out / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        fit(tiny_config(out, epochs=2), bench=readout_bench, resume=True)


def test_non_finite_loss_stops_and_keeps_good_checkpoint(tmp_path, regression_bench):
    out = tmp_path / "run"
    fit(tiny_config(out, epochs=2, scheduler="none"), bench=regression_bench)
    last = out / "checkpoints" / "last.pt"
    before = last.read_bytes(), (out / "checkpoints" / "best.pt").read_bytes()
    bad = toy_regression_bench(inf_label=True)
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, step \d+"):
        fit(tiny_config(out, epochs=3, scheduler="none"), bench=bad, resume=True)
    assert last.read_bytes() == before[0]
    assert (out / "checkpoints" / "best.pt").read_bytes() == before[1]
    assert json.loads((out / "metrics.json").read_text())["epochs_completed"] == 2


@pytest.mark.parametrize("clip", [None, 1.0])
def test_non_finite_gradient_stops_with_clipping_off_too(tmp_path, regression_bench,
                                                        monkeypatch, clip):
    out = tmp_path / "run"
    fit(tiny_config(out, epochs=1, scheduler="none", clip=clip), bench=regression_bench)
    before = (out / "checkpoints" / "last.pt").read_bytes()
    import brl_graph.train.loop as loop
    task_loss = loop.task_loss

    def finite_loss_nan_gradient(out_, *args):
        # sqrt(0) is 0 forward and inf backward, so 0 * sqrt(0) adds nothing to the
        # loss and NaN to every gradient.
        return task_loss(out_, *args) + 0.0 * (out_.sum() * 0.0).sqrt()

    monkeypatch.setattr(loop, "task_loss", finite_loss_nan_gradient)
    with pytest.raises(NonFiniteLossError, match=r"gradient norm at epoch 2, step 1"):
        fit(tiny_config(out, epochs=2, scheduler="none", clip=clip), bench=regression_bench,
            resume=True)
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


def test_several_seeds_aggregate(tmp_path, readout_bench):
    out = tmp_path / "seeds"
    summary = fit(tiny_config(out, epochs=1, seeds=[0, 1]), bench=readout_bench)
    saved = json.loads((out / "summary.json").read_text())
    values = [json.loads((out / f"seed_{s}" / "metrics.json").read_text())["test"]["accuracy"]
              for s in (0, 1)]
    assert saved["test"]["accuracy"]["values"] == values
    assert saved["test"]["accuracy"]["mean"] == pytest.approx(sum(values) / 2)
    assert saved["test"]["accuracy"]["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    assert summary["seeds"] == [0, 1]
    assert load_config(out / "seed_1" / "config.yaml")["train"]["seed"] == 1


@pytest.mark.parametrize("train", [{"bf16": True}, {"scheduler": "plateau", "eval_every": 2},
                                   {"warmup_epochs": 1, "clip": None, "limit_batches": 2}])
def test_engine_options_run(tmp_path, regression_bench, train):
    metrics = fit(tiny_config(tmp_path / "r", **train), bench=regression_bench)
    assert metrics["epochs_completed"] == 3
    rows = _rows(tmp_path / "r" / "log.csv")
    if train.get("eval_every") == 2:  # epochs 2 and the last are evaluated
        assert [bool(r["valid_mae"]) for r in rows] == [False, True, True]
    if "limit_batches" in train:
        assert all(float(r["graphs_per_s"]) > 0 for r in rows)
        assert rows[0]["lr"] != rows[1]["lr"]  # warm-up moved the rate


def test_bad_config_is_reported_before_work(tmp_path, readout_bench):
    with pytest.raises(ConfigError, match="valid keys"):
        fit({"out_dir": str(tmp_path), "train": {"epoch": 3}}, bench=readout_bench)
    assert not (tmp_path / "config.yaml").exists()


def test_peak_memory_survives_a_resume():
    # A resumed process starts with a small RSS; the run's peak is the larger one an
    # earlier process logged per epoch before it was killed.
    from brl_graph.train.distributed import DistContext
    from brl_graph.train.records import run_peak_memory

    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    now = run_peak_memory([], ctx)["peak_memory_mb"]
    history = [{"peak_memory_mb": 10.0}, {"peak_memory_mb": now + 12345.0}, {"epoch": 3}]
    assert run_peak_memory(history, ctx)["peak_memory_mb"] == now + 12345.0
    assert run_peak_memory([{"peak_memory_mb": 1.0}], ctx)["peak_memory_mb"] >= now


def test_aggregate_counts_only_seeds_with_a_value(tmp_path, capsys):
    from brl_graph.train.records import aggregate, write_summary

    def run(valid, test):
        return {"metric": "ap", "num_params": 10, "world_size": 1, "seconds": 1.0,
                "valid": valid, "test": test}

    # Seed 0 never logged a finite metric (valid {}), seed 2 diverged to NaN:
    # the union of keys still reaches summary.json, and the mean is over seed 1 alone.
    runs = {0: run({}, {}), 1: run({"ap": 0.6}, {"ap": 0.5}),
            2: run({"ap": 0.7}, {"ap": float("nan")})}
    summary = aggregate(runs)
    test = summary["test"]["ap"]
    assert test["mean"] == pytest.approx(0.5) and test["n"] == 1 and test["missing"] == [0, 2]
    assert summary["valid"]["ap"]["mean"] == pytest.approx(0.65)
    assert summary["valid"]["ap"]["missing"] == [0]
    write_summary(tmp_path, summary, len(runs))
    assert "test ap over 1 of 3 seeds (no value: seed 0, 2): 0.5000" in capsys.readouterr().out
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["test"]["ap"]["values"] == [None, 0.5, None]
    # Every seed NaN: no mean is printed as if it were one.
    write_summary(tmp_path, aggregate({0: run({}, {"ap": float("nan")})}), 1)
    assert "test ap: no seed of 1 produced a value" in capsys.readouterr().out


def test_fit_leaves_the_callers_thread_count(tmp_path, readout_bench):
    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    fit(tiny_config(tmp_path / "run", epochs=1, threads=wanted), bench=readout_bench)
    assert torch.get_num_threads() == before


def test_ema_is_the_evaluated_model_and_resumes_exactly(tmp_path, regression_bench):
    from brl_graph.train.checkpoint import load_model_checkpoint

    cfg = dict(epochs=3, scheduler="none", ema_decay=0.9)
    straight = fit(tiny_config(tmp_path / "a", **cfg), bench=regression_bench)
    fit(tiny_config(tmp_path / "b", **{**cfg, "epochs": 2}), bench=regression_bench)
    resumed = fit(tiny_config(tmp_path / "b", **cfg), bench=regression_bench, resume=True)
    for key in ("best_epoch", "valid", "test", "train_loss"):
        assert resumed[key] == straight[key], key
    # best.pt exports the average, and re-evaluating it reproduces the selected metric;
    # the raw trained weights score differently.
    best = tmp_path / "a" / "checkpoints" / "best.pt"
    weights, saved_cfg = load_model_checkpoint(best)
    ctx = setup("cpu")
    cfg_full = load_config(saved_cfg)
    model = build_model(cfg_full, regression_bench)
    loader = eval_loader(regression_bench.valid, cfg_full, ctx)
    metric = regression_bench.metric
    model.load_state_dict(weights)
    assert evaluate(model, loader, regression_bench, ctx)[metric] == pytest.approx(
        straight["valid"][metric])
    model.load_state_dict(load_checkpoint(best)["model"])
    assert evaluate(model, loader, regression_bench, ctx)[metric] != pytest.approx(
        straight["valid"][metric])
    # Without the average the run is another run.
    plain = fit(tiny_config(tmp_path / "c", epochs=3, scheduler="none"), bench=regression_bench)
    assert plain["valid"] != straight["valid"]
