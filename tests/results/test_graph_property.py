"""Tests for :mod:`brl_graph.results.graph_property`: the short-budget tables of sections 3 and 4."""
from brl_graph.results.graph_property import MOLHIV_ANCHORS, graph_property_section


def _data(made_at=None):
    rows = [{"model": m, "seed": s, "test": 0.6 + s / 100, "valid": 0.7, "epochs": 3,
             "metric_name": "rocauc", "channels": 64, "num_params": 500_000,
             "command": f"python train.py --config configs/ogbg-molhiv.yaml fake-{m}-s{s}"}
            for m in ("brl", "mpnn") for s in (0, 1)]
    config = {"budget": ["train.epochs=3"], "command": "python experiments/graph_property.py"}
    if made_at:
        config["made_at"] = made_at
    return {"rows": rows, "config": config}


def _section(data):
    return graph_property_section(data, 3, "ogbg-molhiv", "configs/ogbg-molhiv.yaml",
                                  MOLHIV_ANCHORS)[0]


def test_rows_of_older_code_name_the_commit_that_reproduces_them():
    made = {"commit": "abc1234", "date": "2026-11-28", "changed": "the config has changed since"}
    text = _section(_data(made))
    assert ("These rows were made with the code and configs of commit `abc1234` (2026-11-28); "
            "the config has changed since, so the per-row `train.py` commands below reproduce "
            "them from a checkout of that commit (`git checkout abc1234`)") in text
    assert "fake-brl-s1" in text and "| BRL | 0.6050 ± 0.0071 (n=2: 0.6000, 0.6100) |" in text


def test_rows_of_todays_code_carry_no_commit_note():
    assert "git checkout" not in _section(_data())
