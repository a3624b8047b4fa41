import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch_geometric.loader import DataLoader

from brl_graph.train import (ConfigError, build_bench, build_model, dataset_options, load_config,
                             model_kwargs)
from brl_graph.train.build import count_parameters, pe_widths


def small_ring(tmp_path, *overrides):
    return load_config(overrides=["data.nodes=8", "data.options.num_train=8",
                                  "data.options.num_valid=4", "data.options.num_test=4",
                                  f"data.cache_dir={tmp_path / 'cache'}", "model.num_layers=2",
                                  "model.channels=16", "model.heads=2", "model.num_tokens=2",
                                  *overrides])


def test_dataset_options_carry_the_pe_request(tmp_path):
    cfg = small_ring(tmp_path)
    assert dataset_options(cfg) == {"nodes": 8, "num_train": 8, "num_valid": 4, "num_test": 4}
    one = dataset_options(small_ring(tmp_path, "model.pe=rwse", "model.pe_dim=5"))
    assert one["pe"] == "rwse" and one["rwse_dim"] == 5 and "lap_pe_dim" not in one
    both = dataset_options(small_ring(tmp_path, "model.pe=[rwse, lap]", "model.pe_dim=3"))
    assert both["pe"] == ["rwse", "lap"] and both["rwse_dim"] == 3 and both["lap_pe_dim"] == 3


def test_several_pe_kinds_reach_the_model_with_the_benchmark_widths(tmp_path):
    cfg = small_ring(tmp_path, "model.pe=[rwse, lap]", "model.pe_dim=3")
    bench = build_bench(cfg)
    assert bench.pe == {"rwse": 3, "lap_pe": 3}
    model = build_model(cfg, bench)
    assert model.rwse_encoder.in_channels == 3 and model.lap_encoder.in_channels == 3
    batch = next(iter(DataLoader(bench.train, batch_size=4)))
    assert model(batch).shape == (4, bench.out_channels)


def fake_bench(**kw):
    base = dict(out_channels=2, atom_features=False, num_node_features=3, num_edge_features=0,
                node_readout=None, level="graph", pe={})
    return SimpleNamespace(**{**base, **kw})


def test_pe_widths_come_from_the_benchmark():
    model_cfg = load_config(overrides=["model.pe=rwse", "model.pe_dim=16"])["model"]
    # What the loader recorded wins over the config's pe_dim ...
    assert pe_widths(model_cfg, fake_bench(pe={"rwse": 7, "lap_pe": 4})) == {"rwse_dim": 7}
    # ... and a benchmark that records nothing (graphs bringing their own) takes pe_dim.
    assert pe_widths(model_cfg, fake_bench()) == {"rwse_dim": 16}
    none = load_config()["model"]
    assert pe_widths(none, fake_bench(pe={"rwse": 7})) == {}
    kwargs = model_kwargs(model_cfg, fake_bench(pe={"rwse": 7}), "graph")
    assert kwargs["rwse_dim"] == 7 and "lap_pe_dim" not in kwargs


def test_model_kwargs_are_config_keys():
    cfg = load_config(overrides=["model.num_layers=3", "model.global_attn=none",
                                 "model.pool=max", "model.dropout=0.25"])
    kwargs = model_kwargs(cfg["model"], fake_bench(), "node")
    assert kwargs["num_layers"] == 3 and kwargs["global_attn"] == "none"
    assert kwargs["pool"] == "max" and kwargs["dropout"] == 0.25 and kwargs["task_level"] == "node"
    model = build_model(cfg, fake_bench())
    assert model.num_layers == 3 and model.num_tokens == 0 and model.task_level == "graph"
    assert not model.pre_norm
    pre = build_model(load_config(overrides=["model.pre_norm=true"]), fake_bench())
    assert pre.pre_norm and all(layer.pre_norm for layer in pre.layers)
    deep = build_model(load_config(overrides=["model.head_layers=3"]), fake_bench())
    assert sum(isinstance(m, torch.nn.Linear) for m in deep.head) == 3
    with pytest.raises(ConfigError, match="model.head_layers must be an integer >= 1"):
        load_config(overrides=["model.head_layers=0"])
    # The published tree protocol reads the root through one linear layer, as the
    # authors do (the results page names every other head its rows ran with).
    tree = load_config(Path(__file__).resolve().parents[2] / "configs"
                       / "tree-neighbors-match-published.yaml")
    model = build_model(tree, fake_bench(level="readout", name="trees"))
    assert [type(m) for m in model.head] == [torch.nn.Linear]
    assert model.readout_query  # the tokens start from the root (docs/RECIPE.md)


def test_pe_norm_key_reaches_every_pe_encoder():
    bench = fake_bench(pe={"rwse": 7, "lap_pe": 4})
    plain = build_model(load_config(overrides=["model.pe=[rwse,lap]"]), bench)
    assert plain.rwse_encoder.norm is None and plain.lap_encoder.norm is None
    normed = build_model(load_config(overrides=["model.pe=[rwse,lap]", "model.pe_norm=true"]),
                         bench)
    assert normed.rwse_encoder.norm is not None and normed.lap_encoder.norm is not None
    assert normed.rwse_encoder.in_channels == 7 and normed.lap_encoder.sign_flip
    with pytest.raises(ConfigError, match="model.pe_norm must be true or false"):
        load_config(overrides=["model.pe_norm=1"])


def test_fold_key_folds_every_reservoir_and_the_twin_ignores_it():
    bench = fake_bench()
    plain = build_model(load_config(), bench)
    folded = build_model(load_config(overrides=["model.fold=true"]), bench)
    assert not plain.fold and folded.fold and "fold=True" in repr(folded)
    assert all(layer.fold and layer.reservoir.fold for layer in folded.layers)
    assert count_parameters(folded) < count_parameters(plain)
    # the MPNN twin of a folded config has nothing to fold: the same model as the plain twin's
    twin = build_model(load_config(overrides=["model.fold=true", "model.num_tokens=0"]), bench)
    plain_twin = build_model(load_config(overrides=["model.num_tokens=0"]), bench)
    assert not twin.fold and count_parameters(twin) == count_parameters(plain_twin)
    with pytest.raises(ConfigError, match="model.fold must be true or false"):
        load_config(overrides=["model.fold=1"])
    with pytest.raises(ConfigError, match="model.fold=true does not apply to model.joint=true"):
        load_config(overrides=["model.fold=true", "model.joint=true"])
    # the joint twin has no reservoir, so nothing to refuse
    load_config(overrides=["model.fold=true", "model.joint=true", "model.num_tokens=0"])


def test_build_model_names_a_level_without_a_head():
    cfg = load_config()
    with pytest.raises(ConfigError, match="level 'link'.*graph, node, readout"):
        build_model(cfg, fake_bench(level="link", name="pcqm-contact"))
    assert build_model(cfg, fake_bench(level="link"), task_level="node").task_level == "node"


@pytest.mark.parametrize("overrides, fragment", [
    (["model.causal=true", "model.norm=batch_norm"], "breaks causal=True"),
    (["model.pre_norm=true", "model.global_attn=full"], "pre_norm=True needs BRL layers"),
    (["model.joint=true", "model.brl_mode=blocks"], "blocks mode"),
])
def test_settings_that_clash_are_config_errors(overrides, fragment):
    # Each value is valid alone; together they fail in the layer, and the user
    # sees a ConfigError (one line from train.py), not a traceback.
    cfg = load_config(overrides=overrides)
    with pytest.raises(ConfigError, match=f"do not fit together: .*{fragment}"):
        build_model(cfg, fake_bench())


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
    from brl_graph.train.loop import progress_bar

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(3, "epoch 1", enabled=True).disable  # a log file: no bar
    monkeypatch.setattr(sys, "stderr", _Terminal())
    bar = progress_bar(3, "epoch 1", enabled=True)
    assert not bar.disable
    bar.update(1)
    bar.close()
    assert "epoch 1" in sys.stderr.getvalue()
    assert progress_bar(3, "epoch 1", enabled=False).disable


def test_readout_tokens_key_reaches_the_head_and_is_refused_where_it_cannot_apply():
    bench = fake_bench()
    model = build_model(load_config(overrides=["model.readout_tokens=true"]), bench)
    assert model.readout_tokens and model.head[0].in_features == 2 * model.channels
    twin = build_model(load_config(overrides=["model.readout_tokens=true", "model.num_tokens=0"]),
                       bench)
    plain_twin = build_model(load_config(overrides=["model.num_tokens=0"]), bench)
    assert not twin.readout_tokens and count_parameters(twin) == count_parameters(plain_twin)
    with pytest.raises(ConfigError, match="'ring' predicts per node"):
        build_model(load_config(overrides=["model.readout_tokens=true"]),
                    fake_bench(level="node", name="ring"))
    marked = build_model(load_config(overrides=["model.readout_tokens=true"]),
                         fake_bench(level="readout", name="trees"))
    assert marked.readout_tokens and marked.task_level == "readout"
    with pytest.raises(ConfigError, match="a causal model keeps one per position"):
        load_config(overrides=["model.readout_tokens=true", "model.causal=true"])
    with pytest.raises(ConfigError, match="model.readout_tokens must be true or false"):
        load_config(overrides=["model.readout_tokens=yes please"])


def test_readout_query_key_reaches_the_model_and_is_refused_where_it_cannot_apply():
    trees = fake_bench(level="readout", name="trees")
    model = build_model(load_config(overrides=["model.readout_query=true"]), trees)
    plain = build_model(load_config(), trees)
    C = model.channels  # the map is one C x C linear layer
    assert model.readout_query and count_parameters(model) == count_parameters(plain) + C * C + C
    twin = build_model(load_config(overrides=["model.readout_query=true", "model.num_tokens=0"]),
                       trees)
    assert not twin.readout_query
    with pytest.raises(ConfigError, match="readout_query=True conditions"):
        build_model(load_config(overrides=["model.readout_query=true"]), fake_bench())
    with pytest.raises(ConfigError, match="a causal model keeps tokens per position"):
        load_config(overrides=["model.readout_query=true", "model.causal=true"])
    with pytest.raises(ConfigError, match="model.readout_query must be true or false"):
        load_config(overrides=["model.readout_query=1"])
