"""Section 7: the device checks (``tests/device``, their ``--device-report``), the GPU
scaling rows and causal recall on the GPU."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from brl_graph.results.causal import causal_section
from brl_graph.labels import BRL, MPNN
from brl_graph.results.common import DEVICE_COMMAND, NOT_RUN, fmt, grouped, slope, table
from brl_graph.results.scaling import SCALING_MODELS


def _check_values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {fmt(v) if isinstance(v, (int, float)) else v}"
                     for k, v in values.items())


#: A GPU scaling row's setting: (layers, precision, folded BRL projections).
Setting = Tuple[int, str, bool]
PRECISIONS = ("fp32", "tf32", "bf16")


def setting(r: Mapping[str, Any]) -> Setting:
    """A row's ``(layers, precision, fold)``; the precision is ``bf16`` autocast,
    ``tf32`` matmuls on float32 tensors, or plain ``fp32``."""
    precision = "bf16" if r.get("bf16") else "tf32" if r.get("tf32") else "fp32"
    return (int(r.get("layers", 1)), precision, bool(r.get("fold", False)))


def _twin(by: Mapping[Tuple[str, int, Setting], Dict[str, Any]], n: int, st: Setting
          ) -> Optional[Dict[str, Any]]:
    """The MPNN row a BRL row is compared with: same size, depth and precision (the
    twin has no reservoir, so folding does not apply to it)."""
    return by.get((MPNN, n, (st[0], st[1], False)))


def _setting_text(st: Setting) -> str:
    return f"{st[0]} layer(s), {st[1]}" + (", folded BRL" if st[2] else "")


def _ratio_parts(by: Mapping[Tuple[str, int, Setting], Dict[str, Any]]) -> List[str]:
    """BRL/MPNN time ratios per one-layer setting, e.g. ``1.2-1.7x in fp32``."""
    parts = []
    for precision in PRECISIONS:
        for fold in (False, True):
            st = (1, precision, fold)
            pairs = [(r, _twin(by, n, st)) for (m, n, s), r in by.items() if m == BRL and s == st]
            ratios = [r["fwd_bwd_ms"] / lo["fwd_bwd_ms"] for r, lo in pairs if lo]
            if ratios:
                lo, hi = fmt(min(ratios), 1), fmt(max(ratios), 1)
                parts.append(f"{lo if lo == hi else f'{lo}-{hi}'}x in {precision}"
                             + (" (folded)" if fold else ""))
    return parts


def _by_setting(rows: List[Dict[str, Any]]) -> Dict[Tuple[str, int, Setting], Dict[str, Any]]:
    """Timed rows by ``(model, nodes, setting)``; a later row of the same key wins."""
    return {(r["model"], r["num_nodes"], setting(r)): r for r in rows if r.get("fwd_bwd_ms")}


def _gpu_reading(by: Mapping[Tuple[str, int, Setting], Dict[str, Any]]) -> str:
    """One sentence on the BRL/MPNN time ratio per one-layer setting, from the rows."""
    parts = _ratio_parts(by)
    if not parts:
        return ""
    return ("BRL's one-layer time over the MPNN twin's is " + " and ".join(parts)
            + "; section 1 has the CPU's ratios.")


def _superseded_text(rows: List[Dict[str, Any]]) -> str:
    """What rows of older code, kept in the file but out of the table, measured."""
    text = ""
    for (why,), group in grouped(rows, ("superseded",)).items():
        why = why if isinstance(why, str) else "older code"
        runs = sorted({str(r["lease_run"]) for r in group if r.get("lease_run") is not None})
        old = _ratio_parts(_by_setting(group))
        text += (f"Rows {'of run ' + ', '.join(runs) + ' ' if runs else ''}superseded ({why}) "
                 "are kept in the file and left out of the table"
                 + (f"; in them BRL's time over its twin's was {' and '.join(old)}. " if old
                    else ". "))
    return text.strip() + "\n\n" if text else ""


def _profiles_text(rows: List[Dict[str, Any]], top: int = 5) -> str:
    """The costliest ops of the profiled rows (``scaling.py --profile``), ``top`` per row."""
    lines = [[r["model"], _setting_text(setting(r)), fmt(r["num_nodes"]),
             fmt(r["fwd_bwd_ms"], 1),
             "; ".join(f"`{op['name'][:60]}` {fmt(op['self_ms'], 2)} ms ({op['calls']}x)"
                       for op in r["profile"][:top])]
             for r in rows if r.get("profile") and r.get("fwd_bwd_ms")]
    if not lines:
        return ""
    return ("### Where the GPU time goes: the costliest ops of one profiled fwd+bwd\n\n"
            "Self time of the kernels each operator launched itself (`torch.profiler`), from "
            "`benchmarks/scaling.py --profile N`; a profiled pass runs slower than the timed "
            "ones.\n\n"
            + table(["model", "setting", "nodes", "fwd+bwd ms", f"top {top} ops"], lines)
            + "\n\n")


def gpu_section(checks: Optional[Mapping[str, Any]], rows: Optional[List[Dict[str, Any]]],
                recall: Optional[Mapping[str, Any]]) -> Tuple[str, Optional[str]]:
    """Section 7: the device checks, the GPU scaling rows and GPU causal recall.

    Returns the text and a one-line summary of the GPU scaling (``None`` when not run).
    """
    text = "## 7. GPU: device checks and timings\n\n"
    if checks is None and rows is None and recall is None:
        return (text + f"**{NOT_RUN}**: no GPU was available. Command on a CUDA machine:\n\n"
                f"    {DEVICE_COMMAND}\n", None)
    env = (checks or {}).get("environment", {})
    if env:
        text += (f"Machine: {env.get('gpu', '?')} (compute capability {env.get('capability', '?')}), "
                 f"CUDA {env.get('cuda', '?')}, PyTorch {env.get('torch', '?')}, PyG "
                 f"{env.get('torch_geometric', '?')}, TF32 matmul {env.get('tf32_matmul')}. "
                 "Each lease is a fresh machine of the same kind; `lease_run` says which one "
                 "produced a row. All rows come from one script:\n\n"
                 f"    {DEVICE_COMMAND}\n\n")
    if checks is not None:
        out = []
        for c in checks.get("checks", []):
            status = ("skipped" if c.get("passed") is None
                      else "**pass**" if c["passed"] else "**FAIL**")
            detail = (c.get("error") or c.get("skipped")
                      or _check_values(c.get("values", {})))
            out.append([f"`{c['name']}`", status, detail, c.get("bound", "")])
        text += ("### Device checks (`tests/device`, marked `cuda`)\n\n"
                 + table(["check", "result", "measured", "bound"], out)
                 + f"\n\nCommand: `{checks.get('command', '')}`\n\n")
    summary = None
    superseded = [r for r in rows or [] if r.get("superseded")]
    rows = [r for r in rows or [] if not r.get("superseded")]
    if rows:
        by = _by_setting(rows)
        out = []
        for st in sorted({setting(r) for r in rows},
                         key=lambda st: (st[0], PRECISIONS.index(st[1]), st[2])):
            for n in sorted({r["num_nodes"] for r in rows if setting(r) == st}):
                cells = [_setting_text(st), fmt(n)]
                for m in SCALING_MODELS:
                    # A folded setting has BRL rows only: its twin is the plain one's.
                    r = _twin(by, n, st) if m == MPNN else by.get((m, n, st))
                    cells.append("—" if r is None else
                                  f"{fmt(r['fwd_bwd_ms'], 1)} ms / {fmt(r.get('peak_mem_mb'), 0)} MB"
                                  f" (run {r.get('lease_run', '?')})")
                b, lo = by.get((BRL, n, st)), _twin(by, n, st)
                cells.append(fmt(b["fwd_bwd_ms"] / lo["fwd_bwd_ms"], 2) + "x" if b and lo else "—")
                out.append(cells)
        exps = {}
        for m in (MPNN, BRL):
            pts = sorted((n, r["fwd_bwd_ms"]) for (mm, n, st), r in by.items()
                         if mm == m and st == (1, "fp32", False))
            exps[m] = slope([p[0] for p in pts], [p[1] for p in pts])
        text += ("### Scaling on the GPU (`benchmarks/scaling.py --device cuda`), one graph, "
                 "fwd+bwd\n\n"
                 "Cells: median fwd+bwd time / peak allocated CUDA memory above the inputs "
                 "(`torch.cuda.max_memory_allocated`).\n\n"
                 + table(["setting", "nodes", *SCALING_MODELS, f"{BRL} / {MPNN}"], out)
                 + "\n\nTime exponents over the fp32 one-layer sizes: "
                 + ", ".join(f"`{m}` n^{fmt(e, 2)}" for m, e in exps.items()) + ". "
                 + _gpu_reading(by) + "\n\n"
                 "Row commands:\n\n"
                 + "".join(f"    {c}\n" for c in dict.fromkeys(r.get("command", "") for r in rows))
                 + "\n")
        text += _profiles_text(rows)
        big = max((n for (m, n, st) in by if m == BRL and _twin(by, n, st)), default=None)
        if big is not None:
            parts = []
            for st in [(1, p, f) for p in PRECISIONS for f in (False, True)]:
                b, lo = by.get((BRL, big, st)), _twin(by, big, st)
                if b and lo:
                    parts.append(f"{st[1]}{' folded' if st[2] else ''} "
                                 f"{fmt(b['fwd_bwd_ms'] / lo['fwd_bwd_ms'], 1)}x")
            summary = (f"on an H200, BRL n^{fmt(exps.get(BRL), 2)} vs MPNN "
                       f"n^{fmt(exps.get(MPNN), 2)}; BRL/MPNN at {fmt(big)} nodes: "
                       + ", ".join(parts))
    elif superseded:
        text += (f"### Scaling on the GPU (`benchmarks/scaling.py --device cuda`)\n\n"
                 f"{NOT_RUN} with the current code.\n\n")
    text += _superseded_text(superseded)
    if recall is not None:
        ctext, _ = causal_section(recall)
        ctext = ctext.replace("## 5. Causal sequences: multi-query associative recall",
                              "### Causal recall on the GPU (same task and budget as section 5)")
        pts = sorted((r["eval_len"], r["fwd_bwd_ms"]) for r in recall.get("rows", [])
                     if r.get("model") == "brl" and r.get("fwd_bwd_ms") and r["eval_len"] >= 1024)
        brl_exp = slope([p[0] for p in pts], [p[1] for p in pts])
        text += ctext
        if brl_exp is not None and brl_exp < 0.5:
            text += ("Times barely grow with the length at batch 1: on this GPU they measure "
                     "kernel launches more than work.\n")
    return text, summary
