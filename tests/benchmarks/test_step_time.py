import json

import pytest


@pytest.fixture(scope="module")
def st(benchmark_script):
    yield from benchmark_script("step_time")


def test_rows_for_every_model_with_the_command(st, tmp_path, capsys):
    out = tmp_path / "step_time.json"
    argv = ["--dataset", "ring-transfer", "--option", "nodes=10", "--option", "seed=0",
            "--batches", "2", "--rounds", "2", "--warmup", "1", "--layers", "1",
            "--channels", "16", "--heads", "2", "--batch-size", "4",
            "--models", "brl", "twin", "full", "--json", str(out)]  # twin: legacy label
    assert st.main(argv) == 0
    rows = json.loads(out.read_text())
    assert sorted(r["model"] for r in rows) == ["brl", "full", "mpnn"]
    for r in rows:
        assert r["ms_per_step"] > 0 and r["graphs_per_s"] > 0 and r["num_params"] > 0
        assert "--option nodes=10" in r["command"]
    printed = capsys.readouterr().out
    assert "x mpnn" in printed and "brl" in printed
    # a second call replaces its rows instead of adding copies
    assert st.main(argv) == 0
    assert len(json.loads(out.read_text())) == 3
    # dropout settings are timed side by side, each a row of its own; rows of a
    # setting timed again are replaced, the others kept
    assert st.main(argv + ["--dropout", "0", "0.1", "--attn-dropout", "0", "0.2"]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 6
    assert sorted((r["dropout"], r["attn_dropout"]) for r in rows) == [(0.0, 0.0)] * 3 + [(0.1, 0.2)] * 3
    assert all("--dropout 0 0.1" in r["command"] for r in rows)
    printed = capsys.readouterr().out
    assert "dropout 0.10/0.20" in printed


def test_dropout_settings_must_pair_up(st):
    with pytest.raises(SystemExit, match="one attention dropout per dropout"):
        st.main(["--dataset", "ring-transfer", "--dropout", "0", "0.1", "--attn-dropout", "0"])


def test_bad_option_is_a_clear_error(st):
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        st.main(["--dataset", "ring-transfer", "--option", "nodes"])


def quick_argv(out):
    """One round of two tiny RingTransfer batches, BRL and the twin, rows to ``out``."""
    return ["--dataset", "ring-transfer", "--option", "nodes=10", "--option", "seed=0",
            "--batches", "2", "--rounds", "1", "--warmup", "1", "--layers", "1",
            "--channels", "16", "--heads", "2", "--batch-size", "4",
            "--models", "brl", "mpnn", "--json", str(out)]


def test_pre_norm_rows_are_kept_apart(st, tmp_path, capsys):
    out = tmp_path / "step_time.json"
    argv = quick_argv(out)
    assert st.main(argv) == 0 and st.main(argv + ["--pre-norm"]) == 0
    rows = json.loads(out.read_text())
    assert sorted((r["model"], r["pre_norm"]) for r in rows) == [
        ("brl", False), ("brl", True), ("mpnn", False), ("mpnn", True)]
    assert "(pre-norm)" in capsys.readouterr().out
    # GPSConv has no pre-norm form: under --pre-norm the full-attention row stays post-norm,
    # and says which run it was timed in
    assert st.main(argv + ["--pre-norm", "--models", "full"]) == 0
    full = [r for r in json.loads(out.read_text()) if r["model"] == "full"]
    assert [(r["pre_norm"], r["run_pre_norm"]) for r in full] == [(False, True)]


def test_fold_rows_are_kept_apart_and_fold_brl_only(st, tmp_path, capsys):
    out = tmp_path / "step_time.json"
    argv = quick_argv(out)
    assert st.main(argv) == 0 and st.main(argv + ["--fold"]) == 0
    rows = json.loads(out.read_text())
    # each run keeps its own twin row, so each BRL row has the twin it was timed beside
    assert sorted((r["model"], r["fold"]) for r in rows) == [
        ("brl", False), ("brl", True), ("mpnn", False), ("mpnn", True)]
    twin = {r["fold"]: r["num_params"] for r in rows if r["model"] == "mpnn"}
    assert twin[True] == twin[False]  # the twin has nothing to fold
    brl = {r["fold"]: r["num_params"] for r in rows if r["model"] == "brl"}
    assert brl[True] < brl[False]  # the folded BRL was built, not the plain one twice
    assert "BRL folded" in capsys.readouterr().out


def test_device_rows_are_kept_apart_and_a_missing_gpu_is_a_clear_error(st, tmp_path, monkeypatch):
    out = tmp_path / "step_time.json"
    argv = quick_argv(out)
    assert st.main(argv + ["--device", "cpu"]) == 0
    rows = json.loads(out.read_text())
    assert {r["device"] for r in rows} == {"cpu"}
    # a GPU row (written by hand: CI has none) is kept beside the CPU rows
    gpu = [dict(r, device="cuda", machine="NVIDIA H200") for r in rows]
    out.write_text(json.dumps(gpu + rows))
    assert st.main(argv) == 0
    assert len(json.loads(out.read_text())) == 4
    monkeypatch.setattr(st.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="CUDA is not available"):
        st.main(argv + ["--device", "cuda"])
    with pytest.raises(SystemExit, match="expected cpu, cuda"):  # no synchronize for others
        st.main(argv + ["--device", "mps"])
