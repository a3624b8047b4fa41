"""Section 1 (scaling: forward + backward against graph size), the training-step
times on real batches, and the scaling plot."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from brl_graph.labels import BRL, FULL, MPNN, PERFORMER
from brl_graph.results.common import (NOT_RUN, Verdict, commands_block, fmt, grouped, pyplot,
                                      save_figure, slope, table)

#: The scaling benchmark's models, in column order.
SCALING_MODELS = (MPNN, BRL, FULL, PERFORMER)
SCALING_DEFAULT_COMMAND = (
    "python benchmarks/scaling.py --sizes 4096 32768 131072 "
    "--models mpnn brl full performer --json benchmarks/results/scaling.json "
    "--threads 1 --max-seconds 150")
MILLION = 1_000_000
SINGLE = (1, False)  # one layer, no activation checkpointing
Setting = Tuple[int, bool]


def setting_of(r: Mapping[str, Any]) -> Setting:
    """(layers, activation checkpointing) of a scaling row."""
    return int(r.get("layers", 1)), bool(r.get("checkpoint", False))


# ---------------------------------------------------------------- step time
def step_time_section(rows: Optional[List[Dict[str, Any]]]) -> str:
    """Training-step time on real small-graph batches (``benchmarks/step_time.py``)."""
    head = "### Training step on real batches: BRL against its twin and GPS\n"
    if not rows:
        return head + (f"\n{NOT_RUN}: `python benchmarks/step_time.py --json "
                   "benchmarks/results/step_time.json` (on a GPU: `--device cuda --json "
                   "benchmarks/results/step_time_gpu.json`)\n")
    out = [head, "One step = forward, loss, backward, clipping and the fused AdamW update, "
           "as `fit` runs it; the models run side by side in one process, so their ratios "
           "share the machine's load.", ""]
    body = []
    # rows written before the dropout, pre-norm and fold fields were timed without them;
    # before run_pre_norm, a row's own pre_norm was the run's (no GPS row had pre-norm)
    # and rows without a device ran on this repository's CPU
    rows = [{"dropout": 0.0, "attn_dropout": 0.0, "pre_norm": False, "fold": False,
             "device": "cpu", **r} for r in rows]
    rows = [{"run_pre_norm": r["pre_norm"], **r} for r in rows]
    # one group per run setting: each ratio is to the twin timed in the same run
    # and GPU rows by GPU: a ratio is to the twin timed on the same one
    rows = [{**r, "gpu": r.get("machine") if r["device"] != "cpu" else None} for r in rows]
    for (device, _, dataset, bs, p, pa, _, fold), group in grouped(
            rows, ("device", "gpu", "dataset", "batch_size", "dropout", "attn_dropout",
                   "run_pre_norm", "fold")).items():
        twin = next((r for r in group if r["model"] == MPNN), None)
        for r in group:
            ratio = r["ms_per_step"] / twin["ms_per_step"] if twin else None
            variant = ", ".join(v for v, on in (("pre-norm", r["pre_norm"]),
                                                ("folded", fold and r["model"] == BRL)) if on)
            threads = r.get("threads")
            if device == "cpu":
                on = "CPU" + (f", {threads} thread(s)" if threads else "")
            else:
                on = r.get("machine") or device
            body.append([on, dataset, str(bs), f"{fmt(p, 2)} / {fmt(pa, 2)}", r["model"],
                         variant or "-", f"{r['layers']} x {r['channels']}",
                         fmt(r["num_params"] / 1e3, 0) + "k", fmt(r["ms_per_step"], 1),
                         fmt(r["graphs_per_s"], 0), fmt(ratio, 2)])
    out.append(table(["on", "data", "batch", "dropout / attn", "model", "variant", "layers x ch",
                      "params", "ms / step", "graphs / s", f"x {MPNN}"], body))
    commands = sorted({r["command"] for r in rows})
    out += ["", "Commands: " + "; ".join(f"`{c}`" for c in commands), ""]
    return "\n".join(out)


# ---------------------------------------------------------------- scaling: numbers
@dataclass
class ScalingFigures:
    """The numbers section 1 quotes, computed from the rows."""
    models: List[str]
    exponents: Dict[str, Optional[float]]  # time ~ n^e, one layer, per model
    ratios: List[Tuple[int, float]]  # (nodes, BRL time / MPNN time), one layer
    same_peak: List[int]  # sizes where BRL and the MPNN peak within 2%
    missing: List[str]  # targets without a timing
    full_model: Optional[Mapping[str, Any]]  # the 4-layer BRL row at >= 1M nodes


def scaling_figures(rows: Sequence[Mapping[str, Any]]) -> ScalingFigures:
    by = {(r["model"], r["num_nodes"], setting_of(r)): r for r in rows}
    models = [m for m in SCALING_MODELS if any(r["model"] == m for r in rows)]
    exps = {}
    for m in models:
        pts = sorted((r["num_nodes"], r["fwd_bwd_ms"]) for r in rows
                     if r["model"] == m and setting_of(r) == SINGLE and r.get("fwd_bwd_ms"))
        exps[m] = slope([p[0] for p in pts], [p[1] for p in pts])
    ratios = []
    for n in sorted({r["num_nodes"] for r in rows if setting_of(r) == SINGLE}):
        b, loc = by.get((BRL, n, SINGLE)), by.get((MPNN, n, SINGLE))
        if b and loc and b.get("fwd_bwd_ms") and loc.get("fwd_bwd_ms"):
            ratios.append((n, b["fwd_bwd_ms"] / loc["fwd_bwd_ms"]))
    same_peak = [n for n in sorted({r["num_nodes"] for r in rows})
                 if (by.get((BRL, n, SINGLE)) or {}).get("peak_mem_mb")
                 and (by.get((MPNN, n, SINGLE)) or {}).get("peak_mem_mb")
                 and abs(by[(BRL, n, SINGLE)]["peak_mem_mb"]
                         / by[(MPNN, n, SINGLE)]["peak_mem_mb"] - 1) < 0.02]

    def big(m: str, layers: int) -> bool:
        return any(r["model"] == m and r["num_nodes"] >= MILLION and setting_of(r)[0] == layers
                   and r.get("fwd_bwd_ms") for r in rows)

    missing = [what for what, ok in (
        (f"`{MPNN}` at 1M nodes", big(MPNN, 1)), (f"`{BRL}` at 1M nodes", big(BRL, 1)),
        ("the full model (4 layers, 64 channels) at 1M nodes", big(BRL, 4))) if not ok]
    full = [r for r in rows if r["model"] == BRL and setting_of(r)[0] == 4
            and r["num_nodes"] >= MILLION and r.get("fwd_bwd_ms")]
    return ScalingFigures(models, exps, ratios, same_peak, missing, full[0] if full else None)


def scaling_verdict(rows: Sequence[Mapping[str, Any]], f: ScalingFigures) -> Verdict:
    """Linear cost holds when BRL's exponent stays within the MPNN's (at least 1.15)."""
    e = f.exponents.get(BRL)
    if e is None:
        return ("untested", "no BRL timings")
    # The MPNN twin is O(E) by construction, so its measured exponent is this
    # machine's (caches, allocator) and is the fair bar for "linear".
    loc = f.exponents.get(MPNN)
    bar = max(1.15, loc + 0.05) if loc is not None else 1.15
    status = "holds" if e <= bar else "fails"
    if f.missing and status == "holds":
        status = "partial"
    top = max(n for n, _ in f.ratios) if f.ratios else None
    gm = f.exponents.get(FULL)
    ev = (f"BRL time grows as n^{e:.2f} up to {fmt(max(r['num_nodes'] for r in rows))} nodes"
          + (f" (MPNN twin n^{loc:.2f}, GPS multihead n^{gm:.2f})" if gm and loc is not None
             else "")
          + (f"; BRL/MPNN {dict(f.ratios)[top]:.2f}x at {fmt(top)} nodes" if top else "")
          + ("; missing: " + ", ".join(f.missing) if f.missing else ""))
    if f.full_model:
        r = f.full_model
        ev += (f"; 4-layer BRL at {fmt(r['num_nodes'])} nodes: {r['fwd_bwd_ms'] / 1e3:.0f} s, "
               f"{r['peak_mem_mb'] / 1024:.1f} GB"
               + (" (activation checkpointing)" if r.get("checkpoint") else ""))
    return status, ev


# ---------------------------------------------------------------- scaling: prose
def _cell(r: Optional[Mapping[str, Any]]) -> str:
    if r is None:
        return "—"
    if r.get("skipped"):
        return f"skipped ({r['skipped']})"
    return f"{fmt(r.get('fwd_bwd_ms'))} ms / {fmt(r.get('peak_mem_mb'))} MB"


def _setting_table(rows: Sequence[Mapping[str, Any]], setting: Setting, models: Sequence[str]) -> str:
    by = {(r["model"], r["num_nodes"]): r for r in rows if setting_of(r) == setting}
    sizes = sorted({n for _, n in by})
    cols = [m for m in models if any(mm == m for mm, _ in by)]
    layers, ckpt = setting
    label = (f"**{layers} layer(s)**" + (" with activation checkpointing (each layer "
                                        "recomputed in backward)" if ckpt else ""))
    return (f"{label}, 64 channels, ~8 edges per node; cells: median fwd+bwd time / "
            "peak memory (RSS high-water delta on CPU).\n\n"
            + table(["nodes"] + cols, [[fmt(n)] + [_cell(by.get((m, n))) for m in cols]
                                       for n in sizes]))


def _scaling_reading(f: ScalingFigures) -> str:
    exp_line = ", ".join(f"`{m}` {fmt(e, 2)}" for m, e in f.exponents.items())
    text = f"\n\nEmpirical exponent of time vs nodes (log-log least squares, 1 layer): {exp_line}.\n\n"
    if f.ratios:
        text += ("BRL / MPNN time ratio, 1 layer: "
                 + ", ".join(f"{fmt(n)} nodes {x:.2f}x" for n, x in f.ratios) + ".\n\n")
    if f.same_peak:
        text += (f"At {', '.join(fmt(n) for n in f.same_peak)} nodes `{BRL}` and `{MPNN}` peak "
                 "within 2% of each other: the peak is set by the local GINE branch's edge "
                 "messages (about 3·E·C floats in backward), and BRL's O(N·K) token buffers are "
                 "not alive at that moment.\n\n")
    return text


def scaling_section(rows: Optional[List[Dict[str, Any]]], plot: Optional[Path]) -> Tuple[str, Verdict]:
    head = "## 1. Scaling: forward + backward\n\n"
    if not rows:
        return (head + f"**{NOT_RUN}** (no `benchmarks/results/scaling.json`). Command:\n\n"
                f"    {SCALING_DEFAULT_COMMAND}\n", ("untested", "scaling.json absent"))
    f = scaling_figures(rows)
    cmds = sorted({r.get("command", SCALING_DEFAULT_COMMAND) for r in rows})
    text = (head + "\n\n".join(_setting_table(rows, s, f.models)
                               for s in sorted({setting_of(r) for r in rows}))
            + _scaling_reading(f)
            + "Commands (each row ran in a fresh subprocess; every row of the JSON names its own):\n\n"
            + commands_block(cmds) + "\n")
    if plot is not None:
        text += "\n![scaling](scaling.png)\n"
    if f.missing:
        text += "\n**Missing:** " + "; ".join(f.missing) + ".\n"
    return text, scaling_verdict(rows, f)


def plot_scaling(rows: List[Dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80)
    for m in SCALING_MODELS:
        pts = sorted((r["num_nodes"], r.get("fwd_bwd_ms"), r.get("peak_mem_mb")) for r in rows
                     if r["model"] == m and r.get("layers", 1) == 1 and r.get("fwd_bwd_ms"))
        if not pts:
            continue
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=m)
        mem = [(p[0], p[2]) for p in pts if p[2]]
        if mem:
            axes[1].plot([p[0] for p in mem], [p[1] for p in mem], "o-", label=m)
    for ax, ylabel in zip(axes, ("fwd+bwd time (ms)", "peak memory (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
