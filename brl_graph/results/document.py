"""The whole document: the summary of the claims, the sections in order, and the
closing table of targets. Each section computes its numbers and verdicts from the
JSON rows; this module only orders them and writes the plots."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from brl_graph.results.causal import causal_part
from brl_graph.results.common import GENERATOR, MACHINE, Verdict, table
from brl_graph.results.gpu import gpu_section
from brl_graph.results.graph_property import (MOLHIV_ANCHORS, PEPTIDES_ANCHORS,
                                              graph_property_section, molhiv_verdict,
                                              peptides_verdict)
from brl_graph.results.long_range import long_range_section
from brl_graph.results.protocol import (MOLHIV, PEPTIDES, protocol_parts, protocol_stats,
                                        target_line)
from brl_graph.results.oversquashing import oversquashing_section, plot_sensitivity, task_level
from brl_graph.results.scaling import plot_scaling, scaling_section, step_time_section


#: The targets of the closing table, in order: (verdict key, what was aimed at).
TARGETS = (
    ("linear", "Scaling to 1M nodes for `mpnn` and `brl`, full 4-layer model at 1M"),
    ("global", "RingTransfer: BRL >= 0.95 where the twin stays at 0.2"),
    ("express", "Tree-NeighborsMatch: BRL 1.0 at every depth"),
    ("tree-published", "Tree-NeighborsMatch, published protocol: BRL >= 0.99 train accuracy "
                       "at r = 2-5; the MPNN twin within 0.1 of published GIN at r = 2-4"),
    ("molhiv", "ogbg-molhiv: BRL >= 0.80 ROC-AUC"),
    (MOLHIV.stem, target_line(MOLHIV)),
    ("peptides", "Peptides-func: BRL above both twins under one budget"),
    (PEPTIDES.stem, target_line(PEPTIDES)),
    ("causal", "Causal recall: BRL clearly above window-only, near full attention, linear time"),
    ("blocks", "Causal recall, BRL blocks: >= 0.95 at 2k and >= 0.90 at 8k with >= 8 pairs, "
               "fwd+bwd <= 0.5x full attention at 8k"),
    ("squash", "Over-squashing: lower R_tot with tokens; trained sensitivity beyond L hops"),
)
RESULT = {"holds": "hit", "fails": "missed",
          "partial": "partly hit, partly missed or untested (see figures)", "untested": "untested"}


def targets_section(verdicts: Mapping[str, Verdict]) -> str:
    """The closing note: each target of the issues, hit or missed, with its figure."""
    rows = [[text, f"**{RESULT[verdicts[key][0]]}**", verdicts[key][1]] for key, text in TARGETS]
    return "## Targets\n\n" + table(["target", "result", "measured"], rows) + "\n"


def summary_section(verdicts: Mapping[str, Verdict]) -> str:
    names = [
        ("linear", "1. Linear cost"),
        ("global", "2. Global information flow without quadratic cost (RingTransfer)"),
        ("squash", "3. Relief of over-squashing"),
        ("express", "4. Expressiveness of full attention (Tree-NeighborsMatch)"),
        ("causal", "5. Valid causal masking, accuracy near full attention at lower cost"),
    ]
    rows = [[label, f"**{verdicts[key][0]}**", verdicts[key][1]] for key, label in names]
    return ("## Summary of the five claims\n\n"
            f"Status is computed by `{GENERATOR}` from the JSON files "
            "(holds / partial / fails / untested); the evidence column quotes the measured figures.\n\n"
            + table(["claim", "status", "evidence"], rows) + "\n")


def render(results: Mapping[str, Any], docs_dir: Optional[Path] = None) -> str:
    """The Markdown of RESULTS.md from :func:`~brl_graph.results.load_results`'s output;
    plots go to ``docs_dir`` (``None``: no plots)."""
    scaling_plot = sens_plot = None
    if docs_dir is not None and results.get("scaling"):
        scaling_plot = Path(docs_dir) / "scaling.png"
        plot_scaling(results["scaling"], scaling_plot)
    osq = results.get("oversquashing")
    if docs_dir is not None and osq and any(r["dataset"] == "peptides-func" for r in osq["rows"]):
        sens_plot = Path(docs_dir) / "sensitivity.png"
        plot_sensitivity(osq, sens_plot)
    s_text, s_verdict = scaling_section(results.get("scaling"), scaling_plot)
    lr_text, ring_verdict, tree_verdict, published_verdict = long_range_section(
        results.get("long_range"), results.get("reference_tree_gin"), docs_dir)
    c_text, c_verdict, blocks_verdict = causal_part(results)
    h_text, h_stats, _ = graph_property_section(
        results.get("ogbg-molhiv"), 3, "ogbg-molhiv (OGB Evaluator, ROC-AUC)",
        "configs/ogbg-molhiv.yaml", MOLHIV_ANCHORS)
    p_text, p_stats, _ = graph_property_section(
        results.get("peptides-func"), 4, "Peptides-func (LRGB, AP)",
        "configs/peptides-func.yaml", PEPTIDES_ANCHORS)
    protocols = protocol_parts(results)
    h_text += "\n" + protocols[MOLHIV.stem][0]
    p_text += "\n" + protocols[PEPTIDES.stem][0]
    o_text, o_verdict = oversquashing_section(
        osq, sens_plot, task_level(p_stats, protocol_stats(results.get(PEPTIDES.stem)),
                                   [(e, protocol_stats(results.get(e.stem)))
                                    for e in PEPTIDES.earlier]))
    # the CPU's step-time rows and the GPU's (benchmarks/device_check.sh), one table
    steps = (results.get("step_time") or []) + (results.get("step_time_gpu") or [])
    g_text, g_summary = gpu_section(results.get("gpu_check"), results.get("scaling_gpu"),
                                    results.get("causal_recall_gpu"))
    if g_summary:
        s_verdict = (s_verdict[0], s_verdict[1] + "; " + g_summary + " (section 7)")
    verdicts = {"linear": s_verdict, "global": ring_verdict, "squash": o_verdict,
                "express": tree_verdict, "tree-published": published_verdict,
                "causal": c_verdict, "blocks": blocks_verdict,
                "molhiv": molhiv_verdict(h_stats), "peptides": peptides_verdict(p_stats),
                **{stem: verdict for stem, (_, verdict) in protocols.items()}}
    return "\n".join([
        "# Results",
        "",
        f"Generated by `python {GENERATOR}` from `benchmarks/results/*.json`; "
        "do not edit by hand. Stored commands of the scripts that moved from `benchmarks/` to "
        "`experiments/` are shown under their current path; `$BRL_RUNS` stands for the run-folder "
        "root the runs used (`export BRL_RUNS=~/.cache/brl_graph/runs`, or any folder outside the "
        "work tree), and results files are named by their path in this repository.",
        "",
        f"Machine: sections 1-6 ran on {MACHINE}; section 7 on one NVIDIA H200 GPU. "
        "Within each table every model has the same training budget "
        "(data, epochs, batch size, optimiser, width, depth); only the global branch differs. "
        "Budgets are small (CPU, one working session), so accuracies are those budgets' "
        "results, not converged ones.",
        "",
        summary_section(verdicts),
        s_text, step_time_section(steps), lr_text, h_text, p_text, c_text,
        o_text, g_text,
        targets_section(verdicts),
    ])
