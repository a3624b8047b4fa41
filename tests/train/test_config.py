from pathlib import Path

import pytest
import yaml

from brl_graph.train.config import (DEFAULTS, ConfigError, config_differences, load_config,
                                    parse_overrides, save_config)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_resolve_and_are_copied():
    cfg = load_config()
    assert cfg == DEFAULTS
    cfg["train"]["lr"] = 123.0
    assert DEFAULTS["train"]["lr"] != 123.0  # no shared mutable state


def test_partial_dict_merges_over_defaults():
    cfg = load_config({"model": {"channels": 32}, "train": {"epochs": 3}})
    assert cfg["model"]["channels"] == 32
    assert cfg["train"]["epochs"] == 3
    assert cfg["model"]["num_layers"] == DEFAULTS["model"]["num_layers"]


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config({"train": {"learning_rate": 1e-3}})
    msg = str(err.value)
    assert "train.learning_rate" in msg
    assert "lr" in msg and "weight_decay" in msg
    with pytest.raises(ConfigError, match="unknown config key 'modle'"):
        load_config(overrides=["modle.channels=3"])


def test_overrides_are_yaml_typed():
    parsed = parse_overrides(["train.lr=3e-4", "train.seeds=[0,1,2]", "data.root=null",
                              "train.bf16=true", "model.local=gatv2", "out_dir=runs/x"])
    assert parsed["train"]["lr"] == pytest.approx(3e-4)
    assert parsed["train"]["seeds"] == [0, 1, 2]
    assert parsed["data"]["root"] is None
    assert parsed["train"]["bf16"] is True
    cfg = load_config(overrides=["train.lr=3e-4", "model.num_tokens=0", "out_dir=runs/x"])
    assert cfg["train"]["lr"] == pytest.approx(3e-4)
    assert cfg["model"]["num_tokens"] == 0
    assert cfg["out_dir"] == "runs/x"


def test_yaml_file_with_exponent_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-4\n  weight_decay: 1e-5\nmodel:\n  channels: 16\n")
    cfg = load_config(path, ["train.epochs=2"])
    assert cfg["train"]["lr"] == pytest.approx(1e-4)
    assert cfg["train"]["weight_decay"] == pytest.approx(1e-5)
    assert cfg["train"]["epochs"] == 2


def test_free_form_dataset_options():
    cfg = load_config(overrides=["data.options.path=my.csv", "data.options.smiles_column=smi"])
    assert cfg["data"]["options"] == {"path": "my.csv", "smiles_column": "smi"}


@pytest.mark.parametrize("override, fragment", [
    ("train.lr=fast", "train.lr"),
    ("train.lr=0", "train.lr"),
    ("model.local=gin", "model.local"),
    ("model.global_attn=linear", "model.global_attn"),
    ("model.channels=30", "divisible"),
    ("model.num_layers=0", "model.num_layers"),
    ("model.dropout=1.5", "model.dropout"),
    ("train.seeds=[1,1]", "duplicates"),
    ("train.seeds=3", "train.seeds"),
    ("train.device=tpu", "train.device"),
    ("train.bf16=maybe", "train.bf16"),
    ("model.pre_norm=sometimes", "model.pre_norm"),
    ("train.scheduler=step", "train.scheduler"),
    ("train", "key=value"),
    ("train.epochs=1.5", "train.epochs"),
    ("model=3", "section"),
    ("model.pool=median", "model.pool"),
    ("model.pe=spectral", "model.pe"),
    ("model.pe=[rwse,rwse]", "model.pe"),
    ("model.pe=[]", "model.pe"),
    ("train.scheduler=plateau train.warmup_epochs=2", "warmup_epochs applies to the cosine"),
    ("train.ema_decay=1.0", "train.ema_decay"),
    ("train.ema_decay=true", "train.ema_decay"),
])
def test_bad_values(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(overrides=override.split())


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_save_roundtrip(tmp_path):
    cfg = load_config(overrides=["train.lr=2e-4", "train.seeds=[0,1]"])
    save_config(cfg, tmp_path / "sub" / "config.yaml")
    assert load_config(tmp_path / "sub" / "config.yaml") == cfg
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_config_differences_ignore_resumable_keys():
    a = load_config()
    b = load_config(overrides=["train.epochs=500", "train.device=cpu", "model.channels=32"])
    diffs = config_differences(a, b)
    assert len(diffs) == 1 and diffs[0].startswith("model.channels")



def test_config_differences_take_a_key_missing_from_an_old_config_as_its_default():
    # a checkpoint written before model.brl_mode existed resumes under the new code
    new = load_config()
    old = load_config()
    for key in ("brl_mode", "window", "block_size", "block_tokens", "top_k"):
        del old["model"][key]
    assert config_differences(old, new) == []
    blocks = load_config(overrides=["model.brl_mode=blocks"])
    assert config_differences(old, blocks) == ["model.brl_mode: 'reservoir' -> 'blocks'"]


@pytest.mark.parametrize("name", ["default", "ogbg-molhiv", "peptides-func", "peptides-struct",
                                  "tree-neighbors-match", "tree-neighbors-match-published",
                                  "ring-transfer"])
def test_shipped_configs_are_valid(name):
    path = CONFIGS / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    assert set(raw) <= {"out_dir", "data", "model", "train"}
    cfg = load_config(path)
    assert cfg["out_dir"].startswith("runs/")
    assert cfg["data"]["name"]


def test_deprecated_keys_are_renamed_with_a_warning(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  layers: 3\n  global: full\n")
    with pytest.warns(FutureWarning, match="'model.layers' is deprecated.*'model.num_layers'"):
        cfg = load_config(old)
    assert cfg["model"]["num_layers"] == 3 and cfg["model"]["global_attn"] == "full"
    assert "layers" not in cfg["model"] and "global" not in cfg["model"]
    # Overrides too, also over a file that uses the new names.
    with pytest.warns(FutureWarning, match="'model.global' is deprecated"):
        cfg = load_config({"model": {"num_layers": 5}}, ["model.global=none", "model.layers=2"])
    assert cfg["model"]["num_layers"] == 2 and cfg["model"]["global_attn"] == "none"
    with pytest.raises(ConfigError, match="both 'model.layers' and 'model.num_layers'"):
        load_config({"model": {"layers": 2, "num_layers": 3}})


def test_rename_deprecated_leaves_its_input_alone():
    from brl_graph.train.config import rename_deprecated

    old = {"model": {"layers": 2}, "train": {"epochs": 1}}
    new = rename_deprecated(old, warn=False)
    assert new == {"model": {"num_layers": 2}, "train": {"epochs": 1}}
    assert old == {"model": {"layers": 2}, "train": {"epochs": 1}}


def test_model_keys_are_the_model_arguments():
    import inspect

    from brl_graph.nn import BRLGraphModel

    args = set(inspect.signature(BRLGraphModel).parameters)
    # pe and pe_dim name what the loader computes; the model's widths follow the data.
    assert set(DEFAULTS["model"]) - {"pe", "pe_dim"} <= args


def test_pe_accepts_several_kinds():
    cfg = load_config(overrides=["model.pe=[rwse, lap]"])
    assert cfg["model"]["pe"] == ["rwse", "lap"]
