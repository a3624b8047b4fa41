"""The over-squashing claim's verdict and where its task-level figures come from."""
import pytest

from brl_graph.labels import BRL, MPNN
from brl_graph.results.oversquashing import TaskLevel, oversquashing_verdict, task_level
from brl_graph.results.protocol import Earlier, ModelStats, SeedRun

SHORT = {BRL: (0.2054, 0.0141, 2), MPNN: (0.1951, 0.0039, 2)}
ROWS = [{"dataset": "peptides-func", "ratio": {"median": 85.0},
         "models": {BRL: {"by_hop": {"1": 1.0, "9": 1e-3}, "layers": 4},
                    MPNN: {"by_hop": {"1": 1.0, "9": 0.0}, "layers": 4}}}]


def _stats(model, tests):
    return ModelStats(model, per_seed=[SeedRun(s, t, 50) for s, t in enumerate(tests)], epochs=[60])


@pytest.mark.parametrize("brl_seeds, twin_seeds, protocol_used", [
    ([0.59, 0.60], [0.57, 0.56], True),
    ([0.59], [0.57, 0.56], False),  # one BRL seed has no spread yet
    ([0.59, 0.60], [], False),
])
def test_task_level_prefers_the_full_protocol_once_both_have_two_seeds(
        brl_seeds, twin_seeds, protocol_used):
    protocol = {BRL: _stats(BRL, brl_seeds)}
    if twin_seeds:
        protocol[MPNN] = _stats(MPNN, twin_seeds)
    level = task_level(SHORT, protocol)
    assert not level.settled  # two protocol seeds are provisional; fewer leave table 4 unsettled
    if protocol_used:
        assert level.source == "full protocol, 60 epochs; provisional: 2 of 4 seeds"
        assert level.figures[BRL][0] == pytest.approx(0.595) and level.figures[BRL][2] == 2
        assert level.figures[MPNN][0] == pytest.approx(0.565)
    else:
        # begun protocol runs keep the 3-epoch figures from settling the claim,
        # and the source names the protocol's figures so far
        assert level.figures == SHORT
        assert level.source == ("table 4; the full protocol has begun: BRL "
                                f"{sum(brl_seeds) / len(brl_seeds):.4f} ({len(brl_seeds)} of 4 "
                                "seeds), twin " + ("0.5650 (2 of 4 seeds)" if twin_seeds
                                                   else "none yet"))
        assert oversquashing_verdict(ROWS, level)[0] == "partial"


def test_short_figures_settle_only_with_the_protocols_seed_count_and_no_protocol_runs():
    assert task_level(SHORT, {}) == TaskLevel(SHORT, "table 4", False)  # two seeds each
    four = {BRL: (0.30, 0.01, 4), MPNN: (0.20, 0.01, 4)}
    assert task_level(four, {}).settled
    assert oversquashing_verdict(ROWS, task_level(four, {}))[0] == "holds"
    one_seed = {BRL: (0.30, 0.0, 1), MPNN: (0.20, 0.0, 4)}
    level = task_level(one_seed, {})
    assert not level.settled
    # one seed has no spread: any gap would look clear, so the claim stays partial
    assert oversquashing_verdict(ROWS, level)[0] == "partial"
    assert not task_level(None, {}).settled


def test_protocol_figures_settle_with_the_full_seed_count():
    protocol = {BRL: _stats(BRL, [0.60, 0.61, 0.60, 0.61]),
                MPNN: _stats(MPNN, [0.57, 0.56, 0.57, 0.58])}
    level = task_level(SHORT, protocol)
    assert level.settled and level.source == "full protocol, 60 epochs"
    assert level.figures[MPNN][2] == 4
    assert oversquashing_verdict(ROWS, level)[0] == "holds"
    # the same figures from two seeds each cap the claim at partial
    assert oversquashing_verdict(ROWS, level._replace(settled=False))[0] == "partial"


def test_verdict_names_its_source_and_needs_a_gap_beyond_the_larger_spread():
    clear = {BRL: (0.60, 0.005, 4), MPNN: (0.57, 0.01, 4)}
    status, evidence = oversquashing_verdict(ROWS, TaskLevel(clear, "full protocol, 60 epochs",
                                                             True))
    assert status == "holds"
    assert "Peptides-func test AP (full protocol, 60 epochs): BRL 0.6000 (n=4)" in evidence
    # above by more than BRL's std but not the twin's: as the protocol's target, not clear
    noisy_twin = {BRL: (0.60, 0.005, 4), MPNN: (0.57, 0.04, 4)}
    status, evidence = oversquashing_verdict(ROWS, TaskLevel(noisy_twin, "table 4", True))
    assert status == "partial" and "smaller than the larger std" in evidence
    status, evidence = oversquashing_verdict(ROWS, TaskLevel(SHORT, "table 4", True))
    assert status == "partial" and "(table 4)" in evidence
    status, evidence = oversquashing_verdict(ROWS, TaskLevel(None, "full protocol, 60 epochs",
                                                             True))
    assert status == "partial" and "(Peptides-func AP, full protocol, 60 epochs) not run" in evidence


def test_an_earlier_recipe_with_every_seed_stands_in_until_the_current_one_has_two():
    old = {BRL: _stats(BRL, [0.60, 0.61, 0.60, 0.61]), MPNN: _stats(MPNN, [0.57, 0.56, 0.57, 0.58])}
    older = {BRL: _stats(BRL, [0.55] * 4), MPNN: _stats(MPNN, [0.50] * 4)}
    partial_old = {BRL: _stats(BRL, [0.70] * 4), MPNN: _stats(MPNN, [0.50] * 3)}
    current = {BRL: _stats(BRL, [0.62, 0.62, 0.63, 0.62])}  # the twin has not run under it
    earlier = [(Earlier("pep-partial", "a recipe with a seed missing"), partial_old),
               (Earlier("pep-old", "no weight decay"), old),
               (Earlier("pep-older", "post-norm"), older)]
    level = task_level(SHORT, current, earlier)
    # the newest earlier recipe with four seeds per model: not the one with a seed
    # missing, nor an older complete one
    assert level.settled and level.figures[BRL][0] == pytest.approx(0.605)
    assert level.figures[MPNN][0] == pytest.approx(0.57)
    assert level.source == ("full protocol, 60 epochs, under an earlier recipe (no weight decay; "
                            "`benchmarks/results/pep-old.json`) until the twin has two seeds "
                            "under the config's own; so far BRL 0.6225 (4 of 4 seeds), twin none yet")
    assert oversquashing_verdict(ROWS, level)[0] == "holds"
    # neither model under the current recipe yet
    assert "until BRL and the twin have two seeds" in task_level(SHORT, {}, earlier).source
    # two seeds of each model under the current recipe take over, provisionally
    current[MPNN] = _stats(MPNN, [0.55, 0.56])
    level = task_level(SHORT, current, earlier)
    assert not level.settled and level.source.endswith("provisional: 2 of 4 seeds")
    # no complete earlier recipe: table 4, unsettled, as before
    del current[MPNN]
    level = task_level(SHORT, current, earlier[:1])
    assert level.figures == SHORT and not level.settled
    assert level.source.startswith("table 4; the full protocol has begun: BRL 0.6225 (4 of")
