r"""Config files and ``key=value`` overrides to nested dicts, and back to YAML.

Values are YAML everywhere (files, overrides, the diagnostics' dataset
options), read by one safe loader that also takes ``1e-3`` for a float.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Union

import yaml

from brl_graph.io import atomic_write_text


class ConfigError(ValueError):
    """A configuration that cannot be used: unknown key, bad value or bad file."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3`` as a float.

    YAML 1.1 (PyYAML) insists on a dot in the mantissa, so ``lr: 1e-3`` would
    otherwise load as the string ``"1e-3"``.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _yaml_load(text_or_stream: Any) -> Any:
    return yaml.load(text_or_stream, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_overrides(overrides: Iterable[str]) -> Dict[str, Any]:
    r"""Turns ``["train.lr=3e-4", "model.num_tokens=0"]`` into a nested dict.

    Values are parsed as YAML (safe loader), so ``3e-4`` is a float,
    ``[0,1,2]`` a list, ``null`` is ``None`` and ``true`` a bool.
    """
    nested: Dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value "
                              "(e.g. train.lr=3e-4)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = parse_value(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({err})") from None
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override")
        node[parts[-1]] = value
    return nested


def parse_value(raw: str) -> Any:
    """One ``key=value`` value, parsed as YAML: ``3e-4`` a float, ``[0,1]`` a list,
    ``null`` ``None``, a bare word a string; an empty value is ``None``."""
    if not raw.strip():
        return None
    return _yaml_load(raw)


def read_yaml(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Reads a YAML config file into a dict (an empty file is an empty dict)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            loaded = _yaml_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
    return loaded


def save_config(cfg: Mapping[str, Any], path: Union[str, os.PathLike]) -> None:
    """Saves a resolved config as YAML (key order kept), atomically."""
    atomic_write_text(path, yaml.safe_dump(dict(cfg), sort_keys=False, default_flow_style=False))
