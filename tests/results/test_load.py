"""Tests for :mod:`brl_graph.results.load`: legacy model labels become current in one place."""
import json
from pathlib import Path

import pytest

from brl_graph.results.load import current_labels, load_results


def test_legacy_labels_become_current_and_nothing_else_changes():
    rows = [{"model": "twin", "test": 0.5}, {"model": "local"}, {"model": "gps"},
            {"model": "gps-multihead"}, {"model": "gps-performer"}, {"model": "brl"},
            {"model": "window"}, {"name": "a check"}]
    fixed = current_labels({"config": {"widths": {}}, "rows": rows})
    assert [r.get("model") for r in fixed["rows"]] == [
        "mpnn", "mpnn", "full", "full", "performer", "brl", "window", None]
    assert fixed["rows"][0]["test"] == 0.5 and fixed["config"] == {"widths": {}}
    assert rows[0]["model"] == "twin"  # the input is not modified
    assert [r["model"] for r in current_labels([{"model": "local"}])] == ["mpnn"]
    assert current_labels(None) is None and current_labels({"checks": []}) == {"checks": []}


def test_rows_of_an_older_driver_are_read_under_the_current_label(tmp_path):
    rows = [{"model": "twin", "seed": 0, "test": 0.75}, {"model": "mpnn", "seed": 1, "test": 0.5}]
    (tmp_path / "ogbg-molhiv-e100.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "scaling.json").write_text(json.dumps([{"model": "local", "num_nodes": 8}]))
    results = load_results(tmp_path)
    assert [r["model"] for r in results["ogbg-molhiv-e100"]["rows"]] == ["mpnn", "mpnn"]
    assert results["scaling"][0]["model"] == "mpnn"
    assert results["peptides-func-e60"] is None


def test_recall_cost_seed_repeats_are_gathered_under_one_table(tmp_path):
    for name in ("causal_recall_modes", "causal_recall_modes_mqar",
                 "causal_recall_modes_mqar_seed1", "causal_recall_modes_seed2"):
        (tmp_path / f"{name}.json").write_text(json.dumps({"name": name}))
    modes = load_results(tmp_path)["causal_recall_modes"]
    assert {k: [d["name"] for d in v] for k, v in modes.items()} == {
        "": ["causal_recall_modes", "causal_recall_modes_seed2"],
        "mqar": ["causal_recall_modes_mqar", "causal_recall_modes_mqar_seed1"]}


def test_invalid_json_names_the_file(tmp_path):
    (tmp_path / "long_range.json").write_text("{")
    with pytest.raises(ValueError, match="long_range.json is not valid JSON"):
        load_results(tmp_path)


def test_stored_commands_of_moved_scripts_show_the_current_path(tmp_path):
    old = "python benchmarks/causal_recall.py --steps 3"
    payload = {"config": {"command": old, "commands": [old, "python benchmarks/scaling.py"]},
               "rows": [{"model": "brl", "command": old, "driver": old, "note": old}]}
    (tmp_path / "causal_recall.json").write_text(json.dumps(payload))
    data = load_results(tmp_path)["causal_recall"]
    new = "python experiments/causal_recall.py --steps 3"
    assert data["config"] == {"command": new, "commands": [new, "python benchmarks/scaling.py"]}
    assert data["rows"][0] == {"model": "brl", "command": new, "driver": new, "note": old}


def test_stored_command_of_a_replaced_script_shows_its_replacement(tmp_path):
    old = "python benchmarks/gpu_check.py --device cuda --json /root/out/gpu_check.json"
    (tmp_path / "gpu_check.json").write_text(json.dumps({"checks": [], "command": old}))
    assert load_results(tmp_path)["gpu_check"]["command"] == (
        "python -m pytest -q -m cuda tests/device --device-report /root/out/gpu_check.json")


def test_every_script_the_results_document_runs_exists():
    # RESULTS.md is rendered from the committed results: each `python path.py` in it
    # must name a file of this tree, or a reader copies a command that cannot run.
    import re

    from brl_graph.results import render

    root = Path(__file__).resolve().parents[2]
    text = render(load_results(root / "benchmarks" / "results"), docs_dir=None)
    scripts = set(re.findall(r"python ([\w./-]+\.py)", text))
    assert "train.py" in scripts and "experiments/graph_property.py" in scripts
    assert sorted(s for s in scripts if not (root / s).is_file()) == []


def test_stored_commands_show_machine_paths_portably(tmp_path):
    cmd = ("python experiments/graph_property.py --runs /root/.cache/brl_graph/runs/graph_property "
           "--json /work/main/benchmarks/results/peptides-func-e60.json")
    row = {"model": "brl", "command": "python train.py out_dir=/home/u/.cache/brl_graph/runs/x/s0",
           "driver": cmd, "note": cmd}
    (tmp_path / "peptides-func-e60.json").write_text(json.dumps({"rows": [row]}))
    got = load_results(tmp_path)["peptides-func-e60"]["rows"][0]
    assert got["driver"] == ("python experiments/graph_property.py --runs $BRL_RUNS/graph_property "
                             "--json benchmarks/results/peptides-func-e60.json")
    assert got["command"] == "python train.py out_dir=$BRL_RUNS/x/s0"
    assert got["note"] == cmd  # only commands are rewritten
    # relative paths, paths inside longer values, other folders and an already portable
    # $BRL_RUNS stay as they are
    kept = ("python train.py out_dir=runs/x --json benchmarks/results/a.json "
            "--runs $BRL_RUNS/y data.root=/data/.cache/other --json ../main/benchmarks/results/a.json "
            "./out/benchmarks/results/b.json out_dir=../home/.cache/brl_graph/runs/x "
            "C:/Users/u/benchmarks/results/c.json /root/.cache/brl_graph/runs_old/x")
    (tmp_path / "peptides-func-e60.json").write_text(json.dumps({"rows": [{"command": kept}]}))
    assert load_results(tmp_path)["peptides-func-e60"]["rows"][0]["command"] == kept
    # quoted paths, and a results file renamed since (its current name is shown)
    quoted = ("x --runs '/root/.cache/brl_graph/runs' a=/x/y,b=/root/.cache/brl_graph/runs/z "
              "/w/benchmarks/results/sub/d.json "
              '--json "/w/benchmarks/results/peptides-func-e60-prenorm.json"')
    (tmp_path / "peptides-func-e60.json").write_text(json.dumps({"rows": [{"command": quoted}]}))
    assert load_results(tmp_path)["peptides-func-e60"]["rows"][0]["command"] == (
        "x --runs '$BRL_RUNS' a=/x/y,b=$BRL_RUNS/z benchmarks/results/sub/d.json "
        '--json "benchmarks/results/peptides-func-e60-dropout01.json"')
