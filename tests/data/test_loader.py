"""SharedStructureLoader: the same batches as PyG's DataLoader, in the same order."""
import pytest
import torch
from torch.utils.data import Subset
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from brl_graph.data import load_dataset
from brl_graph.data.loader import SharedStructureLoader, stackable
from brl_graph.data.synthetic import SharedStructureDataset
from brl_graph.data.transforms import PairOneHot


def assert_same_batch(a, b):
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key
    assert a.num_graphs == b.num_graphs
    for one, two in zip(a.to_data_list(), b.to_data_list()):
        for key in one.keys():
            assert torch.equal(one[key], two[key]), key


def passes(loader, count):
    # Whole passes: the sampler draws its last permutation only once exhausted.
    return [list(loader) for _ in range(count)]


@pytest.mark.parametrize("make", [
    lambda: load_dataset("tree-neighbors-match", depth=3, edges="upward").train,
    lambda: load_dataset("tree-neighbors-match", depth=2, pe="rwse", rwse_dim=4).valid,
    lambda: load_dataset("ring-transfer", nodes=9, pe=["rwse", "lap"], rwse_dim=5,
                         lap_pe_dim=3).train,
])
def test_shuffled_batches_equal_dataloader(make):
    dataset = make()
    assert stackable(dataset)
    ours = SharedStructureLoader(dataset, batch_size=37, shuffle=True,
                                 generator=torch.Generator().manual_seed(3))
    theirs = DataLoader(dataset, batch_size=37, shuffle=True,
                        generator=torch.Generator().manual_seed(3))
    assert len(ours) == len(theirs)
    for pass_ours, pass_theirs in zip(passes(ours, 2), passes(theirs, 2)):
        assert len(pass_ours) == len(pass_theirs)
        for a, b in zip(pass_theirs, pass_ours):
            assert_same_batch(a, b)


def test_subset_in_order_equals_dataloader():
    dataset = load_dataset("tree-neighbors-match", depth=3, edges="upward").test
    shard = Subset(Subset(dataset, list(range(3, 40))), [5, 0, 9, 2, 30])
    ours = list(SharedStructureLoader(shard, batch_size=2))
    theirs = list(DataLoader(shard, batch_size=2))
    assert [b.num_graphs for b in ours] == [2, 2, 1]
    for a, b in zip(theirs, ours):
        assert_same_batch(a, b)


def test_generator_stream_equal_on_early_breaks_and_bare_iter():
    dataset = load_dataset("tree-neighbors-match", depth=3, edges="upward").train
    ours_gen, theirs_gen = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    ours = SharedStructureLoader(dataset, batch_size=50, shuffle=True, generator=ours_gen)
    theirs = DataLoader(dataset, batch_size=50, shuffle=True, generator=theirs_gen)
    iter(ours), iter(theirs)  # making the iterator draws the base seed, as PyG's does
    assert torch.equal(ours_gen.get_state(), theirs_gen.get_state())
    for limit in (1, 3, len(theirs)):  # train.limit_batches breaks a pass early
        got = []
        for a, b in zip(theirs, ours):
            got.append((a, b))
            if len(got) == limit:
                break
        for a, b in got:
            assert_same_batch(a, b)
        assert torch.equal(ours_gen.get_state(), theirs_gen.get_state())


def test_without_a_generator_the_global_stream_is_used_alike():
    dataset = load_dataset("tree-neighbors-match", depth=2).train
    torch.manual_seed(11)
    theirs = list(DataLoader(dataset, batch_size=16, shuffle=True))
    after_theirs = torch.get_rng_state()
    torch.manual_seed(11)
    ours = list(SharedStructureLoader(dataset, batch_size=16, shuffle=True))
    assert torch.equal(torch.get_rng_state(), after_theirs)
    for a, b in zip(theirs, ours, strict=True):
        assert_same_batch(a, b)


def test_a_twice_selected_dataset():
    dataset = load_dataset("tree-neighbors-match", depth=3).train[[40, 3, 77, 5, 12]][[4, 0, 2]]
    for a, b in zip(DataLoader(dataset, batch_size=2), SharedStructureLoader(dataset, batch_size=2),
                    strict=True):
        assert_same_batch(a, b)


def test_batches_do_not_share_edges():
    dataset = load_dataset("tree-neighbors-match", depth=2).train
    loader = SharedStructureLoader(dataset, batch_size=4)
    first, second = list(loader)[:2]
    first.edge_index.zero_()
    assert second.edge_index.max() > 0


def test_refuses_what_it_cannot_stack():
    graphs = [Data(x=torch.zeros(3, 1), edge_index=torch.zeros(2, 0, dtype=torch.long))]
    assert not stackable(graphs)
    with pytest.raises(ValueError, match="SharedStructureDataset"):
        SharedStructureLoader(graphs, batch_size=1)
    per_graph = SharedStructureDataset(torch.tensor([[0], [1]]), torch.zeros(4, 2, 1), torch.zeros(4),
                                       transform=lambda data: data)
    assert not stackable(per_graph)  # an arbitrary transform may not act node by node
    offset = SharedStructureDataset(torch.tensor([[0], [1]]), torch.zeros(4, 2, 1), torch.zeros(4),
                                    shared={"node_index": torch.arange(2)})
    assert not stackable(offset)  # PyG would offset it per graph
    for graph_level in (torch.zeros(1, 3), torch.tensor(1.0)):  # not one row per node
        shared = SharedStructureDataset(torch.tensor([[0], [1]]), torch.zeros(4, 2, 1),
                                        torch.zeros(4), shared={"stats": graph_level})
        assert not stackable(shared)

    class Custom(SharedStructureDataset):  # may change get(), which stacking bypasses
        pass

    assert not stackable(Custom(torch.tensor([[0], [1]]), torch.zeros(4, 2, 1), torch.zeros(4)))
    with pytest.raises(ValueError, match="batch_size"):
        SharedStructureLoader(load_dataset("tree-neighbors-match", depth=2).train, batch_size=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.long])
@pytest.mark.parametrize("shape", [(7, 3), (0, 2), (4, 0)])
def test_pair_one_hot_matches_one_hot(dtype, shape):
    x = torch.randint(0, 5, shape, dtype=dtype)
    out = PairOneHot(5)(Data(x=x)).x
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.nn.functional.one_hot(x.long(), 5).flatten(1).float())


def test_pair_one_hot_names_bad_input():
    with pytest.raises(ValueError, match="0..4; got 0..5"):
        PairOneHot(5)(Data(x=torch.tensor([[5, 0]])))
    with pytest.raises(ValueError, match="0..4; got -1..2"):
        PairOneHot(5)(Data(x=torch.tensor([[-1, 2]])))
    with pytest.raises(ValueError, match=r"shape \[N, F\]; got \(3,\)"):
        PairOneHot(5)(Data(x=torch.tensor([1, 2, 3])))
