from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import LayerNorm, Linear, Sequential

from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.resolver import activation_resolver, normalization_resolver
from torch_geometric.utils import scatter, softmax

from brl_graph.nn.blocks import block_attention, check_block_args
from brl_graph.nn.dropout import Dropout, dropout
from brl_graph.nn.functional import node_scores, spread_tokens
from brl_graph.nn.plan import BatchPlan, DenseGroup, check_shapes, from_dense, plan_batch, to_dense
from brl_graph.nn.reservoir import TokenReservoir

# Keyword arguments of the local convolution that are indexed by edge and must
# therefore be filtered together with ``edge_index`` in causal mode.
EDGE_KWARGS = ("edge_attr", "edge_weight", "edge_type")
# The read-out projection starts at this fraction of PyTorch's default init
# (see the class docs): small, so a fresh layer is nearly its MPNN twin, but
# not zero, so information flows through the tokens from the first step.
READ_INIT_SCALE = 0.1
# What the global branch holds: a carried reservoir of K tokens, or the
# compressed tokens of blocks of consecutive nodes (see the class docs).
MODES = ("reservoir", "blocks")


def node_norm(norm: Optional[str], channels: int,
              norm_kwargs: Optional[Dict[str, Any]] = None) -> Optional[torch.nn.Module]:
    """PyG's normalisation named ``norm`` (``None``: no module), with layer norm
    taken per node.

    PyG's :class:`~torch_geometric.nn.norm.LayerNorm` defaults to graph-wise
    statistics; a transformer layer normalises each node on its own.
    """
    norm_kwargs = dict(norm_kwargs or {})
    if norm == "layer_norm":
        norm_kwargs.setdefault("mode", "node")
    return normalization_resolver(norm, channels, **norm_kwargs)


@functools.lru_cache(maxsize=None)
def _batch_args(norm_type: type) -> Tuple[bool, bool]:
    """Whether ``norm_type.forward`` takes ``batch`` and ``batch_size``; read once
    per class, since a signature costs more than a small norm."""
    params = inspect.signature(norm_type.forward).parameters
    return "batch" in params, "batch_size" in params


def apply_norm(norm: Optional[torch.nn.Module], h: Tensor, batch: Tensor,
               num_graphs: int) -> Tensor:
    """``norm(h)``, given each node's graph (and the graph count, where it takes
    one) when ``norm`` takes it: a graph-wise norm needs it to keep graphs
    apart. ``h`` itself when ``norm`` is ``None``."""
    if norm is None:
        return h
    takes_batch, takes_size = _batch_args(type(norm))
    if not takes_batch:
        return norm(h)
    if takes_size:
        return norm(h, batch=batch, batch_size=num_graphs)
    return norm(h, batch=batch)


class BRLConv(torch.nn.Module):
    r"""The Bottleneck Regularized Linear (BRL) graph transformer layer.

    Like :class:`torch_geometric.nn.conv.GPSConv`, the layer adds a local
    message-passing branch and a global branch, then applies a feed-forward
    block. The global branch is *exact* softmax attention to and from
    :math:`K` compressed tokens per graph, a pooled reservoir of virtual nodes,
    so it costs :math:`O(NKC + EC)` instead of :math:`O(N^2 C)`.

    For a graph with node states :math:`\mathbf{X} \in \mathbb{R}^{n \times C}`
    and token states :math:`\mathbf{T} \in \mathbb{R}^{K \times C}` (learned
    seeds :math:`\mathbf{T}^{(0)}` when none are given), one layer computes

    .. math::
        \mathbf{T} &\leftarrow \mathbf{T} + \mathrm{Attn}\big(
            \mathrm{LN}(\mathbf{T}),\, \mathbf{X},\, \mathbf{X}\big)
            \qquad \text{(compress: tokens query their graph's nodes)}

        \mathbf{T} &\leftarrow \mathbf{T} + \mathrm{Attn}\big(
            \mathrm{LN}(\mathbf{T}),\, \mathrm{LN}(\mathbf{T}),
            \mathrm{LN}(\mathbf{T})\big),\quad
            \mathbf{T} \leftarrow \mathbf{T} + \mathrm{MLP}(\mathrm{LN}(\mathbf{T}))
            \qquad \text{(mix)}

        \mathbf{H} &= \mathrm{Norm}\big(\mathbf{X}
            + \mathrm{MPNN}(\mathbf{X}, \mathcal{E})
            + \mathbf{W}_O\,\mathrm{Attn}(\mathbf{X},\, \mathrm{LN}(\mathbf{T}),
            \mathrm{LN}(\mathbf{T}))\big)
            \qquad \text{(broadcast: nodes read the tokens)}

        \mathbf{X}' &= \mathrm{Norm}\big(\mathbf{H} + \mathrm{MLP}(\mathbf{H})\big),

    where every :math:`\mathrm{Attn}` is softmax attention whose normaliser runs
    over the nodes or tokens *of the same graph only*. Between nodes and tokens
    (compress and broadcast) each token is one attention head, so the :math:`K`
    tokens give :math:`K` patterns at :math:`O(KC)` per node; the tokens attend
    to each other (mix), and nodes in :obj:`joint` mode, with :obj:`heads`
    heads. The pooling queries come from the tokens' current state, so what the
    tokens fetch depends on what they already hold; the updated tokens are
    returned so the next layer continues from them.

    The read-out projection :math:`\mathbf{W}_O` starts small (a tenth of the
    default init, bias zero), so a fresh layer computes nearly its MPNN twin
    (:obj:`num_tokens=0`) and learns how much of the reservoir to read. That
    matters: with the default init, and with a second normalised residual
    stream for the global branch as in GPS, BRL trailed its twin on ogbg-molhiv
    after one epoch (valid ROC-AUC 0.56-0.63 against 0.70); with the small
    start it reached 0.69.

    With :obj:`joint=True` the broadcast step is replaced by the BRL-attention
    form, in which node :math:`i` attends over its neighbours (and itself) and
    over its graph's :math:`K` tokens under **one** softmax:

    .. math::
        \mathbf{h}_i = \sum_{j \in \mathcal{N}(i) \cup \{i\}} \alpha_{ij}
        \mathbf{W}_V \mathbf{x}_j + \sum_{k=1}^{K} \alpha_{ik}
        \mathbf{W}_V' \mathbf{t}_k, \qquad
        \sum_j \alpha_{ij} + \sum_k \alpha_{ik} = 1 .

    **Causal mode** (:obj:`causal=True`) orders nodes by their index within each
    graph. Node :math:`i`'s output then depends only on nodes :math:`j \le i`:
    local messages use only edges :math:`j \to i` with :math:`j \le i`, and the
    tokens that node :math:`i` reads summarise only nodes :math:`j \le i`, by a
    numerically stable prefix softmax
    (:func:`~brl_graph.nn.functional.prefix_softmax_pool`). The reservoir is then
    per position, :obj:`tokens` has shape :obj:`[num_nodes, K, C]`, and the
    pooling queries come from the learned seeds, which are the same for every
    position: a query that changed with the position would turn the prefix pooling
    back into quadratic causal attention. The per-position reservoir is still
    carried from layer to layer; its projections and mixing cost
    :math:`O(NKC^2)`, linear in :math:`N` with a larger constant than the
    non-causal layer.

    **Block-token mode** (:obj:`mode="blocks"`). The reservoir above has a
    fixed state of :math:`K` tokens, which is why it is linear; in causal mode
    its seeds decide what each token keeps before any query arrives, and one
    stored item is diluted by the whole prefix, so it *cannot recall* an
    arbitrary earlier node as the graph grows (on the sequence task of
    ``experiments/causal_recall.py``, 8 key-value pairs: 0.62 at 2,048
    positions, 0.25 at 8,192, with :class:`~brl_graph.nn.BRLAttention`'s
    reservoir). :obj:`mode="blocks"` replaces the reservoir with the global
    branch of :class:`~brl_graph.nn.BRLAttention`'s blocks mode, applied to each
    graph's nodes in index order (the dense per-graph layout of
    :func:`~brl_graph.nn.plan_batch`): every block of :math:`b` consecutive
    nodes (:obj:`block_size`) is pooled into :math:`c` tokens (:obj:`block_tokens`)
    by a learned softmax inside the block, applied to the layer's keys and
    values, and node :math:`i` attends, with :obj:`heads` heads and under one
    softmax, to

    - its window: the nodes :math:`j` of its graph with :math:`i - w < j \le i`
      (causal) or :math:`|i - j| < w` (encoder), :math:`w` = :obj:`window`;
    - the tokens of every block of its graph that ended at or before :math:`i`
      (causal), or of every block (encoder);
    - with :obj:`top_k` :math:`= s > 0`, the nodes of the :math:`s` visible
      blocks whose tokens score highest for its query, at full resolution.

    The result goes through :math:`\mathbf{W}_O` (small init, as above) into
    the same residual as the reservoir's read-out. Reading is by content, so a
    node can find an item stored anywhere before it, and with :obj:`top_k`
    the item's own key and value enter the softmax; with
    :class:`~brl_graph.nn.BRLAttention` (top-k 1, :math:`c = 2`) the same
    attention recalls 0.97-0.98 of 8 pairs at 2,048 positions and 0.945-0.96 at
    8,192 over three seeds, against 1.00 / 0.95 for full causal attention
    (``benchmarks/results/causal_recall_modes_topk1_c2*.json``; this layer's
    own recall on graphs is not measured). The price: the cost is
    :math:`O\big(n\,(w + cn/b + sb)\,C\big)` per graph of :math:`n` nodes,
    quadratic with a :math:`c/b` constant; with :obj:`top_k` the keys and
    values of every node are kept for the selection (as in full attention);
    no tokens are carried between layers (:obj:`tokens` is :obj:`None` in and
    out). The
    encoder form depends on the node order, so unlike the reservoir it is not
    permutation-equivariant: use it where the order means something.
    Gradients to later nodes are exactly zero in causal mode, as above.

    Graphs in a batch never see each other: not through the tokens, the padding
    or any softmax normaliser. A graph's output is identical alone and batched.

    Args:
        channels (int): Size of each node and token state :math:`C`.
        conv (MessagePassing, optional): The local message-passing layer,
            mapping :obj:`[N, C]` to :obj:`[N, C]`, or :obj:`None` for no local
            branch.
        num_tokens (int, optional): Number of compressed tokens :math:`K` per
            graph. :obj:`0` disables the global branch, giving the MPNN-only
            twin. (default: :obj:`8`)
        heads (int, optional): Attention heads of the token mix and of the joint
            softmax; must divide :obj:`channels`. (default: :obj:`4`)
        dropout (float, optional): Dropout on each branch's output and in the
            feed-forward block (the residual streams). (default: :obj:`0.0`)
        attn_dropout (float, optional): Dropout on attention weights.
            (default: :obj:`0.0`)
        causal (bool, optional): Causal (prefix) mode. (default: :obj:`False`)
        joint (bool, optional): One softmax over neighbours and tokens in place
            of the separate broadcast step. (default: :obj:`False`)
        act (str, optional): Activation of the feed-forward block.
            (default: :obj:`"relu"`)
        act_kwargs (Dict[str, Any], optional): Arguments for :obj:`act`.
        norm (str, optional): Node normalisation after each residual, resolved
            by PyG (:obj:`"layer_norm"` normalises each node; :obj:`"batch_norm"`
            as in GPS; :obj:`None` for none). (default: :obj:`"layer_norm"`)
        norm_kwargs (Dict[str, Any], optional): Arguments for :obj:`norm`.
        prefix_block (int, optional): Block size of the causal prefix softmax.
            (default: :obj:`32`)
        learn_seeds (bool, optional): Whether the layer owns learned seed
            tokens. A non-causal layer that always receives the reservoir of
            the layer before it does not need them (and unused parameters upset
            :class:`DistributedDataParallel`); it then requires :obj:`tokens`.
            Causal layers always need seeds, which supply their pooling queries.
            (default: :obj:`True`)
        mode (str, optional): :obj:`"reservoir"` (:math:`K` carried tokens per
            graph, :math:`O(NKC)`) or :obj:`"blocks"` (block tokens read by
            content, :math:`O(n^2 C c / b)` per graph; :obj:`num_tokens`,
            :obj:`joint` and :obj:`learn_seeds` do not apply). See above.
            (default: :obj:`"reservoir"`)
        window (int, optional): Window :math:`w` of the blocks mode; at least
            :obj:`block_size`, so that every earlier node is in the window or
            in a completed block. (default: :obj:`64`)
        block_size (int, optional): Block length :math:`b` (blocks mode).
            (default: :obj:`32`)
        block_tokens (int, optional): Tokens :math:`c` per block (blocks
            mode). (default: :obj:`1`)
        top_k (int, optional): Blocks :math:`s` each node reads at full
            resolution (blocks mode); :obj:`0` reads the block tokens only.
            (default: :obj:`0`)
        pre_norm (bool, optional): Normalise the input of each branch and of
            the feed-forward block instead of each residual sum:
            :math:`\mathbf{H} = \mathbf{X} + \mathrm{MPNN}(\mathrm{Norm}(\mathbf{X}))
            + \ldots`, :math:`\mathbf{X}' = \mathbf{H} +
            \mathrm{MLP}(\mathrm{Norm}(\mathbf{H}))`. The residual stream is
            then never normalised, as in a plain residual GIN or a pre-norm
            transformer; a model built of such layers normalises once after
            the last. (default: :obj:`False`, post-norm as in GPS)
        fold (bool, optional): Fold each pair of projections that the
            reservoir applies in sequence into one matrix: query and key,
            value and output, in the compress step
            (:class:`~brl_graph.nn.TokenReservoir`'s :obj:`fold`) and in the
            broadcast. Each token is one head there, so a product of two
            :math:`C \times C` maps is any :math:`C \times C` map: the layer
            computes the same family of functions with :math:`4C^2` instead
            of :math:`8C^2` projection parameters, and fewer products per
            step. Fresh folded maps are products of fresh unfolded ones, small
            read-out included; :func:`~brl_graph.nn.reservoir.fold_pool` and
            :func:`~brl_graph.nn.brl_conv.fold_read` fold trained weights
            (exactly, in eval mode). Needs the reservoir mode and
            :obj:`joint=False`.
            (default: :obj:`False`)

    Shapes:
        - **input:**
          node features :math:`(N, C)`, edge indices :math:`(2, E)`,
          batch vector :math:`(N)` *(optional, sorted)*,
          tokens :math:`(B, K, C)`, or :math:`(N, K, C)` in causal mode
          *(optional; none in blocks mode)*, and the local conv's extra arguments such as
          :obj:`edge_attr` :math:`(E, D)`.
        - **output:** node features :math:`(N, C)`, tokens as in the input
          (:obj:`None` when :obj:`num_tokens=0` or in blocks mode).
    """
    def __init__(
        self,
        channels: int,
        conv: Optional[MessagePassing],
        num_tokens: int = 8,
        heads: int = 4,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        causal: bool = False,
        joint: bool = False,
        act: str = "relu",
        act_kwargs: Optional[Dict[str, Any]] = None,
        norm: Optional[str] = "layer_norm",
        norm_kwargs: Optional[Dict[str, Any]] = None,
        prefix_block: int = 32,
        learn_seeds: bool = True,
        mode: str = "reservoir",
        window: int = 64,
        block_size: int = 32,
        block_tokens: int = 1,
        top_k: int = 0,
        pre_norm: bool = False,
        fold: bool = False,
    ) -> None:
        super().__init__()
        if channels <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        if num_tokens < 0:
            raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
        if heads <= 0 or channels % heads != 0:
            raise ValueError(f"heads ({heads}) must be positive and divide channels ({channels})")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {list(MODES)}")
        if mode == "blocks":
            check_block_args(window, block_size, block_tokens, top_k, "nodes")
            if joint:
                raise ValueError("joint=True is a read of the reservoir; the blocks mode "
                                 "already reads its window and tokens under one softmax")
            num_tokens = 0  # no reservoir in this mode
        if conv is None and num_tokens == 0 and mode == "reservoir":
            raise ValueError("BRLConv needs a local conv, num_tokens > 0, or both")
        if joint and num_tokens == 0:
            raise ValueError("joint=True needs num_tokens > 0")
        if causal and not learn_seeds and mode == "reservoir":
            raise ValueError("causal layers need learned seeds (they supply the pooling queries)")
        if fold and (joint or num_tokens == 0):
            raise ValueError("fold=True folds the reservoir's projections: it needs "
                             "num_tokens > 0, mode='reservoir' and joint=False (the joint "
                             "softmax splits its projections into heads, which do not fold)")
        self.channels = channels
        self.conv = conv
        self.num_tokens = num_tokens
        self.heads = heads
        self.dropout = dropout
        self.attn_dropout = attn_dropout
        self.causal = causal
        self.joint = joint
        self.prefix_block = prefix_block
        self.mode = mode
        self.window, self.block_size = window, block_size
        self.block_tokens, self.top_k = block_tokens, top_k
        self.pre_norm = pre_norm
        self.fold = fold

        self.mlp = Sequential(
            Linear(channels, channels * 2),
            activation_resolver(act, **(act_kwargs or {})),
            Dropout(dropout),
            Linear(channels * 2, channels),
            Dropout(dropout),
        )
        # Post-norm: norm1 after the local and global branches, norm2 after the
        # feed-forward block. Pre-norm: norm1 before the branches, norm2 before the block.
        self.norm1 = node_norm(norm, channels, norm_kwargs)
        self.norm2 = node_norm(norm, channels, norm_kwargs)

        if num_tokens > 0:
            C = channels
            # compress and mix: the reservoir.
            self.reservoir = TokenReservoir(C, num_tokens, heads,
                                            activation_resolver(act, **(act_kwargs or {})),
                                            dropout=dropout, attn_dropout=attn_dropout,
                                            learn_seeds=learn_seeds, prefix_block=prefix_block,
                                            fold=fold)
            self.tok_norm_b = LayerNorm(C)
            if fold:
                # broadcast, folded: token keys in node space plus a logit shift, and values
                # already through the output map (see the class docs). No bias on the keys:
                # it would add the same logit to every token a node reads.
                self.read_keys = Linear(C, C + 1, bias=False)
                self.read_values = Linear(C, C)
            else:
                # broadcast (or joint): node queries, token keys/values, output.
                self.q_b = Linear(C, C)
                self.kv_b = Linear(C, 2 * C)
                self.o_b = Linear(C, C)
            if joint:
                self.kv_n = Linear(C, 2 * C)
        elif mode == "blocks":
            C = channels
            self.qkv = Linear(C, 3 * C)
            # one pooling score per (head, block token) and node
            self.pool = Linear(C, heads * block_tokens)
            self.o_b = Linear(C, C)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        if self.conv is not None:
            self.conv.reset_parameters()
        for module in self.modules():
            if module is self or module is self.conv:
                continue
            if isinstance(module, (Linear, LayerNorm)):
                module.reset_parameters()
        for norm in (self.norm1, self.norm2):
            if norm is not None:
                norm.reset_parameters()
        if self.num_tokens > 0:
            self.reservoir.reset_parameters()
        if self.fold:
            # products of fresh unfolded projections, the read-out's small start included
            C = self.channels
            o_b = Linear(C, C)
            small_read_out(o_b)
            fold_read(self, Linear(C, C), Linear(C, 2 * C), o_b)
        elif self.has_global:
            small_read_out(self.o_b)

    def _read_maps(self, T: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The broadcast's token-side maps of ``T`` ``[*, K, C]``: keys in node
        space (scaled by :math:`1/\sqrt{C}`) ``[*, K, C]``, the logit shift of each
        token ``[*, K, 1]``, and the values after the output map ``[*, K, C]``.

        :math:`(\mathbf{W}_Q\mathbf{x} + \mathbf{b}_Q)^\top\mathbf{k} =
        \mathbf{x}^\top(\mathbf{W}_Q^\top\mathbf{k}) + \mathbf{b}_Q^\top\mathbf{k}`,
        and since the read weights sum to one, :math:`\mathbf{W}_O` applies to
        the :math:`K` token values, so no :math:`C \times C` product runs per node.
        Unfolded, the output bias is left out of the values (it is added once
        per node); folded, it is part of them. Biases that shift every token's
        logit for a node alike are dropped, since the softmax over the tokens
        cancels them.
        """
        C = self.channels
        t = self.tok_norm_b(T)
        if self.fold:
            k = self.read_keys(t) * (1.0 / math.sqrt(C))
            return k[..., :C], k[..., C:], self.read_values(t)
        k_t, v_t = self.kv_b(t).chunk(2, dim=-1)
        k_t = k_t * (1.0 / math.sqrt(C))
        shift = (k_t @ self.q_b.bias).unsqueeze(-1)
        return k_t @ self.q_b.weight, shift, F.linear(v_t, self.o_b.weight)

    @property
    def has_global(self) -> bool:
        """Whether the layer has a global branch (a reservoir or block tokens)."""
        return self.num_tokens > 0 or self.mode == "blocks"

    @property
    def splits_nodes(self) -> bool:
        """Whether the global branch runs the token-node products that split a long
        node axis into blocks off the CPU (a non-causal reservoir): its plan then
        pads the axis to whole blocks (``plan_batch(..., split=True)``)."""
        return self.num_tokens > 0 and not self.causal

    @property
    def seeds(self) -> Optional[Tensor]:
        """The learned seed tokens ``[K, C]`` (``None`` without them)."""
        return self.reservoir.seeds if self.num_tokens > 0 else None

    # ------------------------------------------------------------------ checks
    def _check(self, x: Tensor, edge_index: Tensor, batch: Optional[Tensor],
               tokens: Optional[Tensor], plan: Optional[BatchPlan]) -> BatchPlan:
        if x.dim() != 2 or x.size(1) != self.channels:
            raise ValueError(f"BRLConv expected x of shape [num_nodes, {self.channels}], "
                             f"got {list(x.shape)}")
        N = x.size(0)
        if plan is None:
            plan = plan_batch(N, edge_index, batch, dense=self.has_global,
                              split=self.splits_nodes)
        else:
            # The plan's value checks were done once for the whole model: only
            # confirm that it describes this input.
            check_shapes(N, edge_index, plan.batch)
            if self.has_global and not plan.groups and N > 0:
                raise ValueError("the plan has no dense groups: make it with plan_batch(..., dense=True)")
        if tokens is None and self.num_tokens > 0 and self.seeds is None:
            raise ValueError("this layer was built with learn_seeds=False: pass the tokens "
                             "returned by the previous layer")
        if tokens is not None and self.mode == "blocks":
            raise ValueError("a blocks-mode layer carries no tokens: pass tokens=None")
        if tokens is not None:
            rows = N if self.causal else plan.num_graphs
            expect = [rows, self.num_tokens, self.channels]
            if list(tokens.shape) != expect:
                what = "[num_nodes, K, C] in causal mode" if self.causal else "[num_graphs, K, C]"
                raise ValueError(f"tokens must have shape {what} = {expect}, got {list(tokens.shape)}")
        return plan

    # ------------------------------------------------------------------ helpers
    def _split(self, t: Tensor) -> Tensor:
        """[..., C] -> [..., H, C/H]."""
        return t.unflatten(-1, (self.heads, self.channels // self.heads))

    def _attn_p(self) -> float:
        return self.attn_dropout if self.training else 0.0

    def _read(self, x: Tensor, T: Tensor) -> Tensor:
        r"""Broadcast: the nodes ``x`` ``[G, L, C]`` read their graph's tokens
        ``T`` ``[G, K, C]``; returns ``[G, L, C]``, after the output map.

        As in :meth:`TokenReservoir.compress`, each token is one head and the
        projections move to the token side (:meth:`_read_maps`), so no
        :math:`C \times C` product runs per node.
        """
        keys, shift, values = self._read_maps(T)  # [G, K, C], [G, K, 1], [G, K, C]
        # Logits as [G, K, L] and a softmax over the K tokens on axis 1: PyTorch's
        # CPU softmax over a last axis of length K is about 20x slower.
        logits = node_scores(keys, x, shift)
        w = dropout(torch.softmax(logits, dim=1), p=self._attn_p(), training=self.training)
        return spread_tokens(w, values, None if self.fold else self.o_b.bias)

    def _read_causal(self, x: Tensor, T: Tensor) -> Tensor:
        """Broadcast in causal mode: position ``l`` of ``x`` ``[G, L, C]`` reads its
        own reservoir ``T[:, l]`` ``[G, L, K, C]``; returns ``[G, L, C]``."""
        if self.fold:
            keys, shift, values = self._read_maps(T)  # [G, L, K, C], [G, L, K, 1], [G, L, K, C]
            w = torch.einsum("glc,glkc->gkl", x, keys) + shift.squeeze(-1).transpose(1, 2)
            w = dropout(torch.softmax(w, dim=1), p=self._attn_p(), training=self.training)
            return torch.einsum("gkl,glkc->glc", w, values)
        C = x.size(-1)
        q_n = self.q_b(x)  # [G, L, C]
        k_t, v_t = self.kv_b(self.tok_norm_b(T)).chunk(2, dim=-1)  # [G, L, K, C]
        w = torch.einsum("glc,glkc->gkl", q_n, k_t) / math.sqrt(C)
        w = dropout(torch.softmax(w, dim=1), p=self._attn_p(), training=self.training)
        return self.o_b(torch.einsum("gkl,glkc->glc", w, v_t))

    def _global_group(self, x: Tensor, group: DenseGroup, T: Optional[Tensor]
                      ) -> Tuple[Optional[Tensor], Tensor]:
        """Compress, mix and read back for the graphs of one dense group.

        ``x`` holds the group's node states ``[n, C]`` and ``T`` its tokens
        (``[G, K, C]``, or ``[n, K, C]`` in causal mode; ``None`` for the
        seeds). Returns the nodes' read-out ``[n, C]`` (``None`` in joint mode,
        which reads the tokens in :meth:`_joint`) and the new tokens.
        """
        xd = to_dense(x, group)
        if self.causal:
            T = None if T is None else to_dense(T, group)
            T = self.reservoir.compress_causal(xd, T, group.mask)  # [G, L, K, C]
            out = None if self.joint else from_dense(self._read_causal(xd, T), group)
            return out, from_dense(T, group)
        if T is None:
            T = self.reservoir.initial(group.num_graphs)
        T = self.reservoir.compress(xd, T, group.mask_bias, group.empty)
        return (None if self.joint else from_dense(self._read(xd, T), group)), T

    def _blocks_group(self, x: Tensor, group: DenseGroup) -> Tensor:
        """The blocks-mode global branch for the graphs of one dense group:
        node rows ``[n, C]`` in, their read-out ``[n, C]`` (after :attr:`o_b`) out."""
        xd = to_dense(x, group)  # [G, L, C]; row l of a graph is its node l
        G, L, C = xd.shape
        mask = group.mask
        if mask is None:
            mask = torch.ones(G, L, dtype=torch.bool, device=x.device)
        q, k, v = (self._split(t) for t in self.qkv(xd).chunk(3, dim=-1))  # [G, L, H, D]
        scores = self.pool(xd).view(G, L, self.heads, self.block_tokens)
        out = block_attention(q, k, v, scores, mask, window=self.window,
                              block_size=self.block_size, top_k=self.top_k,
                              causal=self.causal, attn_dropout=self.attn_dropout,
                              training=self.training)
        # padded rows are dropped by from_dense, so their finite garbage goes nowhere
        return from_dense(self.o_b(out.reshape(G, L, C)), group)

    def _blocks(self, x: Tensor, plan: BatchPlan) -> Tensor:
        """The blocks-mode global branch over every dense group of the batch."""
        if len(plan.groups) == 1 and plan.groups[0].node_index is None:
            return self._blocks_group(x, plan.groups[0])
        out = x.new_empty(x.size(0), self.channels)
        for group in plan.groups:
            o = self._blocks_group(x[group.node_index], group)
            out = out.index_copy(0, group.node_index, o.to(out.dtype))
        return out

    def _global(self, x: Tensor, plan: BatchPlan, tokens: Optional[Tensor]
                ) -> Tuple[Optional[Tensor], Tensor]:
        """The global branch over every dense group of the batch."""
        if len(plan.groups) == 1 and plan.groups[0].node_index is None:
            return self._global_group(x, plan.groups[0], tokens)
        N, K, C = x.size(0), self.num_tokens, self.channels
        out = None if self.joint else x.new_empty(N, C)
        new_tokens = x.new_empty(N if self.causal else plan.num_graphs, K, C)
        for group in plan.groups:
            if tokens is None:
                T = None
            else:
                T = tokens[group.node_index if self.causal else group.graph_index]
            o, T_new = self._global_group(x[group.node_index], group, T)
            # Under autocast a group's outputs may be bf16/fp16: the buffers keep
            # the input's dtype, as the one-group path does after the final norm.
            if o is not None:
                out = out.index_copy(0, group.node_index, o.to(out.dtype))
            rows = group.node_index if self.causal else group.graph_index
            new_tokens = new_tokens.index_copy(0, rows, T_new.to(new_tokens.dtype))
        return out, new_tokens

    def _joint(self, x: Tensor, edge_index: Tensor, T_node: Tensor) -> Tensor:
        """One softmax per node over its in-neighbours, itself and its K tokens.

        ``T_node`` holds the tokens each node reads, ``[N, K, C]``. Returns the
        output after :attr:`o_b`.
        """
        N, C, H, K = x.size(0), self.channels, self.heads, self.num_tokens
        D = C // H
        q = self._split(self.q_b(x))  # [N, H, D]
        k_n, v_n = (self._split(t) for t in self.kv_n(x).chunk(2, dim=-1))
        k_t, v_t = (self._split(t) for t in self.kv_b(self.tok_norm_b(T_node)).chunk(2, dim=-1))
        src, dst = edge_index
        keep = src != dst  # self-attention is added once below, whatever the input holds
        loop = torch.arange(N, device=x.device)
        src = torch.cat([src[keep], loop])
        dst = torch.cat([dst[keep], loop])
        e_logit = (q[dst] * k_n[src]).sum(-1) / math.sqrt(D)  # [E', H]
        t_logit = torch.einsum("nhd,nkhd->nkh", q, k_t) / math.sqrt(D)  # [N, K, H]
        index = torch.cat([dst, loop.repeat_interleave(K)])
        alpha = softmax(torch.cat([e_logit, t_logit.reshape(N * K, H)]), index, num_nodes=N)
        alpha = dropout(alpha, p=self._attn_p(), training=self.training)
        a_e, a_t = alpha[:dst.numel()], alpha[dst.numel():].view(N, K, H)
        out = scatter(a_e.unsqueeze(-1) * v_n[src], dst, dim=0, dim_size=N, reduce="sum")
        out = out + torch.einsum("nkh,nkhd->nhd", a_t, v_t)
        return self.o_b(out.reshape(N, C))

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        batch: Optional[Tensor] = None,
        tokens: Optional[Tensor] = None,
        plan: Optional[BatchPlan] = None,
        **kwargs: Any,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        r"""Runs the layer.

        Args:
            x (torch.Tensor): Node states :obj:`[N, C]`.
            edge_index (torch.Tensor): Edges :obj:`[2, E]`, source to target.
            batch (torch.Tensor, optional): Sorted graph assignment :obj:`[N]`.
            tokens (torch.Tensor, optional): The reservoir from the previous
                layer; learned seeds when :obj:`None`.
            plan (BatchPlan, optional): :func:`~brl_graph.nn.plan_batch` of this
                batch, made once for all layers (it then supplies :obj:`batch`,
                and the layer checks only shapes). Without it the layer checks
                the batch and plans its padding itself.
            **kwargs: Passed to the local conv (e.g. :obj:`edge_attr`). In
                causal mode the edge-indexed ones (:obj:`edge_attr`,
                :obj:`edge_weight`, :obj:`edge_type`) are filtered with the edges.

        Returns:
            (torch.Tensor, torch.Tensor or None): new node states and tokens.
        """
        plan = self._check(x, edge_index, batch, tokens, plan)
        batch, num_graphs = plan.batch, plan.num_graphs
        N, K, C = x.size(0), self.num_tokens, self.channels
        if N == 0:
            if K == 0:  # no reservoir: the MPNN twin or the blocks mode
                return x, None
            if self.causal:  # one reservoir per position, and there are none
                return x, tokens if tokens is not None else x.new_zeros(0, K, C)
            # Graphs without nodes pool nothing but still mix their tokens, as
            # they do beside other graphs: a graph is the same alone and batched.
            T = tokens if tokens is not None else self.reservoir.initial(num_graphs)
            empty = torch.ones(num_graphs, dtype=torch.bool, device=x.device)
            return x, self.reservoir.compress(x.new_zeros(num_graphs, 0, C), T, None, empty)

        if self.causal:
            # Node order within a graph is its index; graphs are contiguous, so
            # comparing global indices compares positions within the graph.
            keep = edge_index[0] <= edge_index[1]
            if not bool(keep.all()):
                edge_index = edge_index[:, keep]
                for name in EDGE_KWARGS:
                    if name in kwargs and isinstance(kwargs[name], Tensor):
                        kwargs[name] = kwargs[name][keep]

        # Post-norm normalises the sum of the residual and the branches; pre-norm
        # normalises what the branches read and leaves the residual stream as is.
        xb = apply_norm(self.norm1, x, batch, num_graphs) if self.pre_norm else x
        h = x
        if self.conv is not None:
            h = h + dropout(self.conv(xb, edge_index, **kwargs), p=self.dropout,
                              training=self.training)
        new_tokens = None
        if self.mode == "blocks":
            h = h + dropout(self._blocks(xb, plan), p=self.dropout, training=self.training)
        elif K > 0:
            out, new_tokens = self._global(xb, plan, tokens)
            if self.joint:
                out = self._joint(xb, edge_index, new_tokens if self.causal else new_tokens[batch])
            h = h + dropout(out, p=self.dropout, training=self.training)
        if self.pre_norm:
            return h + self.mlp(apply_norm(self.norm2, h, batch, num_graphs)), new_tokens
        h = apply_norm(self.norm1, h, batch, num_graphs)
        out = h + self.mlp(h)
        return apply_norm(self.norm2, out, batch, num_graphs), new_tokens

    def __repr__(self) -> str:
        conv = repr(self.conv)
        if "\n" in conv:
            conv = self.conv.__class__.__name__
        if self.mode == "blocks":
            glob = (f"mode=blocks, window={self.window}, block_size={self.block_size}, "
                    f"block_tokens={self.block_tokens}, top_k={self.top_k}")
        else:
            glob = f"num_tokens={self.num_tokens}"
        return (f"{self.__class__.__name__}({self.channels}, conv={conv}, "
                f"{glob}, heads={self.heads}, causal={self.causal}, joint={self.joint}"
                + (", pre_norm=True" if self.pre_norm else "")
                + (", fold=True" if self.fold else "") + ")")


@torch.no_grad()
def small_read_out(o_b: Linear) -> None:
    """The read-out's start: a tenth of the default init, bias zero (see
    :class:`BRLConv`'s docs)."""
    o_b.weight.mul_(READ_INIT_SCALE)
    o_b.bias.zero_()


@torch.no_grad()
def fold_read(layer: BRLConv, q_b: Linear, kv_b: Linear, o_b: Linear) -> None:
    r"""Sets a folded layer's broadcast maps (not its reservoir's pooling maps:
    see :func:`~brl_graph.nn.reservoir.fold_pool`) to those of the unfolded
    projections :obj:`q_b`, :obj:`kv_b` (:math:`[\mathbf{W}_K; \mathbf{W}_V]`)
    and :obj:`o_b`, so that the read computes what an unfolded layer with these
    weights computes (in eval mode: attention dropout would scale the output
    bias, which the folded values carry).

    Keys (before the :math:`1/\sqrt{C}`): :math:`\mathbf{W}_Q^\top\mathbf{W}_K
    \mathbf{t}` and the shift :math:`\mathbf{b}_Q^\top\mathbf{W}_K\mathbf{t}`, one
    :obj:`Linear(C, C + 1, bias=False)`; the terms with :math:`\mathbf{b}_K` are
    the same for every token a node reads, and the softmax over the tokens
    drops them. Values: :math:`\mathbf{W}_O(\mathbf{W}_V\mathbf{t} +
    \mathbf{b}_V) + \mathbf{b}_O` (the read weights sum to one, so the output
    bias rides on the values).
    """
    if not layer.fold:
        raise ValueError("fold_read sets the maps of a layer built with fold=True")
    C = layer.channels
    w_k, w_v = kv_b.weight.view(2, C, C).unbind(0)
    b_v = kv_b.bias[C:]
    w_q, b_q = q_b.weight, q_b.bias
    layer.read_keys.weight.copy_(torch.cat([w_q.t() @ w_k, (b_q @ w_k).unsqueeze(0)]))
    layer.read_values.weight.copy_(o_b.weight @ w_v)
    layer.read_values.bias.copy_(o_b.weight @ b_v + o_b.bias)
