r"""Run configuration: defaults, YAML files, dotted overrides and validation.

A configuration is a plain nested ``dict`` with three sections, ``data``,
``model`` and ``train``, and a top-level ``out_dir``. :data:`DEFAULTS` lists
every valid key; a YAML file or a partial ``dict`` is merged over it, then
``key=value`` overrides (``train.lr=3e-4``, ``model.num_tokens=0``) are
applied. An unknown key is an error that lists the valid keys of its section,
so a typo never silently falls back to a default.

Only ``data.options`` is free-form: it is passed as extra keyword arguments to
:func:`brl_graph.data.load_dataset` for options the fixed keys do not name
(e.g. ``data.options.path=my.csv`` for the ``smiles-csv`` loader).

The ``model`` keys are the :class:`~brl_graph.nn.BRLGraphModel` arguments of
the same names (``pe`` and ``pe_dim`` ask the loader for positional
encodings; see :mod:`.build`). Keys renamed since 0.1.0
(:data:`DEPRECATED_KEYS`) are still read, with a :class:`FutureWarning`.
"""
from __future__ import annotations

import copy
import os
import warnings
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from brl_graph.attrs import PE_KINDS
from brl_graph.nn.model import BRL_MODES, GLOBAL_ATTNS, LOCAL_CONVS, NORMS, POOLS

# Reading and writing config files lives in config_io; re-exported here.
from .config_io import (ConfigError, parse_overrides, parse_value,  # noqa: F401
                        read_yaml, save_config)

ConfigLike = Union[str, os.PathLike, Mapping[str, Any], None]

# Every valid key with its default. Dataset-specific options default to None,
# meaning "not passed to the loader", so a config for one dataset never leaks
# an option into another.
DEFAULTS: Dict[str, Any] = {
    "out_dir": "runs/default",
    "data": {
        "name": "ring-transfer",
        "root": None,          # raw files; None = the loader's default ($BRL_DATA or datasets/)
        "cache_dir": None,     # processed files; None = the loader's user cache
        "nodes": None,         # ring-transfer: ring size n
        "depth": None,         # tree-neighbors-match: tree depth r
        "variant": None,       # ring-transfer: "ring" | "crossed-ring"
        "seed": None,          # synthetic generators and random splits
        "options": {},         # any further load_dataset keyword arguments
    },
    "model": {                 # the BRLGraphModel arguments of the same names
        "num_layers": 4,
        "channels": 64,
        "heads": 4,
        "num_tokens": 8,       # 0 = the MPNN-only twin (same layers, no global branch)
        "local": "gine",       # see brl_graph.nn.model.LOCAL_CONVS
        "global_attn": "brl",  # see brl_graph.nn.model.GLOBAL_ATTNS
        "dropout": 0.0,
        "attn_dropout": 0.0,
        "pe": "none",          # none | rwse | lap | [rwse, lap]: computed by the loader, encoded by the model
        "pe_dim": 16,          # the loader's width of each PE kind
        "pe_norm": False,      # batch-normalise the raw PE before its embedding
        "pool": "mean",
        "norm": "auto",        # see brl_graph.nn.model.NORMS
        "pre_norm": False,     # normalise each branch's input, not each residual sum (BRL layers)
        "fold": False,         # one matrix per pair of reservoir projections (BRL layers)
        "readout_tokens": False,  # the head also reads the last layer's tokens (graph level)
        "readout_query": False,   # the first tokens start from the readout node (readout level)
        "head_layers": 2,      # linear layers in the prediction head
        "joint": False,
        "causal": False,
        "brl_mode": "reservoir",  # reservoir | blocks: see brl_graph.nn.BRLConv (mode)
        "window": 64,          # blocks mode: window, block length, tokens per block,
        "block_size": 32,      # blocks read in full
        "block_tokens": 1,
        "top_k": 0,
    },
    "train": {
        "epochs": 100,
        "batch_size": 32,
        "eval_batch_size": None,   # None = batch_size
        "lr": 1e-3,
        "weight_decay": 0.0,
        "scheduler": "cosine",     # cosine | plateau | none
        "warmup_epochs": 0,
        "min_lr": 0.0,
        "plateau_factor": 0.5,
        "plateau_patience": 10,    # evaluations without a better monitored metric
        "plateau_monitor": "valid",  # valid | train: the split whose metric the plateau watches
        "passes_per_epoch": 1,     # passes over the training set per logged epoch
        "stop_monitor": "valid",   # valid | train: the split whose metric the stop rule watches
        "stop_target": None,       # stop once the monitored metric reaches this (e.g. 1.0)
        "stop_patience": None,     # stop after this many evaluations without a gain
        "clip": 1.0,               # max gradient norm; None or 0 disables clipping
        "ema_decay": None,         # evaluate (and select) an EMA of the weights with this decay
        "loss": "auto",            # regression only: auto | l1 | mse (auto: l1 for mae, else mse)
        "seed": 0,
        "seeds": None,             # a list runs several seeds into out_dir/seed_<s>/
        "device": "auto",          # auto | cpu | cuda | cuda:<i>
        "bf16": False,             # bfloat16 autocast for forward and loss
        "num_workers": 0,
        "threads": None,           # torch CPU threads per process; None = torch's default
        "eval_every": 1,
        "eval_train": False,       # also score the training split each evaluation (needed by a train monitor)
        "limit_batches": None,     # train on at most this many batches per pass (smoke tests, timing)
        "progress": True,          # tqdm bar per epoch (rank 0 only)
    },
}

# Free-form mappings: their content is not checked against DEFAULTS.
FREE_FORM = {("data", "options")}
# Keys that may differ between a checkpoint's config and the resuming one:
# they change neither the model nor the optimisation trajectory up to the
# checkpoint (``train.epochs`` may grow to extend a finished run).
RESUMABLE_CHANGES = {
    "out_dir", "train.epochs", "train.device", "train.num_workers", "train.threads", "train.progress",
    "train.eval_batch_size", "data.root", "data.cache_dir", "train.seeds",
}

# The splits a plateau schedule or the stop rule may watch. "train" is scored
# by an evaluation pass over the training split (train.eval_train).
MONITORS = ("valid", "train")

# The model's choices are declared by the model; the engine's here.
CHOICES: Dict[str, Iterable[Any]] = {
    "model.local": LOCAL_CONVS,
    "model.global_attn": GLOBAL_ATTNS,
    "model.pool": tuple(POOLS),
    "model.norm": NORMS,
    "model.brl_mode": BRL_MODES,
    "train.scheduler": ("cosine", "plateau", "none"),
    "train.plateau_monitor": MONITORS,
    "train.stop_monitor": MONITORS,
    "train.loss": ("auto", "l1", "mse"),
}

# Old key -> its current name. Accepted, with a warning, for one release
# (0.1.x): configs, overrides and checkpoints written before the rename load
# unchanged. Remove in 0.2.
DEPRECATED_KEYS: Dict[str, str] = {
    "model.layers": "model.num_layers",
    "model.global": "model.global_attn",
}


def pe_kinds(pe: Any) -> List[str]:
    """``model.pe`` as a list of PE kinds: ``"none"`` -> ``[]``, ``"rwse"`` ->
    ``["rwse"]``, ``["lap", "rwse"]`` kept in the order given."""
    if pe is None or pe == "none":
        return []
    kinds = [pe] if isinstance(pe, str) else pe
    if (not isinstance(kinds, list) or not kinds
            or any(not isinstance(k, str) or k not in PE_KINDS for k in kinds)
            or len(set(kinds)) != len(kinds)):
        raise ConfigError(f"model.pe={pe!r} must be 'none', one of {list(PE_KINDS)} or a list "
                          f"of distinct ones")
    return list(kinds)


def rename_deprecated(config: Mapping[str, Any], warn: bool = True) -> Dict[str, Any]:
    """A copy of a (partial) nested config with :data:`DEPRECATED_KEYS` renamed.

    Args:
        warn: emit a :class:`FutureWarning` per old key (a warning category
            shown by default: the reader is a user, not a developer).

    Raises:
        ConfigError: a section holds both an old key and its new name.
    """
    out = copy.deepcopy(dict(config))
    for old, new in DEPRECATED_KEYS.items():
        section, old_key = old.split(".")
        new_key = new.split(".")[1]
        node = out.get(section)
        if not isinstance(node, Mapping) or old_key not in node:
            continue
        if new_key in node:
            raise ConfigError(f"config sets both '{old}' and '{new}'; '{old}' is the deprecated "
                              f"name of '{new}': keep only '{new}'")
        if warn:
            warnings.warn(f"config key '{old}' is deprecated and will be removed in 0.2; "
                          f"use '{new}'", FutureWarning, stacklevel=3)
        node = dict(node)
        node[new_key] = node.pop(old_key)
        out[section] = node
    return out


def _merge(base: Dict[str, Any], update: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Recursively merges ``update`` into a copy of ``base``, rejecting unknown keys."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if not isinstance(key, str):
            raise ConfigError(f"config keys must be strings, got {key!r} in '{prefix or '<root>'}'")
        path = f"{prefix}.{key}" if prefix else key
        if key not in out:
            where = f"section '{prefix}'" if prefix else "the top level"
            valid = ", ".join(sorted(out))
            raise ConfigError(f"unknown config key '{path}' in {where}; valid keys: {valid}")
        if tuple(path.split(".")) in FREE_FORM:
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{path}' must be a mapping, got {type(value).__name__}")
            out[key] = {**out[key], **copy.deepcopy(dict(value))}
        elif isinstance(out[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{path}' is a section and must be a mapping, "
                                  f"got {type(value).__name__} {value!r}")
            out[key] = _merge(out[key], value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _validate(cfg: Dict[str, Any]) -> None:
    """Checks types and ranges of the values that the engine relies on."""
    def get(path: str) -> Any:
        node: Any = cfg
        for part in path.split("."):
            node = node[part]
        return node

    for path, choices in CHOICES.items():
        if get(path) not in tuple(choices):
            raise ConfigError(f"{path}={get(path)!r} is not one of {list(choices)}")

    def need_int(path: str, low: int, allow_none: bool = False) -> None:
        value = get(path)
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{path} must be an integer >= {low}, got {value!r}")

    def need_float(path: str, low: float, allow_none: bool = False) -> None:
        value = get(path)
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
            raise ConfigError(f"{path} must be a number >= {low}, got {value!r}")

    pe_kinds(get("model.pe"))
    for path in ("model.num_layers", "model.channels", "model.heads", "model.head_layers",
                 "model.window", "model.block_size", "model.block_tokens", "train.epochs",
                 "train.batch_size", "train.eval_every", "train.passes_per_epoch"):
        need_int(path, 1)
    for path in ("model.num_tokens", "model.top_k", "model.pe_dim", "train.warmup_epochs",
                 "train.num_workers", "train.plateau_patience", "train.seed"):
        need_int(path, 0)
    need_int("train.eval_batch_size", 1, allow_none=True)
    need_int("train.threads", 1, allow_none=True)
    need_int("train.limit_batches", 1, allow_none=True)
    need_int("train.stop_patience", 1, allow_none=True)
    target = get("train.stop_target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))):
        raise ConfigError(f"train.stop_target must be null or a number, got {target!r}")
    for path in ("model.dropout", "model.attn_dropout"):
        need_float(path, 0.0)
        if get(path) >= 1.0:
            raise ConfigError(f"{path} must be < 1, got {get(path)!r}")
    for path in ("train.weight_decay", "train.min_lr"):
        need_float(path, 0.0)
    need_float("train.clip", 0.0, allow_none=True)
    ema = get("train.ema_decay")
    if ema is not None and (isinstance(ema, bool) or not isinstance(ema, (int, float))
                            or not 0 < ema < 1):
        raise ConfigError(f"train.ema_decay must be null or in (0, 1), got {ema!r}")
    need_float("train.lr", 0.0)
    if get("train.lr") <= 0:
        raise ConfigError(f"train.lr must be > 0, got {get('train.lr')!r}")
    factor = get("train.plateau_factor")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
        raise ConfigError(f"train.plateau_factor must be in (0, 1), got {factor!r}")
    if get("model.channels") % get("model.heads") != 0:
        raise ConfigError(f"model.channels={get('model.channels')} must be divisible by "
                          f"model.heads={get('model.heads')}")
    seeds = get("train.seeds")
    if seeds is not None:
        if (not isinstance(seeds, list) or not seeds
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):
            raise ConfigError(f"train.seeds must be null or a non-empty list of integers >= 0, "
                              f"got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"train.seeds has duplicates: {seeds}")
    device = get("train.device")
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda")
                                           or device.startswith("cuda:")):
        raise ConfigError(f"train.device must be 'auto', 'cpu', 'cuda' or 'cuda:<i>', got {device!r}")
    for path in ("model.joint", "model.causal", "model.pre_norm", "model.pe_norm", "model.fold",
                 "model.readout_tokens", "model.readout_query",
                 "train.bf16", "train.progress", "train.eval_train"):
        if not isinstance(get(path), bool):
            raise ConfigError(f"{path} must be true or false, got {get(path)!r}")
    # The joint softmax splits its projections into heads, which do not fold; say so
    # here rather than when the first layer is built.
    if (get("model.fold") and get("model.joint") and get("model.global_attn") == "brl"
            and get("model.brl_mode") == "reservoir" and get("model.num_tokens")):
        raise ConfigError("model.fold=true does not apply to model.joint=true (the joint "
                          "softmax's per-head projections do not fold): set one of them false")
    if get("train.scheduler") == "plateau" and get("train.warmup_epochs"):
        raise ConfigError("train.warmup_epochs applies to the cosine and none schedules only; "
                          "train.scheduler=plateau starts at train.lr: set "
                          "train.warmup_epochs=0 or choose another schedule")
    if get("model.readout_query") and get("model.causal"):
        raise ConfigError("model.readout_query=true conditions each graph's tokens on its "
                          "readout node; a causal model keeps tokens per position: set one "
                          "of them false")
    if get("model.readout_tokens") and get("model.causal"):
        raise ConfigError("model.readout_tokens=true needs one set of tokens per graph; a "
                          "causal model keeps one per position: set one of them false")
    # A train monitor needs the train metric, which only an evaluation pass
    # over the training split gives; say so rather than switch it on silently.
    in_use = {"train.plateau_monitor": get("train.scheduler") == "plateau",
              "train.stop_monitor": (get("train.stop_target") is not None
                                     or get("train.stop_patience") is not None)}
    for path, used in in_use.items():
        if used and get(path) == "train" and not get("train.eval_train"):
            raise ConfigError(f"{path}=train needs train.eval_train=true (the train metric "
                              "is measured by an evaluation pass over the training split)")
    if not isinstance(get("data.name"), str) or not get("data.name"):
        raise ConfigError(f"data.name must be a dataset name, got {get('data.name')!r}")
    if not isinstance(cfg["out_dir"], (str, os.PathLike)) or not str(cfg["out_dir"]):
        raise ConfigError(f"out_dir must be a path, got {cfg['out_dir']!r}")


def load_config(config: ConfigLike = None, overrides: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    r"""Resolves a full configuration.

    Args:
        config: a YAML file path, a (partial) nested ``dict``, or ``None`` for
            :data:`DEFAULTS` alone.
        overrides: dotted ``key=value`` strings applied last.

    Returns:
        A new nested dict holding every key of :data:`DEFAULTS`.

    Raises:
        ConfigError: unknown keys (listing the valid ones), bad values or an
            unreadable file.
    """
    if config is None:
        user: Mapping[str, Any] = {}
    elif isinstance(config, Mapping):
        user = config
    elif isinstance(config, (str, os.PathLike)):
        user = read_yaml(config)
    else:
        raise ConfigError(f"config must be a YAML path or a dict, got {type(config).__name__}")
    cfg = _merge(DEFAULTS, rename_deprecated(user))
    if overrides:
        cfg = _merge(cfg, rename_deprecated(parse_overrides(overrides)))
    if cfg["out_dir"] is not None:
        cfg["out_dir"] = str(cfg["out_dir"])
    _validate(cfg)
    return cfg


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"train": {"lr": 1}}`` → ``{"train.lr": 1}`` (free-form mappings kept whole)."""
    flat: Dict[str, Any] = {}
    for key, value in cfg.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping) and tuple(path.split(".")) not in FREE_FORM:
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any],
                       ignore: Iterable[str] = RESUMABLE_CHANGES) -> List[str]:
    """Lists ``key: old -> new`` for every key that differs, except ``ignore``.

    A key that ``old`` lacks counts as its :data:`DEFAULTS` value: a key added
    since ``old`` was written defaults to the behaviour of the code that wrote it.
    """
    a, b, defaults = flatten(old), flatten(new), flatten(DEFAULTS)
    skip = set(ignore)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in skip:
            continue
        was = a.get(key, defaults.get(key, "<absent>"))
        if was != b.get(key, "<absent>"):
            diffs.append(f"{key}: {was!r} -> {b.get(key, '<absent>')!r}")
    return diffs
