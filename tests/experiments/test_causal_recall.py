"""Tests for ``experiments/causal_recall.py`` (a script, not a package: loaded from its path)."""
import json

import pytest
import torch


@pytest.fixture(scope="module")
def cr(experiment_script):
    yield from experiment_script("causal_recall")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_generator_is_deterministic_from_seed(cr):
    task = cr.RecallTask()
    a = cr.make_batch(task, 4, 200, torch.Generator().manual_seed(3))
    b = cr.make_batch(task, 4, 200, torch.Generator().manual_seed(3))
    c = cr.make_batch(task, 4, 200, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == a[1].shape == (4, 200)
    assert a[0].min() >= 0 and a[0].max() < task.vocab_size


@pytest.mark.parametrize("length", [40, 300])
def test_answers_recoverable_by_brute_force_reader(cr, length):
    task = cr.RecallTask(num_pairs=6, num_queries=3, num_keys=10, num_values=5, num_filler=7)
    tokens, targets = cr.make_batch(task, 16, length, torch.Generator().manual_seed(0))
    for row, tgt in zip(tokens.tolist(), targets.tolist()):
        answers = cr.read_answers(row, task)
        expected = {i: t for i, t in enumerate(tgt) if t != cr.IGNORE}
        assert answers == expected
        assert len(answers) == task.num_queries
        # The evidence for every answer sits in the list at the start, the query at
        # the end: their distance grows with the length (only filler is added).
        assert min(answers) - (2 * task.num_pairs) >= length - 2 * task.num_pairs - task.num_queries - 1


def test_reader_rejects_unlisted_query(cr):
    task = cr.RecallTask(num_pairs=1, num_queries=1, num_keys=2)
    seq = [0, task.key_offset, task.value_offset, task.filler_offset, task.key_offset + 1]
    with pytest.raises(ValueError, match="never listed"):
        cr.read_answers(seq, task)


def test_bad_task_and_length_raise(cr):
    with pytest.raises(ValueError, match="num_queries"):
        cr.RecallTask(num_pairs=2, num_queries=3)
    with pytest.raises(ValueError, match="too short"):
        cr.make_batch(cr.RecallTask(), 2, 10, torch.Generator().manual_seed(0))


def test_cli_writes_json_rows(cr, tmp_path, capsys):
    out = tmp_path / "res.json"
    rc = cr.main(["--steps", "2", "--batch-size", "2", "--train-len", "48", "--eval-lens", "48",
                  "64", "--eval-seqs", "2", "--time-repeats", "1", "--dim", "16", "--window", "8",
                  "--num-tokens", "2", "--num-pairs", "3", "--num-queries", "2", "--num-keys", "4",
                  "--log-every", "0", "--threads", "1", "--json", str(out)])
    assert rc == 0
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert [(r["model"], r["eval_len"]) for r in rows] == [
        (k, n) for k in ("brl", "window", "full") for n in (48, 64)]
    for r in rows:
        assert {"model", "train_len", "eval_len", "accuracy", "fwd_bwd_ms"} <= r.keys()
        assert r["train_len"] == 48 and 0.0 <= r["accuracy"] <= 1.0
        assert r["fwd_bwd_ms"] > 0 and len(r["times_ms"]) == 1
        assert r["num_answers"] == 2 * 2
    cfg = payload["config"]
    assert cfg["budget"]["steps"] == 2 and cfg["budget"]["batch_size"] == 2
    assert "--steps 2" in cfg["command"] and cfg["wall_seconds"] > 0
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_schedule_sets_the_learning_rate_after_warmup(cr, monkeypatch, schedule):
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    task = cr.RecallTask(num_pairs=1, num_queries=1, num_keys=2, num_values=2, num_filler=1)
    model = cr.RecallLM("window", task.vocab_size, dim=8, layers=1, heads=2, window=4)
    budget = cr.Budget(steps=12, batch_size=2, lr=1e-2, warmup_steps=2, schedule=schedule)
    cr.train_model(model, task, budget, length=8)
    assert seen[:2] == pytest.approx([5e-3, 1e-2])
    if schedule == "constant":
        assert seen[2:] == pytest.approx([1e-2] * 10)
    else:
        assert seen[2] == pytest.approx(1e-2) and seen[-1] < 1e-3
        assert all(a >= b for a, b in zip(seen[2:], seen[3:]))
    with pytest.raises(ValueError, match="unknown schedule"):
        cr.Budget(schedule="linear")


def test_merge_runs_of_different_models_under_one_config(cr, tmp_path):
    def run(models, steps=2):
        out = tmp_path / f"{'-'.join(models)}-{steps}.json"
        cr.main(["--models", *models, "--steps", str(steps), "--batch-size", "2",
                 "--train-len", "48", "--eval-lens", "48", "--eval-seqs", "2",
                 "--time-repeats", "0", "--dim", "16", "--window", "8", "--num-tokens", "2",
                 "--block-size", "8", "--num-pairs", "3", "--num-queries", "2",
                 "--num-keys", "4", "--log-every", "0", "--json", str(out)])
        return out

    a, b = run(["full", "blocks"]), run(["brl"])
    merged = tmp_path / "merged.json"
    assert cr.main(["--merge", str(a), str(b), "--json", str(merged)]) == 0
    payload = json.loads(merged.read_text())
    assert [r["model"] for r in payload["rows"]] == ["full", "blocks", "brl"]
    assert payload["rows"][2]["command"] == payload["config"]["commands"][1]
    assert "--models brl" in payload["rows"][2]["command"]
    assert {"state_per_layer", "keys_read"} <= payload["rows"][1].keys()
    with pytest.raises(ValueError, match="budget"):
        cr.merge_runs([json.loads(a.read_text()), json.loads(run(["linear"], steps=3).read_text())])
    with pytest.raises(ValueError, match="appears in two runs"):
        cr.merge_runs([json.loads(a.read_text()), json.loads(run(["full"]).read_text())])


def test_state_size_counts_what_each_layer_keeps(cr):
    args = cr.parse_args(["--dim", "32", "--heads", "4", "--window", "32", "--num-tokens", "8",
                          "--block-size", "32", "--block-tokens", "1", "--top-k", "2"])
    at = {k: cr.state_size(k, args, 8192) for k in cr.KINDS}
    assert at["full"] == {"state_per_layer": 2 * 8192 * 32, "keys_read": 8192}
    assert at["window"]["state_per_layer"] == 2 * 32 * 32
    # the linear state (C x D) equals the reservoir's K x C tokens at these sizes
    assert at["linear"]["state_per_layer"] - 32 == 8 * 32 == 32 * 8
    assert at["blocks"]["keys_read"] == 32 + 256 + 2 * 32
    assert at["blocks"]["state_per_layer"] > at["full"]["state_per_layer"]  # keeps all K/V
    args.top_k = 0
    assert cr.state_size("blocks", args, 8192)["state_per_layer"] == 2 * 32 * 32 + 2 * 256 * 32
    with pytest.raises(ValueError, match="unknown attention kind"):
        cr.state_size("mamba", args, 10)
