"""The plateau schedule on a chosen split, passes per logged epoch, and exact
resume of both with the stop rule."""
import csv

import torch

from brl_graph.train import fit, load_checkpoint, load_config, make_scheduler
from brl_graph.train.loop import step_on_evaluation
from brl_graph.train.records import budget_columns

from .conftest import tiny_config


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _plateau(monitor, patience=2, factor=0.5, higher_is_better=True):
    cfg = load_config(overrides=["train.scheduler=plateau", f"train.plateau_monitor={monitor}",
                                 f"train.plateau_patience={patience}",
                                 f"train.plateau_factor={factor}", "train.lr=1e-3",
                                 "train.eval_train=true"])["train"]
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg["lr"])
    return optimizer, make_scheduler(optimizer, cfg, steps_per_epoch=10,
                                     higher_is_better=higher_is_better)


def _lrs(monitor, train, valid, **kwargs):
    """The lr after each evaluation of a synthetic metric sequence."""
    optimizer, scheduler = _plateau(monitor, **kwargs)
    out = []
    for t, v in zip(train, valid):
        step_on_evaluation(scheduler, {"train": {"accuracy": t}, "valid": {"accuracy": v}},
                           monitor, "accuracy")
        out.append(optimizer.param_groups[0]["lr"])
    return out


def test_plateau_on_train_halves_after_patience_evaluations_without_gain():
    train = [0.2, 0.5, 0.5, 0.4, 0.5, 0.6, 0.6, 0.6, 0.6]
    valid = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]  # always rising: ignored
    # Patience 2: the third evaluation in a row without gain (epoch 5) halves
    # the rate; the count restarts, and epoch 9 is the third after the gain at 6.
    assert _lrs("train", train, valid) == [1e-3] * 4 + [5e-4] * 4 + [2.5e-4]
    # The same sequences on valid: it always gains, the rate never moves.
    assert _lrs("valid", train, valid) == [1e-3] * 9


def test_plateau_on_a_lower_is_better_metric():
    optimizer, scheduler = _plateau("train", patience=0, higher_is_better=False)
    for value in (1.0, 0.5, 0.7):
        step_on_evaluation(scheduler, {"train": {"mae": value}}, "train", "mae")
    assert optimizer.param_groups[0]["lr"] == 5e-4


def test_passes_per_epoch_are_counted(tmp_path, readout_bench):
    # 168 training graphs, batch 16: 11 steps a pass; 3 passes a logged epoch.
    out = tmp_path / "run"
    metrics = fit(tiny_config(out, epochs=2, passes_per_epoch=3), bench=readout_bench)
    rows = _rows(out / "log.csv")
    assert [int(r["passes"]) for r in rows] == [3, 6]
    assert [int(r["steps"]) for r in rows] == [33, 66]
    assert (metrics["passes"], metrics["optimizer_steps"], metrics["passes_per_epoch"]) == (6, 66, 3)
    # limit_batches caps each pass, not the epoch.
    limited = fit(tiny_config(tmp_path / "lim", epochs=1, passes_per_epoch=3, limit_batches=2),
                  bench=readout_bench)
    assert (limited["passes"], limited["optimizer_steps"]) == (3, 6)


def test_cosine_schedule_spans_every_pass(tmp_path, readout_bench):
    # The cosine reaches min_lr at the last step of the last pass, not after the first pass.
    out = tmp_path / "run"
    fit(tiny_config(out, epochs=2, passes_per_epoch=2, scheduler="cosine", min_lr=0.0),
        bench=readout_bench)
    lrs = [float(r["lr"]) for r in _rows(out / "log.csv")]
    assert lrs[0] == 3e-3 and 1e-3 < lrs[1] < 2e-3  # halfway (epoch 2 starts at step 22 of 44)


def test_budget_columns_continue_a_history_without_them():
    # A run logged before passes existed: one pass per epoch, steps unknown.
    assert budget_columns([{"epoch": 1}, {"epoch": 2}], passes=100, steps=700) == \
        {"passes": 102, "steps": 700}
    assert budget_columns([], passes=1, steps=5) == {"passes": 1, "steps": 5}


def test_resume_restores_the_plateau_and_the_stop_rule_exactly(tmp_path, regression_bench):
    # Plateau on the train MAE (patience 0: it moves often) and a stop rule on
    # it, over 2-pass epochs; a run cut after epoch 2 and resumed ends as the
    # uninterrupted one: same rates, same stop state, same weights.
    protocol = dict(passes_per_epoch=2, scheduler="plateau", plateau_monitor="train",
                    plateau_patience=0, eval_train=True, stop_monitor="train",
                    stop_patience=3, lr=1e-2)
    straight = fit(tiny_config(tmp_path / "a", epochs=5, **protocol), bench=regression_bench)
    fit(tiny_config(tmp_path / "b", epochs=2, **protocol), bench=regression_bench)
    resumed = fit(tiny_config(tmp_path / "b", epochs=5, **protocol), bench=regression_bench,
                  resume=True)
    for key in ("epochs_completed", "stopped", "stop", "train_best", "train_loss", "passes",
                "optimizer_steps", "valid", "test"):
        assert resumed[key] == straight[key], key
    a_rows, b_rows = _rows(tmp_path / "a" / "log.csv"), _rows(tmp_path / "b" / "log.csv")
    assert [r["lr"] for r in a_rows] == [r["lr"] for r in b_rows]
    assert len({r["lr"] for r in a_rows}) > 1  # the plateau did act
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert a["scheduler"] == b["scheduler"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
