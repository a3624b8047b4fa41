r"""What the compressed tokens hold: the pooling weights of each token reservoir,
and a per-token summary that tells *positional slots* from *content lookups*.

In the compress step, token :math:`k` of a graph pools its nodes with weights

.. math::
    \mathbf{w}_k = \mathrm{softmax}\Big(\frac{\mathbf{q}_k \mathbf{K}^\top}{\sqrt{C}}\Big)
    \in \Delta^{n-1},

one distribution over the graph's :math:`n` nodes per token and layer
(:class:`~brl_graph.nn.TokenReservoir`). :func:`token_attention` returns them
for one graph; :func:`token_focus` summarises them over graphs that share one
node layout (the same node :math:`i` means the same place in every graph, as
in Tree-NeighborsMatch or RingTransfer):

- the node a token weights most on average, and that mean weight;
- the entropy of its distribution (0: one node; :math:`\ln n`: uniform);
- its *variation*: the mean total-variation distance between a graph's
  distribution and the mean one. 0 means the token pools the same nodes in
  every graph, a fixed slot addressed by position; values near 1 mean
  that what it pools depends on the graph's content.

A reservoir that stores a few fixed nodes can only carry what those nodes
hold. On Tree-NeighborsMatch at depth 5 this shows as test accuracy that is
high for exactly the leaves the slots cover (``experiments/token_attention.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import torch
from torch import Tensor

from brl_graph.nn.reservoir import TokenReservoir


@dataclass(frozen=True)
class TokenFocus:
    """Where one token of one reservoir looks, over a set of aligned graphs
    (see the module docs)."""
    layer: int        # the reservoir's index, in module order
    token: int        # row of the weights: the token (head-major with several pooling heads)
    top_node: int     # node with the largest mean weight
    top_mass: float   # that mean weight
    entropy: float    # mean entropy of the token's distribution, in nats
    variation: float  # mean total-variation distance from the mean distribution, in [0, 1]


def _reservoirs(model: torch.nn.Module) -> List[TokenReservoir]:
    found = [m for m in model.modules() if isinstance(m, TokenReservoir)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no token reservoir (num_tokens=0, or "
                         "the blocks mode): there are no pooling weights to read")
    return found


@torch.no_grad()
def token_attention(model: torch.nn.Module, data) -> List[Tensor]:
    r"""The compress step's pooling weights of every token reservoir of
    :obj:`model` (in module order) for one graph.

    The model runs once, in eval mode (its mode is restored afterwards), on
    :obj:`data` as its :meth:`forward` takes it.

    Args:
        model: A module holding :class:`~brl_graph.nn.TokenReservoir` s, e.g. a
            :class:`~brl_graph.nn.BRLGraphModel` or a
            :class:`~brl_graph.nn.BRLConv`-based model; non-causal.
        data: One graph (a PyG ``Data``, or a ``Batch`` of one graph).

    Returns:
        One tensor per reservoir, :math:`(K, n)` (:math:`(P, K, n)` with
        :math:`P` pooling heads): row :math:`k` is token :math:`k`'s
        distribution over the :math:`n` nodes. A reservoir called several
        times in one forward gives its last call.

    Raises:
        ValueError: :obj:`data` holds more than one graph or none, or no
            nodes, the model has no reservoir, or a reservoir kept no weights (causal mode pools by
            prefix and never forms them; or the forward did not call it).
    """
    num_graphs = getattr(data, "num_graphs", 1)
    if num_graphs != 1:
        raise ValueError(f"token_attention reads one graph at a time (weights of graphs of "
                         f"different sizes do not stack); got a batch of {num_graphs}")
    if not data.num_nodes:
        raise ValueError("the graph has no nodes, so its tokens pool nothing: there is no "
                         "distribution to read")
    reservoirs = _reservoirs(model)
    was_training = model.training
    model.eval()
    try:
        for r in reservoirs:
            r.keep_weights, r.last_weights = True, None
        model(data)
        weights = [r.last_weights for r in reservoirs]
    finally:
        for r in reservoirs:
            r.keep_weights, r.last_weights = False, None
        model.train(was_training)
    missing = [i for i, w in enumerate(weights) if w is None]
    if missing:
        raise ValueError(f"reservoirs {missing} kept no pooling weights: a causal layer pools "
                         "by prefix and never forms them, and an unused reservoir has none")
    n = data.num_nodes
    # [1, K, L] or [1, P, K, L]; off the CPU L may be rounded up past n with padding
    return [w[0, ..., :n].float() for w in weights]


def token_focus(per_graph: Sequence[Sequence[Tensor]]) -> List[TokenFocus]:
    r"""Summarises :func:`token_attention` over graphs that share one node
    layout: one :class:`TokenFocus` per reservoir and token (see the module
    docs).

    Args:
        per_graph: For each graph, the list that :func:`token_attention`
            returned. All graphs need the same reservoirs and node count, since
            node :math:`i` must mean the same place in each.

    Raises:
        ValueError: no graphs, or graphs whose weights do not line up.
    """
    if len(per_graph) == 0:
        raise ValueError("token_focus needs the weights of at least one graph")
    shapes = [[tuple(w.shape) for w in layers] for layers in per_graph]
    if any(s != shapes[0] for s in shapes):
        raise ValueError("token_focus compares node i across graphs, so every graph needs the "
                         f"same reservoirs and node count; got weight shapes {shapes[0]} and "
                         f"{next(s for s in shapes if s != shapes[0])}")
    rows: List[TokenFocus] = []
    for layer in range(len(shapes[0])):
        w = torch.stack([layers[layer] for layers in per_graph])  # [G, (P,) K, n]
        w = w.reshape(w.size(0), -1, w.size(-1))  # tokens head-major with P heads
        mean = w.mean(0)  # [K, n]
        entropy = -(w * w.clamp_min(1e-30).log()).sum(-1).mean(0)  # [K]
        variation = 0.5 * (w - mean).abs().sum(-1).mean(0)  # [K]
        top_mass, top_node = mean.max(-1)
        for k in range(w.size(1)):
            rows.append(TokenFocus(layer=layer, token=k, top_node=int(top_node[k]),
                                   top_mass=float(top_mass[k]), entropy=float(entropy[k]),
                                   variation=float(variation[k])))
    return rows

