r"""The dataset report behind ``python -m brl_graph.diagnostics``.

For a sample of a benchmark's graphs it measures

* the geometry: total effective resistance per graph with and without
  :math:`K` global tokens (:func:`resistance_report`), and the mean resistance by
  hop distance;
* each model's Jacobian sensitivity by hop (:func:`model_sensitivity`): for a
  few target nodes per graph, :math:`S[t, u] = \lVert \partial h^{(L)}_t /
  \partial h^{(0)}_u \rVert_F`, with :math:`h^{(0)}` the *encoded* input node states
  (after the node encoder) and :math:`h^{(L)}` the final node states before the
  head; and the fraction of its mass beyond :math:`L` hops, which is exactly
  ``0`` for an :math:`L`-layer MPNN;
* PyG's :func:`~torch_geometric.utils.total_influence` next to the same numbers
  from :func:`~brl_graph.diagnostics.jacobian_sensitivity`, on the smallest
  connected sampled graph (:func:`compare_with_pyg`);

and writes ``report.json``, two PNG plots and a short text table.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from brl_graph.diagnostics._graph import hop_distances
from brl_graph.diagnostics.jacobian import (jacobian_sensitivity, jacobian_sensitivity_estimate,
                                            pyg_total_influence, sensitivity_by_distance)
from brl_graph.diagnostics.resistance import resistance_summary
from brl_graph.io import atomic_write, write_json
from brl_graph.nn.model import TASK_LEVELS
from brl_graph.train import build_model, dataset_options, load_config, load_model_checkpoint
from brl_graph.train.config import parse_value

SPLITS = ("train", "valid", "test")
# Random-init models: BRL and its MPNN-only twin (the same layers without tokens).
MODEL_KINDS = ("brl", "mpnn")
# The ``model`` choices of :func:`run_report`: one kind, or both.
MODEL_CHOICES = (*MODEL_KINDS, "both")


# ----------------------------------------------------------------------------- data


def parse_options(items: Sequence[str]) -> Dict[str, Any]:
    """``["nodes=10", "variant=ring"]`` to ``{"nodes": 10, "variant": "ring"}``
    (values parsed as YAML, as in the training config's overrides)."""
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"dataset option {item!r} is not of the form key=value")
        out[key] = parse_value(raw)
    return out


def select_graphs(bench: Any, split: str, max_graphs: int, seed: int) -> Tuple[List[int], List[Data]]:
    """A seeded random sample of ``max_graphs`` graphs of one split, in index order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if max_graphs < 1:
        raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
    dataset = getattr(bench, split)
    size = len(dataset)
    if size == 0:
        raise ValueError(f"split {split!r} of {getattr(bench, 'name', '?')} has no graphs")
    gen = torch.Generator().manual_seed(seed)
    index = sorted(torch.randperm(size, generator=gen)[:max_graphs].tolist())
    return index, [dataset[i] for i in index]


# ----------------------------------------------------------------------------- models


def model_from_config(model_cfg: Mapping[str, Any], bench: Any) -> torch.nn.Module:
    r"""A :class:`~brl_graph.nn.BRLGraphModel` from a training config's ``model``
    section (missing keys take the training defaults; see
    :func:`brl_graph.train.build_model`) and the benchmark's features.

    Only the node states matter here, so a benchmark whose level the model has
    no head for (e.g. link prediction) gets a node-level head.
    """
    config = load_config({"model": dict(model_cfg)})
    level = bench.level if bench.level in TASK_LEVELS else "node"
    return build_model(config, bench, task_level=level)


def random_model_config(kind: str, layers: int, channels: int, num_tokens: int, heads: int,
                        local: str) -> Dict[str, Any]:
    """The model section of a random-init ``"brl"`` model or its ``"mpnn"`` twin
    (same layers, with no tokens)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected 'brl' or 'mpnn'")
    if kind == "brl" and num_tokens < 1:
        raise ValueError(f"a BRL model needs num_tokens >= 1, got {num_tokens}")
    return {"num_layers": layers, "channels": channels, "heads": heads, "local": local,
            "num_tokens": num_tokens if kind == "brl" else 0,
            "global_attn": "brl" if kind == "brl" else "none"}


def model_kind(model: torch.nn.Module) -> str:
    """``"brl"`` for a model with tokens, ``"mpnn"`` without, else its global attention."""
    attn = getattr(model, "global_attn", "brl")
    if attn in ("brl", "none"):
        return "brl" if getattr(model, "num_tokens", 0) > 0 else "mpnn"
    return attn


# ----------------------------------------------------------------------------- measures


def _chunks(graphs: Sequence[Data], max_nodes: int) -> List[List[int]]:
    """Consecutive graph indices grouped so each group holds at most ``max_nodes`` nodes
    (a larger graph forms a group of its own)."""
    groups: List[List[int]] = [[]]
    size = 0
    for i, g in enumerate(graphs):
        n = int(g.num_nodes)
        if groups[-1] and size + n > max_nodes:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += n
    return [g for g in groups if g]


def choose_targets(graphs: Sequence[Data], num_targets: int, seed: int) -> List[Tensor]:
    """``num_targets`` distinct random nodes per graph (all of a smaller graph)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(int(g.num_nodes), generator=gen)[:num_targets].sort().values
            for g in graphs]


def model_sensitivity(model: torch.nn.Module, graphs: Sequence[Data], targets: Sequence[Tensor],
                      *, method: str = "estimate", num_probes: int = 8, seed: int = 0,
                      max_nodes: int = 2048, device: str = "cpu") -> Dict[str, Any]:
    r"""Jacobian sensitivity of ``model``'s final node states to its encoded input
    states, pooled over the given targets of all graphs.

    Graphs are batched (at most ``max_nodes`` nodes per batch) and share backward
    passes, which is exact because the model never mixes graphs in eval mode.

    Returns:
        dict: ``by_hop`` (mean :math:`S` over target/source pairs at each hop),
        ``relative`` (``by_hop`` divided by its hop-0 value), ``pairs_by_hop``,
        ``mass_beyond_layers`` (share of :math:`\sum S` beyond ``model.num_layers``
        hops, sources with no path included), ``num_targets``, ``method``,
        ``backward_passes_per_target`` and ``seconds``.
    """
    if method not in ("exact", "estimate"):
        raise ValueError(f"unknown sensitivity method {method!r}; expected 'exact' or 'estimate'")
    start = time.perf_counter()
    model.eval()
    layers = int(getattr(model, "num_layers"))
    gen = torch.Generator().manual_seed(seed)
    sums: Dict[int, float] = defaultdict(float)
    counts: Dict[int, int] = defaultdict(int)
    beyond = total = 0.0
    num_targets = 0
    c_out = None
    for group in _chunks(graphs, max_nodes):
        batch = Batch.from_data_list([graphs[i] for i in group])
        offsets = batch.ptr[:-1]
        tgt = torch.cat([targets[i] + offsets[j] for j, i in enumerate(group)])
        on_device = batch.to(device)
        with torch.no_grad():
            x = model.encode(on_device).detach()

        def f(z: Tensor, data: Batch = on_device) -> Tensor:
            return model.node_states(data, x_encoded=z)

        if method == "exact":
            s = jacobian_sensitivity(f, x, tgt, batch=batch.batch)
        else:
            s = jacobian_sensitivity_estimate(f, x, tgt, num_probes, batch=batch.batch,
                                              generator=gen)
        s = s.detach().double().cpu()
        dist = hop_distances(batch.edge_index, batch.num_nodes, tgt)
        same = batch.batch[tgt].unsqueeze(1) == batch.batch.unsqueeze(0)
        finite = torch.isfinite(dist)
        hops = torch.where(finite, dist, torch.zeros_like(dist)).long()
        for h in torch.unique(hops[finite]).tolist():
            sel = finite & (hops == h)
            sums[h] += float(s[sel].sum())
            counts[h] += int(sel.sum())
        beyond += float(s[same & (dist > layers)].sum())
        total += float(s[same].sum())
        num_targets += tgt.numel()
        c_out = x.size(1)
    by_hop = {h: sums[h] / counts[h] for h in sorted(counts)}
    base = by_hop.get(0, 0.0)
    return {
        "method": method,
        "num_probes": num_probes if method == "estimate" else None,
        "backward_passes_per_target": num_probes if method == "estimate" else c_out,
        "num_targets": num_targets,
        "by_hop": by_hop,
        "relative": {h: (v / base if base > 0 else math.nan) for h, v in by_hop.items()},
        "pairs_by_hop": {h: counts[h] for h in sorted(counts)},
        "mass_beyond_layers": beyond / total if total > 0 else math.nan,
        "seconds": time.perf_counter() - start,
    }


def compare_with_pyg(model: torch.nn.Module, graph: Data, device: str = "cpu") -> Dict[str, Any]:
    r"""Per-hop :math:`\ell_1` influence of every node of one connected graph, from
    PyG's :func:`~torch_geometric.utils.total_influence` and from
    :func:`~brl_graph.diagnostics.jacobian_sensitivity` (``norm="l1"``,
    ``reduce="total"``).

    The hop radius is the graph's diameter, so each node's PyG subgraph is the
    whole graph and both computations see the same model input.
    """
    start = time.perf_counter()
    model.eval()
    n = int(graph.num_nodes)
    dist = hop_distances(graph.edge_index, n)
    if not bool(torch.isfinite(dist).all()):
        raise ValueError("compare_with_pyg needs a connected graph")
    diameter = int(dist.max())
    graph = graph.to(device)
    edge_index = graph.edge_index
    with torch.no_grad():
        x = model.encode(graph).detach().float()

    def f_pyg(z: Tensor, sub_edge_index: Tensor) -> Tensor:
        # With radius = diameter, PyG keeps every node (identity relabelling) and every edge.
        if sub_edge_index.shape != edge_index.shape or not torch.equal(sub_edge_index, edge_index):
            raise RuntimeError("PyG's k-hop subgraph is not the whole graph; the edge "
                               "features would not line up")
        return model.node_states(graph, x_encoded=z)

    pyg, breadth = pyg_total_influence(f_pyg, x, edge_index, max_hops=diameter)
    s = jacobian_sensitivity(lambda z: model.node_states(graph, x_encoded=z), x, norm="l1")
    ours = sensitivity_by_distance(s, edge_index, reduce="total")
    ours_list = [ours.get(h, 0.0) for h in range(diameter + 1)]
    pyg_list = [float(v) for v in pyg.tolist()]
    scale = max(max(abs(v) for v in pyg_list), 1e-30)
    return {
        "num_nodes": n, "max_hops": diameter,
        "ours_total_by_hop": ours_list, "pyg_total_by_hop": pyg_list,
        "max_abs_diff_over_max": max(abs(a - b) for a, b in zip(ours_list, pyg_list)) / scale,
        "pyg_influence_weighted_receptive_field": float(breadth),
        "seconds": time.perf_counter() - start,
    }


def resistance_report(graphs: Sequence[Data], num_tokens: int, seed: int = 0) -> Dict[str, Any]:
    """:func:`~brl_graph.diagnostics.resistance_summary` with the mean resistance
    by hop, pooled over all graphs, without and with the tokens."""
    start = time.perf_counter()
    summary = resistance_summary(graphs, num_tokens=num_tokens, by_hop=True, seed=seed)
    summary["seconds"] = time.perf_counter() - start
    return summary


# ----------------------------------------------------------------------------- output


def _save_figure(fig, path: os.PathLike) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # the Agg canvas: no display, no global pyplot state
    atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=120))


def plot_sensitivity(models: Mapping[str, Mapping[str, Any]], path: os.PathLike) -> None:
    """Relative sensitivity (hop-0 = 1) against hop for every model, on one log-scale
    figure; exact zeros (beyond an MPNN's layers) are drawn on the bottom axis."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    positive = [v for m in models.values() for v in m["sensitivity"]["relative"].values()
                if v is not None and v > 0 and math.isfinite(v)]
    floor = min(positive) / 10 if positive else 1e-12
    for name, m in models.items():
        rel = m["sensitivity"]["relative"]
        hops = sorted(int(h) for h in rel)
        vals = [rel[h] if rel[h] is not None and math.isfinite(rel[h]) else 0.0 for h in hops]
        line, = ax.plot(hops, [max(v, floor) for v in vals], marker="o", ms=3,
                        label=f"{name} (L={m['layers']}, K={m['num_tokens']})")
        ax.axvline(m["layers"], color=line.get_color(), ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor * 0.8)
    ax.set_xlabel("hop distance between target and source")
    ax.set_ylabel("mean sensitivity / hop-0 value")
    ax.set_title("Jacobian sensitivity by hop (dotted: L hops; bottom: exactly 0)")
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)


def plot_resistance(resistance: Mapping[str, Any], path: os.PathLike) -> None:
    """Histogram of :math:`R_{tot}` per graph without and with tokens (log bins)."""
    from matplotlib.figure import Figure

    per = resistance["per_graph"]
    plain = [v for v in per["r_tot"] if v is not None and math.isfinite(v) and v > 0]
    tok = [v for v in per["r_tot_tokens"] if v is not None and math.isfinite(v) and v > 0]
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    values = plain + tok
    if values:
        bins = np.logspace(np.log10(min(values)), np.log10(max(values)) + 1e-9, 40)
        ax.hist(plain, bins=bins, alpha=0.6, label="graph")
        ax.hist(tok, bins=bins, alpha=0.6, label=f"+ {resistance['num_tokens']} tokens")
        ax.set_xscale("log")
    ax.set_xlabel(r"total effective resistance $R_{tot}$ per graph")
    ax.set_ylabel("graphs")
    skipped = resistance["num_disconnected"]
    ax.set_title("Total effective resistance per graph" + (
        f"\n({skipped} disconnected: infinite without tokens, not drawn)" if skipped else ""),
        fontsize=10)
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def format_table(report: Mapping[str, Any]) -> str:
    """A short plain-text summary of a report."""
    res = report["resistance"]
    lines = [f"dataset {report['dataset']}  split {report['split']}  graphs {report['num_graphs']}"
             f"  mean nodes {report['mean_nodes']:.1f}  disconnected {res['num_disconnected']}",
             "",
             f"{'R_tot per graph':<22}{'mean':>12}{'median':>12}{'max':>12}"]
    for label, key in (("graph", "r_tot"), (f"+ {res['num_tokens']} tokens", "r_tot_tokens"),
                       ("drop (x)", "ratio")):
        st = res[key]
        lines.append(f"  {label:<20}{_fmt(st['mean']):>12}{_fmt(st['median']):>12}"
                     f"{_fmt(st['max']):>12}")
    models = report["models"]
    if models:
        names = list(models)
        lines += ["", "sensitivity by hop, relative to hop 0 "
                      f"({next(iter(models.values()))['sensitivity']['method']})",
                  f"{'hop':>5}" + "".join(f"{n:>14}" for n in names)]
        hops = sorted({int(h) for m in models.values() for h in m["sensitivity"]["relative"]})
        depth = max(m["layers"] for m in models.values())
        # Every hop near the receptive field, then doubling distances and the last.
        shown = [h for h in hops if h <= depth + 2 or (h & (h - 1)) == 0 or h == hops[-1]]
        for h in shown:
            lines.append(f"{h:>5}" + "".join(
                f"{_fmt(models[n]['sensitivity']['relative'].get(h)):>14}" for n in names))
        lines.append(f"{'mass beyond L hops':<19}" + "".join(
            f"{_fmt(models[n]['sensitivity']['mass_beyond_layers']):>14}" for n in names))
        if any("pyg_comparison" in m for m in models.values()):
            lines.append(f"{'pyg vs ours (rel)':<19}" + "".join(
                f"{_fmt(models[n].get('pyg_comparison', {}).get('max_abs_diff_over_max')):>14}"
                for n in names))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the command


def _smallest_connected(graphs: Sequence[Data]) -> Optional[int]:
    best = None
    for i, g in enumerate(graphs):
        n = int(g.num_nodes)
        if n < 2 or (best is not None and n >= int(graphs[best].num_nodes)):
            continue
        if bool(torch.isfinite(hop_distances(g.edge_index, n, torch.tensor([0]))).all()):
            best = i
    return best


def run_report(dataset: Optional[str], out: os.PathLike, *, root: Optional[str] = None,
               cache_dir: Optional[str] = None, options: Optional[Mapping[str, Any]] = None,
               split: str = "train", max_graphs: int = 200,
               checkpoints: Sequence[os.PathLike] = (), model: str = "both", layers: int = 4,
               channels: int = 64, num_tokens: int = 8, heads: int = 4, local: str = "gine",
               targets: int = 4, sensitivity: str = "estimate", probes: int = 8,
               pyg_compare: bool = True, seed: int = 0, max_nodes: int = 2048,
               device: str = "cpu", log=print) -> Dict[str, Any]:
    r"""Runs every measure on ``max_graphs`` graphs of ``dataset`` and writes
    ``out/report.json``, ``out/sensitivity_by_hop.png`` and
    ``out/resistance_hist.png``; returns the report.

    Models come from ``checkpoints`` (training checkpoints, or any dict with
    ``"model"`` and ``"config"``) or, without any, are built at random
    initialisation with ``torch.manual_seed(seed)``: ``model="brl"``, ``"mpnn"``
    (the twin without tokens) or ``"both"``. Models run on ``device``; the
    resistance computations run on the CPU (SciPy).
    """
    from brl_graph.data import load_dataset

    started = time.perf_counter()
    if model not in MODEL_CHOICES:
        raise ValueError(f"unknown model {model!r}; expected 'brl', 'mpnn' or 'both'")
    if targets < 1:
        raise ValueError(f"targets must be >= 1, got {targets}")
    options = dict(options or {})
    benches: Dict[str, Any] = {}

    def bench_for(name: str, opts: Mapping[str, Any], folders: Tuple[Any, Any]) -> Any:
        key = json.dumps([name, sorted(opts.items()), folders], default=str)
        if key not in benches:
            log(f"loading {name} {dict(opts) or ''}".rstrip())
            benches[key] = load_dataset(name, root=folders[0], cache_dir=folders[1], **opts)
        return benches[key]

    Spec = Tuple[str, str, Dict[str, Any], Tuple[Any, Any], Dict[str, Any],
                 Optional[Dict[str, Tensor]]]
    specs: List[Spec] = []
    if checkpoints:
        for path in checkpoints:
            state, config = load_model_checkpoint(path)
            data_cfg = config.get("data") or {}
            name = dataset or data_cfg.get("name")
            if not name:
                raise ValueError(f"checkpoint {path} names no dataset; pass --dataset")
            opts = {**dataset_options(load_config(config)), **options}
            # Folders given here win over those recorded at training time.
            folders = (root or data_cfg.get("root"), cache_dir or data_cfg.get("cache_dir"))
            specs.append((str(path), name, opts, folders, dict(config.get("model") or {}), state))
    else:
        if not dataset:
            raise ValueError("pass --dataset (or --checkpoint)")
        kinds = list(MODEL_KINDS) if model == "both" else [model]
        for kind in kinds:
            cfg = random_model_config(kind, layers, channels, num_tokens, heads, local)
            specs.append(("random-init", dataset, options, (root, cache_dir), cfg, None))

    base = bench_for(*specs[0][1:4])
    index, graphs = select_graphs(base, split, max_graphs, seed)
    mean_nodes = float(np.mean([int(g.num_nodes) for g in graphs]))
    log(f"{len(graphs)} graphs of {split}, {mean_nodes:.1f} nodes on average")

    built: Dict[str, Dict[str, Any]] = {}
    for source, name, opts, folders, cfg, state in specs:
        bench = bench_for(name, opts, folders)
        torch.manual_seed(seed)
        net = model_from_config(cfg, bench)
        if state is not None:
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as err:
                raise ValueError(f"checkpoint {source} does not fit the model its config "
                                 f"describes: {err}") from err
        label = model_kind(net)
        while label in built:
            label += "'"
        model_graphs = graphs if bench is base else [getattr(bench, split)[i] for i in index]
        built[label] = {"model": net.to(device).eval(), "graphs": model_graphs, "source": source}

    token_counts = [int(b["model"].num_tokens) for b in built.values() if b["model"].num_tokens]
    k = token_counts[0] if token_counts else num_tokens
    log(f"effective resistance with and without {k} tokens")
    resistance = resistance_report(graphs, k, seed=seed)

    chosen = choose_targets(graphs, targets, seed)
    compare_at = _smallest_connected(graphs) if pyg_compare else None
    models: Dict[str, Any] = {}
    for label, b in built.items():
        net = b["model"]
        log(f"{label}: Jacobian sensitivity ({sensitivity}) of {len(graphs)} graphs")
        entry: Dict[str, Any] = {
            "source": b["source"], "kind": model_kind(net), "layers": int(net.num_layers),
            "num_tokens": int(net.num_tokens), "channels": int(net.channels),
            "sensitivity": model_sensitivity(net, b["graphs"], chosen, method=sensitivity,
                                             num_probes=probes, seed=seed, max_nodes=max_nodes,
                                             device=device),
        }
        if compare_at is not None:
            log(f"{label}: PyG total_influence on graph {index[compare_at]} "
                f"({int(graphs[compare_at].num_nodes)} nodes)")
            entry["pyg_comparison"] = {"graph_index": index[compare_at],
                                       **compare_with_pyg(net, b["graphs"][compare_at], device)}
        models[label] = entry

    report = {
        "dataset": specs[0][1], "split": split, "num_graphs": len(graphs),
        "mean_nodes": mean_nodes, "seed": seed, "graph_indices": index,
        "targets_per_graph": targets,
        "sensitivity_definition": "S[t,u] = ||d h_t / d x_u||_F, h = final node states "
                                  "(before the head), x = encoded input node states",
        "resistance": resistance, "models": models,
        "seconds": time.perf_counter() - started,
    }
    out = Path(out)
    write_json(out / "report.json", report)
    if models:
        plot_sensitivity(models, out / "sensitivity_by_hop.png")
    plot_resistance(resistance, out / "resistance_hist.png")
    log(format_table(report))
    log(f"wrote {out / 'report.json'} and plots in {report['seconds']:.1f} s")
    return report
