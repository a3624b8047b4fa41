import random

import numpy as np
import pytest
import torch

from brl_graph.train.checkpoint import (CheckpointError, get_rng_state, load_checkpoint,
                                        load_model_checkpoint, save_checkpoint, set_rng_state)


def _draw():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_rng_state_roundtrip_through_file(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    _draw()
    save_checkpoint({"rng": [get_rng_state()]}, tmp_path / "c.pt")
    expected = _draw()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    state = torch.load(tmp_path / "c.pt", weights_only=True)  # safe loading works
    set_rng_state(state["rng"][0])
    assert _draw() == expected


def _full_state(epoch=1):
    keys = ("model", "optimizer", "scheduler", "best", "history", "rng", "config")
    return {"epoch": epoch, "seconds": 0.0, "world_size": 1, **{k: {} for k in keys}}


def test_atomic_save_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(_full_state(1), path)
    save_checkpoint(_full_state(2), path)
    assert load_checkpoint(path)["epoch"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_full_state(1), path)
    with pytest.raises(Exception):
        save_checkpoint({**_full_state(2), "bad": lambda: 0}, path)  # unpicklable
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_non_finite_weights_are_never_written(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_full_state(1), path)
    model = {"lin.weight": torch.ones(2, 2), "lin.bias": torch.tensor([0.0, float("nan")]),
             "count": torch.tensor(3)}
    with pytest.raises(CheckpointError, match=r"non-finite values in the model: lin\.bias$"):
        save_checkpoint({**_full_state(2), "model": model}, path)
    assert load_checkpoint(path)["epoch"] == 1  # the previous checkpoint stays
    average = {"module.lin.bias": torch.tensor([float("inf")]), "updates": torch.tensor(4)}
    with pytest.raises(CheckpointError, match=r"in the weight average: module\.lin\.bias$"):
        save_checkpoint({**_full_state(2), "average": average}, path)
    assert load_checkpoint(path)["epoch"] == 1
    model["lin.bias"] = torch.zeros(2)
    save_checkpoint({**_full_state(3), "model": model}, path)
    assert load_checkpoint(path)["epoch"] == 3


def test_corrupt_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    path = tmp_path / "last.pt"
    save_checkpoint(_full_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a brl_graph"):
        load_checkpoint(path)
    save_checkpoint({"epoch": 1}, path)
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(path)


def test_load_model_checkpoint_reads_training_checkpoints_and_exported_weights(tmp_path):
    weights = {"lin.weight": torch.ones(2, 2)}
    config = {"model": {"num_layers": 2}}
    trained = {**_full_state(3), "model": weights, "config": config}
    save_checkpoint(trained, tmp_path / "last.pt")
    state, cfg = load_model_checkpoint(tmp_path / "last.pt")
    assert torch.equal(state["lin.weight"], weights["lin.weight"]) and cfg == config
    torch.save({"model": weights, "config": config}, tmp_path / "exported.pt")
    state, cfg = load_model_checkpoint(tmp_path / "exported.pt")
    assert set(state) == {"lin.weight"} and cfg == config
    # A training checkpoint is checked as load_checkpoint checks it.
    torch.save({**trained, "format": "brl_graph.train.checkpoint", "version": 99},
               tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_model_checkpoint(tmp_path / "future.pt")
    torch.save({"model": weights, "config": {"model": 3}}, tmp_path / "bad_config.pt")
    with pytest.raises(CheckpointError, match="'model' section"):
        load_model_checkpoint(tmp_path / "bad_config.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="found list"):
        load_model_checkpoint(tmp_path / "list.pt")
