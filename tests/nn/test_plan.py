import pytest
import torch

from brl_graph.nn.functional import NEG
from brl_graph.nn.plan import dense_groups, from_dense, plan_batch, to_dense


def batch_of(sizes):
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


def test_dense_layout_round_trips_and_masks_exactly_the_padding():
    sizes = [3, 1, 5, 2]
    batch = batch_of(sizes)
    (g,) = dense_groups(batch, len(sizes))
    assert (g.num_graphs, g.max_nodes) == (4, 5)
    x = torch.randn(batch.numel(), 6)
    dense = to_dense(x, g)
    assert dense.shape == (4, 5, 6)
    torch.testing.assert_close(from_dense(dense, g), x)
    assert g.mask.sum(1).tolist() == sizes
    assert (dense[~g.mask] == 0).all()
    bias = g.mask_bias[:, 0]
    assert (bias[g.mask] == 0).all() and (bias[~g.mask] == NEG).all()
    assert g.empty is None


def test_equal_sizes_need_no_padding_and_no_copy():
    batch = batch_of([4, 4, 4])
    (g,) = dense_groups(batch, 3)
    assert g.dense_index is None and g.mask is None and g.mask_bias is None
    x = torch.randn(12, 2)
    assert to_dense(x, g).data_ptr() == x.data_ptr()


def test_empty_graphs_are_marked():
    batch = torch.tensor([0, 0, 2])  # graph 1 has no node
    (g,) = dense_groups(batch, 3)
    assert g.empty.tolist() == [False, True, False]


def test_small_batches_stay_in_one_group_and_skewed_large_ones_are_bucketed():
    # 32 molecule-sized graphs with one outlier: padding is ~3x but only ~2k rows
    sizes = [20] * 31 + [60]
    assert len(dense_groups(batch_of(sizes), 32)) == 1
    # one huge graph among many tiny ones: bucketed, padding at most 2x
    sizes = [5000] + [3] * 2000
    groups = dense_groups(batch_of(sizes), len(sizes))
    assert len(groups) > 1
    assert sum(g.num_graphs * g.max_nodes for g in groups) <= 2 * sum(sizes)


def test_plan_checks_values_once_and_can_skip_them():
    ei = torch.tensor([[0, 1], [1, 2]])
    plan = plan_batch(3, ei, torch.tensor([0, 0, 0]))
    assert plan.num_graphs == 1 and len(plan.groups) == 1
    with pytest.raises(ValueError, match="different graphs"):
        plan_batch(3, ei, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="sorted"):
        plan_batch(3, ei, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 7\].*3 nodes"):
        plan_batch(3, torch.tensor([[0, 7], [1, 2]]), None)
    # validate=False trusts the values (no host sync per check) but still reads the graph count
    assert plan_batch(3, ei, torch.tensor([0, 1, 1]), validate=False).num_graphs == 2
    with pytest.raises(ValueError, match="one entry per node"):
        plan_batch(3, ei, torch.tensor([0, 0]), validate=False)
    with pytest.raises(ValueError, match="num_graphs=1"):
        plan_batch(3, ei, torch.tensor([0, 0, 1]), num_graphs=1, validate=False)
    assert plan_batch(3, ei, None, dense=False).groups == []
