r"""The :class:`Benchmark` returned by every loader, and :func:`from_pyg`."""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from .metrics import HIGHER_IS_BETTER, compute_metric
from .transforms import apply_pe, pe_dims, pe_options

TASKS = ("binary", "multilabel", "multiclass", "regression")
LEVELS = ("graph", "node", "readout", "link")
#: Task -> metric used when none is given.
DEFAULT_METRIC = {
    "binary": "rocauc",
    "multilabel": "rocauc",
    "multiclass": "accuracy",
    "regression": "rmse",
}


@dataclass
class Benchmark:
    r"""A dataset with its official split, task description and metric.

    Attributes:
        name (str): dataset name.
        train, valid, test: indexable datasets (or lists) of
            :class:`~torch_geometric.data.Data`, usable by PyG's ``DataLoader``.
        task (str): ``"binary"``, ``"multilabel"``, ``"multiclass"`` or
            ``"regression"``.
        num_tasks (int): label columns (1 for multiclass).
        num_classes (int): classes for multiclass, else 2 for
            binary/multilabel and 0 for regression.
        metric (str): ``"rocauc"``, ``"ap"``, ``"rmse"``, ``"mae"``,
            ``"accuracy"``, ``"f1"`` or ``"mrr"``.
        level (str): ``"graph"`` (one prediction per graph), ``"node"`` (one
            per node), ``"readout"`` (one per graph, read at the node marked
            by ``node_readout``) or ``"link"`` (PCQM-Contact pairs).
        node_readout (str, optional): boolean node attribute marking the
            readout node (exactly one per graph).
        atom_features (bool): ``x`` holds OGB integer atom features (long
            ``[N, 9]``) and ``edge_attr`` OGB bond features (long ``[E, 3]``),
            for ``ogb``'s ``AtomEncoder``/``BondEncoder``.
        num_node_features (int): width of ``x`` (of the float features a
            linear encoder sees; 9 for atom features).
        num_edge_features (int): width of ``edge_attr`` (0 if none).
        pe (Dict[str, int]): encoding attribute -> width, e.g. ``{"rwse": 16}``.
        info (Dict[str, Any]): loader details (options, timings, sources).

    Label conventions: graph-level binary/multilabel/regression ``y`` is
    float ``[1, num_tasks]`` per graph with ``NaN`` for missing labels;
    multiclass graph/readout ``y`` is long ``[1]``; node-level multiclass
    ``y`` is long ``[N]``.
    """
    name: str
    train: Sequence[Data]
    valid: Sequence[Data]
    test: Sequence[Data]
    task: str
    num_tasks: int
    metric: str
    num_classes: int = 0
    level: str = "graph"
    node_readout: Optional[str] = None
    atom_features: bool = False
    num_node_features: int = 0
    num_edge_features: int = 0
    pe: Dict[str, int] = field(default_factory=dict)
    info: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task '{self.task}'; choose from {TASKS}")
        if self.metric not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown metric '{self.metric}'; choose from "
                             f"{sorted(HIGHER_IS_BETTER)}")
        if self.level not in LEVELS:
            raise ValueError(f"unknown level '{self.level}'; choose from "
                             f"{LEVELS}")
        if self.level == "readout" and not self.node_readout:
            raise ValueError("level 'readout' needs node_readout= (the name "
                             "of the boolean node attribute)")
        if self.task == "multiclass" and self.num_classes < 2:
            raise ValueError(f"a multiclass task needs num_classes >= 2, got "
                             f"{self.num_classes}")

    @property
    def out_channels(self) -> int:
        """Model outputs per prediction: ``num_classes`` for multiclass,
        else ``num_tasks``."""
        return self.num_classes if self.task == "multiclass" else self.num_tasks

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger :attr:`metric` is better."""
        return HIGHER_IS_BETTER[self.metric]

    def evaluate(self, y_true, y_pred) -> Dict[str, float]:
        r"""Scores predictions with :attr:`metric`.

        Args:
            y_true: labels (tensor or array), ``NaN`` entries are ignored.
                ``[G, num_tasks]`` for binary/multilabel/regression; class
                indices ``[G]`` (or ``[N]`` at node level) for multiclass.
                For ``"mrr"``: a list of positive pair indices ``[2, P]``
                per graph.
            y_pred: scores of the same shape; class scores ``[G, C]`` or
                class indices for multiclass; for ``"mrr"`` a list of
                ``[N, N]`` score matrices.

        Returns:
            ``{metric: value}``. For ``ogbg-*`` the value equals OGB's
            ``Evaluator``.
        """
        if self.metric != "mrr" and self.task != "multiclass":
            y_true = _as_2d(y_true, self.num_tasks, "y_true")
            y_pred = _as_2d(y_pred, self.num_tasks, "y_pred")
        return {self.metric: compute_metric(self.metric, y_true, y_pred)}

    def __repr__(self) -> str:
        sizes = "/".join(str(len(s)) for s in (self.train, self.valid, self.test))
        return (f"Benchmark(name='{self.name}', graphs={sizes}, "
                f"task='{self.task}', num_tasks={self.num_tasks}, "
                f"num_classes={self.num_classes}, metric='{self.metric}', "
                f"level='{self.level}')")


def _as_2d(value, num_tasks: int, name: str):
    if isinstance(value, Tensor) and value.dim() == 1 and num_tasks == 1:
        return value.view(-1, 1)
    if hasattr(value, "ndim") and value.ndim == 2 and value.shape[1] != num_tasks:
        raise ValueError(f"{name} has {value.shape[1]} columns but the "
                         f"benchmark has {num_tasks} task(s)")
    return value


def from_pyg(train: Sequence[Data], valid: Sequence[Data], test: Sequence[Data],
             task: str, num_classes: Optional[int] = None,
             metric: Optional[str] = None, node_readout: Optional[str] = None,
             name: str = "custom", level: Optional[str] = None,
             pe=None, rwse_dim: int = 16, lap_pe_dim: int = 8,
             pe_seed: int = 0) -> Benchmark:
    r"""Wraps a user's own PyG datasets (or lists of ``Data``).

    Args:
        train, valid, test: the splits; each item a :class:`Data` with ``x``,
            ``edge_index`` and ``y`` following :class:`Benchmark`'s label
            conventions.
        task: ``"binary"``, ``"multilabel"``, ``"multiclass"`` or
            ``"regression"``.
        num_classes: classes for multiclass (inferred from the largest label
            when omitted).
        metric: defaults to ``rocauc`` (binary/multilabel), ``accuracy``
            (multiclass) or ``rmse`` (regression).
        node_readout: name of a boolean node attribute marking the node whose
            state is the graph's prediction (sets ``level="readout"``).
        name: a name for logs.
        level: ``"graph"``, ``"node"`` or ``"readout"``; inferred when
            omitted (readout if ``node_readout``, node if a multiclass ``y``
            has one entry per node, else graph).
        pe, rwse_dim, lap_pe_dim, pe_seed: encodings computed in memory (see
            :mod:`brl_graph.data.transforms`); the splits become lists.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; choose from {TASKS}")
    splits = {"train": train, "valid": valid, "test": test}
    for split, ds in splits.items():
        if len(ds) == 0:
            raise ValueError(f"split '{split}' is empty")
    first = train[0]
    for attr in ("edge_index", "y"):
        if getattr(first, attr, None) is None:
            raise ValueError(f"train[0] has no '{attr}'")
    if node_readout is not None:
        mask = getattr(first, node_readout, None)
        if mask is None or mask.dtype != torch.bool:
            raise ValueError(f"node_readout='{node_readout}' must name a "
                             "boolean node attribute of every graph")
        if int(mask.sum()) != 1:
            raise ValueError(f"train[0].{node_readout} marks {int(mask.sum())} "
                             "nodes; exactly one readout node is required")
    y = first.y
    if task == "multiclass":
        num_tasks = 1
        if num_classes is None:
            num_classes = 1 + max(int(g.y.max()) for ds in splits.values()
                                  for g in ds)
    else:
        num_tasks = int(y.size(-1)) if y.dim() > 0 else 1
        num_classes = 0 if task == "regression" else 2
    if level is None:
        if node_readout is not None:
            level = "readout"
        elif (task == "multiclass" and first.num_nodes > 1
              and y.numel() == first.num_nodes):
            level = "node"
        else:
            level = "graph"
    opts = pe_options(pe, rwse_dim, lap_pe_dim, pe_seed)
    if opts:
        train, valid, test = (apply_pe([g.clone() for g in ds], opts)
                              for ds in (train, valid, test))
    x, ea = first.x, getattr(first, "edge_attr", None)
    atom = (x is not None and not x.is_floating_point() and x.dim() == 2
            and x.size(1) == 9 and ea is not None and not ea.is_floating_point()
            and ea.dim() == 2 and ea.size(1) == 3)
    return Benchmark(
        name=name, train=train, valid=valid, test=test, task=task,
        num_tasks=num_tasks, num_classes=int(num_classes),
        metric=metric or DEFAULT_METRIC[task], level=level,
        node_readout=node_readout, atom_features=atom,
        num_node_features=_width(x), num_edge_features=_width(ea),
        pe=pe_dims(opts), info={"source": "from_pyg"})


def _width(t: Optional[Tensor]) -> int:
    if t is None:
        return 0
    return 1 if t.dim() == 1 else int(t.size(-1))
