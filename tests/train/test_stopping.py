import json
import math

import pytest

from brl_graph.train import fit
from brl_graph.train.stopping import PATIENCE, TARGET, StopRule

from .conftest import tiny_config


def _feed(rule, values):
    """Feeds epochs 1, 2, ... and returns the epoch after which the rule fired."""
    for epoch, value in enumerate(values, start=1):
        if rule.update(epoch, value):
            return epoch
    return None


def test_stop_rule_fires_at_the_target():
    rule = StopRule(target=1.0, patience=None, higher_is_better=True)
    assert _feed(rule, [0.2, 0.9, 1.0, 1.0]) == 3
    assert (rule.reason, rule.epoch, rule.best, rule.best_epoch) == (TARGET, 3, 1.0, 3)
    # Lower is better: a target MAE is reached from above.
    low = StopRule(target=0.1, patience=None, higher_is_better=False)
    assert _feed(low, [0.5, 0.2, 0.09]) == 3


def test_stop_rule_fires_after_patience_evaluations_without_gain():
    rule = StopRule(target=1.0, patience=3, higher_is_better=True)
    # Gains at epochs 1, 2 and 4; a tie, a drop and a NaN are no gain.
    assert _feed(rule, [0.3, 0.5, 0.4, 0.6, 0.6, 0.1, math.nan, 0.9]) == 7
    assert (rule.reason, rule.epoch, rule.best, rule.best_epoch) == (PATIENCE, 7, 0.6, 4)
    assert rule.without_gain == 3
    # Once fired it stays fired.
    assert rule.update(8, 1.0) and rule.reason == PATIENCE and rule.best == 0.6


def test_stop_rule_off_never_fires():
    rule = StopRule(target=None, patience=None, higher_is_better=True)
    assert _feed(rule, [0.1] * 50) is None and rule.best == 0.1


def test_replaying_a_history_gives_the_live_state():
    # Evaluated every other epoch (eval_every=2): odd rows lack the column.
    values = {2: 0.3, 4: 0.5, 6: 0.4, 8: 0.5, 10: 0.45}
    live = StopRule(target=1.0, patience=5, higher_is_better=True)
    for epoch, value in values.items():
        live.update(epoch, value)
    history = [{"epoch": e, "train_loss": 1.0, **({"train_accuracy": values[e]}
                                                  if e in values else {})}
               for e in range(1, 11)]
    replayed = StopRule(target=1.0, patience=5, higher_is_better=True).replay(
        history, "train_accuracy")
    assert replayed == live
    assert (replayed.best, replayed.best_epoch, replayed.without_gain) == (0.5, 4, 3)


def test_fit_stops_at_the_target_and_says_why(tmp_path, readout_bench):
    # Any accuracy is >= 0: the rule fires after the first evaluation.
    out = tmp_path / "run"
    metrics = fit(tiny_config(out, epochs=5, eval_train=True, stop_monitor="train",
                              stop_target=0.0), bench=readout_bench)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    assert saved["epochs_completed"] == 1 and saved["finished"]
    assert saved["stopped"] == TARGET
    assert saved["stop"]["monitor"] == "train" and saved["stop"]["epoch"] == 1
    assert saved["train_best"]["epoch"] == 1
    assert saved["train_best"]["accuracy"] == saved["stop"]["best"]


def test_fit_stops_after_patience_and_a_resume_does_not_train_on(tmp_path, readout_bench):
    # lr 1e-9: the predictions do not move, so the valid accuracy never gains
    # after epoch 1 and the rule fires after epoch 1 + patience.
    out = tmp_path / "run"
    cfg = tiny_config(out, epochs=10, lr=1e-9, stop_patience=2)
    first = fit(cfg, bench=readout_bench)
    assert first["epochs_completed"] == 3 and first["stopped"] == PATIENCE
    assert first["stop"]["without_gain"] == 2 and first["stop"]["best_epoch"] == 1
    # Resumed with a larger budget, the replayed rule has already fired.
    again = fit(tiny_config(out, epochs=20, lr=1e-9, stop_patience=2), bench=readout_bench,
                resume=True)
    assert again["epochs_completed"] == 3 and again["stopped"] == PATIENCE
    assert again["stop"] == first["stop"]


def test_a_run_without_the_rule_stops_at_its_epochs(tmp_path, readout_bench):
    metrics = fit(tiny_config(tmp_path / "run", epochs=2), bench=readout_bench)
    assert metrics["stopped"] == "epochs" and metrics["stop"]["reason"] is None
    assert metrics["train_best"] is None  # the train split was not scored


@pytest.mark.parametrize("train, fragment", [
    ({"stop_monitor": "train", "stop_patience": 3}, "eval_train"),
    ({"scheduler": "plateau", "plateau_monitor": "train"}, "eval_train"),
    ({"stop_patience": 0}, "stop_patience"),
    ({"stop_target": "high"}, "stop_target"),
    ({"plateau_monitor": "test"}, "plateau_monitor"),
    ({"passes_per_epoch": 0}, "passes_per_epoch"),
])
def test_bad_protocol_settings(tmp_path, train, fragment):
    from brl_graph.train import ConfigError, load_config

    with pytest.raises(ConfigError, match=fragment):
        load_config(tiny_config(tmp_path, **train))


def test_an_unused_train_monitor_needs_no_train_metric(tmp_path):
    from brl_graph.train import load_config

    # Inert settings (cosine schedule, no stop rule) are not an error.
    load_config(tiny_config(tmp_path, plateau_monitor="train", stop_monitor="train"))
