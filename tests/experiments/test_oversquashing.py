"""Tests for ``experiments/oversquashing.py`` (a script: loaded from its path)."""
import json

import pytest


@pytest.fixture(scope="module")
def osq(experiment_script):
    yield from experiment_script("oversquashing")


def test_ring_summary_matches_closed_form_and_report(osq, tmp_path, capsys):
    n = 12
    argv = ["--json", str(tmp_path / "o.json"), "--out", str(tmp_path / "diag"),
            "--datasets", "ring-transfer", "--max-graphs", "3",
            "--option", f"ring-transfer:nodes={n}", "--option", "ring-transfer:num_train=8",
            "--option", "ring-transfer:num_valid=4", "--option", "ring-transfer:num_test=4",
            "--option", "other-dataset:nodes=99"]
    assert osq.main(argv) == 0
    row = json.loads((tmp_path / "o.json").read_text())["rows"][0]
    # Total effective resistance of the cycle C_n is (n^3 - n) / 12.
    assert row["r_tot"]["median"] == pytest.approx((n**3 - n) / 12, rel=1e-9)
    assert row["r_tot_tokens"]["median"] < row["r_tot"]["median"]
    assert "nodes=99" not in row["command"] and f"nodes={n}" in row["command"]
    report = json.loads((tmp_path / "diag" / "ring-transfer" / "report.json").read_text())
    assert row == {**osq.summarise(report), **{k: row[k] for k in
                                               ("command", "report", "wall_seconds", "trained")}}
    mpnn = row["models"]["mpnn"]
    beyond = [v for h, v in mpnn["by_hop"].items() if int(h) > mpnn["layers"] and v is not None]
    assert beyond and all(v == 0.0 for v in beyond)  # no path longer than L hops without tokens
    brl = row["models"]["brl"]
    assert any(v > 0 for h, v in brl["by_hop"].items() if int(h) > brl["layers"] and v)
    capsys.readouterr()
    assert osq.main(argv) == 0
    assert "skip ring-transfer: already in" in capsys.readouterr().out


def test_malformed_options_are_errors_and_stray_ones_are_named(osq, capsys):
    datasets = ["ogbg-molhiv", "peptides-func"]
    assert osq.parse_options(["ogbg-molhiv:pe=rwse", "peptides-func:pe_dim=8",
                              "ogbg-molesol:pe=rwse"], datasets) == [
        ("ogbg-molhiv", "pe=rwse"), ("peptides-func", "pe_dim=8")]
    assert "'ogbg-molesol:pe=rwse' is not used" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="not of the form DATASET:KEY=VALUE"):
        osq.parse_options(["pe=rwse"], datasets)
