"""Tests for ``benchmarks/scaling.py`` (a script, not a package: loaded from its path)."""
import json
from concurrent.futures import ThreadPoolExecutor

import pytest



@pytest.fixture(scope="module")
def scaling(benchmark_script):
    yield from benchmark_script("scaling")


def _spec(scaling, model, n, **kw):
    return scaling.RowSpec(model=model, num_nodes=n, repeats=2, warmup=1, threads=1, **kw)


def test_measure_row_schema_mpnn_and_brl(scaling, tmp_path):
    specs = [_spec(scaling, m, 256) for m in ("mpnn", "brl")]
    # Two workers side by side: each runs single-threaded in its own process.
    with ThreadPoolExecutor(2) as pool:
        rows = list(pool.map(lambda s: scaling.measure_row(s, max_seconds=120), specs))
    for model, row in zip(("mpnn", "brl"), rows):
        assert "skipped" not in row, row
        assert {"model", "num_nodes", "num_edges", "fwd_bwd_ms", "peak_mem_mb"} <= row.keys()
        assert row["model"] == model
        assert row["num_nodes"] == 256
        assert row["num_edges"] == 8 * 256
        assert row["layers"] == 1 and row["device"] == "cpu" and row["threads"] == 1
        assert row["repeats"] == 2 and len(row["times_ms"]) == 2
        assert all(t > 0 for t in row["times_ms"])
        assert min(row["times_ms"]) <= row["fwd_bwd_ms"] <= max(row["times_ms"])
        assert row["peak_mem_mb"] is None or row["peak_mem_mb"] >= 0
    # The rows are JSON-serialisable as written by the script.
    out = tmp_path / "sub" / "rows.json"
    scaling.atomic_write_json(out, rows)
    assert json.loads(out.read_text()) == rows
    assert [p.name for p in out.parent.iterdir()] == ["rows.json"]  # no temp file left


def test_timeout_kills_worker_and_skips(scaling):
    spec = _spec(scaling, "brl", 256)
    row = scaling.measure_row(spec, max_seconds=0.5)  # interpreter start-up alone takes longer
    assert "max-seconds" in row["skipped"]
    assert row["fwd_bwd_ms"] is None and row["peak_mem_mb"] is None
    assert (row["model"], row["num_nodes"], row["num_edges"]) == ("brl", 256, 2048)


def test_memory_skip(scaling):
    n = 131072
    mh = _spec(scaling, "full", n)
    # Quadratic attention: 3 * 4 heads * n^2 * 4 bytes alone is ~800 GiB.
    assert scaling.estimate_bytes("full", n, 64, 1, True) > 3 * 4 * n * n * 4
    assert scaling.memory_skip_reason(mh, avail=64 * 2**30, quadratic_attention=True)
    assert scaling.memory_skip_reason(mh, avail=64 * 2**30, quadratic_attention=False) is None
    brl = _spec(scaling, "brl", n)
    assert "available" in scaling.memory_skip_reason(brl, avail=10 * 2**20,
                                                     quadratic_attention=True)
    # Linear models grow linearly: 4 layers cost more than 1, but not quadratically in N.
    one = scaling.estimate_bytes("brl", n, 64, 1, True)
    assert scaling.estimate_bytes("brl", n, 64, 4, True) > one
    assert scaling.estimate_bytes("brl", 2 * n, 64, 1, True) < 2.01 * one


def test_extrapolation_skip(scaling):
    spec = _spec(scaling, "full", 131072)
    prev = [{"num_nodes": 4096, "fwd_bwd_ms": 100.0}, {"num_nodes": 32768, "fwd_bwd_ms": 6400.0}]
    # Exponent 2: 6.4 s * 16 = 102 s per pass, two passes exceed 120 s.
    reason = scaling.extrapolation_skip_reason(spec, prev, max_seconds=120)
    assert reason is not None and "exponent 2.00" in reason
    assert scaling.extrapolation_skip_reason(spec, prev, max_seconds=1000) is None
    assert scaling.extrapolation_skip_reason(spec, [], max_seconds=1) is None
    # Skipped smaller rows carry no time and are ignored.
    skipped = [{"num_nodes": 32768, "fwd_bwd_ms": None}]
    assert scaling.extrapolation_skip_reason(spec, skipped, max_seconds=1) is None


def _row(model, n, ms, mem, skipped=None):
    row = {"model": model, "num_nodes": n, "num_edges": 8 * n, "fwd_bwd_ms": ms,
           "peak_mem_mb": mem}
    if skipped:
        row["skipped"] = skipped
    return row


def test_target_checks(scaling):
    rows = [_row("mpnn", 32768, 100, 50), _row("brl", 32768, 120, 60),
            _row("full", 32768, 3000, 70),
            _row("local", 131072, 400, 200), _row("brl", 131072, 700, 300),  # legacy label
            _row("performer", 131072, None, None, skipped="too slow")]
    checks = {c["name"]: c for c in scaling.target_checks(rows)}
    brl_local = checks["brl / mpnn time @ 131072"]
    assert brl_local["value"] == pytest.approx(1.75) and brl_local["status"] == "FAIL"
    mh = checks["full / brl time @ 32768"]
    assert mh["value"] == pytest.approx(25.0) and mh["status"] == "PASS"
    assert checks["performer / brl time @ 131072"]["status"].startswith("N/A")
    mem = checks["brl peak mem 131072 / 32768"]
    assert mem["value"] == pytest.approx(5.0) and mem["status"] == "FAIL"
    table = scaling.format_table(rows)
    assert "skipped: too slow" in table and "performer" in table


def test_bad_inputs(scaling):
    with pytest.raises(ValueError, match="unknown model"):
        scaling.RowSpec(model="gps-bigbird", num_nodes=10)
    with pytest.raises(ValueError, match="num_nodes"):
        scaling.RowSpec(model="brl", num_nodes=0)
    with pytest.raises(ValueError, match="multiple of heads"):
        scaling.RowSpec(model="brl", num_nodes=10, channels=6)
    with pytest.raises(SystemExit):
        scaling.parse_args(["--models", "nope"])
    # Stored commands of older rows name the legacy labels: they still parse.
    assert scaling.parse_args(["--models", "local", "gps-multihead", "gps-performer"]).models == [
        "mpnn", "full", "performer"]
    with pytest.raises(SystemExit):
        scaling.parse_args(["--max-seconds", "0"])


def test_worker_keeps_one_timing_under_a_tight_deadline(scaling):
    import time
    # In-process with a deadline already past: the warm-up pass becomes the
    # timing and the memory pass is dropped (threads=0 leaves torch's setting alone).
    spec = scaling.RowSpec(model="brl", num_nodes=64, repeats=3, warmup=1, threads=0)
    row = scaling.run_worker(spec, deadline=time.time())
    assert row["repeats"] == 1 and row["warmup"] == 0 and row["warmup_used_as_timed"]
    assert row["fwd_bwd_ms"] > 0
    assert row["peak_mem_mb"] is None and row["mem_method"].startswith("not measured")


def test_append_keeps_other_rows_and_replaces_remeasured_ones(scaling, tmp_path):
    path = tmp_path / "rows.json"
    old = [
        {"model": "brl", "num_nodes": 64, "layers": 1, "channels": 64, "device": "cpu",
         "fwd_bwd_ms": 999.0},  # re-measured below: must be replaced
        {"model": "local", "num_nodes": 4096, "layers": 1, "channels": 64, "device": "cpu",
         "fwd_bwd_ms": 5.0},  # not re-measured: must survive
        {"model": "brl", "num_nodes": 64, "layers": 2, "channels": 64, "device": "cpu",
         "fwd_bwd_ms": 7.0},  # another depth: a different row
    ]
    path.write_text(json.dumps(old))
    args = scaling.parse_args(["--sizes", "64", "--models", "brl", "--json", str(path),
                               "--append", "--repeats", "1", "--threads", "1"])
    scaling.run_benchmark(args)
    rows = json.loads(path.read_text())
    keys = sorted((r["model"], r["num_nodes"], r["layers"]) for r in rows)
    assert keys == [("brl", 64, 1), ("brl", 64, 2), ("local", 4096, 1)]
    new = next(r for r in rows if r["layers"] == 1 and r["model"] == "brl")
    assert new["fwd_bwd_ms"] != 999.0 and "--append" in new["command"]
    # The stored command parses back to this run's settings.
    again = scaling.parse_args(new["command"].split()[2:])
    assert again.sizes == [64] and again.models == ["brl"] and again.append


def test_append_refuses_to_overwrite_a_broken_file(scaling, tmp_path):
    path = tmp_path / "rows.json"
    path.write_text("{not json")
    args = scaling.parse_args(["--sizes", "64", "--models", "brl", "--json", str(path), "--append"])
    with pytest.raises(SystemExit, match="not valid JSON"):
        scaling.run_benchmark(args)
    assert path.read_text() == "{not json"


def test_checkpointed_stack_matches_plain_stack(scaling):
    import torch

    torch.manual_seed(0)
    plain = scaling.build_model("brl", 16, 3)
    ckpt = scaling.build_model("brl", 16, 3, checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(40, 16)
    edge_index = torch.randint(0, 40, (2, 160))
    edge_attr = torch.randn(160, 16)
    grads = []
    for model in (plain, ckpt):
        model.train()
        xi = x.clone().requires_grad_()
        model(xi, edge_index, edge_attr).square().sum().backward()
        grads.append((xi.grad, [p.grad for p in model.parameters()]))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    assert sum(g is not None for g in grads[0][1]) > 10
    for a, b in zip(grads[0][1], grads[1][1]):
        assert (a is None) == (b is None)
        assert a is None or torch.allclose(a, b, atol=1e-5)
    assert scaling.estimate_bytes("brl", 10**6, 64, 4, False, checkpoint=True) < \
        scaling.estimate_bytes("brl", 10**6, 64, 4, False) / 2


def test_bf16_rows_are_their_own_setting(scaling, monkeypatch):
    import time

    import torch

    seen = []
    real = torch.autocast

    def spy(*args, **kwargs):
        seen.append(kwargs.get("dtype"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    spec = scaling.RowSpec(model="brl", num_nodes=64, repeats=1, warmup=0, threads=0, bf16=True)
    row = scaling.run_worker(spec, deadline=time.time() + 60)
    assert row["bf16"] is True and row["fwd_bwd_ms"] > 0
    assert seen and set(seen) == {torch.bfloat16}  # every pass ran under bf16 autocast
    fp32 = dict(row, bf16=False)
    assert scaling.row_key(row) != scaling.row_key(fp32)
    args = scaling.parse_args(["--sizes", "64", "--models", "brl", "--bf16"])
    assert "--bf16" in scaling.invocation(args)
    assert scaling.parse_args(scaling.invocation(args).split()[2:]).bf16


def test_folded_and_profiled_rows(scaling):
    import time

    spec = scaling.RowSpec(model="brl", num_nodes=64, repeats=1, warmup=0, threads=1,
                           fold=True, profile=5)
    row = scaling.run_worker(spec, deadline=time.time() + 60)
    assert row["fold"] is True and row["tf32"] is False and row["fwd_bwd_ms"] > 0
    assert 0 < len(row["profile"]) <= 5
    assert all(op["self_ms"] > 0 and op["calls"] >= 1 for op in row["profile"])
    ms = [op["self_ms"] for op in row["profile"]]
    assert ms == sorted(ms, reverse=True)  # the costliest first
    assert "the ops below" in scaling.format_profiles([row])
    # A folded, a TF32 and a plain row measure different things: --append keeps each.
    plain = dict(row, fold=False)
    assert len({scaling.row_key(r) for r in (row, plain, dict(plain, tf32=True))}) == 3
    args = scaling.parse_args(["--sizes", "64", "--models", "brl", "--fold", "--profile", "5"])
    again = scaling.parse_args(scaling.invocation(args).split()[2:])
    assert again.fold and again.profile == 5


def test_fold_reaches_the_layers(scaling):
    def params(fold):
        return sum(p.numel() for p in scaling.build_model("brl", 64, 2, fold=fold).parameters())
    # Per layer, the pool's and the read's C x C pairs become one matrix each.
    assert params(False) - params(True) == 2 * (4 * 64 ** 2 + 4 * 64)


def test_append_keeps_the_plain_rows_beside_folded_ones(scaling, tmp_path):
    path = tmp_path / "rows.json"
    plain = {"model": "mpnn", "num_nodes": 64, "layers": 1, "channels": 64, "device": "cpu",
             "profile": [{"name": "aten::mm", "calls": 1, "self_ms": 1.0}]}
    rows = [plain, dict(plain, model="brl"), dict(plain, model="brl", fold=True)]
    path.write_text(json.dumps(rows))
    args = scaling.parse_args(["--sizes", "64", "--models", "brl", "--fold", "--append",
                               "--json", str(path)])
    # Only the folded BRL row is measured again; the twin keeps its profile.
    assert scaling.load_kept_rows(path, args) == rows[:2]


def test_fold_and_tf32_are_refused_where_they_do_not_apply(scaling):
    with pytest.raises(ValueError, match="fold applies to 'brl' rows only"):
        scaling.RowSpec(model="mpnn", num_nodes=10, fold=True)
    with pytest.raises(ValueError, match="tf32 applies to CUDA"):
        scaling.RowSpec(model="brl", num_nodes=10, tf32=True)
    with pytest.raises(SystemExit):
        scaling.parse_args(["--tf32"])  # the default device is the CPU
    with pytest.raises(ValueError, match="two precisions"):
        scaling.RowSpec(model="brl", num_nodes=10, device="cuda", tf32=True, bf16=True)
    for argv in (["--models", "mpnn", "brl", "--fold"], ["--device", "cuda", "--tf32", "--bf16"]):
        with pytest.raises(SystemExit):
            scaling.parse_args(argv)
    with pytest.raises(SystemExit):
        scaling.parse_args(["--profile", "-1"])
