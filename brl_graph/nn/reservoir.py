r"""The token reservoir of a BRL layer: learned seeds, the compress step and the mix."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import LayerNorm, Linear, Parameter

from brl_graph.nn.dropout import dropout
from brl_graph.nn.functional import node_scores, pool_nodes, prefix_softmax_pool
from brl_graph.nn.token_mixer import TokenMixer


class TokenReservoir(torch.nn.Module):
    r"""A reservoir of :math:`K` compressed tokens: it *compresses* a set of node
    (or position) states into the tokens by attention pooling, then *mixes* the
    tokens among themselves (:class:`~brl_graph.nn.TokenMixer`).

    For node states :math:`\mathbf{X} \in \mathbb{R}^{L \times C}` of one graph
    and tokens :math:`\mathbf{T} \in \mathbb{R}^{K \times C}`,

    .. math::
        \mathbf{T} \leftarrow \mathrm{Mix}\Big(\mathbf{T} + \mathbf{W}_O\,
        \mathrm{softmax}\Big(\frac{\mathbf{Q} \mathbf{K}^\top}{\sqrt{C}}\Big)
        \mathbf{V}\Big),
        \quad \mathbf{Q} = \mathrm{LN}(\mathbf{T}) \mathbf{W}_Q,\;
        \mathbf{K} = \mathbf{X} \mathbf{W}_K,\; \mathbf{V} = \mathbf{X} \mathbf{W}_V,

    with the softmax over the graph's nodes. Each token is one attention head
    over the nodes: the :math:`K` tokens already give :math:`K` pooling
    patterns, and splitting each into :math:`H` heads would multiply the
    per-node cost by :math:`H` (the :math:`H` heads are used where the tokens
    attend to each other, in the mix). :meth:`compress` never projects the
    nodes: since :math:`\mathbf{q}^\top \mathbf{W}_K \mathbf{x} =
    (\mathbf{W}_K^\top \mathbf{q})^\top \mathbf{x}` and the pooling weights sum
    to one, the :math:`K` queries are mapped into node space and the pooled
    *nodes* are projected afterwards. That is the same function, at
    :math:`O(L K C)` instead of :math:`O(L C^2)` per graph, and far fewer ops.

    With :obj:`pool_heads` :math:`= P > 1` each token pools with :math:`P`
    heads of width :math:`C/P` instead (the pooling of
    :class:`~brl_graph.nn.BRLAttention`): :math:`K P` patterns, with keys and
    values projected per node, :math:`O(L C^2)` per graph.

    :meth:`compress_causal` gives every position :math:`i` its own reservoir
    summarising positions :math:`j \le i` (a stable prefix softmax,
    :func:`~brl_graph.nn.functional.prefix_softmax_pool`); its queries are the
    learned seeds, the same at every position, which keeps the prefix pooling
    linear in :math:`L`.

    With :obj:`fold=True` each pair of maps that runs in sequence is one
    matrix (rows are tokens and nodes, as above):
    :math:`\mathbf{A} = \mathbf{W}_Q \mathbf{W}_K^\top` maps the normalised
    tokens into node space, and :math:`\mathbf{B} = \mathbf{W}_V \mathbf{W}_O`
    maps the pooled nodes back to the tokens,

    .. math::
        \mathbf{T} \leftarrow \mathrm{Mix}\Big(\mathbf{T} +
        \mathrm{softmax}\Big(\frac{(\mathrm{LN}(\mathbf{T}) \mathbf{A}
        + \mathbf{a}) \mathbf{X}^\top}{\sqrt{C}}\Big) \mathbf{X} \mathbf{B}
        + \mathbf{b}\Big).

    A product of two :math:`C \times C` matrices is any :math:`C \times C`
    matrix, so the layer computes the same family of functions (in eval mode;
    attention dropout weights the biases slightly differently) with
    :math:`2C^2` pooling parameters instead of :math:`4C^2`, and fewer
    products per step (in causal mode no node is projected at all). The folded
    matrices start as products of freshly initialised unfolded ones, so a fresh
    folded reservoir draws from the same functions as an unfolded one; only the
    training dynamics differ. :func:`fold_pool` folds trained weights.

    With :attr:`keep_weights` set, :meth:`compress` keeps its pooling weights
    in :attr:`last_weights` (:math:`(G, K, L)`, or :math:`(G, P, K, L)` with
    several pooling heads), detached: those of its last call, so for a batch
    split into several dense groups only the last group's graphs, and in
    training mode after attention dropout.
    :func:`~brl_graph.diagnostics.token_attention` reads them for one graph in
    eval mode. The causal prefix pooling never forms them and keeps nothing.

    Args:
        channels (int): Token and node width :math:`C`.
        num_tokens (int): :math:`K`.
        heads (int): Attention heads :math:`H` of the mix; must divide
            :obj:`channels`.
        act (torch.nn.Module, optional): Activation of the mixer's MLP.
        dropout (float, optional): Dropout on the residual branches.
        attn_dropout (float, optional): Dropout on attention weights.
        learn_seeds (bool, optional): Own learned seed tokens
            :math:`\mathbf{T}^{(0)}`. (default: :obj:`True`)
        prefix_block (int, optional): Block of the causal prefix softmax.
        pool_heads (int, optional): Heads :math:`P` of each token's pooling;
            must divide :obj:`channels`. (default: :obj:`1`)
        fold (bool, optional): One matrix for each pair of pooling
            projections (see above); needs :obj:`pool_heads=1`.
            (default: :obj:`False`)

    Shapes:
        - :meth:`compress`: nodes :math:`(G, L, C)`, tokens :math:`(G, K, C)`,
          mask bias :math:`(G, 1, L)` *(optional)* -> :math:`(G, K, C)`.
        - :meth:`compress_causal`: nodes :math:`(G, L, C)`, tokens
          :math:`(G, L, K, C)` *(optional)* -> :math:`(G, L, K, C)`.
    """
    def __init__(self, channels: int, num_tokens: int, heads: int,
                 act: Optional[torch.nn.Module] = None, dropout: float = 0.0,
                 attn_dropout: float = 0.0, learn_seeds: bool = True,
                 prefix_block: int = 32, pool_heads: int = 1, fold: bool = False) -> None:
        super().__init__()
        if num_tokens <= 0:
            raise ValueError(f"a reservoir needs num_tokens > 0, got {num_tokens}")
        if heads <= 0 or channels % heads != 0:
            raise ValueError(f"heads ({heads}) must be positive and divide channels ({channels})")
        if pool_heads <= 0 or channels % pool_heads != 0:
            raise ValueError(f"pool_heads ({pool_heads}) must be positive and divide channels "
                             f"({channels})")
        if fold and pool_heads > 1:
            raise ValueError("fold=True needs pool_heads=1: with several heads per token the "
                             "query-key product is not one matrix")
        self.channels, self.num_tokens, self.heads = channels, num_tokens, heads
        self.pool_heads = pool_heads
        self.fold = fold
        self.dropout, self.attn_dropout = dropout, attn_dropout
        self.prefix_block = prefix_block
        # Opt-in record of the last non-causal pooling weights, for diagnostics
        # (brl_graph.diagnostics.token_attention); off, nothing is kept.
        self.keep_weights = False
        self.last_weights: Optional[Tensor] = None
        self.seeds = Parameter(torch.empty(num_tokens, channels)) if learn_seeds else None
        self.norm = LayerNorm(channels)
        if fold:
            self.query_nodes = Linear(channels, channels)  # A: tokens to node space
            self.value_out = Linear(channels, channels)    # B: pooled nodes to tokens
        else:
            self.query = Linear(channels, channels)
            self.key_value = Linear(channels, 2 * channels)
            self.out = Linear(channels, channels)
        self.mixer = TokenMixer(channels, heads, act, dropout=dropout, attn_dropout=attn_dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        self.norm.reset_parameters()
        self.mixer.reset_parameters()
        if self.fold:
            # products of fresh unfolded projections (see the class docs)
            C = self.channels
            fold_pool(self, Linear(C, C), Linear(C, 2 * C), Linear(C, C))
        else:
            for module in (self.query, self.key_value, self.out):
                module.reset_parameters()
        if self.seeds is not None:
            torch.nn.init.normal_(self.seeds, std=1.0)

    def initial(self, *lead: int) -> Tensor:
        """The seeds broadcast to ``[*lead, K, C]``."""
        if self.seeds is None:
            raise ValueError("this reservoir was built with learn_seeds=False: pass the tokens "
                             "of the previous layer")
        return self.seeds.expand(*lead, self.num_tokens, self.channels)

    def _attn_p(self) -> float:
        return self.attn_dropout if self.training else 0.0

    def compress(self, x: Tensor, tokens: Tensor, mask_bias: Optional[Tensor] = None,
                 empty: Optional[Tensor] = None) -> Tensor:
        """Pools each graph's nodes ``x`` ``[G, L, C]`` into its ``tokens``
        ``[G, K, C]``, then mixes them.

        ``mask_bias`` ``[G, 1, L]`` is added to the pooling logits: 0 for real
        nodes and a large negative number for padding (``None``: no padding);
        ``empty`` ``[G]`` marks graphs without nodes (``None``: there are none).
        """
        if self.pool_heads > 1:
            return self._compress_heads(x, tokens, mask_bias, empty)
        C = x.size(-1)
        if self.fold:
            # the 1/sqrt(C) goes on the [G, K, C] queries, not on the [G, K, L] logits
            q_nodes = self.query_nodes(self.norm(tokens)) * (1.0 / math.sqrt(C))
        else:
            q = self.query(self.norm(tokens))  # [G, K, C]
            w_k = self.key_value.weight[:C]
            # q . (W_k x + b_k) = (W_k^T q) . x + q . b_k; the last term is the same
            # for every node of the graph, so the softmax drops it. The 1/sqrt(C)
            # goes on the small weight, not on the [G, K, L] logits.
            q_nodes = q @ (w_k * (1.0 / math.sqrt(C)))
        # the plan's bias is float32; a float64 (or half) model needs its own dtype
        bias = None if mask_bias is None else mask_bias.to(q_nodes.dtype)
        logits = node_scores(q_nodes, x, bias)  # [G, K, L]
        w = dropout(torch.softmax(logits, dim=-1), p=self._attn_p(), training=self.training)
        self._keep(w)
        return self._write(pool_nodes(w, x), w, tokens, empty)

    def _keep(self, w: Tensor) -> None:
        if self.keep_weights:
            self.last_weights = w.detach()

    def _write(self, pooled_nodes: Tensor, w: Optional[Tensor], tokens: Tensor,
               empty: Optional[Tensor] = None) -> Tensor:
        """Adds the projected pooled nodes ``[*, K, C]`` (pooling weights ``w``
        ``[*, K, L]``, which only the unfolded value bias reads) to ``tokens``,
        then mixes them."""
        if self.fold:
            pooled, out = pooled_nodes, self.value_out
        else:
            C = self.channels
            # sum_j w_j (W_v x_j + b_v) = W_v (sum_j w_j x_j) + b_v sum_j w_j
            pooled = F.linear(pooled_nodes, self.key_value.weight[C:])
            b_v = self.key_value.bias[C:]
            pooled = pooled + (b_v * w.sum(-1, keepdim=True) if self._attn_p() > 0 else b_v)
            out = self.out
        if empty is not None:  # a graph without nodes pools nothing (its softmax saw padding only)
            pooled = pooled.masked_fill(empty[:, None, None], 0.0)
        tokens = tokens + dropout(out(pooled), p=self.dropout, training=self.training)
        return self.mixer(tokens)

    def _split(self, t: Tensor) -> Tensor:
        """[..., C] -> [..., P, C/P]."""
        return t.unflatten(-1, (self.pool_heads, self.channels // self.pool_heads))

    def _compress_heads(self, x: Tensor, tokens: Tensor, mask_bias: Optional[Tensor],
                        empty: Optional[Tensor]) -> Tensor:
        """:meth:`compress` with :math:`P` pooling heads per token."""
        G, L, C = x.shape
        q = self._split(self.query(self.norm(tokens)))  # [G, K, P, D]
        k, v = (self._split(t) for t in self.key_value(x).chunk(2, dim=-1))  # [G, L, P, D]
        logits = torch.einsum("gkpd,glpd->gpkl", q, k) / math.sqrt(q.size(-1))
        if mask_bias is not None:
            logits = logits + mask_bias.to(logits.dtype)[:, None]
        w = dropout(torch.softmax(logits, dim=-1), p=self._attn_p(), training=self.training)
        self._keep(w)
        pooled = torch.einsum("gpkl,glpd->gkpd", w, v).reshape(G, -1, C)
        if empty is not None:
            pooled = pooled.masked_fill(empty[:, None, None], 0.0)
        tokens = tokens + dropout(self.out(pooled), p=self.dropout, training=self.training)
        return self.mixer(tokens)

    def compress_causal(self, x: Tensor, tokens: Optional[Tensor] = None,
                        mask: Optional[Tensor] = None) -> Tensor:
        """Per-position reservoirs ``[G, L, K, C]``: position ``i`` pools positions
        ``j <= i`` of its graph into its own ``tokens`` (seeds when ``None``)."""
        G, L, C = x.shape
        if tokens is None:
            tokens = self.initial(G, L)
        if self.fold:
            # the nodes are pooled as they are and projected afterwards, as in compress
            q_nodes = self.query_nodes(self.norm(self.initial())) * (1.0 / math.sqrt(C))  # [K, C]
            logits = torch.einsum("kc,glc->gkl", q_nodes, x)
            pooled = prefix_softmax_pool(logits, x.unsqueeze(1),
                                         mask=None if mask is None else mask[:, None, :],
                                         block=self.prefix_block).transpose(1, 2)  # [G, L, K, C]
            return self._write(pooled, None, tokens)
        q = self.query(self.norm(self.initial()))  # [K, C]
        k, v = self.key_value(x).chunk(2, dim=-1)  # [G, L, C]
        if self.pool_heads > 1:
            q, k, v = self._split(q), self._split(k), self._split(v)
            logits = torch.einsum("kpd,glpd->gpkl", q, k) / math.sqrt(q.size(-1))
            pooled = prefix_softmax_pool(logits, v.permute(0, 2, 1, 3).unsqueeze(2),
                                         mask=None if mask is None else mask[:, None, None, :],
                                         block=self.prefix_block)  # [G, P, K, L, D]
            pooled = pooled.permute(0, 3, 2, 1, 4).reshape(G, L, -1, C)
        else:
            logits = torch.einsum("kc,glc->gkl", q, k) / math.sqrt(C)
            pooled = prefix_softmax_pool(logits, v.unsqueeze(1),
                                         mask=None if mask is None else mask[:, None, :],
                                         block=self.prefix_block).transpose(1, 2)  # [G, L, K, C]
        tokens = tokens + dropout(self.out(pooled), p=self.dropout, training=self.training)
        return self.mixer(tokens)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, num_tokens={self.num_tokens}, "
                f"heads={self.heads}"
                + (f", pool_heads={self.pool_heads}" if self.pool_heads > 1 else "")
                + (", fold=True)" if self.fold else ")"))


@torch.no_grad()
def fold_pool(reservoir: TokenReservoir, query: Linear, key_value: Linear, out: Linear) -> None:
    r"""Sets a folded reservoir's pooling maps to those of the unfolded projections
    :obj:`query`, :obj:`key_value` (:math:`[\mathbf{W}_K; \mathbf{W}_V]`) and
    :obj:`out`, so that it computes what an unfolded reservoir with these
    weights computes. Nothing else (seeds, norm, mixer) is touched.

    Exact in eval mode, with two exceptions: with attention dropout the value
    bias is weighted differently, and a graph without nodes, whose pooled
    vector is zero, gets :math:`\mathbf{b} = \mathbf{W}_O \mathbf{b}_V +
    \mathbf{b}_O` where the unfolded reservoir adds :math:`\mathbf{b}_O` only.

    In PyTorch's weight convention (``y = x W^T + b``) the query map is
    :math:`\mathbf{A} = \mathbf{W}_K^\top \mathbf{W}_Q`,
    :math:`\mathbf{a} = \mathbf{W}_K^\top \mathbf{b}_Q` (the key bias adds the
    same logit to every node, which the softmax drops); the value map is
    :math:`\mathbf{B} = \mathbf{W}_O \mathbf{W}_V`,
    :math:`\mathbf{b} = \mathbf{W}_O \mathbf{b}_V + \mathbf{b}_O` (the pooling
    weights sum to one).
    """
    if not reservoir.fold:
        raise ValueError("fold_pool sets the maps of a reservoir built with fold=True")
    C = reservoir.channels
    w_k, w_v = key_value.weight.view(2, C, C).unbind(0)
    b_v = key_value.bias[C:]
    reservoir.query_nodes.weight.copy_(w_k.t() @ query.weight)
    reservoir.query_nodes.bias.copy_(w_k.t() @ query.bias)
    reservoir.value_out.weight.copy_(out.weight @ w_v)
    reservoir.value_out.bias.copy_(out.weight @ b_v + out.bias)
