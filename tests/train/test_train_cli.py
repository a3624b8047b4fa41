"""train.py end to end: the real model on the real loaders, kill -9 and resume, torchrun."""
import csv
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from brl_graph.train import (build_model, evaluate, fit, load_checkpoint, load_config,
                             load_model_checkpoint)
from brl_graph.train.distributed import setup
from brl_graph.train.loop import eval_loader

ROOT = Path(__file__).resolve().parents[2]
TRAIN_PY = ROOT / "train.py"
PYTHON = sys.executable
TORCHRUN = Path(sys.executable).with_name("torchrun")

# A RingTransfer run small enough for seconds per epoch; dropout on, so the
# resumed run must also restore the generator states to match.
TINY_RING = ["data.name=ring-transfer", "data.nodes=10",
             "data.options={num_train: 384, num_valid: 100, num_test: 100}",
             "model.num_layers=2", "model.channels=16", "model.heads=2", "model.num_tokens=2",
             "model.dropout=0.1", "train.batch_size=32", "train.device=cpu",
             "train.progress=false"]
VOLATILE = {"seconds", "seconds_per_epoch", "peak_memory_mb"}  # differ between runs


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # One thread per process: identical arithmetic in every run and no
    # oversubscription of a small shared CPU.
    # train.py itself asks OpenMP for passive waiting.
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _train(args, **kwargs):
    return subprocess.run([PYTHON, str(TRAIN_PY), *args], env=_env(), capture_output=True,
                          text=True, timeout=300, **kwargs)


def _stable(metrics):
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def _log_rows(path):
    with open(path) as f:
        return [{k: v for k, v in row.items()
                 if k not in ("seconds", "graphs_per_s", "peak_memory_mb")}
                for row in csv.DictReader(f)]


def _load_train_module():
    spec = importlib.util.spec_from_file_location("train_cli", TRAIN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kill9_then_resume_gives_identical_metrics(tmp_path):
    epochs = 5
    common = TINY_RING + [f"train.epochs={epochs}"]
    # The uninterrupted reference runs alongside (one thread each).
    ref = subprocess.Popen([PYTHON, str(TRAIN_PY), *common, f"out_dir={tmp_path / 'ref'}"],
                           env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen([PYTHON, str(TRAIN_PY), *common, f"out_dir={out}"], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics_file = out / "metrics.json"
    deadline = time.time() + 240
    try:
        # Kill as soon as epoch 2's checkpoint is complete: mid-epoch 3.
        while time.time() < deadline and proc.poll() is None:
            if metrics_file.exists():
                try:
                    done = json.loads(metrics_file.read_text())["epochs_completed"]
                except (ValueError, KeyError):
                    done = 0
                if done >= 2:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed: " + \
            proc.stderr.read()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = load_checkpoint(out / "checkpoints" / "last.pt")["epoch"]
    assert 2 <= killed_at < epochs

    resumed = _train(common + [f"out_dir={out}", "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming after epoch {killed_at}" in resumed.stdout
    _, ref_err = ref.communicate(timeout=300)
    assert ref.returncode == 0, ref_err[-3000:]

    a = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert b["epochs_completed"] == epochs
    assert _stable(a) == _stable(b)
    assert _log_rows(tmp_path / "ref" / "log.csv") == _log_rows(out / "log.csv")
    wa = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("extra", [[], ["train.ema_decay=0.9"]], ids=["plain", "ema"])
def test_torchrun_two_cpu_processes(tmp_path, extra):
    out = tmp_path / "ddp"
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(TRAIN_PY), *TINY_RING,
           "train.epochs=2", f"out_dir={out}", *extra]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("epoch 2/2") == 1  # only rank 0 prints
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_completed"] == 2
    # Metrics cover the whole split: one process scoring best.pt on all of
    # valid must give exactly what the two ranks reported together.
    cfg = load_config(out / "config.yaml")
    cfg["train"]["device"] = "cpu"
    from brl_graph.data import load_dataset
    bench = load_dataset("ring-transfer", **cfg["data"]["options"], nodes=10)
    model = build_model(cfg, bench)
    # The evaluated weights: the trained ones, or their average with train.ema_decay.
    model.load_state_dict(load_model_checkpoint(out / "checkpoints" / "best.pt")[0])
    ctx = setup("cpu")
    single = evaluate(model, eval_loader(bench.valid, cfg, ctx), bench, ctx)
    assert single["accuracy"] == pytest.approx(metrics["valid"]["accuracy"], abs=1e-12)


def test_default_config_runs_offline_and_prints_results(tmp_path, capsys):
    cfg = load_config(ROOT / "configs" / "default.yaml")
    assert cfg["data"]["name"] in ("ring-transfer", "tree-neighbors-match")  # no download
    train = _load_train_module()
    code = train.main([f"out_dir={tmp_path / 'default'}", "train.epochs=1",
                       "train.limit_batches=3", "train.progress=false"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"results in {tmp_path / 'default'}" in out
    assert json.loads((tmp_path / "default" / "metrics.json").read_text())["epochs_completed"] == 1


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    train = _load_train_module()
    assert train.main(["train.lr=fast", f"out_dir={tmp_path}"]) == 1
    assert "train.lr" in capsys.readouterr().err
    assert train.main(["--config", str(tmp_path / "nope.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert train.main(["model.chanels=8"]) == 1
    err = capsys.readouterr().err
    assert "model.chanels" in err and "channels" in err
    assert train.main(["--resume", f"out_dir={tmp_path / 'empty'}"]) == 1
    assert "nothing to resume" in capsys.readouterr().err
    assert train.main(["model.causal=true", "model.norm=batch_norm", "train.epochs=1",
                       f"out_dir={tmp_path / 'clash'}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the model.* settings do not fit together") and "Traceback" not in err


def test_ogbg_molesol_real_data(tmp_path, shared_datasets):
    cfg = {"out_dir": str(tmp_path / "esol"),
           "data": {"name": "ogbg-molesol", "root": str(shared_datasets),
                    "cache_dir": str(tmp_path / "cache")},
           "model": {"num_layers": 2, "channels": 32, "heads": 4, "num_tokens": 4},
           "train": {"epochs": 3, "batch_size": 32, "lr": 3e-3, "device": "cpu",
                     "progress": False}}
    metrics = fit(cfg)
    assert metrics["metric"] == "rmse" and metrics["epochs_completed"] == 3
    from brl_graph.data import load_dataset
    bench = load_dataset("ogbg-molesol", root=shared_datasets, cache_dir=tmp_path / "cache")
    assert len(bench.train) == 902 and len(bench.test) == 113
    # Better than predicting zero, the trivial baseline on these labels.
    y = torch.cat([g.y.view(-1) for g in bench.test])
    zero_rmse = math.sqrt(float((y ** 2).mean()))
    assert metrics["test"]["rmse"] < zero_rmse
    assert not list(Path(shared_datasets).rglob("processed"))  # nothing written there
