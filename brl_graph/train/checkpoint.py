r"""Atomic checkpoints and the random-number-generator states that make resume exact.

A checkpoint is a dict saved with :func:`torch.save` that holds only tensors,
numbers, strings, lists and dicts, so it loads with ``weights_only=True``
(no arbitrary code runs when a checkpoint is opened). It is written to a
temporary file in the same folder, flushed to disk, then renamed over the
old one with :func:`os.replace`: a process killed at any moment leaves either
the previous checkpoint or the new one, never a truncated file.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple, Union

import numpy as np
import torch

from brl_graph.io import atomic_write

from .optim import WeightAverage

FORMAT = "brl_graph.train.checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "epoch", "model", "optimizer", "scheduler",
                 "best", "history", "rng", "config", "seconds", "world_size")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or does not match the run."""


def get_rng_state() -> Dict[str, Any]:
    """Captures the Python, NumPy, torch CPU and CUDA generator states (serialisable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: Dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos),
                  int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restores the states captured by :func:`get_rng_state`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    cuda_states: List[torch.Tensor] = list(state.get("cuda", []))
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            raise CheckpointError(f"checkpoint holds {len(cuda_states)} CUDA generator states, "
                                  f"this machine has {torch.cuda.device_count()} GPUs")
        torch.cuda.set_rng_state_all(cuda_states)


def save_checkpoint(state: Mapping[str, Any], path: Union[str, os.PathLike]) -> None:
    """Saves ``state`` to ``path`` atomically (temporary file, fsync, :func:`os.replace`).

    Raises:
        CheckpointError: the model (``state["model"]``) or its weight average
            (``state["average"]``) holds inf or NaN; nothing is written, so the
            checkpoint already at ``path`` stays as it was.
    """
    path = Path(path)
    for what, tensors in (("the model", state.get("model")),
                          ("the weight average", state.get("average"))):
        bad = non_finite_entries(tensors or {})
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise CheckpointError(f"refusing to write {path}: non-finite values in {what}: "
                                  f"{shown}")
    atomic_write(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **state}, f))


def non_finite_entries(tensors: Mapping[str, Any]) -> List[str]:
    """The keys of ``tensors`` (a state dict) whose floating-point values hold inf or NaN."""
    return [key for key, value in tensors.items()
            if torch.is_tensor(value) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())]


def _read(path: Path) -> Any:
    """The object saved at ``path``, loaded with ``weights_only=True`` onto the CPU."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {err}); "
            "delete it to start afresh, or restore a good copy") from err


def _check_training_checkpoint(state: Any, path: Path) -> Dict[str, Any]:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a brl_graph training checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {state.get('version')!r}, "
                              f"this code reads version {VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is damaged or incomplete")
    return state


def load_checkpoint(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    r"""Loads and sanity-checks a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, unreadable (truncated, not a
            torch file), of another format or version, or lacks a key.
    """
    path = Path(path)
    return _check_training_checkpoint(_read(path), path)


def load_model_checkpoint(path: Union[str, os.PathLike]
                          ) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    r"""The ``(model state dict, config)`` of a checkpoint, for using a trained
    model outside training (e.g. the diagnostics report).

    Reads a training checkpoint (checked as by :func:`load_checkpoint`; with
    ``train.ema_decay`` its weight average, the model that was evaluated and
    selected, not the raw trained weights) or any
    dict saved with ``torch.save`` holding ``"model"`` (a state dict) and
    ``"config"`` (a config dict with a ``"model"`` section), such as exported
    weights.

    Raises:
        CheckpointError: the file is missing, unreadable, or holds neither.
    """
    path = Path(path)
    state = _read(path)
    if isinstance(state, dict) and "format" in state:
        state = _check_training_checkpoint(state, path)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} must be a dict with 'model' (a state dict) "
                              f"and 'config' (with a 'model' section); found {keys}")
    config = state["config"]
    if not isinstance(config, dict) or not isinstance(config.get("model", {}), dict):
        raise CheckpointError(f"checkpoint {path}: 'config' must be a dict with a 'model' "
                              "section")
    if state.get("average"):  # train.ema_decay: the average is the model that was evaluated
        return WeightAverage.model_state(state["average"]), config
    return state["model"], config
