from __future__ import annotations

from typing import Any, List, NamedTuple, Optional

import torch
from torch import Tensor
from torch.nn import LayerNorm, Linear, ReLU, Sequential

from torch_geometric.nn import (GATv2Conv, GCNConv, GINConv, GINEConv, GPSConv,
                                ResGatedGraphConv, global_add_pool, global_max_pool,
                                global_mean_pool)
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.norm import BatchNorm

from brl_graph.attrs import LAP_PE, READOUT_MASK, RWSE
from brl_graph.nn.brl_conv import MODES as BRL_MODES
from brl_graph.nn.brl_conv import BRLConv, apply_norm, node_norm
from brl_graph.nn.dropout import Dropout
from brl_graph.nn.encoders import FeatureEncoder, PEEncoder
from brl_graph.nn.plan import plan_batch

LOCAL_CONVS = ("gine", "gatedgcn", "gcn", "gatv2")
GLOBAL_ATTNS = ("brl", "full", "performer", "none")
TASK_LEVELS = ("graph", "node", "readout")
POOLS = {"mean": global_mean_pool, "add": global_add_pool, "max": global_max_pool}
# "auto": batch_norm, or layer_norm in causal models (batch statistics would mix
# positions during training); "none" (or None): no normalisation.
NORMS = ("auto", "batch_norm", "layer_norm", "none")


def resolve_norm(norm: Optional[str], causal: bool) -> Optional[str]:
    """The normalisation a model uses for ``norm`` (see :data:`NORMS`)."""
    if norm not in NORMS and norm is not None:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    if norm == "auto":
        return "layer_norm" if causal else "batch_norm"
    if causal and norm == "batch_norm":
        raise ValueError("norm='batch_norm' mixes the positions of a batch during training, "
                         "which breaks causal=True: use norm='layer_norm'")
    return None if norm == "none" else norm


def gin_mlp(channels: int, norm: Optional[str] = "batch_norm") -> Sequential:
    r"""The MLP of a GIN/GINE layer: :math:`C \to 2C`, normalisation, ReLU,
    :math:`2C \to C`.

    The normalisation inside the MLP is GIN's own design (Xu et al., 2019). It
    matters: on ogbg-molhiv our GINE twin without it reached valid ROC-AUC
    0.65 after 2 epochs, and 0.71-0.73 with it, as does a plain PyG GINE
    (``benchmarks/reference_gine.py``). ``norm`` follows the model's:
    BatchNorm, per-node LayerNorm, or none.
    """
    if norm == "batch_norm":
        inner: torch.nn.Module = BatchNorm(2 * channels, allow_single_element=True)
    elif norm == "layer_norm":
        inner = torch.nn.LayerNorm(2 * channels)
    else:
        inner = torch.nn.Identity()
    return Sequential(Linear(channels, 2 * channels), inner, ReLU(), Linear(2 * channels, channels))


def make_head(channels: int, out_channels: int, num_layers: int, dropout: float,
              in_channels: Optional[int] = None) -> Sequential:
    """The prediction head: ``num_layers`` linear layers at width ``channels``,
    with ReLU and dropout between them (none after the last); the first reads
    ``in_channels`` (default ``channels``)."""
    if num_layers < 1:
        raise ValueError(f"head_layers must be >= 1, got {num_layers}")
    modules: List[torch.nn.Module] = []
    width = channels if in_channels is None else in_channels
    for _ in range(num_layers - 1):
        modules += [Linear(width, channels), ReLU(), Dropout(dropout)]
        width = channels
    return Sequential(*modules, Linear(width, out_channels))


def make_local_conv(name: str, channels: int, heads: int, edge_channels: Optional[int],
                    norm: Optional[str] = "batch_norm") -> MessagePassing:
    """The local MPNN of one layer; ``edge_channels`` is the embedded edge width or
    ``None``; ``norm`` is the normalisation inside GIN's MLP (:func:`gin_mlp`)."""
    if name == "gine":
        if edge_channels is None:
            return GINConv(gin_mlp(channels, norm))
        return GINEConv(gin_mlp(channels, norm), edge_dim=edge_channels)
    if name == "gatedgcn":
        return ResGatedGraphConv(channels, channels, edge_dim=edge_channels)
    if name == "gcn":
        return GCNConv(channels, channels)
    if name == "gatv2":
        return GATv2Conv(channels, channels // heads, heads=heads, edge_dim=edge_channels)
    raise ValueError(f"unknown local conv {name!r}; choose one of {LOCAL_CONVS}")


class States(NamedTuple):
    """What the layers leave for the head."""
    x: Tensor  # final node states [N, C]
    tokens: Optional[Tensor]  # the last layer's tokens; None without a reservoir
    num_graphs: int  # the batch's graph count, trailing graphs without nodes included
    batch: Tensor  # graph of each node [N] (zeros for one graph), as the layers used it
    readout: Optional[Tensor]  # each graph's marked node [B], in graph order; None unless readout level


def _num_graphs(data: Any) -> Optional[int]:
    """The graph count of ``data``: a batch's own count (trailing graphs without
    nodes included), 1 without :obj:`batch`; ``None`` leaves it to :obj:`batch`."""
    num_graphs = getattr(data, "num_graphs", None)
    if num_graphs is not None:
        return int(num_graphs)
    return 1 if getattr(data, "batch", None) is None else None


class BRLGraphModel(torch.nn.Module):
    r"""A graph transformer of stacked :class:`~brl_graph.nn.BRLConv` layers.

    Input encoders (OGB atom/bond or linear, plus optional RWSE/LapPE) map the
    features to :obj:`channels`; :obj:`num_layers` layers follow, carrying the
    token reservoir from one layer to the next; a head predicts per graph (pooled
    nodes), per node, or per graph at a marked readout node.

    :obj:`num_tokens=0` (or :obj:`global_attn="none"`) gives the MPNN-only twin
    with the same encoders, local convs, norms, FFNs and head: the baseline for
    every comparison. :obj:`global_attn="full"` and :obj:`"performer"` swap each
    layer for PyG's :class:`~torch_geometric.nn.conv.GPSConv` with the same local
    conv.

    Args:
        out_channels (int): Output width (tasks or classes).
        channels (int, optional): Hidden width. (default: :obj:`64`)
        num_layers (int, optional): Number of layers. (default: :obj:`4`)
        num_tokens (int, optional): Compressed tokens per graph. (default: :obj:`8`)
        heads (int, optional): Attention heads. (default: :obj:`4`)
        local (str, optional): Local conv: :obj:`"gine"`, :obj:`"gatedgcn"`,
            :obj:`"gcn"` or :obj:`"gatv2"`. (default: :obj:`"gine"`)
        global_attn (str, optional): :obj:`"brl"`, :obj:`"full"`,
            :obj:`"performer"` or :obj:`"none"`. (default: :obj:`"brl"`)
        node_encoder (str, optional): :obj:`"atom"` for OGB integer atom
            features, :obj:`"linear"` for float features. (default: :obj:`"linear"`)
        in_channels (int, optional): Node feature width for :obj:`"linear"`.
        edge_encoder (str, optional): :obj:`"bond"`, :obj:`"linear"` or
            :obj:`None` (no edge features; also implied by :obj:`local="gcn"`,
            which takes none). (default: :obj:`None`)
        edge_dim (int, optional): Edge feature width for :obj:`"linear"`.
        rwse_dim (int, optional): Width of :obj:`data.rwse`; :obj:`0` = unused.
        lap_pe_dim (int, optional): Width of :obj:`data.lap_pe`; :obj:`0` = unused.
        dropout (float, optional): Dropout on every residual branch and in the
            head. (default: :obj:`0.0`)
        attn_dropout (float, optional): Dropout on attention weights.
            (default: :obj:`0.0`)
        causal (bool, optional): Causal BRL layers. (default: :obj:`False`)
        joint (bool, optional): Joint neighbour/token softmax. (default: :obj:`False`)
        brl_mode (str, optional): The BRL layers' global branch (the
            :obj:`mode` of :class:`~brl_graph.nn.BRLConv`): :obj:`"reservoir"`
            (:obj:`num_tokens` carried tokens per graph, linear) or
            :obj:`"blocks"` (block tokens of consecutive nodes read by content,
            which recalls but is quadratic with a small constant and depends on
            the node order; :obj:`num_tokens` and :obj:`joint` do not apply).
            GPS layers (:obj:`global_attn` :obj:`"full"` or :obj:`"performer"`)
            have no BRL branch: they ignore :obj:`brl_mode`, :obj:`joint`,
            :obj:`window`, :obj:`block_size`, :obj:`block_tokens`,
            :obj:`top_k`, :obj:`fold`, :obj:`readout_tokens` and
            :obj:`readout_query`, so that one
            config serves BRL and its GPS baseline. (default: :obj:`"reservoir"`)
        window (int, optional): Window of the blocks mode. (default: :obj:`64`)
        block_size (int, optional): Block length of the blocks mode.
            (default: :obj:`32`)
        block_tokens (int, optional): Tokens per block. (default: :obj:`1`)
        top_k (int, optional): Blocks each node reads in full. (default: :obj:`0`)
        task_level (str, optional): :obj:`"graph"`, :obj:`"node"` or
            :obj:`"readout"`. (default: :obj:`"graph"`)
        pool (str, optional): Graph pooling: :obj:`"mean"`, :obj:`"add"` or
            :obj:`"max"`. (default: :obj:`"mean"`)
        readout_attr (str, optional): Boolean node attribute marking each graph's
            readout node, for :obj:`task_level="readout"`.
            (default: :obj:`"readout_mask"`)
        norm (str, optional): Normalisation in every layer and inside GIN's
            MLP: :obj:`"batch_norm"` (as GPS), :obj:`"layer_norm"` (per node),
            :obj:`"none"`, or :obj:`"auto"`: batch norm, or layer norm when
            :obj:`causal=True`, since batch statistics mix positions in
            training. Batch norm is what makes GINE learn fast on molecules
            (see :func:`gin_mlp`). (default: :obj:`"auto"`)
        pre_norm (bool, optional): Pre-norm BRL layers (see
            :class:`~brl_graph.nn.BRLConv`): the residual stream is not
            normalised inside the layers, and one normalisation follows the
            last layer. Not available with :obj:`"full"` or
            :obj:`"performer"`. (default: :obj:`False`)
        head_layers (int, optional): Linear layers in the prediction head,
            with ReLU and dropout between them; :obj:`1` is a linear readout.
            (Tönshoff et al.'s tuned LRGB configs use 3 for GCN and 2 for GPS
            on Peptides-func.) (default: :obj:`2`)
        pe_norm (bool, optional): Batch-normalise each raw positional
            encoding before its linear embedding (see
            :class:`~brl_graph.nn.PEEncoder`). (default: :obj:`False`)
        fold (bool, optional): Folded reservoir projections in the BRL layers
            (the :obj:`fold` of :class:`~brl_graph.nn.BRLConv`): the same
            functions with half the global branch's projection parameters.
            Models without a reservoir (the twin, the blocks mode, GPS layers)
            have nothing to fold and ignore it. (default: :obj:`False`)
        readout_tokens (bool, optional): At graph and readout level, the head
            also reads the last layer's tokens: their mean over the :math:`K`
            tokens, layer normalised, beside each graph's pooled (or marked)
            node (the head's input is then :math:`2C` wide). The tokens hold
            what the nodes wrote into the reservoir in every layer, a summary
            the node pooling has to rebuild. The mean is normalised after
            averaging, so the head sees one summary per graph on the scale of
            the pooled nodes. Models without a reservoir (the twin, the blocks
            mode, GPS layers) ignore it, as they ignore :obj:`fold`, so one
            config serves all of them; causal models and node-level tasks
            predict per node, not per graph, and refuse it.
            (default: :obj:`False`)
        readout_query (bool, optional): At readout level, the first layer's
            tokens start from the seeds *plus* a linear map of each graph's
            readout node (its encoded input state), so their first pooling
            queries carry the question that node asks and the reservoir can
            fetch by content what it needs. Without it the seeds are the same
            for every graph: the first queries cannot depend on the question,
            and a token can only learn to fetch a fixed place. On
            Tree-NeighborsMatch at depth 5 that is what happened: each token of
            the second layer held one fixed leaf, and the test accuracy was
            high for exactly those leaves (docs/RECIPE.md). The map starts at
            zero, so a fresh model computes what it would without the option.
            Models without a reservoir ignore it, as they ignore :obj:`fold`;
            other task levels and causal models have no single readout node
            per graph and refuse it. (Building the map draws from the random
            generator, so the same seed gives the other layers other initial
            weights.) (default: :obj:`False`)
        validate (bool, optional): Check each input batch's values once at
            the model's entry (edge indices in range, a sorted :obj:`batch`, no
            edge between graphs); the layers then check only shapes.
            :obj:`False` skips these checks for trusted data. (default: :obj:`True`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Batch` (or :class:`Data`)
          with :obj:`x`, :obj:`edge_index` and, as configured, :obj:`edge_attr`,
          :obj:`rwse`, :obj:`lap_pe`, :obj:`batch` and the readout attribute.
        - **output:** :math:`(B, \text{out})` for graph and readout level,
          :math:`(N, \text{out})` for node level.
    """
    def __init__(
        self,
        out_channels: int,
        channels: int = 64,
        num_layers: int = 4,
        num_tokens: int = 8,
        heads: int = 4,
        local: str = "gine",
        global_attn: str = "brl",
        node_encoder: str = "linear",
        in_channels: Optional[int] = None,
        edge_encoder: Optional[str] = None,
        edge_dim: Optional[int] = None,
        rwse_dim: int = 0,
        lap_pe_dim: int = 0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        causal: bool = False,
        joint: bool = False,
        task_level: str = "graph",
        pool: str = "mean",
        readout_attr: str = READOUT_MASK,
        norm: Optional[str] = "auto",
        validate: bool = True,
        brl_mode: str = "reservoir",
        window: int = 64,
        block_size: int = 32,
        block_tokens: int = 1,
        top_k: int = 0,
        pre_norm: bool = False,
        head_layers: int = 2,
        pe_norm: bool = False,
        fold: bool = False,
        readout_tokens: bool = False,
        readout_query: bool = False,
    ) -> None:
        super().__init__()
        if global_attn not in GLOBAL_ATTNS:
            raise ValueError(f"unknown global_attn {global_attn!r}; choose one of {GLOBAL_ATTNS}")
        if task_level not in TASK_LEVELS:
            raise ValueError(f"unknown task_level {task_level!r}; choose one of {TASK_LEVELS}")
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; choose one of {tuple(POOLS)}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if pre_norm and global_attn in ("full", "performer"):
            raise ValueError("pre_norm=True needs BRL layers (global_attn='brl' or 'none'): "
                             "PyG's GPSConv is post-norm only")
        if causal and global_attn in ("full", "performer"):
            raise ValueError("causal=True is only available with global_attn='brl' or 'none'")
        if brl_mode not in BRL_MODES:
            raise ValueError(f"unknown brl_mode {brl_mode!r}; choose one of {BRL_MODES}")
        if readout_tokens and (causal or task_level == "node"):
            raise ValueError("readout_tokens=True needs a per-graph prediction (task_level "
                             "'graph' or 'readout') and causal=False: a causal model's and a "
                             "node-level task's outputs are per node, and no node may read "
                             "the tokens of its whole graph")
        if readout_query and (causal or task_level != "readout"):
            raise ValueError("readout_query=True conditions each graph's tokens on its readout "
                             "node: it needs task_level='readout' and causal=False, got "
                             f"task_level={task_level!r}, causal={causal}")
        if global_attn == "none":
            num_tokens = 0
        if global_attn != "brl":
            brl_mode = "reservoir"  # the block tokens are a BRL global branch
        elif brl_mode == "blocks":
            num_tokens = 0  # no reservoir is built
        norm = resolve_norm(norm, causal)
        self.out_channels = out_channels
        self.channels = channels
        self.num_layers = num_layers
        self.num_tokens = num_tokens if global_attn == "brl" else 0
        self.global_attn = global_attn
        self.local = local
        self.task_level = task_level
        self.pool = pool
        self.readout_attr = readout_attr
        self.validate = validate
        self.norm = norm
        self.brl_mode = brl_mode
        self.pre_norm = pre_norm
        self.head_layers = head_layers
        self.pe_norm = pe_norm
        self.fold = fold and self.num_tokens > 0
        self.readout_tokens = readout_tokens and self.num_tokens > 0  # blocks mode has none
        self.readout_query = readout_query and self.num_tokens > 0
        blocks = ({"mode": "blocks", "window": window, "block_size": block_size,
                   "block_tokens": block_tokens, "top_k": top_k} if brl_mode == "blocks" else {})

        self.node_encoder = FeatureEncoder(node_encoder, channels, in_channels)
        # GCN has no use for edge features: build no encoder that nothing would train.
        self.edge_encoder = (FeatureEncoder(edge_encoder, channels, edge_dim)
                             if edge_encoder is not None and local != "gcn" else None)
        self.rwse_encoder = PEEncoder(rwse_dim, channels, norm=pe_norm) if rwse_dim > 0 else None
        self.lap_encoder = (PEEncoder(lap_pe_dim, channels, sign_flip=True, norm=pe_norm)
                            if lap_pe_dim > 0 else None)
        edge_channels = channels if self.edge_encoder is not None else None

        self.layers = torch.nn.ModuleList()
        for i in range(num_layers):
            conv = make_local_conv(local, channels, heads, edge_channels, norm)
            if global_attn in ("brl", "none"):
                layer = BRLConv(channels, conv, num_tokens=self.num_tokens, heads=heads,
                                dropout=dropout, attn_dropout=attn_dropout, causal=causal,
                                joint=joint, norm=norm,
                                # later non-causal layers continue from the carried reservoir
                                learn_seeds=causal or i == 0, pre_norm=pre_norm,
                                fold=self.fold, **blocks)
            else:
                norm_kwargs = {"mode": "node"} if norm == "layer_norm" else None
                attn_kwargs = {"dropout": attn_dropout} if global_attn == "full" else None
                layer = GPSConv(channels, conv, heads=heads, dropout=dropout, norm=norm,
                                norm_kwargs=norm_kwargs,
                                attn_type="multihead" if global_attn == "full" else "performer",
                                attn_kwargs=attn_kwargs)
            self.layers.append(layer)
        # Pre-norm layers leave the residual stream unnormalised: normalise it once
        # before the head, as a pre-norm transformer does.
        self.final_norm = node_norm(norm, channels) if pre_norm else None
        # Layer norm keeps each graph's token summary its own (a batch norm over
        # the graphs of a batch would mix them in training).
        self.token_norm = LayerNorm(channels) if self.readout_tokens else None
        self.query_map = Linear(channels, channels) if self.readout_query else None
        self._reset_query_map()
        self.head = make_head(channels, out_channels, head_layers, dropout,
                              2 * channels if self.readout_tokens else channels)

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters of the module."""
        for module in (self.node_encoder, self.edge_encoder, self.rwse_encoder, self.lap_encoder):
            if module is not None:
                module.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()
        for norm in (self.final_norm, self.token_norm):
            if norm is not None:
                norm.reset_parameters()
        for m in self.head:
            if isinstance(m, Linear):
                m.reset_parameters()
        self._reset_query_map()

    def _reset_query_map(self) -> None:
        # Zero: a fresh model with readout_query computes what it would without
        # it, and the gradient (readout state times the tokens' gradient) still
        # reaches the map from the first step.
        if self.query_map is not None:
            torch.nn.init.zeros_(self.query_map.weight)
            torch.nn.init.zeros_(self.query_map.bias)

    def encode(self, data) -> Tensor:
        """The encoded input node states ``[N, channels]``."""
        x = self.node_encoder(data.x)
        batch = getattr(data, "batch", None)
        if self.rwse_encoder is not None:
            x = x + self.rwse_encoder(self._require(data, RWSE), batch)
        if self.lap_encoder is not None:
            x = x + self.lap_encoder(self._require(data, LAP_PE), batch)
        return x

    @staticmethod
    def _require(data, name: str) -> Tensor:
        value = getattr(data, name, None)
        if value is None:
            raise ValueError(f"the model was built to use data.{name}, which this data lacks "
                             f"(add the matching positional-encoding option to the dataset)")
        return value

    def node_states(self, data, x_encoded: Optional[Tensor] = None) -> Tensor:
        """Final node states ``[N, channels]`` before the head.

        ``x_encoded`` replaces the encoded input (see :meth:`encode`), which lets
        diagnostics differentiate with respect to the layers' input. With
        :obj:`readout_tokens`, the prediction also reads every node through the
        last tokens; node-to-node sensitivity (section 6's Jacobian by hop) is
        measured on these states and does not include that path.
        """
        return self._states(data, x_encoded).x

    def _states(self, data, x_encoded: Optional[Tensor] = None) -> States:
        """Runs the layers over ``data``; see :class:`States`."""
        x = self.encode(data) if x_encoded is None else x_encoded
        edge_index = data.edge_index
        batch = getattr(data, "batch", None)
        kwargs = {}
        if self.edge_encoder is not None:
            kwargs["edge_attr"] = self.edge_encoder(self._require(data, "edge_attr"))
        # One plan for all layers: the batch is checked and its padding worked
        # out once, not once per layer. The graph count comes from the batch
        # object, which also counts trailing graphs without nodes: the tokens
        # then have one row per graph, as the pooled nodes do.
        plan = plan_batch(x.size(0), edge_index, batch, num_graphs=_num_graphs(data),
                          validate=self.validate,
                          dense=self.num_tokens > 0 or self.brl_mode == "blocks",
                          split=any(isinstance(layer, BRLConv) and layer.splits_nodes
                                    for layer in self.layers))
        readout = (self._readout_index(data, x.size(0), plan.batch, plan.num_graphs)
                   if self.task_level == "readout" else None)
        tokens = None
        if self.readout_query:
            tokens = (self.layers[0].reservoir.initial(plan.num_graphs)
                      + self.query_map(x[readout]).unsqueeze(1))
        for layer in self.layers:
            if isinstance(layer, BRLConv):
                x, tokens = layer(x, edge_index, tokens=tokens, plan=plan, **kwargs)
            else:
                x = layer(x, edge_index, batch, **kwargs)
        x = apply_norm(self.final_norm, x, plan.batch, plan.num_graphs)
        return States(x, tokens, plan.num_graphs, plan.batch, readout)

    def forward(self, data) -> Tensor:
        # the plan's batch vector: one graph's zeros are made once, by plan_batch
        x, tokens, num_graphs, batch, readout = self._states(data)
        if self.task_level == "node":
            return self.head(x)
        if self.task_level == "readout":
            return self.head(self._with_tokens(x[readout], tokens))
        return self.head(self._with_tokens(POOLS[self.pool](x, batch, size=num_graphs), tokens))

    def _readout_index(self, data, num_nodes: int, batch: Tensor, num_graphs: int) -> Tensor:
        """Each graph's marked readout node, ``[B]`` node indices in graph order."""
        mark = self._require(data, self.readout_attr).view(-1).bool()
        if mark.numel() != num_nodes:
            raise ValueError(f"data.{self.readout_attr} must have one entry per node")
        counts = torch.bincount(batch[mark], minlength=num_graphs)
        if bool((counts != 1).any()):
            raise ValueError(f"every graph needs exactly one node marked by "
                             f"data.{self.readout_attr}; got counts {counts.tolist()[:10]}")
        index = mark.nonzero().view(-1)
        return index[torch.argsort(batch[index])]

    def _with_tokens(self, per_graph: Tensor, tokens: Optional[Tensor]) -> Tensor:
        """``[B, C]`` per-graph states, with the token summary beside them if configured."""
        if not self.readout_tokens:
            return per_graph
        return torch.cat([per_graph, self.token_norm(tokens.mean(dim=1))], dim=-1)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(out_channels={self.out_channels}, "
                f"channels={self.channels}, num_layers={self.num_layers}, local={self.local!r}, "
                f"global_attn={self.global_attn!r}, num_tokens={self.num_tokens}, "
                + (f"brl_mode={self.brl_mode!r}, " if self.brl_mode != "reservoir" else "")
                + (f"head_layers={self.head_layers}, " if self.head_layers != 2 else "")
                + ("pe_norm=True, " if self.pe_norm else "")
                + ("fold=True, " if self.fold else "")
                + ("readout_tokens=True, " if self.readout_tokens else "")
                + ("readout_query=True, " if self.readout_query else "") +
                f"task_level={self.task_level!r})")
