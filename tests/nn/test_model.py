import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import AddRandomWalkPE

from brl_graph.nn import BRLConv, BRLGraphModel
from brl_graph.nn.plan import plan_batch


def mol(n, seed):
    g = torch.Generator().manual_seed(seed)
    e = torch.randint(0, n, (2, 2 * n), generator=g)
    return Data(x=torch.randint(0, 2, (n, 9), generator=g), edge_index=e,
                edge_attr=torch.randint(0, 2, (2 * n, 3), generator=g),
                readout_mask=torch.arange(n) == n - 1)


@pytest.mark.parametrize("local", ["gine", "gatedgcn", "gcn", "gatv2"])
@pytest.mark.parametrize("global_attn", ["brl", "none", "full", "performer"])
def test_every_local_and_global_combination(local, global_attn):
    model = BRLGraphModel(3, channels=16, num_layers=2, local=local, global_attn=global_attn,
                          node_encoder="atom", edge_encoder="bond")
    b = Batch.from_data_list([mol(5, 0), mol(8, 1)])
    out = model(b)
    assert out.shape == (2, 3)
    out.sum().backward()
    # every parameter takes part (DistributedDataParallel needs that)
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_graph_output_alone_equals_batched():
    model = BRLGraphModel(2, channels=16, num_layers=3, node_encoder="atom",
                          edge_encoder="bond").eval()
    graphs = [mol(n, i) for i, n in enumerate([3, 60, 1, 12])]
    out = model(Batch.from_data_list(graphs))
    for i, g in enumerate(graphs):
        torch.testing.assert_close(model(Batch.from_data_list([g]))[0], out[i], atol=1e-5, rtol=1e-5)


def test_twin_shares_everything_but_the_global_branch():
    brl = BRLGraphModel(1, channels=16, num_layers=2, num_tokens=4, node_encoder="atom",
                        edge_encoder="bond")
    twin = BRLGraphModel(1, channels=16, num_layers=2, num_tokens=0, node_encoder="atom",
                         edge_encoder="bond")
    twin_names = set(dict(twin.named_parameters()))
    brl_names = set(dict(brl.named_parameters()))
    assert twin_names < brl_names
    extra = brl_names - twin_names
    assert all(any(t in n for t in ("reservoir.", "_b.", "tok_", "norm2")) for n in extra)
    # loading the shared weights, the twin equals the BRL model with its global branch cut
    twin.load_state_dict({k: v for k, v in brl.state_dict().items() if k in twin.state_dict()})
    for layer in brl.layers:
        layer.num_tokens = 0
    brl.eval(), twin.eval()
    b = Batch.from_data_list([mol(7, 3), mol(4, 4)])
    torch.testing.assert_close(brl(b), twin(b))


def test_node_and_readout_levels_and_errors():
    graphs = [Data(x=torch.randn(n, 5), edge_index=torch.randint(0, n, (2, n)),
                   readout_mask=torch.arange(n) == 0) for n in (4, 9)]
    b = Batch.from_data_list(graphs)
    node = BRLGraphModel(3, channels=16, num_layers=1, in_channels=5, task_level="node")
    assert node(b).shape == (13, 3)
    ro = BRLGraphModel(3, channels=16, num_layers=1, in_channels=5, task_level="readout").eval()
    out = ro(b)
    assert out.shape == (2, 3)
    torch.testing.assert_close(ro.head(ro.node_states(b)[b.readout_mask]), out)
    b.readout_mask[1] = True
    with pytest.raises(ValueError, match="exactly one node"):
        ro(b)
    with pytest.raises(ValueError, match="unknown local conv"):
        BRLGraphModel(1, local="sage", in_channels=5)
    with pytest.raises(ValueError, match="unknown global_attn"):
        BRLGraphModel(1, global_attn="flash", in_channels=5)
    with pytest.raises(ValueError, match="causal"):
        BRLGraphModel(1, global_attn="full", causal=True, in_channels=5)
    with pytest.raises(ValueError, match="width 5"):
        BRLGraphModel(1, in_channels=5)(Data(x=torch.randn(3, 4), edge_index=torch.zeros(2, 0, dtype=torch.long)))


def test_positional_encodings_are_used():
    path = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    g = AddRandomWalkPE(4, attr_name="rwse")(Data(x=torch.randn(6, 3), edge_index=path))
    model = BRLGraphModel(1, channels=16, num_layers=1, in_channels=3, rwse_dim=4).eval()
    out = model(g)
    g2 = g.clone()
    g2.rwse = g.rwse + 1.0
    assert not torch.allclose(model(g2), out)
    del g2.rwse
    with pytest.raises(ValueError, match="data.rwse"):
        model(g2)


def test_causal_model_has_no_leak():
    model = BRLGraphModel(2, channels=16, num_layers=3, in_channels=4, causal=True, task_level="node")
    x = torch.randn(30, 4, requires_grad=True)
    ei = torch.stack([torch.arange(29), torch.arange(1, 30)])
    data = Data(x=x, edge_index=torch.cat([ei, ei.flip(0)], 1))
    out = model(data)
    out[12].sum().backward()
    assert (x.grad[13:] == 0).all() and x.grad[:13].abs().sum() > 0
    assert isinstance(model.layers[0], BRLConv) and model.layers[0].causal


def test_causal_blocks_model_has_no_leak_and_keeps_the_default_parameters():
    # brl_mode="blocks": every BRL layer reads block tokens; no reservoir is built
    model = BRLGraphModel(2, channels=16, num_layers=2, in_channels=4, causal=True,
                          task_level="node", brl_mode="blocks", window=4, block_size=4,
                          block_tokens=2, top_k=1)
    x = torch.randn(30, 4, requires_grad=True)
    ei = torch.stack([torch.arange(29), torch.arange(1, 30)])
    out = model(Data(x=x, edge_index=torch.cat([ei, ei.flip(0)], 1)))
    out[12].sum().backward()
    assert (x.grad[13:] == 0).all() and x.grad[:13].abs().sum() > 0
    layer = model.layers[0]
    assert layer.mode == "blocks" and layer.top_k == 1 and layer.seeds is None
    assert "brl_mode='blocks'" in repr(model)
    # the default model is untouched: the same parameter names as before the option existed
    names = {n for n, _ in BRLGraphModel(1, channels=16, num_layers=2, in_channels=4).named_parameters()}
    assert any("reservoir.seeds" in n for n in names)
    assert not any(n.split(".")[2] in ("qkv", "pool") for n in names)
    with pytest.raises(ValueError, match="brl_mode"):
        BRLGraphModel(1, in_channels=4, brl_mode="landmark")


def test_norm_choice_and_the_gin_mlp():
    from torch_geometric.nn.norm import BatchNorm

    from brl_graph.nn.model import resolve_norm
    assert resolve_norm("auto", causal=False) == "batch_norm"
    assert resolve_norm("auto", causal=True) == "layer_norm"
    assert resolve_norm("none", causal=False) is None
    with pytest.raises(ValueError, match="breaks causal"):
        resolve_norm("batch_norm", causal=True)
    with pytest.raises(ValueError, match="unknown norm"):
        resolve_norm("group_norm", causal=False)
    model = BRLGraphModel(1, channels=16, num_layers=2, node_encoder="atom", edge_encoder="bond")
    assert model.norm == "batch_norm"
    assert any(isinstance(m, BatchNorm) for m in model.layers[0].conv.nn)
    causal = BRLGraphModel(1, channels=16, num_layers=2, in_channels=4, causal=True)
    assert causal.norm == "layer_norm"
    assert any(isinstance(m, torch.nn.LayerNorm) for m in causal.layers[0].conv.nn)


def test_validate_false_gives_the_same_output_and_skips_value_checks():
    torch.manual_seed(0)
    model = BRLGraphModel(1, channels=16, num_layers=2, node_encoder="atom",
                          edge_encoder="bond").eval()
    b = Batch.from_data_list([mol(6, 0), mol(9, 1)])
    out = model(b)
    model.validate = False
    torch.testing.assert_close(model(b), out)
    model.validate = True
    bad = b.clone()
    bad.edge_index = bad.edge_index.clone()
    bad.edge_index[0, 0] = 7  # node of graph 1 into graph 0
    with pytest.raises(ValueError, match="different graphs"):
        model(bad)


def test_pre_norm_model_normalises_once_after_the_last_layer():
    from torch_geometric.nn.norm import BatchNorm
    model = BRLGraphModel(2, channels=16, num_layers=3, node_encoder="atom", edge_encoder="bond",
                          pre_norm=True).eval()
    assert all(layer.pre_norm for layer in model.layers)
    assert isinstance(model.final_norm, BatchNorm)
    assert BRLGraphModel(2, channels=16, node_encoder="atom").final_norm is None
    graphs = [mol(n, i) for i, n in enumerate([3, 30, 1, 12])]
    b = Batch.from_data_list(graphs)
    out = model(b)
    for i, g in enumerate(graphs):
        torch.testing.assert_close(model(Batch.from_data_list([g]))[0], out[i], atol=1e-5, rtol=1e-5)
    # the node states leave the layers through the final norm
    final, model.final_norm = model.final_norm, None
    raw = model.node_states(b)
    model.final_norm = final
    with torch.no_grad():
        final.module.bias.fill_(3.0)
    torch.testing.assert_close(model.node_states(b), final(raw))
    assert not torch.allclose(final(raw), raw)
    model.train()
    model(b).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    with pytest.raises(ValueError, match="pre_norm=True needs BRL layers"):
        BRLGraphModel(1, in_channels=4, global_attn="full", pre_norm=True)


@pytest.mark.parametrize("head_layers", [1, 2, 3])
def test_head_depth(head_layers):
    model = BRLGraphModel(3, channels=16, num_layers=2, node_encoder="atom", edge_encoder="bond",
                          dropout=0.5, head_layers=head_layers)
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert len(linears) == head_layers
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 16)] * (head_layers - 1) + [(16, 3)]
    # ReLU and dropout between the linear layers, nothing after the last
    assert isinstance(model.head[-1], torch.nn.Linear)
    assert len(model.head) == 3 * (head_layers - 1) + 1
    assert ("head_layers=" in repr(model)) == (head_layers != 2)
    b = Batch.from_data_list([mol(5, 0), mol(8, 1)])
    model(b).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    # the head acts on each graph alone: batching leaves a graph's output unchanged
    model.eval()
    torch.testing.assert_close(model(Batch.from_data_list([mol(8, 1)]))[0], model(b)[1],
                               atol=1e-5, rtol=1e-5)


def test_head_depth_must_be_positive():
    with pytest.raises(ValueError, match="head_layers must be >= 1"):
        BRLGraphModel(1, in_channels=4, head_layers=0)


def test_pre_norm_layer_norm_model_keeps_graphs_apart_in_training():
    # per-node layer norm after the last layer, in training mode (no running statistics)
    model = BRLGraphModel(2, channels=16, num_layers=2, in_channels=4, norm="layer_norm",
                          pre_norm=True).train()
    graphs = [Data(x=torch.randn(n, 4), edge_index=torch.randint(0, n, (2, 2 * n))) for n in (5, 9)]
    out = model(Batch.from_data_list(graphs))
    for i, g in enumerate(graphs):
        torch.testing.assert_close(model(Batch.from_data_list([g]))[0], out[i], atol=1e-5, rtol=1e-5)


def test_pe_norm_model_uses_running_statistics_in_eval():
    torch.manual_seed(0)
    graphs = [Data(x=torch.randn(n, 3), edge_index=torch.tensor([[0, 1], [1, 0]]),
                   rwse=torch.rand(n, 4) * 0.1, num_nodes=n) for n in (3, 5, 4)]
    batch = Batch.from_data_list(graphs)
    model = BRLGraphModel(2, channels=8, num_layers=1, num_tokens=2, heads=2, in_channels=3,
                          rwse_dim=4, pe_norm=True)
    assert "pe_norm=True" in repr(model)
    assert "pe_norm" not in repr(BRLGraphModel(2, channels=8, num_layers=1, heads=2,
                                               in_channels=3))
    model.train()(batch)  # one training pass moves the running statistics off their start
    stats = model.rwse_encoder.norm.module.running_mean.clone()
    assert not torch.equal(stats, torch.zeros(4))
    model.eval()
    # in eval a graph's output does not depend on the graphs batched with it
    alone = model(Batch.from_data_list(graphs[:1]))
    torch.testing.assert_close(model(batch)[:1], alone)
    assert torch.equal(model.rwse_encoder.norm.module.running_mean, stats)
    model.reset_parameters()
    assert torch.equal(model.rwse_encoder.norm.module.running_mean, torch.zeros(4))


def _token_readout(**kw):
    return BRLGraphModel(3, channels=16, num_layers=2, num_tokens=4, node_encoder="atom",
                         edge_encoder="bond", readout_tokens=True, **kw)


def test_readout_tokens_feeds_the_last_tokens_to_the_head():
    torch.manual_seed(0)
    model = _token_readout(pre_norm=True)
    plain = BRLGraphModel(3, channels=16, num_layers=2, num_tokens=4, node_encoder="atom",
                          edge_encoder="bond", pre_norm=True)
    # the head's first layer reads 2C; the token summary's layer norm adds 2C
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 16 * 16 + 2 * 16
    assert model.head[0].in_features == 32 and "readout_tokens=True" in repr(model)
    b = Batch.from_data_list([mol(5, 0), mol(8, 1)])
    model(b).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    # the token half of the head's input is what the last layer's tokens say
    with torch.no_grad():
        model.head[0].weight[:, :16] = 0
    model.eval()
    out = model(b)
    model.layers[-1].reservoir.reset_parameters()  # other tokens, the same nodes' pooling
    assert not torch.allclose(model(b), out)


def assert_graphs_apart_and_order_free(model):
    """Each graph's prediction is the same alone and batched, and under a node permutation."""
    graphs = [mol(n, i) for i, n in enumerate([3, 40, 1, 12])]
    out = model(Batch.from_data_list(graphs))
    for i, g in enumerate(graphs):
        torch.testing.assert_close(model(Batch.from_data_list([g]))[0], out[i], atol=1e-5, rtol=1e-5)
    g = graphs[1]
    perm = torch.randperm(g.num_nodes)
    inv = torch.argsort(perm)
    moved = Data(x=g.x[perm], edge_index=inv[g.edge_index], edge_attr=g.edge_attr,
                 readout_mask=g.readout_mask[perm])
    torch.testing.assert_close(model(Batch.from_data_list([moved])), out[1:2],
                               atol=1e-5, rtol=1e-5)


def test_readout_tokens_keeps_graphs_apart_and_ignores_node_order():
    torch.manual_seed(1)
    model = _token_readout(norm="layer_norm").train()  # no batch statistics: train mode too
    assert_graphs_apart_and_order_free(model)


def test_readout_tokens_with_graphs_without_nodes():
    # Trailing graphs without nodes count in the batch (data.num_graphs), not in
    # its batch vector: the tokens must still have one row per graph.
    torch.manual_seed(2)
    model = _token_readout(norm="layer_norm").eval()
    empty = Data(x=torch.zeros(0, 9, dtype=torch.long), edge_index=torch.zeros(2, 0, dtype=torch.long),
                 edge_attr=torch.zeros(0, 3, dtype=torch.long), readout_mask=torch.zeros(0, dtype=torch.bool))
    graphs = [mol(5, 0), empty, mol(4, 1), empty]
    out = model(Batch.from_data_list(graphs))
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    for i, g in enumerate(graphs):
        torch.testing.assert_close(model(Batch.from_data_list([g]))[0], out[i], atol=1e-5, rtol=1e-5)
    assert model(Batch.from_data_list([empty, empty])).shape == (2, 3)


def test_readout_tokens_across_dense_groups():
    # A large graph beside small ones splits the batch into several dense groups,
    # whose tokens are written back by graph index: each graph keeps its own.
    torch.manual_seed(3)
    model = _token_readout(norm="layer_norm").eval()
    graphs = [mol(2100, 0), mol(1, 1), mol(3, 2)]
    b = Batch.from_data_list(graphs)
    plan = plan_batch(b.num_nodes, b.edge_index, b.batch)
    assert len(plan.groups) > 1
    out = model(b)
    for i, g in enumerate(graphs):
        torch.testing.assert_close(model(Batch.from_data_list([g]))[0], out[i], atol=1e-4, rtol=1e-4)


def test_readout_tokens_at_readout_level_reads_each_graphs_tokens():
    torch.manual_seed(4)
    model = _token_readout(norm="layer_norm", task_level="readout").eval()
    assert model.head[0].in_features == 32
    graphs = [mol(6, 0), mol(3, 1)]
    out = model(Batch.from_data_list(graphs))
    for i, g in enumerate(graphs):
        torch.testing.assert_close(model(Batch.from_data_list([g]))[0], out[i], atol=1e-5, rtol=1e-5)


def test_readout_tokens_without_a_reservoir_or_per_graph_tokens():
    for kw in ({"num_tokens": 0}, {"brl_mode": "blocks", "window": 4, "block_size": 4},
               {"global_attn": "full"}):
        other = BRLGraphModel(3, channels=16, num_layers=2, node_encoder="atom",
                              edge_encoder="bond", readout_tokens=True, **kw)
        # nothing to read: the head is the plain one
        assert other.token_norm is None and other.head[0].in_features == 16, kw
        assert other(Batch.from_data_list([mol(5, 0), mol(3, 1)])).shape == (2, 3)
    for kw in ({"causal": True}, {"task_level": "node"}):
        with pytest.raises(ValueError, match="readout_tokens=True needs a per-graph prediction"):
            BRLGraphModel(3, in_channels=4, readout_tokens=True, **kw)


def _query_readout(**kw):
    kw = {"num_tokens": 4, **kw}
    return BRLGraphModel(3, channels=16, num_layers=2, node_encoder="atom",
                         edge_encoder="bond", task_level="readout", norm="layer_norm", **kw)


def test_readout_query_starts_as_the_plain_model_and_then_reads_the_question():
    torch.manual_seed(5)
    model = _query_readout(readout_query=True).eval()
    plain = _query_readout()
    assert "readout_query=True" in repr(model) and "readout_query" not in repr(plain)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("query_map.")}
    plain.load_state_dict(state)
    plain.eval()
    b = Batch.from_data_list([mol(6, 0), mol(9, 1)])
    # the map starts at zero: the same function as without the option
    torch.testing.assert_close(model(b), plain(b))
    model.train()
    model(b).sum().backward()
    assert model.query_map.weight.grad is not None and model.query_map.weight.grad.abs().sum() > 0
    # With the map non-zero the first queries follow the readout node. Changing only
    # that node moves its own weight in any case; the *other* nodes' weights, taken
    # relative to each other, move only if the queries did.
    def others(m, graph):
        res = m.layers[0].reservoir
        res.keep_weights = True
        m(Batch.from_data_list([graph]))
        w = res.last_weights[0, :, :-1]  # the readout node is the last one
        res.keep_weights, res.last_weights = False, None
        return w / w.sum(-1, keepdim=True)

    g = mol(6, 0)
    h = g.clone()
    h.x[-1] = 1 - h.x[-1]
    torch.testing.assert_close(others(model, g), others(model, h))  # map at zero: no change
    torch.testing.assert_close(others(plain, g), others(plain, h))
    with torch.no_grad():
        torch.nn.init.normal_(model.query_map.weight)
    assert not torch.allclose(others(model, g), others(model, h))
    model.reset_parameters()
    assert model.query_map.weight.abs().sum() == 0


def test_readout_query_keeps_graphs_apart_and_ignores_node_order():
    torch.manual_seed(6)
    model = _query_readout(readout_query=True).train()  # layer norm: no batch statistics
    torch.nn.init.normal_(model.query_map.weight)
    assert_graphs_apart_and_order_free(model)


def test_readout_query_needs_a_readout_node_and_a_reservoir():
    for kw in ({"num_tokens": 0}, {"global_attn": "full"}):
        other = _query_readout(readout_query=True, **kw)
        assert other.query_map is None and "readout_query" not in repr(other), kw
        assert other(Batch.from_data_list([mol(5, 0), mol(3, 1)])).shape == (2, 3)
    for kw in ({"causal": True, "task_level": "readout"}, {"task_level": "graph"},
               {"task_level": "node"}):
        with pytest.raises(ValueError, match="readout_query=True conditions"):
            BRLGraphModel(3, in_channels=4, readout_query=True, **kw)
