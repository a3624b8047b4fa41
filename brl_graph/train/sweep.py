r"""One runner for the experiment sweeps: many ``train.py`` runs, one JSON row each.

A sweep compares models under one training budget: each cell (a model, a
seed, a setting such as a graph size) is one ``python train.py`` subprocess
with its own run folder, so the peak memory in its ``metrics.json`` belongs
to that run alone, and a run killed part-way resumes from its last checkpoint
on the next call. Each finished cell becomes one row of a results file,
rewritten atomically under a lock after every row (several driver processes
may share it); a row holds the exact ``train.py`` command that reproduces it.

.. code-block:: python

    from brl_graph.train.sweep import ResultsFile, model_overrides, run_train

    results = ResultsFile("benchmarks/results/x.json", key_fields=("model", "seed"))
    overrides = ["train.epochs=3", *model_overrides("mpnn"), "out_dir=runs/x-mpnn-s0"]
    metrics, wall, resumed = run_train("configs/ring-transfer.yaml", overrides,
                                       "runs/x-mpnn-s0", root=".")
    results.add({"model": "mpnn", "seed": 0, "test": metrics["test"]["accuracy"]})

The drivers are ``experiments/graph_property.py`` and ``experiments/long_range.py``.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from brl_graph.io import update_json_locked
from brl_graph.labels import BRL, BRL_K1, FULL, LEGACY_MODEL_LABELS, MPNN, canonical_model

PathLike = Union[str, Path]

#: The config overrides that turn the config's BRL model into each compared model.
MODEL_OVERRIDES: Mapping[str, Tuple[str, ...]] = {
    BRL: (),
    MPNN: ("model.num_tokens=0",),
    # PyG's GPSConv is post-norm only: a pre-norm config's full-attention row is post-norm.
    FULL: ("model.global_attn=full", "model.pre_norm=false"),
    BRL_K1: ("model.num_tokens=1",),
}
#: The compared models, in table order.
MODELS: Tuple[str, ...] = tuple(MODEL_OVERRIDES)


def model_overrides(model: str) -> List[str]:
    """The overrides of ``model`` (a label of :data:`MODELS`, or a legacy one)."""
    name = canonical_model(model)
    if name not in MODEL_OVERRIDES:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    return list(MODEL_OVERRIDES[name])


def train_command(config: str, overrides: Sequence[str]) -> str:
    """The ``train.py`` command line of one cell (add ``--resume`` to continue it)."""
    return " ".join(["python", "train.py", "--config", config] + [shlex.quote(o) for o in overrides])


def run_folder(name_for: Callable[[str], str], model: str, root: PathLike) -> str:
    """The run folder of ``model``, as ``name_for(label)`` names it.

    A folder named with one of the model's legacy labels (e.g. ``...-twin-...``
    for ``mpnn``) that already holds a checkpoint is used instead, so a long run
    started by an older driver resumes rather than starting over.
    """
    name = canonical_model(model)
    for legacy, new in LEGACY_MODEL_LABELS.items():
        folder = name_for(legacy)
        if new == name and (_absolute(folder, root) / "checkpoints" / "last.pt").exists():
            return folder
    return name_for(name)


def _absolute(path: PathLike, root: PathLike) -> Path:
    return Path(path) if os.path.isabs(path) else Path(root) / path


def read_metrics(out_dir: PathLike) -> Dict[str, Any]:
    """The ``metrics.json`` of a finished run.

    Raises:
        SystemExit: the run stopped before its last epoch (rerun the sweep to resume it).
    """
    with open(Path(out_dir) / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    if not metrics.get("finished"):
        raise SystemExit(f"{out_dir}: the run stopped after {metrics.get('epochs_completed')} of "
                         f"{metrics.get('epochs')} epochs; run the sweep again to resume it")
    return metrics


def run_train(config: str, overrides: Sequence[str], out_dir: PathLike, *, root: PathLike,
              threads: int = 1) -> Tuple[Dict[str, Any], float, bool]:
    """Trains one cell with ``train.py`` in a subprocess (working directory ``root``).

    The run resumes when ``out_dir`` holds a checkpoint and starts afresh otherwise.
    ``threads`` sets ``OMP_NUM_THREADS`` for the run: on a shared machine more
    threads per process oversubscribe the cores.

    Returns:
        (the run's ``metrics.json``, wall-clock seconds, whether it resumed).

    Raises:
        SystemExit: ``train.py`` failed; the run folder keeps its checkpoints.
    """
    folder = _absolute(out_dir, root)
    resume = (folder / "checkpoints" / "last.pt").exists()
    cmd = [sys.executable, str(Path(root) / "train.py"), "--config", config,
           "--resume" if resume else "--overwrite", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"train.py exited with {done.returncode}; the run folder {folder} "
                         "keeps its checkpoints for a resume")
    return read_metrics(folder), wall, resume


class ResultsFile:
    r"""A sweep's results file: ``{"config": {...}, "rows": [...]}``, one row per cell.

    Rows are identified by ``key_fields``; a ``model`` field is compared by its
    current label, so a row written under a legacy label (``twin``) is the same
    cell as its replacement (``mpnn``). A key field a row lacks counts as
    ``None``, so a field added to the key later (e.g. ``settings``) leaves the
    rows stored before it their cells. Rows are kept in table order: the
    ``model`` field by :data:`MODELS`, every other field by value, ``None`` first.

    Args:
        path (str or Path): The JSON file (created on the first row).
        key_fields (Sequence[str]): The row fields that name one cell.
    """

    def __init__(self, path: PathLike, key_fields: Sequence[str]) -> None:
        self.path = Path(path)
        self.key_fields = tuple(key_fields)

    def key(self, row: Mapping[str, Any]) -> tuple:
        return tuple(canonical_model(row[f]) if f == "model" else row.get(f)
                     for f in self.key_fields)

    def _order(self, row: Mapping[str, Any]) -> tuple:
        def rank(field: str) -> Any:
            if field != "model":
                value = row.get(field)
                return (value is not None, value)  # None and a value never meet in a comparison
            name = canonical_model(row[field])
            return MODELS.index(name) if name in MODELS else len(MODELS)
        return tuple(rank(f) for f in self.key_fields)

    def _checked(self, data: Any) -> Dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise ValueError(f"{self.path} is not a sweep results file (no 'rows' list)")
        return data

    def rows(self) -> List[Dict[str, Any]]:
        """The rows now in the file (none when it does not exist)."""
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as f:
            return list(self._checked(json.load(f))["rows"])

    def done(self) -> set:
        """The keys of the cells already in the file."""
        return {self.key(r) for r in self.rows()}

    def add(self, row: Dict[str, Any], meta: Optional[Mapping[str, Any]] = None) -> None:
        """Adds ``row``, or replaces the row of the same cell, atomically under a lock.

        ``meta`` updates the file's ``config``; a mapping value (e.g. ``widths``)
        is merged into the stored one, so a call with fewer models does not drop
        what an earlier call recorded.
        """
        def update(data: Any) -> Dict[str, Any]:
            data = self._checked(data)
            rows = [r for r in data["rows"] if self.key(r) != self.key(row)] + [row]
            data["rows"] = sorted(rows, key=self._order)
            config = data.setdefault("config", {})
            for name, value in (meta or {}).items():
                if isinstance(value, Mapping) and isinstance(config.get(name), Mapping):
                    value = {**config[name], **value}
                config[name] = value
            return data

        update_json_locked(self.path, update, default=lambda: {"rows": []})


def metric_fields(metrics: Mapping[str, Any], metric: str) -> Dict[str, Any]:
    """The fields every sweep row takes from a run's ``metrics.json``: ``metric`` on the
    valid and test splits at the best validation epoch, epochs, time, size and memory."""
    return {
        "valid": metrics["valid"].get(metric), "test": metrics["test"].get(metric),
        "best_epoch": metrics["best_epoch"], "epochs": metrics["epochs_completed"],
        "finished": metrics.get("finished"), "num_params": metrics["num_params"],
        "seconds": metrics["seconds"], "seconds_per_epoch": metrics["seconds_per_epoch"],
        "peak_memory_mb": metrics.get("peak_memory_mb"),
        "peak_memory_kind": metrics.get("peak_memory_kind"),
    }
