"""The over-squashing claim's verdict and where its task-level figures come from."""
import pytest

from brl_graph.labels import BRL, MPNN
from brl_graph.results.oversquashing import oversquashing_verdict, task_level
from brl_graph.results.protocol import ModelStats

SHORT = {BRL: (0.2054, 0.0141, 2), MPNN: (0.1951, 0.0039, 2)}
ROWS = [{"dataset": "peptides-func", "ratio": {"median": 85.0},
         "models": {BRL: {"by_hop": {"1": 1.0, "9": 1e-3}, "layers": 4},
                    MPNN: {"by_hop": {"1": 1.0, "9": 0.0}, "layers": 4}}}]


def _stats(model, tests):
    return ModelStats(model, per_seed=[(s, t, 50) for s, t in enumerate(tests)], epochs=[60])


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
    figures, source, settled = task_level(SHORT, protocol)
    if protocol_used:
        assert source == "full protocol, 60 epochs; provisional: 2 of 4 seeds"
        assert not settled
        assert figures[BRL][0] == pytest.approx(0.595) and figures[BRL][2] == 2
        assert figures[MPNN][0] == pytest.approx(0.565)
    else:
        assert (figures, source, settled) == (SHORT, "table 4", True)


def test_protocol_figures_settle_with_the_full_seed_count():
    protocol = {BRL: _stats(BRL, [0.60, 0.61, 0.60, 0.61]),
                MPNN: _stats(MPNN, [0.57, 0.56, 0.57, 0.58])}
    figures, source, settled = task_level(SHORT, protocol)
    assert settled and source == "full protocol, 60 epochs" and figures[MPNN][2] == 4
    status, _ = oversquashing_verdict(ROWS, figures, source, settled)
    assert status == "holds"
    # the same figures from two seeds each cap the claim at partial
    assert oversquashing_verdict(ROWS, figures, source, settled=False)[0] == "partial"


def test_verdict_names_its_source_and_needs_a_gap_beyond_brl_spread():
    clear = {BRL: (0.60, 0.005, 4), MPNN: (0.57, 0.01, 4)}
    status, evidence = oversquashing_verdict(ROWS, clear, "full protocol, 60 epochs")
    assert status == "holds"
    assert "Peptides-func test AP (full protocol, 60 epochs): BRL 0.6000 (n=4)" in evidence
    status, evidence = oversquashing_verdict(ROWS, SHORT)
    assert status == "partial" and "(table 4)" in evidence
    assert "smaller than BRL's std" in evidence
    status, evidence = oversquashing_verdict(ROWS, None, "full protocol, 60 epochs")
    assert status == "partial" and "(Peptides-func AP, full protocol, 60 epochs) not run" in evidence
