"""Tests for :mod:`brl_graph.results.protocol`: the full-protocol tables and their verdicts,
from small synthetic results files like those ``experiments/graph_property.py`` writes."""
import json
from dataclasses import replace
from pathlib import Path

import pytest

from brl_graph.results import load_results, render
from brl_graph.results.load import FILES
from brl_graph.results.protocol import (MOLHIV, PEPTIDES, Candidate, Earlier, Probe,
                                        protocol_section)
from brl_graph.train.config import load_config, parse_value


def row(model, seed, test, metric="rocauc", epochs=100):
    # The fields of a graph_property row that the section reads, plus a few it ignores.
    return {"dataset": "ogbg-molhiv", "model": model, "seed": seed, "metric_name": metric,
            "higher_is_better": True, "test": test, "valid": test + 0.01, "best_epoch": 40 + seed,
            "epochs": epochs, "finished": True, "channels": 64, "num_params": 437_000,
            "command": f"python train.py --config x.yaml fake-{model}-s{seed}",
            "driver": f"python experiments/graph_property.py --models {model} --epochs {epochs}"}


def test_missing_or_empty_file_says_not_run_and_shows_the_published_rows(tmp_path):
    for data in (None, {"rows": []}, {"config": {}, "rows": []}):
        text, verdict = protocol_section(MOLHIV, data)
        assert "Not run yet" in text and "--epochs 100" in text and "--models mpnn" in text
        assert "| GPS (published) | — | 0.7880 ± 0.0101 |" in text
        assert "| GIN-virtual (published) | — | 0.7707 ± 0.0149 |" in text
        assert verdict[0] == "untested"


def test_rows_of_an_older_driver_count_as_mpnn_and_fewer_seeds_are_partial(tmp_path):
    rows = ([row("brl", s, 0.79 + s / 1000) for s in range(4)]
            + [row("twin", s, 0.775) for s in (0, 1)])  # still written by an older checkout
    rows += [row("brl", s, 0.7935) for s in range(4, MOLHIV.seeds)]
    (tmp_path / "ogbg-molhiv-e100.json").write_text(json.dumps({"rows": rows}))
    text = render(load_results(tmp_path), docs_dir=None)
    section = text.split("### Full OGB protocol")[1].split("## 4.")[0]
    assert ("| BRL (`brl`) | s0 0.7900 (ep 40), s1 0.7910 (ep 41), s2 0.7920 (ep 42), "
            "s3 0.7930 (ep 43), s4 0.7935 (ep 44),") in section
    assert "s9 0.7935 (ep 49) | 0.7927 ± 0.0013 | 0.8027 ± 0.0013 | 10 | 100 | 437,000 |" in section
    assert "| MPNN twin (K=0, widened) (`mpnn`) | s0 0.7750 (ep 40), s1 0.7750 (ep 41) |" in section
    assert "twin`" not in section and "fake-brl-s3" in section
    targets = text.split("## Targets")[1]
    assert "brl >= 0.785, mpnn >= 0.77 test ROC-AUC | **partly hit" in targets
    assert "| partial: mpnn 2 of 10 seeds; ROC-AUC brl 0.7927 ± 0.0013 (n=10); mpnn 0.7750" in targets


@pytest.mark.parametrize("brl, mpnn, status", [(0.79, 0.775, "holds"), (0.78, 0.775, "partial"),
                                               (0.70, 0.70, "fails")])
def test_molhiv_verdict_waits_for_ogbs_ten_seeds(brl, mpnn, status):
    assert MOLHIV.seeds == 10  # OGB's leaderboard: mean and std over seeds 0-9
    rows = [row(m, s, v) for m, v in (("brl", brl), ("mpnn", mpnn)) for s in range(10)]
    _, (got, ev) = protocol_section(MOLHIV, {"rows": rows})
    assert got == status and not ev.startswith("partial:")
    # four seeds each, issue 11's minimum, no longer decide anything
    four = [r for r in rows if r["seed"] < 4]
    _, (got, ev) = protocol_section(MOLHIV, {"rows": four})
    assert got == "partial" and ev.startswith("partial: brl 4, mpnn 4 of 10 seeds")


def test_a_complete_verdict_names_each_target_hit_or_missed():
    rows = [row(m, s, v) for m, v in (("brl", 0.78), ("mpnn", 0.775)) for s in range(10)]
    _, (got, ev) = protocol_section(MOLHIV, {"rows": rows})
    assert got == "partial"
    assert ev.startswith("brl missed (0.7800 < 0.785); mpnn hit (0.7750 >= 0.77); ROC-AUC brl")
    brl = [0.645, 0.65, 0.655, 0.65]  # mean 0.65, std 0.0041
    rows = ([row("brl", s, v, "ap", 60) for s, v in enumerate(brl)]
            + [row("mpnn", s, 0.6475, "ap", 60) for s in range(4)])
    _, (got, ev) = protocol_section(PEPTIDES, {"rows": rows})
    assert got == "partial"  # BRL clears 0.62 but not the twin by more than the spread
    assert ev.startswith("brl hit (0.6500 >= 0.62); brl above mpnn by no more than the larger "
                         "std (0.0025 vs 0.0041); AP brl 0.6500")


@pytest.mark.parametrize("mpnn, status", [(0.63, "holds"), (0.6475, "partial")])
def test_peptides_needs_a_gap_larger_than_the_seed_spread(mpnn, status):
    brl = [0.645, 0.65, 0.655, 0.65]  # std 0.0041
    rows = ([row("brl", s, v, "ap", 60) for s, v in enumerate(brl)]
            + [row("mpnn", s, mpnn, "ap", 60) for s in range(4)])
    text, (got, _) = protocol_section(PEPTIDES, {"rows": rows})
    assert got == status
    assert "| tuned GCN (published) | — | 0.6860 ± 0.0050 |" in text and "test AP per seed" in text
    # Without the twin's four seeds there is no verdict yet.
    _, (got, ev) = protocol_section(PEPTIDES, {"rows": rows[:4] + rows[4:6]})
    assert got == "partial" and ev.startswith("partial: mpnn 2 of 4 seeds")


def test_an_earlier_recipe_is_shown_below_the_table_and_never_counted(tmp_path):
    old = [row("brl", 0, 0.49, "ap", 60), row("mpnn", 0, 0.51, "ap", 60)]
    (tmp_path / "peptides-func-e60-bs128.json").write_text(json.dumps({"rows": old}))
    text = render(load_results(tmp_path), docs_dir=None)
    section = text.split("### Full LRGB protocol")[1].split("## 5.")[0]
    assert "Not run yet" in section  # the earlier rows are not this protocol's
    assert "An earlier recipe (batch 128" in section and "peptides-func-e60-bs128.json" in section
    assert "BRL s0 0.4900 (ep 40); MPNN twin s0 0.5100 (ep 40)" in section
    assert "fake-mpnn-s0" in section
    assert "peptides-func-e60: no runs yet" in text.split("## Targets")[1]
    # without the file nothing is said about it
    (tmp_path / "peptides-func-e60-bs128.json").unlink()
    assert "An earlier recipe" not in render(load_results(tmp_path), docs_dir=None)


def test_molhiv_post_norm_rows_are_an_earlier_recipe(tmp_path):
    old = [row("mpnn", 0, 0.7533), row("brl", 0, 0.76)]
    # a stored command may already name the override: it is not added twice
    old[1]["command"] = old[1]["command"] + " model.pre_norm=false"
    (tmp_path / "ogbg-molhiv-e100-postnorm.json").write_text(json.dumps({"rows": old}))
    (tmp_path / "ogbg-molhiv-e100.json").write_text(json.dumps({"rows": [row("brl", 0, 0.79)]}))
    text = render(load_results(tmp_path), docs_dir=None)
    section = text.split("### Full OGB protocol")[1].split("## 4.")[0]
    assert "An earlier recipe (post-norm layers" in section
    assert "BRL s0 0.7600 (ep 40); MPNN twin s0 0.7533 (ep 40)" in section
    assert "| BRL (`brl`) | s0 0.7900 (ep 40) |" in section and "MPNN twin (K=0, widened) (`" not in section
    assert "partial: brl 1, mpnn 0 of 10 seeds" in text.split("## Targets")[1]
    commands = [line.split() for line in section.split("An earlier recipe")[1].splitlines()
                if line.startswith("    ")]
    assert len(commands) == 2 and all(c.count("model.pre_norm=false") == 1 for c in commands)


def test_peptides_post_norm_rows_are_an_earlier_recipe_beside_the_batch_128_ones(tmp_path):
    post = [row("brl", 0, 0.532, "ap", 60), row("mpnn", 0, 0.5187, "ap", 60)]
    (tmp_path / "peptides-func-e60-postnorm.json").write_text(json.dumps({"rows": post}))
    (tmp_path / "peptides-func-e60-bs128.json").write_text(
        json.dumps({"rows": [row("brl", 0, 0.49, "ap", 60)]}))
    (tmp_path / "peptides-func-e60.json").write_text(
        json.dumps({"rows": [row("brl", 0, 0.58, "ap", 60)]}))
    text = render(load_results(tmp_path), docs_dir=None)
    section = text.split("### Full LRGB protocol")[1].split("## 5.")[0]
    assert "| BRL (`brl`) | s0 0.5800 (ep 40) |" in section
    assert "An earlier recipe (post-norm layers" in section
    assert "BRL s0 0.5320 (ep 40); MPNN twin s0 0.5187 (ep 40)" in section
    assert "An earlier recipe (batch 128, post-norm layers" in section
    # the printed commands reproduce the earlier recipe under today's config
    commands = [line.strip() for line in section.split("An earlier recipe (post-norm")[1]
                .split("An earlier recipe (batch")[0].splitlines() if line.startswith("    ")]
    assert commands and all(c.split().count("model.pre_norm=false") == 1 for c in commands)
    # only this protocol's rows count towards the verdict
    assert "partial: brl 1, mpnn 0 of 4 seeds" in text.split("## Targets")[1]
    assert "0.5320" not in text.split("## Targets")[1]


def test_a_candidate_recipe_shows_its_mean_so_far_and_is_never_counted():
    from dataclasses import replace

    wd = "train.weight_decay=0.1"
    p = replace(PEPTIDES, earlier=PEPTIDES.earlier[-1:], candidates=(
        Candidate("peptides-func-e60-cand", "weight decay 0.1", (wd,), (("brl", 0),)),))
    shipped = [row("brl", s, 0.61, "ap", 60) for s in range(1, 5)] + [
        row("mpnn", s, 0.57, "ap", 60) for s in range(4)]
    # BRL's seed 0 is the run the candidate was chosen on: in the file, but left out;
    # the twin's seed 0 counts
    cand = [row("brl", s, v, "ap", 60) for s, v in ((0, 0.66), (1, 0.63), (2, 0.64))]
    cand += [row("mpnn", 0, 0.58, "ap", 60)]
    cand[1]["command"] += f" {wd}"  # already stored: not appended twice
    old = {"rows": [row("brl", 0, 0.49, "ap", 60)]}
    text, verdict = protocol_section(p, {"rows": shipped}, {"peptides-func-e60-cand": {"rows": cand},
                                                            p.earlier[0].stem: old})
    assert "A candidate recipe under test (weight decay 0.1)" in text
    assert "peptides-func-e60-cand.json" in text
    # beside the test figures, the valid ones that decide whether the config takes it over
    assert ("BRL s1 0.6300 (ep 41), s2 0.6400 (ep 42) (mean 0.6350 ± 0.0071, valid "
            "0.6450 ± 0.0071, 2 of 4 seeds so far); MPNN twin s0 0.5800 (ep 40) (valid 0.5900, "
            "1 of 4 seeds so far)") in text
    assert "BRL's seed 0 is the run the candidate was chosen on and is left out." in text
    assert "0.6600" not in text and "fake-brl-s0 " not in text.split("An earlier recipe")[0]
    # its commands run the candidate: each carries the override once; then the earlier recipe's
    mine = text.split("A candidate recipe")[1].split("An earlier recipe")[0]
    commands = [line.split() for line in mine.splitlines() if line.startswith("    ")]
    assert [c[-2] for c in commands] == ["fake-brl-s1", "fake-brl-s2", "fake-mpnn-s0"]
    assert all(c.count(wd) == 1 and c[-1] == wd for c in commands)
    assert "BRL s0 0.4900 (ep 40)" in text.split("An earlier recipe")[1]
    # the verdict is the shipped rows': BRL's 0.61 misses 0.62 whatever the candidate shows
    assert verdict[0] == "partial" and "brl 0.6100" in verdict[1] and "0.63" not in verdict[1]
    # no rows of its seeds, no text
    for data in (None, {"rows": []}, {"rows": cand[:1]}):
        none, _ = protocol_section(p, {"rows": shipped}, {"peptides-func-e60-cand": data})
        assert "candidate" not in none

@pytest.mark.parametrize("protocol, epochs", [(MOLHIV, 100), (PEPTIDES, 200)])
def test_the_gpu_command_is_shown_and_parses_as_a_driver_call(protocol, epochs, script_loader):
    import shlex

    command = protocol.gpu_command()
    text, _ = protocol_section(protocol, None)
    assert f"    {command}\n" in text and "On a CUDA GPU" in text
    argv = shlex.split(command)
    assert argv[:2] == ["python", "experiments/graph_property.py"]
    loaded = script_loader("experiments", "graph_property")
    try:
        args = next(loaded).build_parser().parse_args(argv[2:])
    finally:
        loaded.close()
    assert args.device == "cuda" and args.epochs == epochs
    assert args.seeds == list(range(protocol.seeds))
    assert f"{protocol.seeds} seeds each" in text
    assert args.models == ["brl", "mpnn", "full"] and args.config == protocol.config
    assert args.json.endswith("-gpu.json") and args.json != f"benchmarks/results/{protocol.stem}.json"
    if protocol is PEPTIDES:  # LRGB's batch
        assert "train.batch_size=128" in args.set and args.warmup_epochs == 5


def test_a_protocol_note_on_its_seeds_follows_the_targets_and_any_four_seeds_count():
    assert "seeds are 1-4" in PEPTIDES.note and "ten seeds, 0-9" in MOLHIV.note
    rows = ([row("brl", s, 0.63, metric="ap", epochs=60) for s in (1, 2, 3, 4)]
            + [row("mpnn", s, 0.57, metric="ap", epochs=60) for s in range(4)])
    text, verdict = protocol_section(PEPTIDES, {"rows": rows})
    targets_and_note = text.split("\n\n")[1]
    assert targets_and_note.endswith(PEPTIDES.note)
    assert verdict[0] == "holds"


def test_peptides_shows_the_recipe_before_weight_decay_below_the_table(tmp_path):
    # Weight decay 0.1 with the weight average shipped: the rows before it (both models)
    # are an earlier recipe whose commands undo both, and never count.
    old = [dict(row(m, s, 0.60, "ap", 60), command=f"python train.py x.yaml fake-{m}-s{s}")
           for m in ("brl", "mpnn") for s in (1, 2, 3, 4)]
    (tmp_path / "peptides-func-e60-nodecay.json").write_text(json.dumps({"rows": old}))
    text = render(load_results(tmp_path), docs_dir=None)
    section = text.split("### Full LRGB protocol")[1].split("## 5.")[0]
    assert "Not run yet" in section
    assert "An earlier recipe (no weight decay and no average of the weights" in section
    assert "fake-mpnn-s4 train.weight_decay=0.0 train.ema_decay=null" in section
    assert "0.6000" not in text.split("## Targets")[1]


@pytest.mark.parametrize("protocol, metric", [(PEPTIDES, "ap"), (MOLHIV, "rocauc")])
def test_a_candidate_file_once_shipped_reads_as_the_protocol_file(tmp_path, protocol, metric):
    # The candidate's rows moved into the protocol's file; their stored driver calls
    # name the candidate's file, which no longer exists.
    stem = protocol.stem
    moved = dict(row("brl", 1, 0.63, metric, protocol.epochs),
                 driver="python experiments/graph_property.py --models brl "
                        f"--json benchmarks/results/{stem}-wdema.json")
    (tmp_path / f"{stem}.json").write_text(json.dumps({"rows": [moved]}))
    section = render(load_results(tmp_path), docs_dir=None).split(f"### {protocol.title}")[1]
    assert f"--json benchmarks/results/{stem}.json" in section
    assert "-wdema" not in section


def test_molhiv_shows_the_recipe_before_weight_decay_below_the_table(tmp_path):
    # Weight decay 0.1 with the weight average shipped on molhiv too: the rows before it
    # are an earlier recipe whose commands restore weight decay 1e-5 without the average.
    old = [row(m, s, 0.76) for m in ("brl", "mpnn") for s in range(4)]
    (tmp_path / "ogbg-molhiv-e100-wd1e5.json").write_text(json.dumps({"rows": old}))
    (tmp_path / "ogbg-molhiv-e100.json").write_text(
        json.dumps({"rows": [row("brl", s, 0.79) for s in range(4)]}))
    text = render(load_results(tmp_path), docs_dir=None)
    section = text.split("### Full OGB protocol")[1].split("## 4.")[0]
    assert "An earlier recipe (AdamW weight decay 1e-5 and no average of the weights" in section
    assert "fake-mpnn-s3 train.weight_decay=1e-5 train.ema_decay=null" in section
    # each model's mean over its seeds stands beside them, to be read against the table's
    assert "MPNN twin s0 0.7600 (ep 40), s1" in section
    assert "s3 0.7600 (ep 43) (mean 0.7600 ± 0.0000); " in section.split("An earlier recipe")[1]
    # the table and the verdict are the new rows' alone: the twin has not run under them
    assert "Not run yet: MPNN twin." in section
    targets = text.split("## Targets")[1]
    assert "partial: brl 4, mpnn 0 of 10 seeds; ROC-AUC brl 0.7900" in targets
    assert "0.7600" not in targets


def test_a_model_the_targets_name_without_rows_gets_its_command():
    # After a recipe change BRL's rows may land before the twin runs under it.
    text, verdict = protocol_section(PEPTIDES, {"rows": [row("brl", s, 0.62, "ap", 60)
                                                         for s in (1, 2, 3, 4)]})
    assert "Not run yet: MPNN twin.\n\n    python experiments/graph_property.py" in text
    assert text.count("--models mpnn") == 1 and "--models brl\n" not in text
    assert verdict == ("partial", "partial: mpnn 0 of 4 seeds; AP brl 0.6200 ± 0.0000 (n=4)")
    full = {"rows": [row(m, s, 0.62, "ap", 60) for m in ("brl", "mpnn") for s in range(4)]}
    assert "Not run yet" not in protocol_section(PEPTIDES, full)[0]


_RECIPES = [(p, r) for p in (MOLHIV, PEPTIDES) for r in (*p.earlier, *p.candidates, *p.probes)]


@pytest.mark.parametrize("protocol, recipe", _RECIPES,
                         ids=[f"{p.stem}:{r.stem}" for p, r in _RECIPES])
def test_recipe_overrides_load_under_todays_config(protocol, recipe):
    # A printed earlier, candidate or probe command must run: every override names a real key
    # and value.
    config = load_config(protocol.config, recipe.overrides)
    for override in recipe.overrides:
        key, value = override.split("=", 1)
        section, name = key.split(".")
        assert config[section][name] == parse_value(value)
    if isinstance(recipe, Earlier):
        # every earlier recipe ran without the weight average, and with weight decay 0
        # (Peptides-func) or 1e-5 (molhiv)
        decay = 0.0 if protocol is PEPTIDES else 1e-5
        assert config["train"]["weight_decay"] == decay and config["train"]["ema_decay"] is None
    if isinstance(recipe, (Candidate, Probe)):
        # a candidate the config has taken over is stale: it must move to its protocol file;
        # a probe the config has taken over is no longer one
        assert config != load_config(protocol.config)
    # and its rows are read at all
    assert recipe.stem in FILES


def test_the_valid_column_is_its_own_spread_and_a_dash_when_a_row_lacks_it():
    rows = [row("brl", s, 0.78) for s in range(4)] + [row("mpnn", s, 0.77) for s in range(4)]
    for r, valid in zip(rows, (0.80, 0.82, 0.84, 0.86)):  # BRL: the test values do not vary
        r["valid"] = valid
    text, _ = protocol_section(MOLHIV, {"rows": rows})
    assert "| 0.7800 ± 0.0000 | 0.8300 ± 0.0258 | 4 |" in text
    del rows[5]["valid"]  # one twin row written without it: no mean over three seeds
    text, _ = protocol_section(MOLHIV, {"rows": rows})
    assert "| 0.7700 ± 0.0000 | — | 4 |" in text
    cand = {"rows": [dict(rows[5], command="python train.py fake-mpnn-s1")]}
    p = replace(MOLHIV, candidates=(Candidate("hiv-cand", "dropout 0", ("model.dropout=0.0",)),))
    text, _ = protocol_section(p, {"rows": rows}, {"hiv-cand": cand})
    assert "MPNN twin s1 0.7700 (ep 41) (valid —, 1 of 10 seeds so far)" in text


def test_a_probe_not_taken_over_is_shown_with_its_rule_and_never_counted():
    # A probe that left a row stays on the record, with why it went no further.
    attn = "model.attn_dropout=0.5"
    p = replace(MOLHIV, earlier=(), candidates=(), probes_note="", probes=(
        Probe("ogbg-molhiv-e100-p1", "attention dropout 0.5", (attn,), "Its valid fell short"),))
    shipped = [row("brl", s, 0.78) for s in range(4)] + [row("mpnn", s, 0.80) for s in range(4)]
    probe = [row("brl", 0, 0.7869)]
    probe[0]["valid"] = 0.8204
    text, verdict = protocol_section(p, {"rows": shipped}, {"ogbg-molhiv-e100-p1": {"rows": probe}})
    mine = text.split("A probe not taken over")[1]
    assert mine.startswith(" (attention dropout 0.5), `benchmarks/results/ogbg-molhiv-e100-p1.json`")
    assert "not counted above: BRL s0 0.7869 (ep 40) (valid 0.8204). Its valid fell short." in mine
    commands = [line.split() for line in mine.splitlines() if line.startswith("    ")]
    assert [c[-2:] for c in commands] == [["fake-brl-s0", attn]]
    # the table and the verdict are the shipped rows' alone
    assert "0.7869" not in text.split("A probe not taken over")[0]
    assert verdict == ("partial", "partial: brl 4, mpnn 4 of 10 seeds; ROC-AUC brl 0.7800 ± "
                                  "0.0000 (n=4); mpnn 0.8000 ± 0.0000 (n=4)")
    for data in (None, {"rows": []}):
        assert "probe" not in protocol_section(p, {"rows": shipped},
                                               {"ogbg-molhiv-e100-p1": data})[0]
    # a probe that ran more than one seed shows its test mean beside the valid that decided
    probe = [dict(row("brl", s, t), valid=v) for s, t, v in ((0, 0.78, 0.82), (1, 0.80, 0.83))]
    text, _ = protocol_section(p, {"rows": shipped}, {"ogbg-molhiv-e100-p1": {"rows": probe}})
    assert ("BRL s0 0.7800 (ep 40), s1 0.8000 (ep 41) (mean 0.7900 ± 0.0141, valid "
            "0.8250 ± 0.0071). Its valid fell short." in text)


def test_molhiv_probes_are_read_from_their_files(tmp_path):
    (tmp_path / "ogbg-molhiv-e100.json").write_text(
        json.dumps({"rows": [row("brl", s, 0.78) for s in range(4)]}))
    (tmp_path / "ogbg-molhiv-e100-c72.json").write_text(
        json.dumps({"rows": [row("brl", 0, 0.7922)]}))
    (tmp_path / "ogbg-molhiv-e100-attn05.json").write_text(
        json.dumps({"rows": [row("brl", 0, 0.7869)]}))
    (tmp_path / "ogbg-molhiv-e100-drop02.json").write_text(
        json.dumps({"rows": [row("brl", 0, 0.7844)]}))
    (tmp_path / "ogbg-molhiv-e100-wd1e5.json").write_text(
        json.dumps({"rows": [row("brl", 0, 0.7841)]}))
    (tmp_path / "ogbg-molhiv-e100-rtok.json").write_text(
        json.dumps({"rows": [dict(row("brl", 0, 0.7931), valid=0.8301)]}))
    (tmp_path / "ogbg-molhiv-e100-k16.json").write_text(
        json.dumps({"rows": [dict(row("brl", 0, 0.7897), valid=0.8288)]}))
    section = render(load_results(tmp_path), docs_dir=None).split("### Full OGB protocol")[1]
    assert ("A probe not taken over (72 channels (465,985 parameters) instead of the config's 64"
            in section)
    assert ("Seeds 1-3 did not run: seed 0's best valid, 0.819301, did not reach the shipped BRL "
            "seed 0's 0.820577") in section
    assert "fake-brl-s0 model.channels=72" in section
    # the dropout probe ran all four seeds and its rule is what stopped it
    assert ("A probe not taken over (dropout 0.2 instead of the config's 0.05, BRL only)"
            in section)
    assert ("All four seeds ran, and BRL's mean best valid over them, 0.819942, is not above "
            "the shipped seeds 0-3's 0.827189") in section
    # the token readout passed the gate and its rule 2 stopped it: its row is shown with
    # its valid, which decided, and its command carries its override
    assert ("A probe not taken over (a head that also reads the mean of the last "
            "layer's tokens") in section
    assert "BRL s0 0.7931 (ep 40) (valid 0.8301)" in section
    assert "fake-brl-s0 model.readout_tokens=true" in section
    # sixteen tokens passed the gate too, and its rule 2 stopped it as well
    assert ("A probe not taken over (sixteen tokens instead of the config's eight"
            in section)
    assert "BRL s0 0.7897 (ep 40) (valid 0.8288)" in section
    assert "fake-brl-s0 model.num_tokens=16" in section
    # the count of probes comes first, then the probes newest first, and the earlier recipes
    assert "A candidate recipe" not in section
    order = [section.index(text) for text in (
        "Seven probes have run against the shipped recipe", "A probe not taken over (sixteen",
        "A probe not taken over (a head", "A probe not taken over (dropout 0.2",
        "A probe not taken over (72 channels", "A probe not taken over (attention dropout",
        "An earlier recipe")]
    assert order == sorted(order)
    for figure in ("0.7869", "0.7931", "0.7897"):  # none is in the table or the verdict
        assert figure not in section.split("Seven probes")[0]


def test_molhiv_probe_outcomes_quote_the_committed_rows():
    # The outcomes are written by hand; each figure they quote must be the committed rows'.
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"

    def brl_valid(stem, seeds, more=False):
        rows = [r for r in json.loads((results / f"{stem}.json").read_text())["rows"]
                if r["model"] == "brl"]
        found = sorted(r["seed"] for r in rows)
        assert len(set(found)) == len(found)  # each seed once
        assert (found[:len(seeds)] if more else found) == seeds
        return {r["seed"]: r["valid"] for r in rows if r["seed"] in seeds}

    # the probes were set against the shipped seeds 0-3; seeds 4-9 came later
    shipped = brl_valid("ogbg-molhiv-e100", [0, 1, 2, 3], more=True)
    outcomes = {p.stem: p.outcome for p in MOLHIV.probes}
    bar = sum(shipped.values()) / 4
    # dropout 0.2, the token readout and sixteen tokens ran four seeds; rule 2 shipped none
    for stem in ("ogbg-molhiv-e100-drop02", "ogbg-molhiv-e100-rtok", "ogbg-molhiv-e100-k16"):
        mean = sum(brl_valid(stem, [0, 1, 2, 3]).values()) / 4
        assert mean <= bar
        assert f"{mean:.6f}" in outcomes[stem] and f"{bar:.6f}" in outcomes[stem]
    # the token readout's and sixteen tokens' seeds 0 had passed the gate
    for stem in ("ogbg-molhiv-e100-rtok", "ogbg-molhiv-e100-k16"):
        (seed0,) = brl_valid(stem, [0], more=True).values()
        assert seed0 >= shipped[0] and f"{seed0:.6f}" in outcomes[stem]
    for stem in ("ogbg-molhiv-e100-c72", "ogbg-molhiv-e100-attn05"):
        (seed0,) = brl_valid(stem, [0]).values()
        assert seed0 < shipped[0]  # the gate it missed
        assert f"{seed0:.6f}" in outcomes[stem] and f"{shipped[0]:.6f}" in outcomes[stem]
    # a candidate is one whose seed 0 reached that gate, and its rule 2 is the probes' bar
    for c in MOLHIV.candidates:
        (seed0,) = brl_valid(c.stem, [0], more=True).values()
        assert seed0 >= shipped[0]
        assert f"{bar:.6f}" in c.what


def test_the_figures_over_the_first_seeds_stay_shown_once_more_seeds_run():
    # molhiv took OGB's ten seeds after reporting four: each model's first four stay on
    # the record beside the table, and decide nothing.
    assert MOLHIV.interim_seeds == 4 and PEPTIDES.interim_seeds is None
    for bad in (0, 10, 12):  # an interim count must be fewer seeds than the protocol's
        with pytest.raises(ValueError, match="interim_seeds"):
            replace(MOLHIV, interim_seeds=bad)
    rows = ([row("brl", s, 0.78 + s / 100) for s in range(6)]
            + [row("mpnn", s, 0.80) for s in (0, 1, 2, 3)])
    text, verdict = protocol_section(MOLHIV, {"rows": rows})
    assert ("Over each model's first 4 seeds, the figures reported while the protocol took 4 "
            "seeds, kept for the record and not a verdict: BRL 0.7950 ± 0.0129 (valid "
            "0.8050 ± 0.0129, seeds 0, 1, 2, 3); MPNN twin 0.8000 ± 0.0000 (valid 0.8100 ± "
            "0.0000, seeds 0, 1, 2, 3).") in text
    assert verdict[1].startswith("partial: brl 6, mpnn 4 of 10 seeds; ROC-AUC brl 0.8050")
    # the first seeds in order, whichever they are; nothing while a model has fewer
    late = [dict(r, seed=r["seed"] + 3) for r in rows if r["model"] == "mpnn"]
    text, _ = protocol_section(MOLHIV, {"rows": list(reversed(rows[:6] + late))})
    assert "MPNN twin 0.8000 ± 0.0000 (valid 0.8100 ± 0.0000, seeds 3, 4, 5, 6)" in text
    assert "BRL 0.7950 ± 0.0129 (valid 0.8050 ± 0.0129, seeds 0, 1, 2, 3)" in text  # rows reversed
    for fewer in (rows[:6] + rows[6:9], rows[:3] + rows[6:]):
        assert "first 4 seeds" not in protocol_section(MOLHIV, {"rows": fewer})[0]
    assert "kept for the record" not in protocol_section(PEPTIDES, {"rows": [
        row(m, s, 0.6, "ap", 60) for m in ("brl", "mpnn") for s in range(6)]})[0]
