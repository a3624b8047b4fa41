r"""Evaluation metrics of the supported benchmarks.

Every function takes tensors or arrays and returns a Python ``float``.
Labels that are ``NaN`` are ignored, task by task, as in OGB's ``Evaluator``.

The definitions follow the official evaluators:

* :func:`rocauc` and :func:`average_precision` equal OGB's ``Evaluator``
  (``rocauc`` / ``ap``) and LRGB's AP for Peptides-func: the unweighted mean
  over tasks that have both a positive and a negative labelled example.
* :func:`rmse` and :func:`mae` average the per-task error over tasks.
* :func:`macro_f1` is the unweighted mean of per-class F1 over the classes
  that occur in the labels or the predictions (sklearn's ``average="macro"``).
* :func:`filtered_mrr` is the corrected (filtered) MRR of PCQM-Contact.
"""
from typing import Dict, List, Sequence, Union

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import Tensor

ArrayLike = Union[Tensor, np.ndarray, Sequence[float]]

#: Metric name -> whether a larger value is better.
HIGHER_IS_BETTER: Dict[str, bool] = {
    "rocauc": True,
    "ap": True,
    "rmse": False,
    "mae": False,
    "accuracy": True,
    "f1": True,
    "mrr": True,
}


def to_numpy(value: ArrayLike, name: str) -> np.ndarray:
    """Converts a tensor, array or nested list to a NumPy array on the CPU."""
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # pragma: no cover - defensive
        raise TypeError(f"'{name}' must be a tensor or an array-like, "
                        f"got {type(value).__name__}") from exc


def _floating(a: np.ndarray) -> np.ndarray:
    # Keep float inputs in their own precision so that the results equal
    # OGB's Evaluator bit for bit (it computes in the input dtype).
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def as_task_matrix(y_true: ArrayLike, y_pred: ArrayLike):
    r"""Returns ``(y_true, y_pred)`` as float arrays of shape
    ``[num_examples, num_tasks]``; 1-D inputs are single-task columns.

    Raises:
        ValueError: if the shapes differ or are not 1-D/2-D.
    """
    t = _floating(to_numpy(y_true, "y_true"))
    p = _floating(to_numpy(y_pred, "y_pred"))
    if t.ndim == 1:
        t = t[:, None]
    if p.ndim == 1:
        p = p[:, None]
    if t.ndim != 2 or p.ndim != 2:
        raise ValueError(f"y_true and y_pred must be 1-D or 2-D, got shapes "
                         f"{tuple(t.shape)} and {tuple(p.shape)}")
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {tuple(t.shape)} but y_pred has "
                         f"shape {tuple(p.shape)}; they must match")
    return t, p


def _binary_tasks(t: np.ndarray) -> List[int]:
    # A ranking metric needs both classes among the labelled examples.
    return [
        i for i in range(t.shape[1])
        if np.sum(t[:, i] == 1) > 0 and np.sum(t[:, i] == 0) > 0
    ]


def rocauc(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""ROC-AUC averaged over tasks.

    .. math::
        \mathrm{ROCAUC} = \frac{1}{|\mathcal{T}|}\sum_{t\in\mathcal{T}}
        \mathrm{AUC}_t

    where :math:`\mathcal{T}` are the tasks with at least one labelled
    positive and one labelled negative example.

    Args:
        y_true: binary labels, ``NaN`` = missing. Shape ``[G]`` or ``[G, T]``.
        y_pred: scores (logits or probabilities), same shape.
    """
    t, p = as_task_matrix(y_true, y_pred)
    values = []
    for i in _binary_tasks(t):
        mask = ~np.isnan(t[:, i])
        values.append(roc_auc_score(t[mask, i], p[mask, i]))
    if not values:
        raise ValueError("ROC-AUC is undefined: no task has both a positive "
                         "and a negative labelled example")
    return float(sum(values) / len(values))


def average_precision(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""Average precision averaged over tasks (OGB ``ap``, LRGB AP).

    Args:
        y_true: binary labels, ``NaN`` = missing. Shape ``[G]`` or ``[G, T]``.
        y_pred: scores, same shape.
    """
    t, p = as_task_matrix(y_true, y_pred)
    values = []
    for i in _binary_tasks(t):
        mask = ~np.isnan(t[:, i])
        values.append(average_precision_score(t[mask, i], p[mask, i]))
    if not values:
        raise ValueError("Average precision is undefined: no task has both a "
                         "positive and a negative labelled example")
    return float(sum(values) / len(values))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""Root mean squared error, per task over labelled examples, then
    averaged over tasks:
    :math:`\frac{1}{T}\sum_t \sqrt{\mathrm{mean}_i (y_{it}-\hat y_{it})^2}`.
    """
    t, p = as_task_matrix(y_true, y_pred)
    values = []
    for i in range(t.shape[1]):
        mask = ~np.isnan(t[:, i])
        values.append(np.sqrt(((t[mask, i] - p[mask, i])**2).mean()))
    return float(sum(values) / len(values))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""Mean absolute error, per task over labelled examples, then averaged
    over tasks: :math:`\frac{1}{T}\sum_t \mathrm{mean}_i |y_{it}-\hat y_{it}|`.
    Without missing labels this equals the mean over all entries.
    """
    t, p = as_task_matrix(y_true, y_pred)
    values = []
    for i in range(t.shape[1]):
        mask = ~np.isnan(t[:, i])
        if mask.any():
            values.append(np.abs(t[mask, i] - p[mask, i]).mean())
    if not values:
        raise ValueError("MAE is undefined: every label is missing")
    return float(sum(values) / len(values))


def class_predictions(y_true: ArrayLike, y_pred: ArrayLike):
    r"""Returns ``(labels, predicted_labels)`` as 1-D arrays, keeping the
    examples whose label is known (not ``NaN``, not negative).

    Args:
        y_true: class indices, shape ``[N]`` or ``[N, 1]``.
        y_pred: class scores ``[N, C]`` (arg-maxed) or class indices ``[N]``.
    """
    t = to_numpy(y_true, "y_true")
    p = to_numpy(y_pred, "y_pred")
    t = t.reshape(-1) if t.ndim == 2 and t.shape[1] == 1 else t
    if t.ndim != 1:
        raise ValueError(f"y_true must hold one class index per example "
                         f"(shape [N] or [N, 1]), got {tuple(t.shape)}")
    if p.ndim == 2 and p.shape[1] > 1:
        p = p.argmax(axis=1)
    elif p.ndim <= 2:
        p = p.reshape(-1)
    else:
        raise ValueError(f"y_pred must be class scores [N, C] or class "
                         f"indices [N], got {tuple(p.shape)}")
    if p.shape[0] != t.shape[0]:
        raise ValueError(f"y_true has {t.shape[0]} examples but y_pred has "
                         f"{p.shape[0]}")
    t = t.astype(np.float64)
    keep = ~np.isnan(t) & (t >= 0)
    return t[keep].astype(np.int64), p[keep].astype(np.int64)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""Fraction of labelled examples whose arg-max class is the label."""
    t, p = class_predictions(y_true, y_pred)
    if t.size == 0:
        raise ValueError("Accuracy is undefined: no labelled example")
    return float((t == p).mean())


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""Macro F1 score (LRGB PascalVOC-SP / COCO-SP).

    .. math::
        F_1 = \frac{1}{|\mathcal{C}|}\sum_{c\in\mathcal{C}}
        \frac{2\,\mathrm{TP}_c}{2\,\mathrm{TP}_c+\mathrm{FP}_c+\mathrm{FN}_c}

    over the classes :math:`\mathcal{C}` occurring in the labels or the
    predictions; a class with no true positive scores 0.
    """
    t, p = class_predictions(y_true, y_pred)
    if t.size == 0:
        raise ValueError("F1 is undefined: no labelled example")
    classes = np.union1d(t, p)
    scores = []
    for c in classes:
        tp = np.sum((p == c) & (t == c))
        fp = np.sum((p == c) & (t != c))
        fn = np.sum((p != c) & (t == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def filtered_mrr(scores: Sequence[Tensor], pos_edge_index: Sequence[Tensor],
                 exclude_self_loops: bool = False) -> float:
    r"""Filtered mean reciprocal rank (corrected PCQM-Contact metric).

    For each positive pair :math:`(u, v)` of a graph the candidates are all
    pairs :math:`(u, w)`, :math:`w \in V`, except the *other* positive pairs
    of :math:`u` (they are filtered out). The rank is pessimistic on ties:

    .. math::
        r_{uv} = 1 + |\{w : (u,w) \notin P,\ s_{uw} \ge s_{uv}\}|

    The graph's score is the mean of :math:`1 / r_{uv}` over its positive
    pairs and the result is the mean over graphs with at least one positive
    pair.

    Args:
        scores: per graph, a score matrix of shape ``[N, N]``.
        pos_edge_index: per graph, the positive pairs, shape ``[2, P]``.
        exclude_self_loops: also filter the pairs :math:`(u, u)`.
    """
    if len(scores) != len(pos_edge_index):
        raise ValueError(f"got {len(scores)} score matrices but "
                         f"{len(pos_edge_index)} positive edge sets")
    per_graph = []
    for g, (s, pos) in enumerate(zip(scores, pos_edge_index)):
        s = torch.as_tensor(s, dtype=torch.float64)
        pos = torch.as_tensor(pos, dtype=torch.long)
        n = s.size(0)
        if s.dim() != 2 or s.size(1) != n:
            raise ValueError(f"graph {g}: scores must be square [N, N], got "
                             f"{tuple(s.shape)}")
        if pos.dim() != 2 or pos.size(0) != 2:
            raise ValueError(f"graph {g}: positive edges must have shape "
                             f"[2, P], got {tuple(pos.shape)}")
        if pos.numel() > 0 and (pos.min() < 0 or pos.max() >= n):
            raise ValueError(f"graph {g}: positive edge index out of range "
                             f"[0, {n})")
        if pos.size(1) == 0:
            continue
        is_pos = torch.zeros(n, n, dtype=torch.bool)
        is_pos[pos[0], pos[1]] = True
        candidate = ~is_pos
        if exclude_self_loops:
            candidate.fill_diagonal_(False)
        rows = s[pos[0]]  # [P, N]
        target = s[pos[0], pos[1]].unsqueeze(1)
        beats = (rows >= target) & candidate[pos[0]]
        rank = 1 + beats.sum(dim=1)
        per_graph.append((1.0 / rank.double()).mean().item())
    if not per_graph:
        raise ValueError("MRR is undefined: no graph has a positive pair")
    return float(np.mean(per_graph))


def mrr(y_true: Sequence[Tensor], y_pred: Sequence[Tensor]) -> float:
    """:func:`filtered_mrr` with ``y_true`` = positive pairs per graph and
    ``y_pred`` = score matrices per graph."""
    return filtered_mrr(y_pred, y_true)


#: Metric name -> function of ``(y_true, y_pred)``.
METRIC_FUNCTIONS = {
    "rocauc": rocauc,
    "ap": average_precision,
    "rmse": rmse,
    "mae": mae,
    "accuracy": accuracy,
    "f1": macro_f1,
    "mrr": mrr,
}


def compute_metric(metric: str, y_true, y_pred) -> float:
    """Evaluates ``metric`` (one of :data:`METRIC_FUNCTIONS`)."""
    if metric not in METRIC_FUNCTIONS:
        raise KeyError(f"unknown metric '{metric}'; choose one of "
                       f"{sorted(METRIC_FUNCTIONS)}")
    return METRIC_FUNCTIONS[metric](y_true, y_pred)
