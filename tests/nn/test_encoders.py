import pytest
import torch
from torch_geometric.data import Batch, Data

from brl_graph.nn.encoders import FeatureEncoder, PEEncoder


def test_linear_feature_encoder():
    torch.manual_seed(0)
    enc = FeatureEncoder("linear", 8, in_channels=3)
    x = torch.randn(5, 3)
    out = enc(x)
    assert out.shape == (5, 8)
    torch.testing.assert_close(out, x @ enc.enc.weight.T + enc.enc.bias)
    # Integer features are cast; a 1-D feature is one column.
    assert enc(torch.ones(2, 3, dtype=torch.long)).dtype == torch.float32
    assert FeatureEncoder("linear", 8, in_channels=1)(torch.randn(4)).shape == (4, 8)
    with pytest.raises(ValueError, match="width 3"):
        enc(torch.randn(5, 4))
    assert repr(enc) == "FeatureEncoder('linear', in_channels=3)"


def test_bad_encoder_arguments():
    with pytest.raises(ValueError, match="in_channels > 0"):
        FeatureEncoder("linear", 8)
    with pytest.raises(ValueError, match="unknown encoder kind 'onehot'"):
        FeatureEncoder("onehot", 8, in_channels=3)


def test_atom_and_bond_encoders_take_ogb_integer_features():
    atom = FeatureEncoder("atom", 8)
    bond = FeatureEncoder("bond", 8)
    x = torch.zeros(4, 9, dtype=torch.long)
    x[:, 0] = torch.tensor([5, 0, 7, 5])  # column 0: the atom type
    out = atom(x)
    assert out.shape == (4, 8)
    assert torch.equal(out[0], out[3]) and not torch.equal(out[0], out[1])
    assert bond(torch.zeros(6, 3, dtype=torch.long)).shape == (6, 8)
    assert atom(torch.zeros(0, 9, dtype=torch.long)).shape == (0, 8)
    with pytest.raises(ValueError, match="integer OGB features"):
        atom(x.float())
    with pytest.raises(ValueError, match="9 feature columns"):
        atom(x[:, :3])
    bad = x.clone()
    bad[1, 2] = 10_000
    with pytest.raises(ValueError, match="column 2 holds values outside"):
        atom(bad)
    assert repr(bond) == "FeatureEncoder('bond', in_channels=None)"


@pytest.mark.parametrize("kind", ["linear", "atom"])
def test_feature_encoder_reset_parameters(kind):
    enc = FeatureEncoder(kind, 8, in_channels=3 if kind == "linear" else None)
    with torch.no_grad():
        for p in enc.parameters():
            p.fill_(7.0)
    enc.reset_parameters()
    assert all(not torch.all(p == 7.0) for p in enc.parameters())


def test_pe_encoder_is_linear_without_sign_flip():
    torch.manual_seed(0)
    enc = PEEncoder(4, 8).train()
    pe = torch.randn(6, 4)
    torch.testing.assert_close(enc(pe), enc.lin(pe))
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        enc(torch.randn(6, 5))
    with torch.no_grad():
        enc.lin.weight.fill_(7.0)
    enc.reset_parameters()
    assert not torch.all(enc.lin.weight == 7.0)


def test_lap_sign_flip_is_per_graph_and_per_eigenvector_in_training_only():
    enc = PEEncoder(3, 3, sign_flip=True)
    with torch.no_grad():  # the identity map shows the flipped encoding itself
        enc.lin.weight.copy_(torch.eye(3))
        enc.lin.bias.zero_()
    graphs = [Data(pe=torch.rand(n, 3) + 0.5, num_nodes=n) for n in (4, 5, 3)]
    batch = Batch.from_data_list(graphs)
    assert torch.equal(enc.eval()(batch.pe, batch.batch), batch.pe)

    enc.train()
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        ratio = enc(batch.pe, batch.batch) / batch.pe
        assert torch.equal(ratio.abs(), torch.ones_like(ratio))
        for g in range(3):
            rows = ratio[batch.batch == g]
            assert torch.equal(rows, rows[:1].expand_as(rows))  # one sign per graph and column
            seen.add(tuple(rows[0].tolist()))
    assert len(seen) > 2  # signs really vary between draws
    # Without a batch vector, all nodes form one graph.
    torch.manual_seed(0)
    ratio = enc(graphs[0].pe) / graphs[0].pe
    assert torch.equal(ratio, ratio[:1].expand_as(ratio))


def test_pe_norm_standardises_each_raw_column_before_the_embedding():
    torch.manual_seed(0)
    enc = PEEncoder(4, 8, norm=True).train()
    plain = PEEncoder(4, 8).train()
    pe = torch.rand(10, 4) * torch.tensor([1.0, 10.0, 100.0, 0.0])  # very different scales
    # In training, each column is standardised by its batch statistics: the
    # embedding of a column is then blind to its scale and offset ...
    scaled = pe * torch.tensor([3.0, 0.5, 0.1, 1.0]) + torch.tensor([1.0, -2.0, 5.0, 0.0])
    torch.testing.assert_close(enc(scaled), enc(pe), atol=1e-3, rtol=1e-3)
    # ... which a plain linear embedding is not
    assert not torch.allclose(plain(scaled), plain(pe), atol=1e-2)
    normed = enc.norm(pe)
    torch.testing.assert_close(normed[:, :3].mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    # a constant column stays at zero rather than dividing by its zero spread
    assert torch.equal(normed[:, 3], torch.zeros(10))
    assert "norm=True" in repr(enc) and "norm" not in repr(plain)
    # a batch of one node is not an error in training
    assert enc(pe[:1]).shape == (1, 8)
    with torch.no_grad():
        enc.norm.module.weight.fill_(7.0)
    enc.reset_parameters()
    assert torch.all(enc.norm.module.weight == 1.0)
