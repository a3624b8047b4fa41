import pytest
import torch

from brl_graph.train import ConfigError
from brl_graph.train.distributed import DistContext, resolve_device, setup, shard_range


@pytest.mark.parametrize("n", [0, 1, 5, 10, 4113])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_eval_shards_cover_split_once_in_order(n, world):
    shards = [shard_range(n, DistContext(r, world, r, torch.device("cpu")))
              for r in range(world)]
    flat = [i for s in shards for i in s]
    assert flat == list(range(n))  # no padding duplicates, original order
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


def test_device_choice():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_single_process_context(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = setup("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
