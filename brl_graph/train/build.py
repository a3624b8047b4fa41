r"""Config → benchmark and model: the one place where a run's config becomes objects.

The training engine, the diagnostics report and the benchmark scripts all build
their benchmark and model here, so a config means the same thing everywhere:

.. code-block:: python

    from brl_graph.train import build_bench, build_model, load_config
    cfg = load_config("configs/ring-transfer.yaml", ["model.num_layers=2"])
    bench = build_bench(cfg)
    model = build_model(cfg, bench)

The positional encodings are the one place where config, loader and model
meet: ``model.pe`` names the kinds (``rwse``, ``lap`` or a list of both) and
``model.pe_dim`` their width; the loader computes them and records each
attribute's width in :attr:`Benchmark.pe <brl_graph.data.Benchmark.pe>`, and
the model's encoder widths are read from there, so the model always matches
the data it is given.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import torch

from brl_graph.attrs import PE_ATTRS

from brl_graph.nn.model import TASK_LEVELS, BRLGraphModel

from .config import ConfigError, pe_kinds


def dataset_options(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The keyword arguments ``load_dataset`` receives besides ``root`` and ``cache_dir``."""
    data, model = config["data"], config["model"]
    options = {key: data[key] for key in ("nodes", "depth", "variant", "seed")
               if data[key] is not None}
    options.update(data["options"])
    # The positional encoding is computed by the loader and read by the model:
    # one key drives both so they cannot disagree.
    kinds = pe_kinds(model["pe"])
    if kinds:
        options["pe"] = kinds[0] if len(kinds) == 1 else kinds
    if "rwse" in kinds:
        options["rwse_dim"] = model["pe_dim"]
    if "lap" in kinds:
        options["lap_pe_dim"] = model["pe_dim"]
    return options


def build_bench(config: Mapping[str, Any]):
    """Loads the benchmark that ``config["data"]`` names (with ``config["model"]``'s PE)."""
    from brl_graph.data import load_dataset

    data = config["data"]
    options = dataset_options(config)
    try:
        return load_dataset(data["name"], root=data["root"], cache_dir=data["cache_dir"],
                            **options)
    except (KeyError, ValueError) as err:  # unknown name or option, bad option value
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(f"cannot load data.name={data['name']!r} with options {options}: "
                          f"{message}") from err


def pe_widths(model_cfg: Mapping[str, Any], bench) -> Dict[str, int]:
    r"""``{"rwse_dim": ..., "lap_pe_dim": ...}`` for the PE kinds ``model.pe`` asks for.

    Each width is the one the benchmark records in ``bench.pe`` (what the
    loader computed). A benchmark built elsewhere (e.g. :func:`from_pyg` over
    graphs that already carry the attribute) may record none: ``model.pe_dim``
    is then taken as the width, as the data must match it anyway.
    """
    recorded: Mapping[str, int] = getattr(bench, "pe", None) or {}
    widths: Dict[str, int] = {}
    for kind in pe_kinds(model_cfg["pe"]):
        attr = PE_ATTRS[kind]
        widths[f"{attr}_dim"] = int(recorded.get(attr, model_cfg["pe_dim"]))
    return widths


def model_kwargs(model_cfg: Mapping[str, Any], bench, task_level: str) -> Dict[str, Any]:
    r"""The :class:`~brl_graph.nn.BRLGraphModel` arguments for a config's ``model``
    section and a benchmark's features.

    The section's keys are the constructor's argument names, except ``pe`` and
    ``pe_dim`` (the widths come from the benchmark, :func:`pe_widths`).
    Molecule benchmarks with OGB integer features get the OGB atom and bond
    encoders; other benchmarks get linear encoders of their float features.
    """
    m = model_cfg
    kwargs: Dict[str, Any] = dict(
        out_channels=bench.out_channels, channels=m["channels"], num_layers=m["num_layers"],
        num_tokens=m["num_tokens"], heads=m["heads"], local=m["local"],
        global_attn=m["global_attn"], dropout=m["dropout"], attn_dropout=m["attn_dropout"],
        causal=m["causal"], joint=m["joint"], task_level=task_level, pool=m["pool"],
        norm=m["norm"], brl_mode=m["brl_mode"], window=m["window"],
        block_size=m["block_size"], block_tokens=m["block_tokens"], top_k=m["top_k"],
        pre_norm=m["pre_norm"],
        head_layers=m["head_layers"], pe_norm=m["pe_norm"], fold=m["fold"],
        readout_tokens=m["readout_tokens"], readout_query=m["readout_query"],
    )
    if bench.atom_features:
        kwargs.update(node_encoder="atom", edge_encoder="bond")
    else:
        kwargs.update(node_encoder="linear", in_channels=bench.num_node_features)
        if bench.num_edge_features:
            kwargs.update(edge_encoder="linear", edge_dim=bench.num_edge_features)
    if getattr(bench, "node_readout", None):
        kwargs["readout_attr"] = bench.node_readout
    kwargs.update(pe_widths(m, bench))
    return kwargs


def build_model(config: Mapping[str, Any], bench,
                task_level: Optional[str] = None) -> torch.nn.Module:
    r"""The :class:`~brl_graph.nn.BRLGraphModel` that ``config["model"]`` (a
    resolved config, see :func:`~brl_graph.train.load_config`) describes for
    this benchmark.

    Args:
        task_level: the head; ``None`` takes the benchmark's level, which must
            be one the model has a head for.
    """
    # Other benchmark levels (e.g. link prediction) have no head.
    if task_level is None:
        if bench.level not in TASK_LEVELS:
            raise ConfigError(
                f"benchmark {getattr(bench, 'name', '?')!r} has level {bench.level!r}; the "
                f"model has heads for {', '.join(TASK_LEVELS)} levels only")
        task_level = bench.level
    if config["model"]["readout_tokens"] and task_level == "node":
        raise ConfigError(f"model.readout_tokens=true reads one set of tokens per graph, but "
                          f"{getattr(bench, 'name', '?')!r} predicts per node: set it false")
    try:
        return BRLGraphModel(**model_kwargs(config["model"], bench, task_level))
    except ValueError as err:  # settings that are valid one by one but not together
        raise ConfigError(f"the model.* settings do not fit together: {err}") from err


def count_parameters(model: torch.nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__: List[str] = ["build_bench", "build_model", "count_parameters",
                      "dataset_options", "model_kwargs", "pe_widths"]
