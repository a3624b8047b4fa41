import json

import pytest
import torch


@pytest.fixture(scope="module")
def gb(benchmark_script):
    yield from benchmark_script("global_branch")


def test_rows_for_every_part_with_the_command(gb, tmp_path, capsys):
    out = tmp_path / "global_branch.json"
    argv = ["--graphs", "3", "--nodes", "7", "--mean-nodes", "4", "--channels", "16",
            "--tokens", "2", "--heads", "2", "--iters", "2", "--rounds", "2", "--warmup", "1",
            "--json", str(out)]
    assert gb.main(argv) == 0
    rows = json.loads(out.read_text())
    assert [r["part"] for r in rows] == list(gb.PARTS)
    for r in rows:
        assert r["min_us"] <= r["us_fwd_bwd"] <= r["max_us"] and r["min_us"] > 0
        assert "--nodes 7" in r["command"] and r["num_tokens"] == 2
    assert "of the branch" in capsys.readouterr().out


def test_the_timed_parts_are_the_layer_s_own(gb):
    # the pool part is compress without the mixer, and the branch part is the
    # layer's global branch on the same rows
    from brl_graph.nn import BRLConv
    from brl_graph.nn.plan import dense_groups
    torch.manual_seed(0)
    conv = BRLConv(8, None, num_tokens=2, heads=2).eval()
    counts = torch.tensor([3, 1])
    group = dense_groups(torch.repeat_interleave(torch.arange(2), counts), 2)[0]
    x = torch.randn(2, 3, 8) * group.mask[..., None]
    T = torch.randn(2, 2, 8)
    parts = gb.make_parts(conv, x, T, group)
    mixed = parts["pool"]()
    assert conv.reservoir.mixer is not None  # restored after the call
    torch.testing.assert_close(conv.reservoir.mixer(mixed),
                               conv.reservoir.compress(x, T, group.mask_bias, group.empty))
    rows = x.reshape(-1, 8)[group.dense_index]
    torch.testing.assert_close(parts["branch"](), conv._global_group(rows, group, T)[0])
    assert parts["branch"]().shape == (4, 8)


@pytest.mark.parametrize("argv, message", [
    (["--mean-nodes", "0"], "--mean-nodes"),
    (["--nodes", "4", "--mean-nodes", "5"], "--mean-nodes"),
    (["--heads", "3"], "must divide"),
    (["--rounds", "0"], "--rounds must be positive"),
])
def test_bad_arguments_are_clear_errors(gb, argv, message, capsys):
    with pytest.raises(SystemExit):
        gb.main(argv)
    assert message in capsys.readouterr().err
