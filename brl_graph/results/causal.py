"""Section 5: causal sequences, multi-query associative recall (``experiments/causal_recall.py``
rows): the main table, accuracy against stored pairs and against the training budget.
The recall/cost tables over every attention kind are in :mod:`.recall_modes`."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from brl_graph.results.common import NOT_RUN, Verdict, fmt, slope, table
from brl_graph.results.recall_modes import modes_part

RECALL_MAIN_MODELS = ("brl", "window", "full")


def recall_variants(main: Optional[Mapping[str, Any]],
                     extra: Optional[Mapping[int, Mapping[str, Any]]], section: str,
                     key: str) -> Tuple[Dict[int, Mapping[str, Any]], List[int]]:
    """The variant files plus the main run, keyed by the main run's ``config[section][key]``,
    and the eval lengths to show (shortest, 1k, longest)."""
    files = dict(extra or {})
    value = ((main or {}).get("config", {}).get(section) or {}).get(key)
    if value is not None:
        files.setdefault(int(value), main)
    lengths = sorted({r["eval_len"] for d in files.values() for r in d.get("rows", [])})
    show = [n for n in lengths if n in (min(lengths), 1024, max(lengths))] if lengths else []
    return files, show


def time_exponents(rows: Sequence[Mapping[str, Any]], models: Sequence[str]
                   ) -> Dict[str, Optional[float]]:
    """Per model, the exponent of fwd+bwd time against length over lengths >= 1k."""
    exps = {}
    for m in models:
        pts = sorted((r["eval_len"], r["fwd_bwd_ms"]) for r in rows
                     if r["model"] == m and r.get("fwd_bwd_ms") and r["eval_len"] >= 1024)
        exps[m] = slope([p[0] for p in pts], [p[1] for p in pts])
    return exps


def recall_verdict(rows: Sequence[Mapping[str, Any]]) -> Verdict:
    """Claim 5 on the reservoir's table: at every length >= 1k BRL beats the window by
    0.1 or more and stays within 0.05 of full attention."""
    by = {(r["model"], r["eval_len"]): r for r in rows}
    long = sorted({r["eval_len"] for r in rows if r["eval_len"] >= 1024})
    if not any(r["model"] == "brl" for r in rows) or not long:
        return ("untested", "no BRL rows at 1k-8k")
    gaps = [(n, *((by.get((m, n)) or {}).get("accuracy") for m in ("brl", "window", "full")))
            for n in long]
    above_window = all(b is not None and w is not None and b >= w + 0.1 for _, b, w, _ in gaps)
    near_full = all(b is not None and f is not None and b >= f - 0.05 for _, b, _, f in gaps)
    ev = "; ".join(f"L={n}: BRL {fmt(b, 2)}, window {fmt(w, 2)}, full {fmt(f, 2)}"
                   for n, b, w, f in gaps)
    ev += f"; BRL time exponent {fmt(time_exponents(rows, ['brl'])['brl'], 2)}"
    top = max(long)
    tb, tf = ((by.get((m, top)) or {}).get("fwd_bwd_ms") for m in ("brl", "full"))
    if tb is not None and tf is not None:
        ev += f"; at L={top}: BRL {fmt(tb, 1)} ms vs full {fmt(tf, 1)} ms per fwd+bwd"
    return ("holds" if above_window and near_full else "fails", ev)


def _main_cell(r: Optional[Mapping[str, Any]]) -> str:
    if r is None:
        return NOT_RUN
    if r.get("skipped"):
        return f"skipped: {r['skipped']}"
    return f"{fmt(r.get('accuracy'))} / {fmt(r.get('fwd_bwd_ms'), 1)} ms"


def causal_section(data: Optional[Mapping[str, Any]]) -> Tuple[str, Verdict]:
    """The reservoir's table: accuracy and time per model and length, and its verdict."""
    text = "## 5. Causal sequences: multi-query associative recall\n\n"
    cmd_default = "python experiments/causal_recall.py --json benchmarks/results/causal_recall.json"
    if data is None:
        return (text + f"**{NOT_RUN}** (no `benchmarks/results/causal_recall.json`). "
                f"Command:\n\n    {cmd_default}\n", ("untested", "causal_recall.json absent"))
    cfg = data.get("config", {})
    rows = data.get("rows", [])
    models = [m for m in RECALL_MAIN_MODELS if any(r["model"] == m for r in rows)]
    by = {(r["model"], r["eval_len"]): r for r in rows}
    out = [[fmt(n)] + [_main_cell(by.get((m, n))) for m in models]
           for n in sorted({r["eval_len"] for r in rows})]
    exps = time_exponents(rows, models)
    text += (f"Chance = {fmt(cfg.get('task', {}).get('chance'))}. Cells: accuracy on the answer "
             "positions / fwd+bwd time of one sequence. Same budget for every model: "
             f"`{json.dumps(cfg.get('budget', {}))}`.\n\n"
             + table(["eval length"] + models, out)
             + f"\n\nCommand:\n\n    {cfg.get('command', cmd_default)}\n"
             + "\nTime exponent over lengths >= 1k: "
             + ", ".join(f"`{m}` {fmt(e, 2)}" for m, e in exps.items()) + ".\n")
    return text, recall_verdict(rows)


def causal_pairs_section(main: Optional[Mapping[str, Any]],
                         by_pairs: Optional[Mapping[int, Mapping[str, Any]]]) -> Tuple[str, str]:
    """Accuracy against the number of stored pairs (same model and budget otherwise):
    where BRL's K-token reservoir stops holding the key-value list. Returns
    (markdown, one line of evidence)."""
    files, show = recall_variants(main, by_pairs, "task", "num_pairs")
    if len(files) < 2:
        return "", ""
    models = RECALL_MAIN_MODELS
    out, ev = [], []
    for pairs in sorted(files):
        d = files[pairs]
        by = {(r["model"], r["eval_len"]): r for r in d.get("rows", [])}
        chance = (d.get("config", {}).get("task") or {}).get("chance")
        answers = next((r.get("num_answers") for r in d.get("rows", []) if r.get("num_answers")),
                       None)
        line = [str(pairs), fmt(chance), fmt(answers)]
        for m in models:
            line.append(" / ".join(fmt((by.get((m, n)) or {}).get("accuracy"), 2) for n in show))
        out.append(line)
        b = (by.get(("brl", max(show))) or {}).get("accuracy")
        w = (by.get(("window", max(show))) or {}).get("accuracy")
        ev.append(f"{pairs} pair(s): BRL {fmt(b, 2)} vs window {fmt(w, 2)} at L={fmt(max(show))}")
    cmds = [files[p].get("config", {}).get("command", "") for p in sorted(files)]
    fewest = min(files)
    d0 = files[fewest]
    chance0 = (d0.get("config", {}).get("task") or {}).get("chance")
    k0 = (d0.get("config", {}).get("model") or {}).get("num_tokens")
    brl0 = [r["accuracy"] for r in d0.get("rows", []) if r["model"] == "brl"
            and r.get("accuracy") is not None]
    reading = ""
    if chance0 is not None and brl0 and max(brl0) < chance0 + 0.1 and k0 and k0 >= fewest:
        reading = (f"\n**Reading.** BRL stays at chance even with {fewest} stored pair(s), which "
                   f"its K = {k0} tokens can hold, while full attention learns it. Under this "
                   "budget the failure is one of learning the write-then-read route through "
                   "the tokens, not of the reservoir's capacity.\n")
    text = ("### Accuracy against the number of stored pairs\n\n"
            "The same models and budget, with fewer key-value pairs (and as many queries). "
            "Cells: accuracy at eval length " + " / ".join(fmt(n) for n in show) + ".\n\n"
            + table(["pairs", "chance", "answers per cell"] + list(models), out)
            + "\n" + reading + "\nCommands:\n\n" + "\n".join(f"    {c}" for c in cmds if c)
            + "\n")
    return text, "; ".join(ev)


def causal_steps_section(main: Optional[Mapping[str, Any]],
                         by_steps: Optional[Mapping[int, Mapping[str, Any]]]
                         ) -> Tuple[str, Optional[Verdict]]:
    """Accuracy against the training budget (steps), everything else equal.

    Returns (markdown, the verdict of the longest budget), or ``("", None)``
    when there is only one budget.
    """
    files, show = recall_variants(main, by_steps, "budget", "steps")
    if len(files) < 2:
        return "", None
    models = RECALL_MAIN_MODELS
    out = []
    for steps in sorted(files):
        rows = files[steps].get("rows", [])
        by = {(r["model"], r["eval_len"]): r for r in rows}
        line = [fmt(steps)]
        for m in models:
            accs = " / ".join(fmt((by.get((m, n)) or {}).get("accuracy"), 2) for n in show)
            secs = next((r.get("train_seconds") for r in rows if r["model"] == m), None)
            line.append(f"{accs} ({secs:,.0f} s)" if secs is not None else accs)
        out.append(line)
    longest, shortest = max(files), min(files)
    verdict = recall_verdict(files[longest].get("rows", []))

    def acc(steps: int, model: str) -> Optional[float]:
        return next((r.get("accuracy") for r in files[steps].get("rows", [])
                     if r["model"] == model and r["eval_len"] == min(show)), None)

    chance = (files[longest].get("config", {}).get("task") or {}).get("chance")
    b0, b1 = acc(shortest, "brl"), acc(longest, "brl")
    reading = ""
    if None not in (b0, b1, chance) and b1 >= chance + 0.1 and b0 < chance + 0.1:
        reading = (f"\n**Reading.** BRL rises from {fmt(b0, 2)} (chance {fmt(chance, 3)}) at "
                   f"{fmt(shortest)} steps to {fmt(b1, 2)} at {fmt(longest)} steps (eval length "
                   f"{fmt(min(show))}): the route through the tokens is learned, but more slowly "
                   "than full attention learns its direct route.\n")
    cmds = [files[k].get("config", {}).get("command", "") for k in sorted(files)]
    text = ("### Accuracy against the training budget\n\n"
            "The same task, models and schedule (warm-up, then cosine decay to zero over the "
            "budget), with more steps. Cells: accuracy at eval length "
            + " / ".join(fmt(n) for n in show) + " (training seconds on this machine).\n\n"
            + table(["steps"] + list(models), out) + "\n" + reading
            + "\nCommands:\n\n" + "\n".join(f"    {c}" for c in cmds if c) + "\n")
    return text, (verdict[0], f"at {fmt(longest)} steps: {verdict[1]}")


def causal_part(results: Mapping[str, Any]) -> Tuple[str, Verdict, Verdict]:
    """Section 5 in full: its text, the causal claim's verdict and the blocks target's.

    The claim combines the tables: the reservoir's main table, its budget sweep
    (holding only under a longer budget than the main table's is partial), and
    the blocks mode of the recall/cost tables, which carries the claim where
    every table meets the bar and in part where only some do.
    """
    main = results.get("causal_recall")
    text, verdict = causal_section(main)
    cp_text, cp_ev = causal_pairs_section(main, results.get("causal_recall_pairs"))
    if cp_text:
        text += "\n" + cp_text
        verdict = (verdict[0], verdict[1] + "; by stored pairs: " + cp_ev)
    cs_text, cs_verdict = causal_steps_section(main, results.get("causal_recall_steps"))
    if cs_text:
        text += "\n" + cs_text
        status = verdict[0]
        if cs_verdict[0] == "holds" and status != "holds":
            status = "partial"
        verdict = (status, verdict[1] + "; " + cs_verdict[1])
    m_text, blocks_verdict, every = modes_part(results.get("causal_recall_modes") or {})
    text += m_text
    if blocks_verdict[0] == "holds":
        verdict = ("holds" if every else "partial",
                   "blocks mode: " + blocks_verdict[1] + "; reservoir mode: " + verdict[1])
    return text, verdict, blocks_verdict
