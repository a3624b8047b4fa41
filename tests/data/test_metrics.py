import numpy as np
import pytest
import torch
from ogb.graphproppred import Evaluator
from sklearn.metrics import average_precision_score, f1_score

from brl_graph.data.benchmark import Benchmark
from brl_graph.data.metrics import (
    accuracy,
    average_precision,
    compute_metric,
    filtered_mrr,
    macro_f1,
    mae,
    rmse,
    rocauc,
)

from .conftest import split_labels


def _bench(name, task, num_tasks, metric):
    return Benchmark(name=name, train=[], valid=[], test=[], task=task,
                     num_tasks=num_tasks, metric=metric,
                     num_classes=0 if task == "regression" else 2)


def _labels(rng, shape, nan_frac=0.0):
    y = rng.integers(0, 2, size=shape).astype(np.float64)
    y[rng.random(shape) < nan_frac] = np.nan
    return y


@pytest.mark.parametrize("name,metric,num_tasks,nan_frac", [
    ("ogbg-molhiv", "rocauc", 1, 0.0),
    ("ogbg-moltox21", "rocauc", 12, 0.3),
    ("ogbg-molpcba", "ap", 128, 0.5),
    ("ogbg-molmuv", "ap", 17, 0.2),
])
def test_classification_equals_ogb_evaluator(name, metric, num_tasks, nan_frac):
    rng = np.random.default_rng(0)
    y_true = _labels(rng, (300, num_tasks), nan_frac)
    y_pred = rng.normal(size=(300, num_tasks)).astype(np.float32)
    # A task with one class only is skipped by OGB; ours must skip it too.
    y_true[:, 0] = np.where(np.isnan(y_true[:, 0]), np.nan, 1.0)
    if num_tasks == 1:
        y_true = _labels(rng, (300, 1))
    expected = Evaluator(name).eval({"y_true": y_true, "y_pred": y_pred})[metric]
    bench = _bench(name, "binary" if num_tasks == 1 else "multilabel",
                   num_tasks, metric)
    got = bench.evaluate(torch.from_numpy(y_true), torch.from_numpy(y_pred))
    assert got == {metric: expected}
    assert bench.evaluate(y_true, y_pred)[metric] == expected


def test_rmse_equals_ogb_evaluator():
    rng = np.random.default_rng(1)
    y_true = rng.normal(size=(200, 1)).astype(np.float32)
    y_pred = rng.normal(size=(200, 1)).astype(np.float32)
    expected = Evaluator("ogbg-molesol").eval({"y_true": y_true, "y_pred": y_pred})
    bench = _bench("ogbg-molesol", "regression", 1, "rmse")
    assert bench.evaluate(torch.from_numpy(y_true), torch.from_numpy(y_pred)) == expected
    # A flat prediction vector is accepted for single-task sets.
    assert bench.evaluate(torch.from_numpy(y_true[:, 0]),
                          torch.from_numpy(y_pred[:, 0])) == expected


def test_ap_equals_sklearn_mean_over_tasks_with_nan():
    rng = np.random.default_rng(2)
    y_true = _labels(rng, (120, 10), nan_frac=0.25)
    y_pred = rng.random((120, 10))
    per_task = []
    for t in range(10):
        keep = ~np.isnan(y_true[:, t])
        per_task.append(average_precision_score(y_true[keep, t], y_pred[keep, t]))
    assert average_precision(y_true, y_pred) == pytest.approx(np.mean(per_task), abs=1e-12)


def test_nan_labels_are_ignored():
    y_true = np.array([[1.0], [0.0], [np.nan], [1.0], [0.0]])
    y_pred = np.array([[0.9], [0.1], [0.0], [0.8], [0.2]])
    assert rocauc(y_true, y_pred) == 1.0
    # The NaN row would make the ranking imperfect if it were counted as 0 or 1.
    y_pred[2, 0] = 0.95
    assert rocauc(y_true, y_pred) == 1.0
    assert rmse(np.array([1.0, np.nan, 3.0]), np.array([2.0, 100.0, 3.0])) == pytest.approx(np.sqrt(0.5))
    assert mae(np.array([[1.0, np.nan], [3.0, 2.0]]),
               np.array([[2.0, 9.0], [3.0, 4.0]])) == pytest.approx((0.5 + 2.0) / 2)


def test_undefined_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="no task has both"):
        rocauc(np.ones((4, 1)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="shape"):
        rmse(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(KeyError, match="unknown metric"):
        compute_metric("auc", [1], [1])
    bench = _bench("x", "multilabel", 3, "ap")
    with pytest.raises(ValueError, match="3 task"):
        bench.evaluate(np.zeros((4, 2)), np.zeros((4, 2)))


def test_accuracy_and_macro_f1_match_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 6, size=500)
    logits = rng.normal(size=(500, 6))
    logits[np.arange(500), y] += rng.random(500) * 2  # better than chance
    pred = logits.argmax(1)
    assert accuracy(torch.from_numpy(y), torch.from_numpy(logits)) == pytest.approx((pred == y).mean())
    assert accuracy(y, pred) == pytest.approx((pred == y).mean())
    assert macro_f1(y, logits) == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-12)
    # A class predicted but never labelled counts with F1 = 0, as in sklearn.
    y2, p2 = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    assert macro_f1(y2, p2) == pytest.approx(f1_score(y2, p2, average="macro"))
    # Negative labels mark unlabelled nodes.
    assert accuracy(np.array([0, -1, 1]), np.array([0, 1, 0])) == 0.5


def test_filtered_mrr_hand_computed():
    # Graph 1: positives (0,1) and (0,2). Row 0 scores: w0=0.5, w1=0.9,
    # w2=0.7, w3=0.8. Filtered: (0,1) competes with w0, w3 -> rank 1;
    # (0,2) competes with w0 (0.5) and w3 (0.8 > 0.7) -> rank 2.
    s1 = torch.zeros(4, 4)
    s1[0] = torch.tensor([0.5, 0.9, 0.7, 0.8])
    p1 = torch.tensor([[0, 0], [1, 2]])
    # Graph 2: positive (1,0); row 1 = [0.2, 0.3, 0.1] -> (1,1) beats it: rank 2.
    s2 = torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.3, 0.1], [0.0, 0.0, 0.0]])
    p2 = torch.tensor([[1], [0]])
    # Graph 3 has no positive pair and is left out.
    s3, p3 = torch.zeros(2, 2), torch.zeros(2, 0, dtype=torch.long)
    g1 = (1 / 1 + 1 / 2) / 2
    assert filtered_mrr([s1, s2, s3], [p1, p2, p3]) == pytest.approx((g1 + 0.5) / 2)
    # Without self-loops graph 2's positive ranks first.
    assert filtered_mrr([s1, s2], [p1, p2], exclude_self_loops=True) == pytest.approx((g1 + 1.0) / 2)
    # Ties count against the positive: a constant scorer is not perfect.
    assert filtered_mrr([torch.ones(3, 3)], [torch.tensor([[0], [1]])]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="out of range"):
        filtered_mrr([torch.ones(2, 2)], [torch.tensor([[0], [5]])])


def test_mrr_through_benchmark():
    bench = Benchmark(name="pcqm", train=[], valid=[], test=[], task="binary",
                      num_tasks=1, num_classes=2, metric="mrr", level="link")
    s = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert bench.evaluate([torch.tensor([[0], [1]])], [s]) == {"mrr": 1.0}
    assert bench.higher_is_better and bench.out_channels == 1


def test_regression_direction():
    assert not _bench("x", "regression", 11, "mae").higher_is_better
    assert _bench("x", "binary", 1, "rocauc").higher_is_better


def test_real_molhiv_evaluate_equals_ogb(load_once):
    bench = load_once("ogbg-molhiv")
    y_true = split_labels(bench.valid)
    y_pred = torch.randn(y_true.shape, generator=torch.Generator().manual_seed(0))
    expected = Evaluator("ogbg-molhiv").eval({"y_true": y_true, "y_pred": y_pred})
    assert bench.evaluate(y_true, y_pred) == expected
