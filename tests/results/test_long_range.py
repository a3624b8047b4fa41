"""Claim 4's verdict reads both Tree-NeighborsMatch tables."""
from brl_graph.labels import BRL, FULL
from brl_graph.results.long_range import cells, published_tree_section, tree_verdict


def _grid(values, model=BRL):
    return {(r, model): {"metric": v} for r, v in values.items()}


def test_a_depth_counts_as_fitted_when_either_budget_fits_it():
    short = {**_grid({2: 1.0, 3: 0.13}), **_grid({2: 1.0, 3: 1.0}, FULL)}
    status, ev = tree_verdict(short, [2, 3], plateau=False)
    assert status == "partial"
    assert ev == "short budget: r=2: BRL 1.00 vs full 1.00; r=3: BRL 0.13 vs full 1.00"
    status, ev = tree_verdict(short, [2, 3], False, published=_grid({3: 1.0}))
    assert status == "holds"
    assert ev.endswith("; published protocol: r=3: BRL 1.00")


def test_published_rows_alone_give_a_verdict_and_unrun_depths_are_ignored():
    status, ev = tree_verdict({}, [2, 3, 4], False, published=_grid({2: 1.0, 4: 0.5}))
    assert status == "partial"
    assert ev == "published protocol: r=2: BRL 1.00, r=4: BRL 0.50"
    assert tree_verdict({}, [2, 3], False) == ("untested", "no Tree-NeighborsMatch rows")
    assert tree_verdict(_grid({2: 0.5}), [2], False, _grid({2: 0.9}))[0] == "fails"


def test_published_depths_beyond_the_short_grid_and_unfinished_runs():
    short = _grid({2: 1.0})
    # r = 5 ran only under the published protocol: it still counts
    status, ev = tree_verdict(short, [2], False, published=_grid({5: 0.4}))
    assert status == "partial" and ev.endswith("published protocol: r=5: BRL 0.40")
    # a published run still going says nothing yet, seed by seed
    data = {"rows": [
        {"task": "tree-published", "size": 5, "model": BRL, "seed": 0, "metric": 0.4,
         "finished": False, "command": "c"},
        {"task": "tree-published", "size": 4, "model": BRL, "seed": 0, "metric": 1.0,
         "finished": True, "command": "c"},
        {"task": "tree-published", "size": 4, "model": BRL, "seed": 1, "metric": 0.2,
         "finished": False, "command": "c"}]}
    done = cells(data, "tree-published", finished_only=True)
    assert set(done) == {(4, BRL)} and done[(4, BRL)]["values"] == [1.0]
    assert cells(data, "tree-published")[(4, BRL)]["nseeds"] == 2  # the table shows both
    assert tree_verdict(short, [2], False, published=done) == (
        "holds", "short budget: r=2: BRL 1.00 vs full —; published protocol: r=4: BRL 1.00")
    assert published_tree_section(data)[1][1].startswith("BRL r=4: 1.000")
    # the plateau note belongs to the short budget, and is absent without short rows
    _, ev = tree_verdict({}, [2], True, published=_grid({2: 1.0}))
    assert ev == "published protocol: r=2: BRL 1.00"
    _, ev = tree_verdict(short, [2], True)
    assert "plateau schedule" in ev


def test_variant_rows_get_their_own_table_and_cells_name_the_test_accuracy():
    from brl_graph.labels import MPNN
    row = {"task": "tree-published", "size": 4, "model": MPNN, "seed": 0, "metric": 1.0,
           "test": 0.15, "passes": 300, "seconds": 3600.0, "stopped": "target",
           "finished": True, "passes_per_epoch": 100, "num_params": 171600, "command": "plain"}
    narrow = dict(row, settings="model.channels=32", metric=0.8, test=0.12, num_params=44848,
                  stopped="patience", command="narrow")
    data = {"rows": [row, narrow]}
    # the variant is not the twin of the main table, and does not average into it
    cell = cells(data, "tree-published")[(4, MPNN)]
    assert cell["values"] == [1.0] and cell["test"] == 0.15
    text, (_, ev) = published_tree_section(data)
    assert "twin r=4: 1.000 (test 0.150) (GIN 0.77)" in ev  # the plain twin only, its test beside
    main, _, variants = text.partition("#### One setting changed")
    assert "1.000, test 0.150 (300 passes, 60.0 min, stopped: target)" in main
    assert "narrow" not in main and "0.800" not in main
    assert "| 4 | MPNN twin (K=0) | `model.channels=32` | 0 | 44,848 | 0.800, test 0.120 (" in variants
    assert variants.count("    narrow") == 1
    # a legacy label reads as its model, rows sort in the main table's model order, and
    # a command two rows share is listed once
    brl = dict(narrow, model=BRL, command="narrow")
    text = published_tree_section({"rows": [dict(narrow, model="twin"), brl]})[0]
    variants = text.partition("#### One setting changed")[2]
    assert variants.index("| BRL (K=8) |") < variants.index("| MPNN twin (K=0) |")
    assert variants.count("    narrow") == 1
    # seeds average their test accuracy too; one without it leaves the mean out
    two = {"rows": [row, dict(row, seed=1, metric=0.5, test=0.35)]}
    assert cells(two, "tree-published")[(4, MPNN)]["test"] == 0.25
    assert cells({"rows": [row, dict(row, seed=1, test=None)]},
                 "tree-published")[(4, MPNN)]["test"] is None
    assert "#### One setting changed" not in published_tree_section({"rows": [row]})[0]


def test_a_cell_of_several_seeds_gives_each_seeds_budget():
    row = {"task": "tree-published", "size": 5, "model": BRL, "seed": 0, "metric": 1.0,
           "test": 1.0, "passes": 50, "seconds": 1848.0, "stopped": "target",
           "finished": True, "passes_per_epoch": 10, "command": "c0"}
    data = {"rows": [row, dict(row, seed=1, passes=60, seconds=2402.0, command="c1")]}
    main = published_tree_section(data)[0]
    assert ("1.000 = mean of 1.000, 1.000, test 1.000 (50, 60 passes, 30.8, 40.0 min, "
            "stopped: target, logged every 10 passes)") in main
    # seeds that ended for different reasons name each, in seed order, whatever the
    # order of the rows; a seed without a wall time shows none
    data["rows"][1].update(stopped=None, finished=False, seconds=None)
    data["rows"].reverse()
    assert ("(50, 60 passes, 30.8, — min, stopped: target, unfinished, logged every 10 passes)"
            in published_tree_section(data)[0])


def test_a_depth_fitted_by_memorising_does_not_count_as_shown():
    published = {(5, BRL): {"metric": 1.0, "test": 1.0}, (6, BRL): {"metric": 1.0, "test": 0.045}}
    status, ev = tree_verdict({}, [2], False, published=published)
    assert status == "partial"
    assert ev == "published protocol: r=5: BRL 1.00, r=6: BRL 1.00 (test 0.04: memorised)"
    # one memorised seed is enough, even where the seeds' mean test accuracy is high
    two = {(6, BRL): {"metric": 1.0, "test": 0.515, "values": [1.0, 1.0],
                      "seed_tests": [0.04, 0.99]}}
    assert tree_verdict({}, [2], False, two) == (
        "fails", "published protocol: r=6: BRL 1.00 (test 0.04: memorised)")
    # the short budget is read the same way; either budget's honest fit shows the depth
    short = {(2, BRL): {"metric": 1.0, "test": 0.375}}
    status, ev = tree_verdict(short, [2], False)
    assert status == "fails" and ev.startswith("short budget: r=2: BRL 1.00 (test 0.38: memorised)")
    assert tree_verdict(short, [2], False, {(2, BRL): {"metric": 1.0, "test": 0.5}})[0] == "holds"
    # a depth only memorised fails alone; without a test accuracy, train accuracy decides
    assert tree_verdict({}, [2], False, {(6, BRL): {"metric": 1.0, "test": 0.3}})[0] == "fails"
    assert tree_verdict({}, [2], False, {(6, BRL): {"metric": 1.0}})[0] == "holds"
    # the claim is about full attention: its cell at the same depth is quoted beside BRL's
    both = {(6, BRL): {"metric": 1.0, "test": 0.04}, (6, FULL): {"metric": 1.0, "test": 1.0},
            (5, BRL): {"metric": 1.0, "test": 1.0}, (5, FULL): {"metric": 1.0, "test": 0.2}}
    assert tree_verdict({}, [2], False, both)[1] == (
        "published protocol: r=5: BRL 1.00 vs full 1.00 (test 0.20: memorised), "
        "r=6: BRL 1.00 (test 0.04: memorised) vs full 1.00")


def test_the_rebuilt_published_gin_is_shown_beside_the_papers_figure():
    row = {"depth": 4, "seed": 0, "channels": 32, "log_passes": 20, "num_params": 13264,
           "train_max": 0.7812, "best_pass": 1800,
           "train_eval": 0.70, "test": 0.12, "passes": 2000, "minutes": 87.0,
           "stop": "max_passes", "command": "python benchmarks/reference_tree_gin.py --depth 4"}
    data = {"rows": [{"task": "tree-published", "size": 4, "model": BRL, "seed": 0,
                      "metric": 1.0, "test": 1.0, "passes": 40, "seconds": 600.0,
                      "stopped": "target", "finished": True, "command": "c"}]}
    alone = published_tree_section(data)[0]
    assert "rebuilt in plain PyG" not in alone
    text = published_tree_section(data, [row])[0]
    assert text.startswith(alone)
    assert ("| 4 | 0 | 32 | 13,264 | 0.781 (pass 1,800) | 0.700 | 0.120 | 2,000 passes, 87.0 min, "
            "logged every 20, stopped: max_passes | 0.77 |") in text
    assert "    python benchmarks/reference_tree_gin.py --depth 4" in text
    # the target's evidence quotes it beside the twin, without changing the status
    twin = {"task": "tree-published", "size": 4, "model": "mpnn", "seed": 0, "metric": 1.0,
            "test": 0.15, "passes": 240, "seconds": 60.0, "stopped": "target", "finished": True,
            "command": "t"}
    status, ev = published_tree_section({"rows": data["rows"] + [twin]}, [row])[1]
    assert status == "fails"
    assert ev.endswith("twin r=4: 1.000 (test 0.150) (GIN 0.77); GIN rebuilt on our trees r=4: "
                       "0.781 after 2,000 passes (test 0.120); not run: r = 2, 3, 5")
    # alone, without any tree-published row, it decides nothing
    from brl_graph.results.long_range import published_tree_verdict
    assert published_tree_verdict({}, [row]) == ("untested", "no tree-published rows")
    # a row off the published settings says which; a short run, its minutes; the patience
    other = dict(row, seed=1, channels=64, minutes=0.02, lr_halved_after=1020)
    status, ev = published_tree_section({"rows": data["rows"] + [twin]}, [row, other])[1]
    assert "r=4: 0.781 after 2,000 passes (test 0.120); GIN rebuilt on our trees r=4 (seed 1, " \
           "channels 64): 0.781" in ev
    text = published_tree_section(data, [other])[0]
    assert "2,000 passes, under 0.1 min, logged every 20, lr halved after 1,020 passes " \
           "without gain, stopped: max_passes" in text
    # it is shown even before any long_range.json row exists
    from brl_graph.results.long_range import long_range_section
    assert "| 4 | 0 | 32 | 13,264 | 0.781" in long_range_section(None, [row])[0]
