"""Section 2: RingTransfer and Tree-NeighborsMatch, BRL against the MPNN twin and
full attention (``experiments/long_range.py`` rows), and the published GIN rebuilt
in plain PyG (``benchmarks/reference_tree_gin.py`` rows)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from brl_graph.labels import BRL, BRL_K1, FULL, MPNN, canonical_model
from brl_graph.results.common import (NOT_RUN, Verdict, commands_block, fmt, pyplot, save_figure,
                                      table)

LR_MODELS = ((BRL, "BRL"), (MPNN, "MPNN twin (K=0)"), (FULL, "GPSConv multihead"))
# The published-protocol table adds K = 1, the classic virtual node.
PUBLISHED_MODELS = ((BRL, "BRL (K=8)"), (BRL_K1, "BRL, K=1"), (MPNN, "MPNN twin (K=0)"),
                    (FULL, "GPSConv multihead"))
# Alon & Yahav (ICLR 2021), Tree-NeighborsMatch training accuracy, r = 2..6.
TREE_ANCHORS = {"GGNN": (1.0, 1.0, 1.0, 0.60, 0.38), "GIN": (1.0, 1.0, 0.77, 0.29, 0.20)}
RING_SIZES = (100, 200, 500, 1000)
TREE_SIZES = (2, 3, 4, 5, 6)
Cells = Dict[Tuple[int, str], Dict[str, Any]]  # (size, model) -> row, seeds averaged


def _rows(data: Optional[Mapping[str, Any]], task: str, variants: bool) -> List[Dict[str, Any]]:
    return [r for r in (data or {}).get("rows", [])
            if r.get("task") == task and bool(r.get("settings")) == variants]


def task_rows(data: Optional[Mapping[str, Any]], task: str) -> List[Dict[str, Any]]:
    """The rows of ``task`` that its main tables show: a row that changed a setting
    (``settings``, from ``long_range.py --set``) is not the model of its column."""
    return _rows(data, task, variants=False)


def variant_rows(data: Optional[Mapping[str, Any]], task: str) -> List[Dict[str, Any]]:
    """The rows of ``task`` with a setting changed (``settings``)."""
    return _rows(data, task, variants=True)


def budget_of(command: str) -> str:
    """The budget overrides of a row's ``train.py`` command."""
    keep = ("train.epochs", "train.batch_size", "train.scheduler", "data.options.num_train",
            "data.options.num_valid", "data.options.num_test", "model.layers", "model.num_layers",
            "train.bf16")
    return " ".join(p for p in command.split() if p.split("=")[0] in keep)


def cells(data: Mapping[str, Any], task: str, finished_only: bool = False) -> Cells:
    """One cell per (size, model): the mean metric over the seeds that ran, their
    values and count; a cell where nothing ran keeps its (skipped) row.

    ``finished_only`` leaves out runs still going (``finished`` false), seed by
    seed: a verdict must not count a metric that can still change."""
    rows = task_rows(data, task)
    if finished_only:
        rows = [r for r in rows if r.get("finished", True)]
    if task == "tree":  # the paper's measure: how well the model fits the training set
        rows = [dict(r, metric=r["train_max"]) if r.get("train_max") is not None else r
                for r in rows]
    by: Dict[Tuple[int, str], List[Dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((int(r["size"]), r["model"]), []).append(r)
    merged: Cells = {}
    for key, rs in by.items():
        ran = sorted((r for r in rs if not r.get("skipped") and r.get("metric") is not None),
                     key=lambda r: r.get("seed", 0))
        if ran:
            tests = [r.get("test") for r in ran]
            merged[key] = dict(ran[0], metric=sum(r["metric"] for r in ran) / len(ran),
                               nseeds=len(ran), values=[r["metric"] for r in ran],
                               test=(None if None in tests else sum(tests) / len(tests)),
                               seed_passes=[r.get("passes") for r in ran],
                               seed_seconds=[r.get("seconds") for r in ran],
                               seed_why=[_why(r) for r in ran],
                               seed_tests=tests,
                               bf16_seeds=sum(trained_in_bf16(r) for r in ran),
                               head_layers=sorted({head_layers_of(r) for r in ran}, key=str))
        else:
            merged[key] = rs[0]
    return merged


#: Test accuracy under which a fitted Tree-NeighborsMatch depth counts as memorised.
#: At r = 2 the test split holds 8 trees, so there one tree decides.
MEMORISED_BELOW = 0.5


def _why(r: Mapping[str, Any]) -> str:
    """Why a run ended: its stop rule, its budget, or not yet."""
    if r.get("stopped"):
        return "stopped: " + str(r["stopped"])
    return "budget spent" if r.get("finished") else "unfinished"


def memorised_test(cell: Optional[Mapping[str, Any]]) -> Optional[float]:
    """The lowest test accuracy of a seed that fitted the training trees
    (train >= 0.99) while its test accuracy stayed under :data:`MEMORISED_BELOW`,
    or ``None`` when no seed did (or none has a test accuracy)."""
    if not cell:
        return None
    values = cell.get("values") or [cell.get("metric")]
    tests = cell.get("seed_tests") or [cell.get("test")]
    hits = [t for v, t in zip(values, tests)
            if v is not None and v >= 0.99 and t is not None and t < MEMORISED_BELOW]
    return min(hits) if hits else None


def metric(grid: Cells, size: int, model: str) -> Optional[float]:
    return (grid.get((size, model)) or {}).get("metric")


def ring_verdict(ring: Cells, sizes: Sequence[int]) -> Verdict:
    """BRL >= 0.95 where the twin stays near chance (<= 0.3), at every size."""
    done = [(n, metric(ring, n, BRL), metric(ring, n, MPNN), metric(ring, n, FULL))
            for n in sizes if metric(ring, n, BRL) is not None]
    if not done:
        return ("untested", "no RingTransfer rows")
    hits = [n for n, b, t, _ in done if b >= 0.95 and (t is None or t <= 0.3)]
    ev = "; ".join(f"n={n}: BRL {b:.2f} vs twin {fmt(t, 2)} vs full attention {fmt(f, 2)}"
                   for n, b, t, f in done)
    untested = [n for n in RING_SIZES if n not in [d[0] for d in done]]
    if len(hits) == len(done):
        status = "holds" if not untested else "partial"
    else:
        status = "fails" if not hits else "partial"
    return (status, ev + (f"; n={untested} not run" if untested else ""))


def tree_verdict(tree: Cells, sizes: Sequence[int], plateau: bool,
                 published: Optional[Cells] = None) -> Verdict:
    """BRL fits the training set (>= 0.99) at every depth. A depth counts as fitted
    when either budget fits it without memorising (:func:`memorised_test`): our
    short one (``tree``, at ``sizes``) or the published protocol (``published``:
    the ``tree-published`` cells, at whatever depths they have; pass finished runs
    only, see :func:`cells`), whose budget is the paper's; the evidence names each."""
    theirs = {size: cell["metric"] for (size, model), cell in (published or {}).items()
              if model == BRL and cell.get("metric") is not None}
    ours = {r: metric(tree, r, BRL) for r in sizes if metric(tree, r, BRL) is not None}
    # Train accuracy is the paper's measure, but a model with capacity to spare can
    # reach 1.0 by memorising the training trees. Where the held-out trees say so
    # for any seed (test accuracy under MEMORISED_BELOW), that budget's fit does not
    # count for the depth.
    ours_memo = {r: memorised_test(tree.get((r, BRL))) for r in ours}
    theirs_memo = {r: memorised_test((published or {}).get((r, BRL))) for r in theirs}
    done = sorted(set(ours) | set(theirs))
    if not done:
        return ("untested", "no Tree-NeighborsMatch rows")
    def memo(r: int, found: Dict[int, Optional[float]]) -> str:
        return "" if found.get(r) is None else f" (test {found[r]:.2f}: memorised)"

    parts = []
    if ours:
        parts.append("short budget: " + "; ".join(
            f"r={r}: BRL {v:.2f}{memo(r, ours_memo)} vs full {fmt(metric(tree, r, FULL), 2)}"
            for r, v in sorted(ours.items()))
            + (" (some rows under a plateau schedule that starves every model; see table 2)"
               if plateau else ""))
    if theirs:
        parts.append("published protocol: " + ", ".join(
            f"r={r}: BRL {v:.2f}{memo(r, theirs_memo)}{_versus_full(published or {}, r)}"
            for r, v in sorted(theirs.items())))
    ok = [r for r in done
          if any(values.get(r) is not None and found.get(r) is None and values[r] >= 0.99
                 for found, values in ((ours_memo, ours), (theirs_memo, theirs)))]
    status = "holds" if len(ok) == len(done) else ("fails" if not ok else "partial")
    return (status, "; ".join(parts))


def _versus_full(published: Cells, r: int) -> str:
    """`` vs full 1.00`` (and its memorising) where full attention ran at depth ``r``
    under the published protocol; the claim is about full attention's expressiveness."""
    cell = published.get((r, FULL))
    if cell is None or cell.get("metric") is None:
        return ""
    test = memorised_test(cell)
    return f" vs full {cell['metric']:.2f}" + ("" if test is None else f" (test {test:.2f}: memorised)")


def _cell_text(r: Optional[Dict[str, Any]]) -> str:
    if r is None:
        return NOT_RUN
    if r.get("skipped"):
        return f"skipped: {r['skipped']}"
    text = fmt(r.get("metric"))
    if r.get("nseeds", 1) > 1:
        text += f" = mean of {r['nseeds']} seeds [" + ", ".join(fmt(v) for v in r["values"]) + "]"
    return text + f" ({fmt(r.get('seconds_per_epoch'), 1)} s/ep, {fmt(r.get('num_params'))} p)"


def grid_rows(grid: Cells, sizes: Sequence[int]) -> List[List[str]]:
    """Table lines: size, one cell per model, the row's budget."""
    out = []
    for size in sizes:
        line = [str(size)] + [_cell_text(grid.get((size, m))) for m, _ in LR_MODELS]
        budget = next((budget_of(grid[(size, m)]["command"]) for m, _ in LR_MODELS
                       if (size, m) in grid), "")
        out.append(line + [f"`{budget}`" if budget else "—"])
    return out


def _tree_reading(tree: Cells, sizes: Sequence[int]) -> str:
    gap = [r for r in sizes if metric(tree, r, BRL) is not None
           and metric(tree, r, FULL) is not None
           and metric(tree, r, FULL) >= 0.99 and metric(tree, r, BRL) < 0.5]
    if not gap:
        return ""
    text = ("**Reading.** Where full attention fits the task and BRL does not (r = "
            + ", ".join(str(r) for r in gap) + "), the difference is the route to the "
            "answer. Full attention matches the root's query against every leaf's key in "
            "one step. BRL must chain three steps: a token pools the root (its query), uses "
            "that state as its next compress query to pool the matching leaf, and the root "
            "reads the token back. No step gets a useful gradient until the others work, "
            "and under this budget BRL stays at chance. This is a measured failure of the "
            "claim at this budget, not a proof that the route cannot be learned.")
    twin_too = [r for r in gap if metric(tree, r, MPNN) is not None and metric(tree, r, MPNN) < 0.5
                and 2 <= r <= 6 and TREE_ANCHORS["GIN"][r - 2] >= 0.99]
    if twin_too:
        text += (" The MPNN twin stays at chance too at r = "
                 + ", ".join(str(r) for r in twin_too) + ", where the published GIN fits "
                 "the task: under this budget the GINE branch that BRL shares with the twin "
                 "is not learning either, so the failure is not the tokens' alone.")
    return text + "\n\n"


#: The budget override of a row trained under bf16 autocast (``long_range.py --bf16``).
BF16_OVERRIDE = "train.bf16=true"


def trained_in_bf16(row: Mapping[str, Any]) -> bool:
    """Whether a row's budget holds :data:`BF16_OVERRIDE`."""
    return BF16_OVERRIDE in (row.get("budget") or [])


def head_layers_of(row: Mapping[str, Any]) -> Optional[int]:
    """The prediction head's depth a row's budget sets (``model.head_layers=N``),
    or ``None`` when it took the config's."""
    for item in row.get("budget") or []:
        key, _, value = item.partition("=")
        if key == "model.head_layers":
            return int(value)
    return None


def _head_text(r: Mapping[str, Any]) -> str:
    """Names the head of a ``tree-published`` cell when it is not the config's one
    linear layer (the authors' readout): rows trained before the config took it
    ran with two layers, and their budget says so."""
    heads = sorted({1 if h is None else h for h in r.get("head_layers", [head_layers_of(r)])})
    if heads == [1]:
        return ""
    if len(heads) == 1:
        return f", {heads[0]}-layer head"
    return ", heads of " + " and ".join(map(str, heads)) + " layers across seeds"


def _published_cell(r: Optional[Dict[str, Any]]) -> str:
    if r is None:
        return NOT_RUN
    if r.get("skipped"):
        return f"skipped: {r['skipped']}"
    text = fmt(r.get("metric"), 3)
    if r.get("nseeds", 1) > 1:
        text += " = mean of " + ", ".join(fmt(v, 3) for v in r["values"])
    # Train accuracy alone cannot tell a model that routes the leaf's label to the
    # root from one that memorises the training trees; the held-out trees can.
    if r.get("test") is not None:
        text += f", test {fmt(r['test'], 3)}"
    # each seed's budget, in seed order, where several ran
    passes = ", ".join(fmt(p) for p in r.get("seed_passes") or [r.get("passes")])
    minutes = ", ".join(fmt(None if t is None else t / 60, 1)
                        for t in r.get("seed_seconds") or [r.get("seconds")])
    whys = r.get("seed_why") or [_why(r)]
    why = whys[0] if len(set(whys)) == 1 else ", ".join(whys)
    # A run logged more often than the protocol (long_range.py --tree-log-passes)
    # checks its stop rule more often too: say so where it happened.
    log = r.get("passes_per_epoch")
    protocol_log = 1000 if r.get("size") == 2 else 100
    often = f", logged every {fmt(log)} passes" if log and log != protocol_log else ""
    # The authors trained in float32; a bf16 cell (long_range.py --bf16) says so, and
    # how many of its seeds were bf16 when they differ.
    n, k = r.get("nseeds", 1), r.get("bf16_seeds", int(trained_in_bf16(r)))
    bf16 = "" if not k else (", bf16 autocast" if k == n else f", bf16 autocast in {k} of {n} seeds")
    # wall minutes on a GPU are not the CPU's: a row trained there names it
    on = f", on {r['machine']}" if r.get("device", "cpu") != "cpu" and r.get("machine") else ""
    return text + (f" ({passes} passes, {minutes} min{on}, {why}{often}{bf16}"
                   f"{_head_text(r)})")


def variant_section(rows: Sequence[Mapping[str, Any]]) -> str:
    """The published-protocol rows that changed one setting (``long_range.py --set``),
    one line each; empty when there are none."""
    if not rows:
        return ""
    order = [m for m, _ in PUBLISHED_MODELS]
    names = dict(PUBLISHED_MODELS)

    def place(r: Mapping[str, Any]) -> tuple:
        model = canonical_model(r["model"])
        return (r["size"], order.index(model) if model in order else len(order), model,
                r["settings"], r["seed"])

    lines = [[str(r["size"]), names.get(canonical_model(r["model"]), r["model"]),
              f"`{r['settings']}`", str(r["seed"]), fmt(r.get("num_params")), _published_cell(r)]
             for r in sorted(rows, key=place)]
    return ("\n#### One setting changed\n\nThe same protocol with config overrides "
            "(`experiments/long_range.py --set`), one row per seed, each cell read as above.\n\n"
            + table(["r", "model", "setting", "seed", "parameters",
                     "best train accuracy, test accuracy"], lines)
            + "\n\nCommands:\n\n" + commands_block(sorted({r["command"] for r in rows})) + "\n")


def published_tree_verdict(tree: Cells,
                           reference: Optional[Sequence[Mapping[str, Any]]] = None) -> Verdict:
    """Issue 12: BRL >= 0.99 at r = 2-5, and the twin within 0.1 of published GIN at r = 2-4.

    The rebuilt GIN's rows (``reference``) are quoted beside the twin's: they say
    whether a miss is the twin's or the task's, but do not change the status."""
    brl = {r: metric(tree, r, BRL) for r in (2, 3, 4, 5)}
    twin = {r: metric(tree, r, MPNN) for r in (2, 3, 4)}
    # The verdict reads train accuracy, as the issue words it; the test accuracy beside
    # it says how much of that fit is the task learned rather than trees memorised.
    def test(r: int, model: str) -> str:
        value = tree.get((r, model), {}).get("test")
        return "" if value is None else f" (test {fmt(value, 3)})"

    parts = [f"BRL r={r}: {fmt(v, 3)}{test(r, BRL)}" for r, v in brl.items() if v is not None]
    parts += [f"twin r={r}: {fmt(v, 3)}{test(r, MPNN)} (GIN {TREE_ANCHORS['GIN'][r - 2]:.2f})"
              for r, v in twin.items() if v is not None]
    if not parts:
        return ("untested", "no tree-published rows")
    parts += [f"GIN rebuilt on our trees r={row['depth']}{_unless_default(row)}: "
              f"{fmt(row['train_max'], 3)} after {fmt(row.get('passes'))} passes "
              f"(test {fmt(row.get('test'), 3)})"
              for row in sorted(reference or [], key=_reference_order)]
    fails = ([r for r, v in brl.items() if v is not None and v < 0.99]
             + [r for r, v in twin.items()
                if v is not None and abs(v - TREE_ANCHORS["GIN"][r - 2]) > 0.1])
    missing = [r for r, v in {**brl, **twin}.items() if v is None]
    status = "fails" if fails else ("partial" if missing else "holds")
    note = f"; not run: r = {', '.join(str(r) for r in sorted(set(missing)))}" if missing else ""
    return (status, "; ".join(parts) + note)


#: The rebuilt GIN's settings as published; a row under others names them.
REFERENCE_DEFAULTS = {"seed": 0, "data_seed": 0, "channels": 32, "lr": 1e-3}


def _unless_default(row: Mapping[str, Any]) -> str:
    """`` (seed 1, channels 64)`` for a rebuilt-GIN row off the published settings."""
    off = [f"{k} {fmt(row[k])}" for k, v in REFERENCE_DEFAULTS.items()
           if row.get(k, v) != v]
    return f" ({', '.join(off)})" if off else ""


def _reference_order(row: Mapping[str, Any]) -> tuple:
    return (row["depth"], _unless_default(row))


def _patience(row: Mapping[str, Any]) -> str:
    """When the run's lr is halved, where the row says (older rows do not)."""
    after = row.get("lr_halved_after")
    return "" if after is None else f", lr halved after {fmt(after)} passes without gain"


def _minutes(value: Optional[float]) -> str:
    """Wall minutes as the rows round them (0.1), a run shorter than that said so."""
    return "under 0.1 min" if value is not None and value < 0.05 else f"{fmt(value, 1)} min"


def reference_gin_section(rows: Optional[Sequence[Mapping[str, Any]]]) -> str:
    """The published GIN rebuilt in plain PyG (``benchmarks/reference_tree_gin.py``)
    on our trees, beside the paper's figure; empty without rows."""
    if not rows:
        return ""
    lines = [[str(r["depth"]), str(r["seed"]), fmt(r.get("channels")), fmt(r.get("num_params")),
              f"{fmt(r['train_max'], 3)} (pass {fmt(r.get('best_pass'))})",
              fmt(r.get("train_eval"), 3), fmt(r.get("test"), 3),
              f"{fmt(r.get('passes'))} passes, {_minutes(r.get('minutes'))}, "
              f"logged every {fmt(r.get('log_passes'))}{_patience(r)}, stopped: {r.get('stop')}",
              fmt(TREE_ANCHORS["GIN"][r["depth"] - 2], 2) if 2 <= r["depth"] <= 6 else "—"]
             for r in sorted(rows, key=lambda r: (r["depth"], r["seed"]))]
    return ("#### The published GIN, rebuilt in plain PyG\n\n"
            "Alon & Yahav's GIN as their paper and code describe it (width 32 unless the table "
            "says otherwise, GIN MLPs with "
            "batch norm, residual and layer norm per layer, self-loops, a linear readout at the "
            "root), trained on our trees by their loop: train accuracy counted during each "
            "logged epoch's training steps, as theirs is, and the final weights' accuracy in "
            "evaluation mode beside it. It tells our data and loop apart from our twin: where "
            "it lands near the paper's figure and the twin does not, the difference is the "
            "twin's.\n\n"
            + table(["r", "seed", "width", "parameters", "train (during training)",
                     "train (final weights)", "test (final weights)", "budget",
                     "GIN (published)"], lines)
            + "\n\nCommands:\n\n" + commands_block(sorted({r["command"] for r in rows})) + "\n")


def plot_published_tree(data: Mapping[str, Any], path: Path,
                        reference: Optional[Sequence[Mapping[str, Any]]] = None) -> None:
    """Best train accuracy and test accuracy against depth, one line per model of
    the published-protocol table and for the rebuilt GIN (``reference``, seed 0),
    with the paper's GGNN and GIN and chance."""
    tree = cells(data, "tree-published")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80, sharey=True)
    for model, name in PUBLISHED_MODELS:
        pts = sorted((size, cell.get("metric"), cell.get("test"))
                     for (size, m), cell in tree.items() if m == model and cell.get("metric") is not None)
        if not pts:
            continue
        line = axes[0].plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)[0]
        tested = [(p[0], p[2]) for p in pts if p[2] is not None]
        axes[1].plot([p[0] for p in tested], [p[1] for p in tested], "o-",
                     color=line.get_color(), label=name)
    # One point per depth: the run under the published settings that trained longest.
    published = {}
    for r in sorted((r for r in reference or [] if not _unless_default(r)),
                    key=lambda r: r.get("passes") or 0):
        published[r["depth"]] = r
    rebuilt = sorted((d, r["train_max"], r.get("test")) for d, r in published.items())
    if rebuilt:
        line = axes[0].plot([p[0] for p in rebuilt], [p[1] for p in rebuilt], "s-.",
                            label="GIN rebuilt (ours)")[0]
        axes[1].plot([p[0] for p in rebuilt if p[2] is not None],
                     [p[2] for p in rebuilt if p[2] is not None], "s-.",
                     color=line.get_color(), label="GIN rebuilt (ours)")
    depths = list(range(2, 2 + len(TREE_ANCHORS["GIN"])))
    for name, values in TREE_ANCHORS.items():
        axes[0].plot(depths, values, "x--", alpha=0.7, label=f"{name} (published)")
    axes[1].plot(depths, [2.0 ** -r for r in depths], ":", color="gray", label="chance")
    for ax, title in zip(axes, ("best train accuracy", "test accuracy (held-out trees)")):
        ax.set_xlabel("depth r")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(depths)
        ax.set_ylim(0, 1.05)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=6)
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path)


def published_tree_section(data: Mapping[str, Any],
                           reference: Optional[Sequence[Mapping[str, Any]]] = None,
                           plot: Optional[Path] = None) -> Tuple[str, Verdict]:
    """Tree-NeighborsMatch under Alon & Yahav's protocol (``tree-published`` rows),
    with the rebuilt published GIN (``reference``) where it ran."""
    tree = cells(data, "tree-published")
    sizes = sorted({int(r["size"]) for r in task_rows(data, "tree-published")} | set(TREE_SIZES))
    lines = []
    for size in sizes:
        line = [str(size)] + [_published_cell(tree.get((size, m))) for m, _ in PUBLISHED_MODELS]
        line += [fmt(v[size - 2], 2) if 2 <= size <= 6 else "—" for v in TREE_ANCHORS.values()]
        lines.append(line)
    names = [name for _, name in PUBLISHED_MODELS] + [f"{k} (published)" for k in TREE_ANCHORS]
    text = ("### Tree-NeighborsMatch under the published protocol, best training accuracy and "
            "test accuracy\n\n"
            "`configs/tree-neighbors-match-published.yaml`: edges child to parent only, the "
            "prediction read at the root through one linear layer, r + 1 layers, Adam 1e-3 halved on a plateau of the "
            "*train* accuracy, 100 passes per logged epoch (1,000 at r = 2), stop at train "
            "accuracy 1.0 or after 20 logged epochs without gain; batch 64 up to r = 3 and "
            "1,024 above. BRL's first tokens start from the root's encoded state "
            "(`model.readout_query`), so they can fetch the leaf the root asks for; BRL rows "
            "trained before the config took it are in the table of changed settings below "
            "(docs/RECIPE.md, section r = 5: the tokens became slots). Cells: best train "
            "accuracy, then the test accuracy at the best valid "
            "epoch (held-out trees: a model that fits the training trees by memorising them "
            "stays near chance there); in brackets the passes over the training set (counted in "
            "whole logged epochs, since the stop rule is checked after each), wall minutes, why "
            "the run ended, and the prediction head when it is not the config's one linear layer. "
            "GGNN and GIN are the published figures (Alon & "
            "Yahav, ICLR 2021); the authors report the better of two seeds where one got stuck, "
            "and our rows are single seeds unless marked.\n\n"
            + table(["r"] + names, lines) + "\n\n")
    if plot is not None:
        text += f"![Tree-NeighborsMatch, published protocol]({Path(plot).name})\n\n"
    cmds = sorted({r["command"] for r in task_rows(data, "tree-published")})
    if cmds:
        text += "Commands:\n\n" + commands_block(cmds) + "\n"
    text += variant_section(variant_rows(data, "tree-published"))
    text += ("\n" if text.endswith("\n") and reference else "") + reference_gin_section(reference)
    return text, published_tree_verdict(cells(data, "tree-published", finished_only=True),
                                        reference)


def long_range_section(data: Optional[Mapping[str, Any]],
                       reference: Optional[Sequence[Mapping[str, Any]]] = None,
                       docs_dir: Optional[Path] = None
                       ) -> Tuple[str, Verdict, Verdict, Verdict]:
    """Section 2's text, and the verdicts of RingTransfer, Tree-NeighborsMatch (either
    budget fitting each depth) and Tree-NeighborsMatch (the published protocol).
    With ``docs_dir``, the published protocol's plot is written there
    (``tree_published.png``) and shown."""
    text = "## 2. Long range\n\n"
    if data is None:
        text += (f"**{NOT_RUN}** (no `benchmarks/results/long_range.json`). Command:\n\n"
                 "    python experiments/long_range.py\n")
        text += ("\n" + reference_gin_section(reference)) if reference else ""
        absent = ("untested", "long_range.json absent")
        return text, absent, absent, absent
    names = [name for _, name in LR_MODELS]
    ring_sizes = sorted({int(r["size"]) for r in task_rows(data, "ring")} | set(RING_SIZES))
    ring = cells(data, "ring")
    text += ("### RingTransfer (3 layers), test accuracy at the best validation epoch; chance 0.2\n\n"
             "Cells: accuracy (seconds per epoch, parameters). The budget column applies to "
             "all three models of the row (budgets differ between rows, never within one). "
             "Parameter counts are not matched: width and depth are, and the BRL layer "
             "carries its token read/write/mix weights on top of the GINE branch.\n\n"
             + table(["n"] + names + ["budget"], grid_rows(ring, ring_sizes)) + "\n\n")
    tree_sizes = sorted({int(r["size"]) for r in task_rows(data, "tree")} | set(TREE_SIZES))
    tree = cells(data, "tree")
    tree_table = grid_rows(tree, tree_sizes)
    for line in tree_table:
        r = int(line[0])
        for values in TREE_ANCHORS.values():
            line.insert(-1, fmt(values[r - 2], 2) if 2 <= r <= 6 else "—")
    plateau = [r for r in task_rows(data, "tree") if not r.get("skipped")
               and "train.scheduler=none" not in r.get("command", "")]
    text += ("### Tree-NeighborsMatch (r + 1 layers), best training accuracy over the epochs; "
             "chance 1/2^r\n\n"
             "Training accuracy measures whether the model can fit the task at all (as in the "
             "paper); the JSON rows also hold valid and test accuracy. "
             "GGNN and GIN: published anchors (Alon & Yahav, ICLR 2021, trained to convergence), "
             "not run here.\n\n"
             + table(["r"] + names + list(TREE_ANCHORS) + ["budget"], tree_table) + "\n\n")
    text += _tree_reading(tree, tree_sizes)
    if plateau:
        text += ("**Caveat on this budget.** Rows r = "
                 + ", ".join(sorted({str(r["size"]) for r in plateau}))
                 + " used a plateau scheduler (factor 0.5, patience 10), which keeps halving "
                 "the learning rate through the task's long initial flat phase at chance, so "
                 "at chance they reflect the schedule and budget, not a limit of the model.\n\n")
    cmds = sorted({r["command"] for r in task_rows(data, "ring") + task_rows(data, "tree")})
    text += "Commands (one per cell, from the repository root):\n\n" + commands_block(cmds) + "\n"
    plot = None
    if docs_dir is not None and task_rows(data, "tree-published"):
        plot = Path(docs_dir) / "tree_published.png"
        plot_published_tree(data, plot, reference)
    published_text, published_verdict = published_tree_section(data, reference, plot)
    return (text + "\n" + published_text, ring_verdict(ring, ring_sizes),
            tree_verdict(tree, tree_sizes, bool(plateau),
                         cells(data, "tree-published", finished_only=True)),
            published_verdict)
