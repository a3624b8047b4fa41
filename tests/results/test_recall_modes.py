"""Tests for :mod:`brl_graph.results.recall_modes`: recall/cost tables, with seed repeats
of one configuration (``causal_recall_modes_<name>_seed<N>.json``) aggregated."""
import json

import pytest

from brl_graph.results import load_results, render
from brl_graph.results.recall_modes import merge_seed_repeats


def run(seed, blocks, full_ms=1000.0, steps=3000, eval_seqs=32):
    """A recall/cost file of ``experiments/causal_recall.py``: full and blocks at 2k and 8k."""
    rows = []
    for model, accs, ms in (("full", (1.0, 0.99), full_ms), ("blocks", blocks, 100.0 + seed)):
        for n, acc in zip((2048, 8192), accs):
            rows.append({"model": model, "train_len": 128, "eval_len": n, "accuracy": acc,
                         "fwd_bwd_ms": ms if n == 8192 else ms / 4, "state_per_layer": 99,
                         "keys_read": 77})
    return {"config": {"command": f"python experiments/causal_recall.py --seed {seed}",
                       "task": {"num_pairs": 8, "num_queries": 8, "vocab_size": 49,
                                "chance": 0.0625},
                       "budget": {"steps": steps, "seed": seed},
                       "model": {"dim": 32, "layers": 2, "window": 32, "num_tokens": 8,
                                 "block_size": 32, "block_tokens": 2, "top_k": 1},
                       # the driver evaluates with seed + 1, so repeats differ there too
                       "eval": {"num_seqs": eval_seqs, "seed": seed + 1}},
            "rows": rows}


def write(folder, name, payload):
    (folder / f"causal_recall_modes_{name}.json").write_text(json.dumps(payload))


def test_one_file_is_shown_as_before(tmp_path):
    write(tmp_path, "topk1_c2", run(0, (0.98, 0.95)))
    text = render(load_results(tmp_path), docs_dir=None)
    section = text.split("### Recall against state size and cost (topk1_c2)")[1].split("##")[0]
    assert "| BRL blocks (`blocks`) | 99 | 77 | 0.98 | 0.95 | 100.0 | 0.10 |" in section
    assert "seeds" not in section and "Command:\n\n    python experiments/causal_recall.py --seed 0" in section


def test_seed_repeats_show_mean_range_and_count_and_the_verdict_uses_the_mean(tmp_path):
    write(tmp_path, "topk1_c2", run(0, (0.98, 0.95)))
    write(tmp_path, "topk1_c2_seed1", run(1, (0.96, 0.90)))
    write(tmp_path, "topk1_c2_seed2", run(2, (0.91, 0.85)))
    text = render(load_results(tmp_path), docs_dir=None)
    assert text.count("### Recall against state size and cost") == 1
    section = text.split("### Recall against state size and cost (topk1_c2)")[1].split("##")[0]
    assert "| model | state / layer @ 8,192 | keys read | seeds | acc @ 2,048 | acc @ 8,192 |" in section
    assert "| BRL blocks (`blocks`) | 99 | 77 | 3 | 0.95 (0.91–0.98) | 0.90 (0.85–0.95) | 101.0 | 0.10 |" \
        in section
    assert "| full causal attention (`full`) | 99 | 77 | 3 | 1.00 (1.00–1.00) |" in section
    assert "over seeds 0, 1, 2" in section and '"seed"' not in section
    assert "Commands (one run per seed):" in section and "--seed 2" in section
    # Mean 0.95 at 2k (bar 0.95), 0.90 at 8k (bar 0.90), 0.10x full: the target is hit.
    targets = text.split("## Targets")[1]
    assert "blocks 0.95 at 2,048, 0.90 at 8,192" in targets


def test_files_of_different_configurations_are_not_seed_repeats():
    with pytest.raises(ValueError, match="share task, model, eval and budget"):
        merge_seed_repeats([run(0, (1.0, 1.0)), run(1, (1.0, 1.0), steps=600)])
    with pytest.raises(ValueError, match="share task, model, eval and budget"):
        merge_seed_repeats([run(0, (1.0, 1.0)), run(1, (1.0, 1.0), eval_seqs=64)])
    with pytest.raises(ValueError, match="same seed"):
        merge_seed_repeats([run(0, (1.0, 1.0)), run(0, (0.5, 0.5))])
    one = merge_seed_repeats([run(0, (0.5, 0.25))])
    assert {r["num_seeds"] for r in one["rows"]} == {1} and one["config"]["seeds"] == [0]
