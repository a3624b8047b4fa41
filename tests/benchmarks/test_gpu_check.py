"""Tests for ``benchmarks/gpu_check.py``: its checks pass on CPU and catch a broken layer."""
import json

import pytest


@pytest.fixture(scope="module")
def gpu_check(benchmark_script):
    yield from benchmark_script("gpu_check")


def test_every_check_passes_on_cpu_and_sdpa_is_skipped(gpu_check, tmp_path):
    out = tmp_path / "gpu_check.json"
    rc = gpu_check.main(["--device", "cpu", "--json", str(out)])
    payload = json.loads(out.read_text())
    by_name = {c["name"]: c for c in payload["checks"]}
    assert rc == 0, [c for c in payload["checks"] if c.get("passed") is False]
    assert set(by_name) == {"brlconv_vs_float64", "batch_invariance", "causal_no_leak_conv",
                            "causal_no_leak_attention", "bf16_autocast", "sdpa_flash",
                            "train_resume"}
    assert by_name["sdpa_flash"]["passed"] is None and "CUDA" in by_name["sdpa_flash"]["skipped"]
    assert by_name["causal_no_leak_attention"]["values"]["max_abs_grad_to_later"] == 0.0
    assert by_name["train_resume"]["values"]["log_epochs"] == ["1", "2", "3"]
    assert payload["environment"]["device"] == "cpu"


def test_a_leaking_layer_fails_the_causal_check(gpu_check, monkeypatch):
    real = gpu_check.BRLAttention

    def leaky(*args, **kwargs):
        kwargs["causal"] = False  # the encoder sees both sides of every position
        return real(*args, **kwargs)

    monkeypatch.setattr(gpu_check, "BRLAttention", leaky)
    res = gpu_check.check_causal_no_leak_attention("cpu")
    assert res["passed"] is False and res["values"]["max_abs_grad_to_later"] > 0


def test_a_crashing_check_is_reported_as_failed(gpu_check, monkeypatch):
    def boom(device):
        raise RuntimeError("kernel refused")

    boom.__name__ = "check_boom"
    monkeypatch.setattr(gpu_check, "CHECKS", (boom,))
    payload = gpu_check.run("cpu")
    (res,) = payload["checks"]
    assert res["name"] == "boom" and res["passed"] is False
    assert "kernel refused" in res["error"]


def test_unknown_check_names_are_an_error(gpu_check, capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--device", "cpu", "--checks", "bf16_autocast", "no_such_check"])
    assert exc.value.code == 2
    assert "unknown check(s) ['no_such_check']" in capsys.readouterr().err
