"""Section 6: over-squashing, effective resistance with and without the tokens and
Jacobian sensitivity by hop (``experiments/oversquashing.py`` rows), and its plot."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from brl_graph.labels import BRL, MPNN
from brl_graph.results.common import (NOT_RUN, Verdict, clear_gap, commands_block, fmt, pyplot,
                                      save_figure, table)
from brl_graph.results.protocol import PEPTIDES, Earlier, ModelStats

#: Per model: (mean, std, seeds) of Peptides-func test AP.
PeptidesStats = Mapping[str, Tuple[float, float, int]]


def hop_means(m: Mapping[str, Any]) -> Tuple[Optional[float], Optional[float]]:
    """Mean sensitivity over hops 1..L (inside the receptive field) and beyond L."""
    hops = {int(k): v for k, v in m["by_hop"].items() if v is not None}
    inside = [v for h, v in hops.items() if 1 <= h <= m["layers"]]
    beyond = [v for h, v in hops.items() if h > m["layers"]]
    return (sum(inside) / len(inside) if inside else None,
            sum(beyond) / len(beyond) if beyond else None)


class TaskLevel(NamedTuple):
    """The Peptides-func figures claim 6 cites, where they come from, and whether
    they are settled enough to let the claim hold."""
    figures: Optional[PeptidesStats]
    source: str
    settled: bool


def _seeds(figures: Optional[PeptidesStats]) -> int:
    """The fewer seeds of BRL and the twin in ``figures`` (0: one is missing)."""
    return min(_count(figures, m) for m in (BRL, MPNN))


def _count(figures: Optional[PeptidesStats], model: str) -> int:
    """``model``'s seeds in ``figures`` (0 where it has none)."""
    return figures[model][2] if figures and model in figures else 0


def _figures(protocol: Mapping[str, ModelStats]) -> PeptidesStats:
    """BRL's and the twin's ``(mean, std, seeds)`` in ``protocol``, where they have rows."""
    return {m: (*protocol[m].mean_std, protocol[m].n) for m in (BRL, MPNN) if m in protocol}


def _name(model: str) -> str:
    return "BRL" if model == BRL else "twin"


def _so_far(found: PeptidesStats) -> str:
    """``BRL 0.6215 (4 of 4 seeds), twin none yet``: each model under the protocol."""
    return ", ".join(f"{_name(m)} {found[m][0]:.4f} ({found[m][2]} of {PEPTIDES.seeds} seeds)"
                     if m in found else f"{_name(m)} none yet" for m in (BRL, MPNN))


def task_level(short: Optional[PeptidesStats], protocol: Mapping[str, ModelStats],
               earlier: Sequence[Tuple[Earlier, Mapping[str, ModelStats]]] = ()) -> TaskLevel:
    """The task-level figures for the claim.

    The full protocol's, once BRL and the twin each have two seeds there (a spread
    needs two). Until then, the newest earlier recipe of the protocol
    (``earlier``: each with its stats, newest first) in which both have the full
    seed count: one budget for both, so still a fair comparison, and the source
    says which recipe it is. Failing both, section 4's short runs, with the
    protocol's figures so far named in the source. The longest budget is the one
    a reader compares with the leaderboards, so a 3-epoch figure never settles
    the claim once protocol runs exist. Any table settles it only with the
    protocol's seed count per model: one seed has no spread, and two seeds' std
    is too rough to call a gap clear of it."""
    found = _figures(protocol)
    full = PEPTIDES.seeds
    if _seeds(found) >= 2:
        settled = _seeds(found) >= full
        source = f"full protocol, {PEPTIDES.epochs} epochs"
        if not settled:
            source += f"; provisional: {_seeds(found)} of {full} seeds"
        return TaskLevel(found, source, settled)
    for recipe, stats in earlier:
        before = _figures(stats)
        if _seeds(before) >= full:
            short_of_two = [("the twin" if m == MPNN else "BRL") for m in (BRL, MPNN)
                            if _count(found, m) < 2]
            waiting = " and ".join(short_of_two) + (" have" if len(short_of_two) > 1 else " has")
            return TaskLevel(before, f"full protocol, {PEPTIDES.epochs} epochs, under an earlier "
                                     f"recipe ({recipe.what}; `benchmarks/results/{recipe.stem}"
                                     f".json`) until {waiting} two seeds under the "
                                     f"config's own; so far {_so_far(found)}", True)
    if found:
        return TaskLevel(short, f"table 4; the full protocol has begun: {_so_far(found)}",
                         False)
    return TaskLevel(short, "table 4", _seeds(short) >= full)


def oversquashing_verdict(rows: Sequence[Mapping[str, Any]],
                          level: TaskLevel = TaskLevel(None, "table 4", False)) -> Verdict:
    """Holds when the tokens lower R_tot on every dataset, trained BRL has more
    sensitivity beyond L hops than the twin on Peptides-func, and BRL's test AP
    (``level.source``: section 4's table, the full protocol, or an earlier recipe
    of it with every seed) beats the twin's
    by more than the larger of their stds over seeds, as the protocol's own
    target asks; figures not yet ``level.settled`` make it partial at best."""
    peptides, source = level.figures, level.source
    ratios = [(r["dataset"], (r.get("ratio") or {}).get("median")) for r in rows]
    ev = "; ".join(f"{d}: R_tot / R_tot(tokens) median {fmt(x, 1)}x" for d, x in ratios)
    far = [(label, hop_means(m)[1]) for r in rows if r["dataset"] == "peptides-func"
           for label, m in r.get("models", {}).items()]
    brl_far = [f for label, f in far if label.startswith(BRL) and f is not None]
    twin_far = [f for label, f in far if label.startswith(MPNN) and f is not None]
    if brl_far and twin_far:
        ev += f"; peptides-func sensitivity beyond L hops: BRL {fmt(brl_far[0])}, twin {fmt(twin_far[0])}"
    ok = all(x is not None and x > 1 for _, x in ratios)
    far_ok = bool(brl_far and twin_far and brl_far[0] > twin_far[0])
    if not (peptides and BRL in peptides and MPNN in peptides):
        return ("partial" if ok else "fails",
                ev + f"; task-level effect (Peptides-func AP, {source}) not run")
    b, t = peptides[BRL][0], peptides[MPNN][0]
    ev += (f"; task level, Peptides-func test AP ({source}): BRL {b:.4f} (n={peptides[BRL][2]}) "
           f"vs twin {t:.4f} (n={peptides[MPNN][2]})")
    clear = clear_gap(peptides[BRL][:2], peptides[MPNN][:2])
    if b > t and not clear:
        ev += " (a gap smaller than the larger std over seeds)"
    return ("holds" if ok and far_ok and clear and level.settled else ("partial" if ok else "fails"),
            ev)


def _resistance_line(r: Mapping[str, Any]) -> List[str]:
    return [r["dataset"], fmt(r["num_graphs"]), fmt(r["mean_nodes"], 1), fmt(r.get("num_tokens")),
            fmt(r["r_tot"].get("median")), fmt(r["r_tot_tokens"].get("median")),
            fmt((r.get("ratio") or {}).get("median"), 1), fmt((r.get("r_avg") or {}).get("median")),
            fmt((r.get("r_avg_tokens") or {}).get("median"))]


def _sensitivity_line(dataset: str, label: str, m: Mapping[str, Any]) -> List[str]:
    near, far = hop_means(m)
    hop1 = next((v for k, v in m["by_hop"].items() if int(k) == 1 and v is not None), None)
    return [dataset, label, "trained" if m["source"] != "random-init" else "random init",
            fmt(m["layers"]), fmt(m["num_tokens"]), fmt(hop1), fmt(near), fmt(far)]


def oversquashing_section(data: Optional[Mapping[str, Any]], plot: Optional[Path],
                          level: TaskLevel = TaskLevel(None, "table 4", False)
                          ) -> Tuple[str, Verdict]:
    """Section 6's text (resistance, sensitivity by hop) and the claim's verdict."""
    text = "## 6. Over-squashing\n\n"
    cmd = ("python experiments/oversquashing.py --root ../shared/datasets --cache-dir /tmp/brl_cache")
    if data is None or not data.get("rows"):
        return (text + f"**{NOT_RUN}** (no `benchmarks/results/oversquashing.json`). "
                f"Command:\n\n    {cmd}\n", ("untested", "oversquashing.json absent"))
    rows = data["rows"]
    text += ("Total effective resistance R_tot of each graph alone and with the K tokens added "
             "as virtual nodes joined to every node (medians over the graphs measured; "
             "`report.json` holds means and ranges).\n\n"
             + table(["dataset", "graphs", "mean nodes", "K", "R_tot median",
                      "R_tot with tokens", "ratio (median)", "avg pair R", "avg pair R, tokens"],
                     [_resistance_line(r) for r in rows]) + "\n\n")
    sens = [_sensitivity_line(r["dataset"], label, m) for r in rows
            for label, m in r.get("models", {}).items()]
    text += ("Jacobian sensitivity ||dh_t/dx_u|| by hop distance (mean over targets): at hop 1, "
             "averaged over hops 1..L (inside the L-layer receptive field) and beyond L hops.\n\n"
             + table(["dataset", "model", "weights", "layers", "K", "hop 1", "hops 1..L",
                      "hops > L"], sens) + "\n\n")
    for r in rows:
        if r.get("trained"):
            text += (f"Trained weights for {r['dataset']}: the checkpoints named in the command "
                     f"below (budget: {r.get('training_budget', 'see command')}).\n\n")
    if plot is not None:
        text += ("![sensitivity by hop](sensitivity.png)\n\n(Log scale: hops where a model's "
                 "sensitivity is exactly 0, the twin beyond its L layers, are not drawn.)\n\n")
    text += "Commands:\n\n" + commands_block([r["command"] for r in rows]) + "\n"
    return text, oversquashing_verdict(rows, level)


def plot_sensitivity(data: Mapping[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=80)
    for r in data["rows"]:
        if r["dataset"] != "peptides-func":
            continue
        for label, m in r["models"].items():
            hops = sorted((int(k), v) for k, v in m["by_hop"].items() if v)
            kind = "trained" if m["source"] != "random-init" else "random init"
            ax.plot([h for h, _ in hops], [v for _, v in hops], label=f"{label} ({kind})")
    ax.set_yscale("log")
    ax.set_xlabel("hop distance")
    ax.set_ylabel("||dh_t/dx_u||")
    ax.set_title("peptides-func", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
