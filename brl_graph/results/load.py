"""Reading ``benchmarks/results/*.json`` for the results document.

Every row's model label is made current here, once (see :mod:`brl_graph.labels`):
files written before the labels were fixed, and drivers still running from an
older checkout, write ``twin``, ``local``, ``gps`` or ``gps-multihead``. No
section sees those spellings. Likewise the stored commands of scripts that have
since moved from ``benchmarks/`` to ``experiments/`` are shown under their
current path, and those of replaced scripts as the command that replaced them,
so every command in the document runs in this tree; their absolute run folders
under ``~/.cache/brl_graph/runs`` read ``$BRL_RUNS/...``, their results files
``benchmarks/results/...`` (under the file's current name); the files
themselves keep what was run.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from brl_graph.labels import canonical_model

#: Files read by stem when present (``None`` when absent).
FILES = ("scaling", "long_range", "reference_tree_gin", "causal_recall", "oversquashing", "ogbg-molhiv",
         "peptides-func", "gpu_check", "scaling_gpu", "causal_recall_gpu", "step_time",
         "step_time_gpu",
         "ogbg-molhiv-e100", "ogbg-molhiv-e100-postnorm", "ogbg-molhiv-e100-unfolded",
         "ogbg-molhiv-e100-wd1e5", "ogbg-molhiv-e100-drop02", "ogbg-molhiv-e100-attn05",
         "ogbg-molhiv-e100-c72", "ogbg-molhiv-e100-rtok", "ogbg-molhiv-e100-k16",
         "peptides-func-e60", "peptides-func-e60-postnorm", "peptides-func-e60-unfolded",
         "peptides-func-e60-nodereadout", "peptides-func-e60-nodecay",
         "peptides-func-e60-bs128", "peptides-func-e60-dropout01")
MODES_PREFIX = "causal_recall_modes"
#: Scripts moved out of ``benchmarks/`` (issue #14): their stored commands name the old path.
MOVED_SCRIPTS = {f"python benchmarks/{name}.py": f"python experiments/{name}.py"
                 for name in ("causal_recall", "graph_property", "long_range", "oversquashing",
                              "make_results")}
#: Scripts replaced by other commands: the device checks became pytest tests (``tests/device``,
#: marked ``cuda``) that check the same things under the same names.
REPLACED_SCRIPTS = ((re.compile(r"python benchmarks/gpu_check\.py --device cuda --json (\S+)"),
                     r"python -m pytest -q -m cuda tests/device --device-report \1"),)
COMMAND_KEYS = ("command", "commands", "driver")
#: Machine-specific absolute paths in stored commands, shown portably: run folders under
#: the default ``$BRL_RUNS`` (``~/.cache/brl_graph/runs``) as ``$BRL_RUNS``, and results
#: files of a checkout by their path in the repository.
# A path is rewritten only where it starts a token (after a space, `=` or a quote) and is
# absolute, so relative paths and paths inside longer values are left alone.
_START = r"(?:(?<=[\s=\"'])|^)"
_PATH = r"/[^\s,;:\"'=]*?"
PORTABLE_PATHS = ((re.compile(_START + _PATH + r"/\.cache/brl_graph/runs(?![^/\s\"'])"), "$BRL_RUNS"),
                  (re.compile(_START + _PATH + r"/(benchmarks/results/[^\s\"']+?\.json)(?![^\s\"'])"),
                   r"\1"))
#: Results files renamed since their rows were written: a stored command names the old file.
RENAMED_RESULTS = {"benchmarks/results/peptides-func-e60-prenorm.json":
                   "benchmarks/results/peptides-func-e60-dropout01.json",
                   # the candidate's rows, now the protocol's own; its seed 1 began as a
                   # probe writing to a scratch file, and its row was copied over
                   "benchmarks/results/peptides-func-e60-wdema.json":
                   "benchmarks/results/peptides-func-e60.json",
                   "$BRL_RUNS/recipe/pep-wdema-protocol.json":
                   "benchmarks/results/peptides-func-e60.json",
                   "benchmarks/results/ogbg-molhiv-e100-wdema.json":
                   "benchmarks/results/ogbg-molhiv-e100.json"}
# A repeat of a recall/cost run under another seed: ``<name>_seed<N>.json``.
SEED_SUFFIX = re.compile(r"^(?P<base>.*?)_?seed(?P<seed>\d+)$")


def load_results(results_dir: Path) -> Dict[str, Any]:
    """Each known JSON file of ``results_dir`` by stem (``None`` when absent), plus:

    - ``causal_recall_pairs`` / ``causal_recall_steps``: ``{N: json}`` of the
      recall benchmark at fewer pairs (``--num-pairs N``) and longer budgets
      (``--steps N``);
    - ``causal_recall_modes``: ``{suffix: [json, ...]}``, one recall/cost table
      per suffix (``""`` for the main one), holding every seed repeat of it
      (``..._seed<N>.json``) in seed-file order.

    Raises:
        ValueError: a file exists but is not valid JSON (never silently skipped).
    """
    results_dir = Path(results_dir)
    out: Dict[str, Any] = {}
    for stem in FILES:
        path = results_dir / f"{stem}.json"
        out[stem] = current_labels(read_json(path)) if path.exists() else None
    for variant in ("pairs", "steps"):
        out[f"causal_recall_{variant}"] = _numbered(results_dir, f"causal_recall_{variant}")
    modes: Dict[str, List[Any]] = {}
    for p in sorted(results_dir.glob(f"{MODES_PREFIX}*.json")):
        suffix = p.stem[len(MODES_PREFIX):].lstrip("_")
        repeat = SEED_SUFFIX.match(suffix)
        modes.setdefault(repeat["base"] if repeat else suffix, []).append(read_json(p))
    out[MODES_PREFIX] = modes or None
    return out


def current_labels(data: Any) -> Any:
    """``data`` (a list of rows or ``{"rows": [...]}``) with every row's ``model``
    label made current; other content is returned as it is."""
    rows = data if isinstance(data, list) else (data or {}).get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return data
    fixed = [dict(r, model=canonical_model(r["model"])) if isinstance(r, dict) and "model" in r
             else r for r in rows]
    return fixed if isinstance(data, list) else {**data, "rows": fixed}


def _numbered(results_dir: Path, prefix: str) -> Optional[Dict[int, Any]]:
    """``{N: json}`` for the files ``<prefix><N>.json``; ``None`` when there are none."""
    found = {}
    for p in sorted(results_dir.glob(f"{prefix}*.json")):
        suffix = p.stem[len(prefix):]
        if suffix.isdigit():
            found[int(suffix)] = read_json(p)
    return found or None


def current_commands(data: Any) -> Any:
    """``data`` with every stored command (``command``, ``commands``, ``driver`` at any
    depth) naming a moved script by its current path, and the run folders and
    results files of the machine that ran it as ``$BRL_RUNS/...`` and
    ``benchmarks/results/...`` (:data:`PORTABLE_PATHS`)."""
    if isinstance(data, dict):
        return {k: _current_command(v) if k in COMMAND_KEYS else current_commands(v)
                for k, v in data.items()}
    if isinstance(data, list):
        return [current_commands(v) for v in data]
    return data


def _current_command(value: Any) -> Any:
    if isinstance(value, list):
        return [_current_command(v) for v in value]
    if not isinstance(value, str):
        return value
    for old, new in MOVED_SCRIPTS.items():
        value = value.replace(old, new)
    for pattern, replacement in REPLACED_SCRIPTS:
        value = pattern.sub(replacement, value)
    for pattern, portable in PORTABLE_PATHS:
        value = pattern.sub(portable, value)
    for old, new in RENAMED_RESULTS.items():
        value = re.sub(re.escape(old) + r"(?![^\s\"'])", new, value)
    return value


def read_json(path: Path) -> Any:
    """A results file, its stored commands under current paths (:func:`current_commands`)."""
    try:
        return current_commands(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
