"""Tests for :mod:`brl_graph.results` and its command line, ``experiments/make_results.py``:
the document written from small fake JSON files whose numbers are distinctive."""
import functools
import json
from types import SimpleNamespace

import pytest

from brl_graph.results import load_results, render
from brl_graph.results.recall_modes import causal_modes_section
from brl_graph.results.scaling import scaling_section


@pytest.fixture(scope="module")
def mr(script_loader):
    """The package's entry points, plus the script's ``main``."""
    for script in script_loader("experiments", "make_results"):
        yield SimpleNamespace(load_results=load_results, render=render, main=script.main,
                              scaling_section=scaling_section,
                              causal_modes_section=functools.partial(_one_run, causal_modes_section))


def _one_run(section, run, title):
    return section([run], title)


def _lr_row(task, size, model, metric, spe):
    return {"task": task, "size": size, "model": model, "seed": 0, "metric": metric,
            "seconds_per_epoch": spe, "num_params": 12345,
            "command": f"python train.py --config x.yaml data.nodes={size} train.epochs=7 "
                       f"out_dir=runs/{task}-{size}-{model}"}


def _fake_results(tmp_path):
    """Small fake JSON files whose numbers are distinctive, so each can be found."""
    scaling = [
        {"model": "brl", "num_nodes": 1000, "fwd_bwd_ms": 11.25, "peak_mem_mb": 3.125, "layers": 1},
        {"model": "brl", "num_nodes": 8000, "fwd_bwd_ms": 91.5, "peak_mem_mb": 24.75, "layers": 1},
        {"model": "gps-multihead", "num_nodes": 1000, "fwd_bwd_ms": 40.5, "peak_mem_mb": 7.5,
         "layers": 1},
        {"model": "gps-multihead", "num_nodes": 8000, "fwd_bwd_ms": None, "peak_mem_mb": None,
         "layers": 1, "skipped": "too slow zzq"},
    ]
    long_range = {"rows": [
        _lr_row("ring", 100, "brl", 0.987, 4.4), _lr_row("ring", 100, "twin", 0.213, 1.1),
        {**_lr_row("ring", 100, "full", None, None), "skipped": "quadratic qqz"},
        _lr_row("tree", 3, "brl", 0.555, 2.2), _lr_row("tree", 3, "full", 0.777, 3.3),
        _lr_row("ring", 200, "brl", 1.0, 5.5), {**_lr_row("ring", 200, "brl", 0.5, 5.5), "seed": 1},
        # full attention only: the published table gets a plot, the BRL verdicts stay as they are
        {"task": "tree-published", "size": 3, "model": "full", "seed": 0, "train_max": 1.0,
         "metric": 1.0, "test": 0.99, "passes": 60, "seconds": 300.0, "stopped": "target",
         "finished": True, "command": "python train.py --fake-tree"},
    ]}
    causal = {"config": {"command": "python experiments/causal_recall.py --fake",
                         "task": {"chance": 0.0625}, "budget": {"steps": 17}},
              "rows": [{"model": m, "train_len": 128, "eval_len": n, "accuracy": a,
                        "fwd_bwd_ms": t}
                       for m, n, a, t in [("brl", 1024, 0.421, 12.5), ("window", 1024, 0.111, 2.5),
                                          ("full", 1024, 0.975, 33.5), ("brl", 2048, 0.333, 25.5),
                                          ("window", 2048, 0.122, 5.5), ("full", 2048, 0.944, 99.5)]]}
    osq = {"rows": [{
        "dataset": "peptides-func", "num_graphs": 17, "mean_nodes": 150.5, "num_tokens": 8,
        "r_tot": {"median": 4321.0}, "r_tot_tokens": {"median": 43.5}, "ratio": {"median": 98.5},
        "r_avg": {"median": 17.25}, "r_avg_tokens": {"median": 0.203},
        "command": "python -m brl_graph.diagnostics --fake", "trained": False,
        "models": {"brl": {"source": "random-init", "kind": "brl", "layers": 2, "num_tokens": 8,
                           "by_hop": {"0": 9.0, "1": 1.5, "2": 0.5, "3": 0.0625, "4": 0.03125}},
                   "mpnn": {"source": "random-init", "kind": "mpnn", "layers": 2, "num_tokens": 0,
                            "by_hop": {"0": 9.0, "1": 1.25, "2": 0.25, "3": 0.0, "4": 0.0}}}}]}
    def gp_row(model, seed, test, channels):
        return {"model": model, "seed": seed, "metric_name": "rocauc", "test": test,
                "valid": test + 0.01, "epochs": 3, "channels": channels, "num_params": 50_000,
                "seconds_per_epoch": 12.5 + seed, "peak_memory_mb": 777.0 + seed,
                "budget": ["train.epochs=3", "train.lr=1e-3"],
                "command": f"python train.py --config configs/ogbg-molhiv.yaml fake-{model}-{seed}"}
    molhiv = {"config": {"budget": ["train.epochs=3", "train.lr=1e-3"]},
              "rows": [gp_row("brl", 0, 0.8125, 64), gp_row("brl", 1, 0.8375, 64),
                       gp_row("twin", 0, 0.7, 116), gp_row("twin", 1, 0.7, 116)]}
    for stem, obj in [("scaling", scaling), ("long_range", long_range),
                      ("causal_recall", causal), ("oversquashing", osq), ("ogbg-molhiv", molhiv)]:
        (tmp_path / f"{stem}.json").write_text(json.dumps(obj))


def test_every_table_number_comes_from_the_json(mr, tmp_path):
    _fake_results(tmp_path)
    text = mr.render(mr.load_results(tmp_path), docs_dir=None)
    # Scaling cells, skip reason and command.
    for s in ("11.250 ms / 3.125 MB", "91.500 ms / 24.750 MB", "40.500 ms / 7.500 MB", "too slow zzq"):
        assert s in text
    # Long range: metrics, seconds per epoch, skip reason, commands, budget.
    for s in ("0.987 (4.4 s/ep", "0.213 (1.1 s/ep", "skipped: quadratic qqz", "0.555 (2.2 s/ep",
              "0.777 (3.3 s/ep", "out_dir=runs/ring-100-brl", "train.epochs=7"):
        assert s in text
    # Several seeds: the mean, with every seed's value beside it.
    assert "0.750 = mean of 2 seeds [1.000, 0.500]" in text
    # Published anchors of Tree-NeighborsMatch at r = 3: GGNN 1.0, GIN 1.0; r = 4 rows say not run.
    assert "| 4 | not run | not run | not run | 1.00 | 0.77 |" in text
    # Causal table and its command.
    for s in ("0.421 / 12.5 ms", "0.111 / 2.5 ms", "0.975 / 33.5 ms", "python experiments/causal_recall.py --fake",
              '"steps": 17'):
        assert s in text
    # Over-squashing numbers and command.
    for s in ("4,321", "43.500", "98.5", "python -m brl_graph.diagnostics --fake"):
        assert s in text
    # Summary verdicts follow the data: ring holds at n=100 only (others untested), tree fails,
    # causal fails (BRL far below full attention).
    summary = text.split("## 1.")[0]
    assert "n=100: BRL 0.99 vs twin 0.21" in summary
    assert "| 4. Expressiveness of full attention (Tree-NeighborsMatch) | **fails** |" in summary
    assert "| 5. Valid causal masking, accuracy near full attention at lower cost | **fails** |" in summary
    # Graph-property table: mean ± sample std over seeds (0.825 ± 0.0177), each seed's value,
    # width, seconds per epoch (mean) and peak memory (max over seeds), and every command.
    for s in ("0.8250 ± 0.0177 (n=2: 0.8125, 0.8375)", "0.7000 ± 0.0000", "| 116 |", "| 13.0 |",
              "| 778.0 |", "fake-brl-1", "fake-twin-0", "`train.epochs=3 train.lr=1e-3`"):
        assert s in text
    targets = text.split("## Targets")[1]
    assert "ogbg-molhiv: BRL >= 0.80 ROC-AUC | **hit** | test ROC-AUC brl 0.8250" in targets
    # Peptides-func was not run: its section says so and carries the command.
    assert "no `benchmarks/results/peptides-func.json`" in text
    assert "python experiments/graph_property.py --config configs/peptides-func.yaml" in text


def test_missing_files_are_reported_not_run(mr, tmp_path):
    results = mr.load_results(tmp_path)  # empty folder
    assert all(v is None for v in results.values())
    text = mr.render(results, docs_dir=None)
    assert text.count("**not run**") == 7  # six tables and the GPU section
    summary = text.split("## 1.")[0]
    assert summary.count("**untested**") == 5
    assert "## Targets" in text


def test_invalid_json_is_an_error(mr, tmp_path):
    (tmp_path / "scaling.json").write_text("{not json")
    with pytest.raises(ValueError, match="scaling.json is not valid JSON"):
        mr.load_results(tmp_path)


def test_main_writes_document_and_small_plots(mr, tmp_path):
    _fake_results(tmp_path)
    out = tmp_path / "docs" / "RESULTS.md"
    assert mr.main(["--results", str(tmp_path), "--out", str(out)]) == 0
    assert out.read_text().startswith("# Results")
    for name in ("scaling.png", "sensitivity.png", "tree_published.png"):
        png = out.parent / name
        assert png.exists() and 0 < png.stat().st_size < 200_000
    assert "![Tree-NeighborsMatch, published protocol](tree_published.png)" in out.read_text()


def test_scaling_verdict_uses_the_mpnn_twin_as_the_linear_bar(mr):
    def row(model, n, ms, layers=1, ckpt=False):
        return {"model": model, "num_nodes": n, "fwd_bwd_ms": ms, "peak_mem_mb": n / 1000,
                "layers": layers, "checkpoint": ckpt, "command": f"cmd-{model}-{layers}"}

    sizes = [1000, 10_000, 100_000, 1_048_576]
    local = [row("mpnn", n, (n / 1000) ** 1.2) for n in sizes]
    brl = [row("brl", n, 1.5 * (n / 1000) ** 1.22) for n in sizes]
    text, (status, ev) = mr.scaling_section(local + brl, None)
    assert "**Missing:** the full model" in text and status == "partial"
    full = row("brl", 1_048_576, 120_000.0, layers=4, ckpt=True)
    text, (status, ev) = mr.scaling_section(local + brl + [full], None)
    assert status == "holds" and "Missing" not in text
    assert "4 layer(s)** with activation checkpointing" in text
    assert "4-layer BRL at 1,048,576 nodes: 120 s" in ev and "n^1.22" in ev
    assert "cmd-brl-4" in text and "cmd-mpnn-1" in text
    quad = [row("brl", n, (n / 1000) ** 2) for n in sizes]
    assert mr.scaling_section(local + quad + [full], None)[1][0] == "fails"


def test_causal_pairs_table_reads_every_pairs_file(mr, tmp_path):
    def recall(pairs, brl, window, full):
        rows = [{"model": m, "train_len": 128, "eval_len": n, "accuracy": a, "fwd_bwd_ms": None}
                for n in (128, 1024, 8192)
                for m, a in (("brl", brl), ("window", window), ("full", full))]
        return {"config": {"command": f"python experiments/causal_recall.py --num-pairs {pairs}",
                           "task": {"num_pairs": pairs, "chance": 0.0625}}, "rows": rows}

    (tmp_path / "causal_recall.json").write_text(json.dumps(recall(8, 0.07, 0.06, 0.97)))
    (tmp_path / "causal_recall_pairs1.json").write_text(json.dumps(recall(1, 0.93, 0.12, 0.99)))
    (tmp_path / "causal_recall_pairsX.json").write_text("{}")  # not a pairs file: ignored
    results = mr.load_results(tmp_path)
    assert sorted(results["causal_recall_pairs"]) == [1]
    text = mr.render(results, docs_dir=None)
    assert "| 1 | 0.062 | — | 0.93 / 0.93 / 0.93 | 0.12 / 0.12 / 0.12 | 0.99 / 0.99 / 0.99 |" in text
    assert "| 8 | 0.062 | — | 0.07 / 0.07 / 0.07 |" in text
    assert "--num-pairs 1" in text
    assert "BRL stays at chance even with" not in text  # BRL learns the 1-pair case here
    summary = text.split("## 1.")[0]
    assert "1 pair(s): BRL 0.93 vs window 0.12 at L=8,192" in summary


def test_gpu_section_reads_checks_rows_and_recall(mr, tmp_path):
    checks = {"environment": {"gpu": "Test GPU 9000", "capability": "9.0", "cuda": "13.0",
                              "torch": "2.x", "torch_geometric": "2.8", "tf32_matmul": False},
              "command": "python benchmarks/gpu_check.py --device cuda",
              "checks": [{"name": "batch_invariance", "passed": True,
                          "values": {"max_abs": 3.5e-07}, "bound": "< 1e-4"},
                         {"name": "bf16_autocast", "passed": False, "error": "RuntimeError: boom"}]}
    rows = [{"model": m, "num_nodes": n, "layers": 1, "bf16": False, "fwd_bwd_ms": ms,
             "peak_mem_mb": 10.0, "lease_run": 2, "command": "python benchmarks/scaling.py X"}
            for m, n, ms in (("local", 1000, 2.0), ("local", 8000, 16.0),
                             ("brl", 1000, 6.0), ("brl", 8000, 48.0))]
    (tmp_path / "gpu_check.json").write_text(json.dumps(checks))
    (tmp_path / "scaling_gpu.json").write_text(json.dumps(rows))
    text = mr.render(mr.load_results(tmp_path), docs_dir=None)
    gpu = text.split("## 7. GPU")[1].split("## Targets")[0]
    assert "Test GPU 9000" in gpu and "bash benchmarks/device_check.sh" in gpu
    assert "| `batch_invariance` | **pass** | max_abs 3.50e-07 |" in gpu
    assert "| `bf16_autocast` | **FAIL** | RuntimeError: boom |" in gpu
    assert "48.0 ms / 10 MB (run 2)" in gpu and "| 3.00x |" in gpu
    assert "`brl` n^1.00" in gpu  # 6 -> 48 ms over 1k -> 8k nodes
    # The linear claim's evidence quotes the GPU ratio too.
    assert "BRL/MPNN at 8,000 nodes: fp32 3.0x" in text.split("## 1.")[0]


def test_causal_steps_table_and_a_verdict_that_holds_only_with_more_steps(mr, tmp_path):
    def recall(steps, brl, secs):
        rows = [{"model": m, "train_len": 128, "eval_len": n, "accuracy": a,
                 "fwd_bwd_ms": 1.0 + n / 1000, "train_seconds": secs}
                for n in (128, 1024, 8192)
                for m, a in (("brl", brl), ("window", 0.06), ("full", 0.97))]
        return {"config": {"command": f"python experiments/causal_recall.py --steps {steps}",
                           "task": {"num_pairs": 8, "chance": 0.0625},
                           "budget": {"steps": steps}}, "rows": rows}

    (tmp_path / "causal_recall.json").write_text(json.dumps(recall(600, 0.07, 11)))
    (tmp_path / "causal_recall_steps3000.json").write_text(json.dumps(recall(3000, 0.95, 55)))
    results = mr.load_results(tmp_path)
    assert sorted(results["causal_recall_steps"]) == [3000]
    text = mr.render(results, docs_dir=None)
    assert "| 600 | 0.07 / 0.07 / 0.07 (11 s) | 0.06 / 0.06 / 0.06 (11 s) |" in text
    assert "| 3,000 | 0.95 / 0.95 / 0.95 (55 s) |" in text
    assert "--steps 3000" in text
    claim = next(line for line in text.split("## 1.")[0].splitlines() if line.startswith("| 5."))
    # Fails at 600 steps, holds at 3,000: partial, with both figures quoted.
    assert "**partial**" in claim and "at 3,000 steps: L=1024: BRL 0.95" in claim
    assert "BRL rises from 0.07 (chance 0.062) at 600 steps to 0.95 at 3,000 steps" in text


@pytest.mark.parametrize("twin", [0.125, 0.9])
def test_tree_reading_names_a_twin_that_fails_where_gin_fits(mr, tmp_path, twin):
    rows = [_lr_row("tree", 3, "brl", 0.13, 1.0), _lr_row("tree", 3, "twin", twin, 1.0),
            _lr_row("tree", 3, "full", 1.0, 1.0)]
    (tmp_path / "long_range.json").write_text(json.dumps({"rows": rows}))
    text = mr.render(mr.load_results(tmp_path), docs_dir=None)
    assert "Where full attention fits the task and BRL does not (r = 3)" in text
    assert ("The MPNN twin stays at chance too at r = 3" in text) == (twin < 0.5)


def _published_row(size, model, acc, passes, stopped="target"):
    return {"task": "tree-published", "size": size, "model": model, "seed": 0, "metric": acc,
            "train_max": acc, "passes": passes, "seconds": 600.0, "stopped": stopped,
            "finished": True, "num_params": 4321,
            "command": f"python train.py --config p.yaml data.depth={size} {model}-{passes}"}


@pytest.mark.parametrize("twin_r3, status", [(0.93, "partly hit"), (0.41, "missed")])
def test_published_tree_table_and_target(mr, tmp_path, twin_r3, status):
    rows = [_published_row(2, "brl", 1.0, 1000), _published_row(2, "twin", 1.0, 2000),
            _published_row(2, "brl-k1", 0.987, 7000, stopped=None),
            _published_row(3, "brl", 0.996, 100), _published_row(3, "twin", twin_r3, 1700)]
    (tmp_path / "long_range.json").write_text(json.dumps({"rows": rows}))
    text = mr.render(mr.load_results(tmp_path), docs_dir=None)
    section = text.split("### Tree-NeighborsMatch under the published protocol")[1]
    # BRL, K=1, twin, full, then the published GGNN and GIN
    assert ("| 2 | 1.000 (1,000 passes, 10.0 min, stopped: target) | 0.987 (7,000 passes, "
            "10.0 min, budget spent) | 1.000 (2,000 passes, 10.0 min, stopped: target) | "
            "not run | 1.00 | 1.00 |") in section
    assert "| 4 | not run | not run | not run | not run | 1.00 | 0.77 |" in section
    assert "data.depth=3 twin-1700" in section  # every row's command
    target = next(line for line in text.splitlines()
                  if line.startswith("| Tree-NeighborsMatch, published protocol"))
    assert f"**{status}" in target
    assert "BRL r=3: 0.996" in target and f"twin r=3: {twin_r3:.3f} (GIN 1.00)" in target
    assert "not run: r = 4, 5" in target


def _modes_run(pairs, blocks_acc, blocks_ms, full_ms=1000.0):
    rows = []
    for model, acc, ms, state in [("full", (1.0, 0.99), full_ms, 524288),
                                  ("window", (0.07, 0.06), 111.5, 2048),
                                  ("brl", (0.2, 0.1), 1333.5, 2336),
                                  ("linear", (0.09, 0.08), 99.5, 288),
                                  ("blocks", blocks_acc, blocks_ms, 540672)]:
        for n, a in zip((2048, 8192), acc):
            rows.append({"model": model, "train_len": 128, "eval_len": n, "accuracy": a,
                         "fwd_bwd_ms": ms if n == 8192 else ms / 4, "state_per_layer": state,
                         "keys_read": 77})
    return {"config": {"command": f"python experiments/causal_recall.py --models all --p{pairs}",
                       "task": {"num_pairs": pairs, "num_queries": pairs, "vocab_size": 49,
                                "chance": 0.0625},
                       "budget": {"steps": 3000},
                       "model": {"dim": 32, "layers": 2, "window": 32, "num_tokens": 8,
                                 "block_size": 32, "block_tokens": 1, "top_k": 2}},
            "rows": rows}


def test_causal_modes_table_and_blocks_target(mr, tmp_path):
    (tmp_path / "causal_recall_modes.json").write_text(
        json.dumps(_modes_run(8, (0.975, 0.925), 333.5)))
    text = mr.render(mr.load_results(tmp_path), docs_dir=None)
    section = text.split("### Recall against state size and cost")[1].split("## ")[0]
    # Every model's row: state, accuracies, time and its ratio to full attention.
    assert "| BRL blocks (`blocks`) | 540,672 | 77 | 0.97 | 0.93 | 333.5 | 0.33 |" in section
    assert "| linear attention (`linear`) | 288 | 77 | 0.09 | 0.08 | 99.5 | 0.10 |" in section
    assert "--models all --p8" in section
    targets = text.split("## Targets")[1]
    assert "fwd+bwd <= 0.5x full attention at 8k | **hit** |" in targets
    # The blocks mode carries claim 5.
    summary = text.split("## 1.")[0]
    assert "| 5. Valid causal masking, accuracy near full attention at lower cost | **holds** |" \
        in summary
    # A second table (file suffix in its title); one table meeting the bar is enough.
    (tmp_path / "causal_recall_modes_mqar.json").write_text(
        json.dumps(_modes_run(64, (0.5, 0.2), 333.5)))
    text = mr.render(mr.load_results(tmp_path), docs_dir=None)
    assert "### Recall against state size and cost (mqar)" in text
    assert "64 pairs: blocks 0.50 at 2,048" in text.split("## Targets")[1]
    assert "fwd+bwd <= 0.5x full attention at 8k | **hit** |" in text.split("## Targets")[1]
    assert "| 5. Valid causal masking, accuracy near full attention at lower cost | **partial** |" \
        in text.split("## 1.")[0]
    # Too slow, too few pairs or too inaccurate: the target is not hit.
    for run, status in [(_modes_run(8, (0.975, 0.925), 600.0), "partial"),
                        (_modes_run(4, (0.975, 0.925), 333.5), "partial"),
                        (_modes_run(8, (0.5, 0.2), 333.5), "fails")]:
        _, (got, ev) = mr.causal_modes_section(run, "t")
        assert got == status, ev


def test_published_tree_cell_says_when_a_run_logged_more_often_or_in_bf16(mr, tmp_path):
    often = _published_row(5, "brl", 0.995, 160)
    often["passes_per_epoch"] = 20
    often["budget"] = ["data.depth=5", "train.passes_per_epoch=20", "train.bf16=true"]
    rows = [often, {**_published_row(4, "brl", 1.0, 100), "passes_per_epoch": 100},
            {**_published_row(2, "brl", 1.0, 1000), "passes_per_epoch": 1000}]
    (tmp_path / "long_range.json").write_text(json.dumps({"rows": rows}))
    section = mr.render(mr.load_results(tmp_path), docs_dir=None).split(
        "### Tree-NeighborsMatch under the published protocol")[1]
    assert ("| 5 | 0.995 (160 passes, 10.0 min, stopped: target, logged every 20 passes, "
            "bf16 autocast) |") in section
    assert "| 4 | 1.000 (100 passes, 10.0 min, stopped: target) |" in section
    assert "| 2 | 1.000 (1,000 passes, 10.0 min, stopped: target) |" in section
    # a cell whose seeds differ in precision says how many were bf16
    mixed = [often, {**often, "seed": 1, "budget": ["data.depth=5"]}]
    (tmp_path / "long_range.json").write_text(json.dumps({"rows": mixed}))
    section = mr.render(mr.load_results(tmp_path), docs_dir=None).split(
        "### Tree-NeighborsMatch under the published protocol")[1]
    assert "logged every 20 passes, bf16 autocast in 1 of 2 seeds) |" in section


def test_published_tree_cell_names_a_head_other_than_the_configs_linear_one(mr, tmp_path):
    def row(size, seed, budget):
        return {**_published_row(size, "brl", 1.0, 100), "passes_per_epoch": 100,
                "seed": seed, "budget": budget}

    two = ["data.depth=4", "model.head_layers=2"]
    rows = [row(4, 0, two), row(3, 0, ["data.depth=3"]),
            row(5, 0, two), row(5, 1, ["data.depth=5", "model.head_layers=1"]),
            row(6, 0, ["data.depth=6", "model.head_layers=1"])]
    (tmp_path / "long_range.json").write_text(json.dumps({"rows": rows}))
    section = mr.render(mr.load_results(tmp_path), docs_dir=None).split(
        "### Tree-NeighborsMatch under the published protocol")[1]
    assert "| 4 | 1.000 (100 passes, 10.0 min, stopped: target, 2-layer head) |" in section
    # the config's head, named or not, goes unsaid
    assert "| 3 | 1.000 (100 passes, 10.0 min, stopped: target) |" in section
    assert "| 6 | 1.000 (100 passes, 10.0 min, stopped: target) |" in section
    assert "stopped: target, heads of 1 and 2 layers across seeds) |" in section


def test_step_time_ratios_are_to_the_twin_of_the_same_run():
    from brl_graph.results.scaling import step_time_section

    def row(model, ms, **kw):
        return {"dataset": "ogbg-molhiv", "model": model, "batch_size": 32, "layers": 4,
                "channels": 64, "num_params": 1000, "ms_per_step": ms, "graphs_per_s": 1.0,
                "command": "python benchmarks/step_time.py", **kw}

    text = step_time_section([
        row("brl", 50.0), row("mpnn", 25.0),                         # an old row: no fields
        row("brl", 60.0, pre_norm=True, fold=True), row("mpnn", 40.0, pre_norm=True, fold=True),
    ])
    lines = [ln for ln in text.splitlines() if ln.startswith("| CPU | ogbg-molhiv")]
    assert len(lines) == 4
    assert "| brl | - |" in lines[0] and lines[0].endswith("| 2.00 |")
    # the folded BRL's ratio is to the twin of its own run (40 ms), not the older one
    assert "| brl | pre-norm, folded |" in lines[2] and lines[2].endswith("| 1.50 |")
    assert "| mpnn | pre-norm |" in lines[3]
    # GPS timed in a pre-norm run stays post-norm, but its ratio is to that run's twin
    text = step_time_section([row("mpnn", 40.0, pre_norm=True, run_pre_norm=True),
                              row("full", 80.0, pre_norm=False, run_pre_norm=True)])
    full = [ln for ln in text.splitlines()
            if ln.startswith("| CPU | ogbg-molhiv | 32 | 0.00 / 0.00 | full")]
    assert len(full) == 1 and "| full | - |" in full[0] and full[0].endswith("| 2.00 |")
    # GPU rows: their own group, named by the GPU, each ratio to the GPU's twin
    text = step_time_section([row("mpnn", 20.0, threads=1), row("brl", 30.0, threads=1),
                              row("mpnn", 10.0, device="cuda", machine="NVIDIA H200"),
                              row("brl", 25.0, device="cuda", machine="NVIDIA H200")])
    lines = text.splitlines()
    cpu = [ln for ln in lines if ln.startswith("| CPU, 1 thread(s) |") and "| brl |" in ln]
    gpu = [ln for ln in lines if ln.startswith("| NVIDIA H200 |") and "| brl |" in ln]
    assert len(cpu) == len(gpu) == 1
    assert cpu[0].endswith("| 1.50 |") and gpu[0].endswith("| 2.50 |")
    # two GPUs: each BRL row's ratio is to the twin timed on its own GPU
    text = step_time_section([row("mpnn", 10.0, device="cuda", machine="NVIDIA H200"),
                              row("brl", 12.0, device="cuda", machine="NVIDIA H200"),
                              row("mpnn", 20.0, device="cuda", machine="NVIDIA A100"),
                              row("brl", 24.0, device="cuda", machine="NVIDIA A100")])
    brl = [ln for ln in text.splitlines() if "| brl |" in ln]
    assert len(brl) == 2 and all(ln.endswith("| 1.20 |") for ln in brl)


def test_published_tree_cell_names_the_gpu_a_row_trained_on(mr, tmp_path):
    gpu = {**_published_row(5, "brl", 0.995, 100), "passes_per_epoch": 100,
           "device": "cuda", "machine": "NVIDIA H200, 16 CPU cores"}
    cpu = {**_published_row(4, "brl", 1.0, 100), "passes_per_epoch": 100}
    (tmp_path / "long_range.json").write_text(json.dumps({"rows": [gpu, cpu]}))
    section = mr.render(mr.load_results(tmp_path), docs_dir=None).split(
        "### Tree-NeighborsMatch under the published protocol")[1]
    assert "| 5 | 0.995 (100 passes, 10.0 min, on NVIDIA H200, 16 CPU cores, stopped: target) |" \
        in section
    assert "| 4 | 1.000 (100 passes, 10.0 min, stopped: target) |" in section
