"""Section 5's recall/cost tables: accuracy against state size and time for every
attention kind of the recall benchmark, one table per ``causal_recall_modes*.json``
configuration, with its seed repeats (``..._seed<N>.json``) aggregated."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from brl_graph.results.common import Verdict, commands_block, fmt, table

# Every attention kind of the recall benchmark, in the order the cost table shows them.
RECALL_MODELS = (("full", "full causal attention"), ("window", "sliding window"),
                 ("brl", "BRL reservoir (K tokens)"), ("linear", "linear attention"),
                 ("blocks", "BRL blocks"))
# Issue #13's bar for the blocks mode: accuracy at 2k and 8k, time against full attention.
BLOCKS_TARGET = {"acc_2k": 0.95, "acc_8k": 0.90, "time_ratio": 0.5, "min_pairs": 8}
# Config sections that must agree for files to be seed repeats of one configuration.
SAME_CONFIG = ("task", "model")


def _seed(payload: Mapping[str, Any]) -> Any:
    return (payload.get("config", {}).get("budget") or {}).get("seed")


def _commands(payload: Mapping[str, Any]) -> List[str]:
    cfg = payload.get("config", {})
    return list(cfg.get("commands") or [cfg.get("command", "")])


def merge_seed_repeats(payloads: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """One payload from runs of one configuration under different seeds.

    Each (model, eval length) row holds the mean ``accuracy`` and ``fwd_bwd_ms``
    over the seeds that have it, ``accuracy_min`` / ``accuracy_max`` and
    ``num_seeds``; ``config["seeds"]`` lists the seeds and ``config["runs"]`` the
    commands of each seed's run. A single payload comes back with ``num_seeds`` 1.

    Raises:
        ValueError: the files differ in task, model sizes, evaluation or budget
            (other than its seed), or two of them have the same seed.
    """
    first = payloads[0].get("config", {})

    def unseeded(cfg: Mapping[str, Any], part: str) -> Dict[str, Any]:
        # The driver derives the evaluation seed from the training seed (seed + 1),
        # so both differ between repeats; everything else must match.
        return {k: v for k, v in (cfg.get(part) or {}).items() if k != "seed"}

    seeds = [_seed(p) for p in payloads]
    if len(set(map(repr, seeds))) != len(seeds):
        raise ValueError(f"recall/cost seed repeats with the same seed: {seeds}")
    for p in payloads[1:]:
        cfg = p.get("config", {})
        if (any(cfg.get(k) != first.get(k) for k in SAME_CONFIG)
                or any(unseeded(cfg, part) != unseeded(first, part) for part in ("budget", "eval"))):
            raise ValueError("recall/cost seed repeats must share task, model, eval and budget "
                             f"(seeds {seeds[0]} and {_seed(p)} differ in more)")
    cells: Dict[Tuple[str, int], List[Mapping[str, Any]]] = {}
    for p in payloads:
        for r in p.get("rows", []):
            cells.setdefault((r["model"], r["eval_len"]), []).append(r)
    rows = []
    for rs in cells.values():
        accs = [r["accuracy"] for r in rs if r.get("accuracy") is not None]
        times = [r["fwd_bwd_ms"] for r in rs if r.get("fwd_bwd_ms") is not None]
        rows.append(dict(rs[0], accuracy=sum(accs) / len(accs) if accs else None,
                         accuracy_min=min(accs, default=None), accuracy_max=max(accs, default=None),
                         fwd_bwd_ms=sum(times) / len(times) if times else None,
                         num_seeds=len(accs)))
    return {"config": dict(first, seeds=seeds, runs=[_commands(p) for p in payloads]),
            "rows": rows}


def blocks_verdict(by: Mapping[Tuple[str, int], Mapping[str, Any]], pairs: int,
                   title: str) -> Verdict:
    """:data:`BLOCKS_TARGET`: blocks accuracy at 2,048 and 8,192 with at least
    ``min_pairs`` stored pairs, and its fwd+bwd time at 8,192 against full attention's."""
    b2 = (by.get(("blocks", 2048)) or {}).get("accuracy")
    b8 = (by.get(("blocks", 8192)) or {}).get("accuracy")
    bms = (by.get(("blocks", 8192)) or {}).get("fwd_bwd_ms")
    fms = (by.get(("full", 8192)) or {}).get("fwd_bwd_ms")
    if b2 is None or b8 is None:
        return ("untested", f"{title}: no blocks rows at 2,048 and 8,192")
    ratio = bms / fms if bms is not None and fms else None
    t = BLOCKS_TARGET
    ok = [b2 >= t["acc_2k"], b8 >= t["acc_8k"], ratio is not None and ratio <= t["time_ratio"],
          pairs >= t["min_pairs"]]
    status = "holds" if all(ok) else ("partial" if any(ok[:2]) else "fails")
    return (status, f"{title}, {pairs} pairs: blocks {fmt(b2, 2)} at 2,048, {fmt(b8, 2)} at "
                    f"8,192, fwd+bwd {fmt(bms, 1)} ms vs full {fmt(fms, 1)} ms at 8,192 "
                    f"(×{fmt(ratio, 2)})")


def _accuracy(r: Optional[Mapping[str, Any]]) -> str:
    r = r or {}
    if r.get("num_seeds", 1) > 1:
        return (f"{fmt(r.get('accuracy'), 2)} ({fmt(r.get('accuracy_min'), 2)}–"
                f"{fmt(r.get('accuracy_max'), 2)})")
    return fmt(r.get("accuracy"), 2)


def _intro(cfg: Mapping[str, Any], top: int, merged: bool, repeats: int) -> str:
    task, mcfg = cfg.get("task", {}), cfg.get("model", {})
    budget = cfg.get("budget", {}) if repeats == 1 else {
        k: v for k, v in cfg.get("budget", {}).items() if k != "seed"}
    return (f"Task: {fmt(task.get('num_pairs'))} stored pairs, {fmt(task.get('num_queries'))} "
            f"queries, vocabulary {fmt(task.get('vocab_size'))}, chance {fmt(task.get('chance'))}. "
            f"Model: width {mcfg.get('dim')}, {mcfg.get('layers')} layers, window "
            f"{mcfg.get('window')}; reservoir K = {mcfg.get('num_tokens')}; blocks b = "
            f"{mcfg.get('block_size')}, c = {mcfg.get('block_tokens')}, top-k = "
            f"{mcfg.get('top_k')}. Same budget for every model: `{json.dumps(budget)}`"
            + (f", over seeds {', '.join(str(s) for s in cfg['seeds'])} (cells: mean, and "
               "min–max over the seeds)" if repeats > 1 else "")
            + ". State: numbers one layer keeps to decode "
            f"the next position at L = {fmt(top)} (keys and values kept, linear state, "
            "reservoir); keys read: keys one query scores per head at that length (counted "
            "from the layer definitions). Time: fwd+bwd of one sequence at L = "
            f"{fmt(top)} and its ratio to full attention's"
            + (" (models from different runs: those ratios mix the machine's load at "
               "different times)" if merged else ", measured in the same run")
            + ".\n\n")


def causal_modes_section(payloads: Sequence[Mapping[str, Any]], title: str
                         ) -> Tuple[str, Optional[Verdict]]:
    """One recall/cost table from a configuration's runs (one per seed).

    Returns (markdown, the blocks target's verdict), or ``("", None)`` without data.
    """
    if not payloads or not any(payloads):
        return "", None
    data = merge_seed_repeats([p for p in payloads if p])
    cfg, rows = data["config"], data["rows"]
    by = {(r["model"], r["eval_len"]): r for r in rows}
    lengths = sorted({r["eval_len"] for r in rows})
    top = max(lengths)
    repeats = len(cfg["runs"])
    seeds_col = any(r.get("num_seeds", 1) > 1 for r in rows)
    full_ms = (by.get(("full", top)) or {}).get("fwd_bwd_ms")
    out = []
    for m, label in RECALL_MODELS:
        if not any(r["model"] == m for r in rows):
            continue
        r_top = by.get((m, top)) or {}
        ms = r_top.get("fwd_bwd_ms")
        ratio = ms / full_ms if ms is not None and full_ms else None
        out.append([f"{label} (`{m}`)", fmt(r_top.get("state_per_layer")),
                    fmt(r_top.get("keys_read"))]
                   + ([str(r_top.get("num_seeds", 1))] if seeds_col else [])
                   + [_accuracy(by.get((m, n))) for n in lengths] + [fmt(ms, 1), fmt(ratio, 2)])
    merged = any(len(c) > 1 for c in cfg["runs"])
    cmds = [c for run in cfg["runs"] for c in run]
    header = (["model", f"state / layer @ {fmt(top)}", "keys read"] + (["seeds"] if seeds_col else [])
              + [f"acc @ {fmt(n)}" for n in lengths] + [f"ms @ {fmt(top)}", "× full"])
    if merged:
        cmd_head = ("Commands (runs of different models, merged with `--merge`; times compare "
                    "within one run):")
    else:
        cmd_head = "Commands (one run per seed):" if repeats > 1 else "Command:"
    text = (f"### {title}\n\n" + _intro(cfg, top, merged, repeats) + table(header, out)
            + f"\n\n{cmd_head}\n\n" + commands_block(cmds) + "\n" + _reading(by, top))
    return text, blocks_verdict(by, cfg.get("task", {}).get("num_pairs") or 0, title)


def _reading(by: Mapping[Tuple[str, int], Mapping[str, Any]], top: int) -> str:
    fixed = [(m, (by.get((m, top)) or {}).get("accuracy")) for m in ("window", "brl", "linear")]
    fixed = [(m, a) for m, a in fixed if a is not None]
    blk = (by.get(("blocks", top)) or {}).get("accuracy")
    if not fixed or blk is None:
        return ""
    m_best, a_best = max(fixed, key=lambda t: t[1])
    full_acc = (by.get(("full", top)) or {}).get("accuracy")
    return (f"\n**Reading.** At L = {fmt(top)} the best model whose state does not grow "
            f"with L (`{m_best}`) reaches {fmt(a_best, 2)}, BRL blocks {fmt(blk, 2)} and "
            f"full attention {fmt(full_acc, 2)}.\n")


def modes_part(modes: Mapping[str, Sequence[Mapping[str, Any]]]) -> Tuple[str, Verdict, bool]:
    """Every recall/cost table (the main one first), the blocks target's verdict, and
    whether every table meets it. "Some BRL mode reaches the bar": one table is enough."""
    text, verdicts = "", []
    for suffix in sorted(modes, key=lambda k: (k != "", k)):
        title = "Recall against state size and cost" + (f" ({suffix})" if suffix else "")
        m_text, m_verdict = causal_modes_section(modes[suffix], title)
        if m_text:
            text += "\n" + m_text
            verdicts.append(m_verdict)
    if not verdicts:
        return text, ("untested", "no causal_recall_modes*.json"), False
    statuses = {v[0] for v in verdicts}
    status = ("holds" if "holds" in statuses else
              "partial" if "partial" in statuses else sorted(statuses)[0])
    return (text, (status, "; ".join(v[1] for v in verdicts)),
            all(v[0] == "holds" for v in verdicts))
