"""Sections 3 and 4: graph-property benchmarks (ogbg-molhiv, Peptides-func), BRL
against its widened twins at matched parameter counts (``experiments/graph_property.py``
rows)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from brl_graph.labels import MPNN
from brl_graph.results.common import NOT_RUN, Verdict, fmt, mean_std, table

Stats = Dict[str, Tuple[float, float, int]]  # model -> (mean, sample std, seeds)


GP_MODELS = (("brl", "BRL"), (MPNN, "MPNN twin (K=0, widened)"),
             ("full", "GPSConv multihead (widened)"))
# Published anchors quoted beside the graph-property tables (full budgets, not run here).
MOLHIV_ANCHORS = (("GPS", 0.7880), ("GIN-virtual", 0.7707), ("CPU GINE", 0.7921),
                  ("Graph ViT", 0.7997))
PEPTIDES_ANCHORS = (("GPS", 0.6535), ("Exphormer", 0.6527), ("tuned GCN", 0.6860),
                    ("Graph ViT", 0.6942))


def seed_stats(rows: Sequence[Mapping[str, Any]]) -> Stats:
    """``{model: (mean, sample std, seeds)}`` of the test metric, models in table order."""
    stats: Stats = {}
    for model, _ in GP_MODELS:
        tests = [r["test"] for r in rows if r["model"] == model and r.get("test") is not None]
        if tests:
            stats[model] = (*mean_std(tests), len(tests))
    return stats


def _model_line(name: str, rs: Sequence[Mapping[str, Any]], stat: Tuple[float, float, int]
                ) -> List[str]:
    mean, std, n = stat
    spe = [r["seconds_per_epoch"] for r in rs if r.get("seconds_per_epoch")]
    mem = [r["peak_memory_mb"] for r in rs if r.get("peak_memory_mb")]
    return [name, f"{mean:.4f} ± {std:.4f} (n={n}: " + ", ".join(f"{r['test']:.4f}" for r in rs) + ")",
            fmt(mean_std([r["valid"] for r in rs])[0], 4), fmt(rs[0].get("channels")),
            fmt(rs[0].get("num_params")), fmt(sum(spe) / len(spe), 1) if spe else "—",
            fmt(max(mem)) if mem else "—"]


def graph_property_section(data: Optional[Mapping[str, Any]], number: int, title: str,
                           config: str, anchors: Sequence[Tuple[str, float]]
                           ) -> Tuple[str, Stats, str]:
    """A table of ``experiments/graph_property.py`` rows: one line per model with the
    metric's mean ± sample std over seeds, seconds per epoch and peak memory.
    Returns (markdown, :func:`seed_stats`, the metric name)."""
    head = f"## {number}. {title}\n\n"
    stem = Path(config).stem
    cmd = (f"python experiments/graph_property.py --config {config} --root ../shared/datasets "
           f"--epochs E --json benchmarks/results/{stem}.json")
    rows = list((data or {}).get("rows", []))
    anchor_text = ("Published anchors at the full budget (not run here): "
                   + ", ".join(f"{n} {v:.4f}" for n, v in anchors) + ".\n")
    if not rows:
        return (head + f"**{NOT_RUN}** (no `benchmarks/results/{stem}.json`). Command:\n\n"
                f"    {cmd}\n\n" + anchor_text, {}, "")
    cfg = (data or {}).get("config", {})
    drivers = [d for d in dict.fromkeys(r.get("driver") or cfg.get("command") for r in rows) if d]
    metric = rows[0].get("metric_name", "metric")
    stats = seed_stats(rows)
    out = [_model_line(name, [r for r in rows if r["model"] == model and r.get("test") is not None],
                       stats[model]) if model in stats else [name, NOT_RUN] + ["—"] * 5
           for model, name in GP_MODELS]
    epochs = sorted({r.get("epochs") for r in rows})
    budget = cfg.get("budget") or rows[0].get("budget", [])
    text = (head + f"Test {metric} at the best validation epoch, mean ± sample std over seeds. "
            f"Every model and seed had the same budget: `{config}` with `{' '.join(budget)}` "
            f"({', '.join(str(e) for e in epochs)} epoch(s); the config's own schedule is "
            "longer, so these are short-budget results, not the full protocol). Widths are "
            "chosen so the parameter counts match BRL's (closest multiple of the head count). "
            "Peak memory: the training process's maximum resident set (dataset included), "
            "largest over seeds." + _made_at_text(cfg) + "\n\n"
            + table(["model", f"test {metric}", f"valid {metric}", "width", "parameters",
                     "s / epoch", "peak MB"], out) + "\n\n" + anchor_text
            + (("\nDriver calls (each matches the widths, runs its models and seeds, and adds "
                "their rows to the JSON):\n\n" + "".join(f"    {c}\n" for c in drivers))
               if drivers else "")
            + "\nCommands (one per model and seed):\n\n"
            + "\n".join(f"    {r['command']}" for r in rows) + "\n")
    return text, stats, metric


def _made_at_text(cfg: Mapping[str, Any]) -> str:
    """Where rows made by older code say so: the JSON's ``config.made_at``
    (``{"commit", "date", "changed"}``) names the checkout that reproduces them."""
    made = cfg.get("made_at")
    if not made:
        return ""
    return (f" These rows were made with the code and configs of commit `{made['commit']}` "
            f"({made['date']}); {made['changed']}, so the per-row `train.py` commands below "
            f"reproduce them from a checkout of that commit (`git checkout {made['commit']}`), "
            "not from today's tree.")


def molhiv_verdict(stats: Stats) -> Verdict:
    """The short-budget bar: BRL >= 0.80 test ROC-AUC."""
    if "brl" not in stats:
        return ("untested", "ogbg-molhiv not run")
    b = stats["brl"]
    ev = "; ".join(f"{m} {v[0]:.4f} ± {v[1]:.4f} (n={v[2]})" for m, v in stats.items())
    return ("holds" if b[0] >= 0.80 else "fails", "test ROC-AUC " + ev)


def peptides_verdict(stats: Stats) -> Verdict:
    """BRL above both twins by more than its own std over seeds."""
    if "brl" not in stats or len(stats) < 3:
        return ("untested", "Peptides-func: not every model was run")
    b = stats["brl"][0]
    ev = "test AP " + "; ".join(f"{m} {v[0]:.4f} ± {v[1]:.4f} (n={v[2]})"
                                for m, v in stats.items())
    above = all(b > v[0] for m, v in stats.items() if m != "brl")
    # A gap smaller than BRL's own spread over seeds is not evidence either way.
    clear = all(b - stats["brl"][1] > v[0] for m, v in stats.items() if m != "brl")
    if above and not clear:
        ev += " (BRL's mean is highest, but by less than its std over seeds)"
    return ("holds" if clear else ("partial" if above else "fails"), ev)
