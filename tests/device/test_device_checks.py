r"""Device checks for the accelerator paths: CUDA, bf16 autocast and SDPA kernels.

Each check runs on the CPU (CI has no GPU) and again, marked ``cuda``, on a
GPU where there is one; the SDPA-kernel check is CUDA-only. On a CUDA machine::

    python -m pytest -q -m cuda tests/device --device-report out/gpu_check.json

(``benchmarks/device_check.sh`` runs that as its ``checks`` step.) The report
holds each check's measured values, the input of section 7 of ``docs/RESULTS.md``.

- ``brlconv_vs_float64``: :class:`~brl_graph.nn.BRLConv` on a batch of graphs of
  mixed sizes (so the dense padding splits into buckets), float32 on the device
  against a float64 CPU reference with the same weights: outputs, tokens and
  input gradients, as :math:`\lVert a-b\rVert / \lVert b\rVert`.
- ``split_node_axis_vs_float64``: the same on a graph of over
  :math:`3 \cdot` :data:`~brl_graph.nn.functional.SPLIT_ROWS` nodes, whose
  token-node products are split into blocks of nodes off the CPU (the row says
  into how many, and how many rows the plan padded the graph to).
- ``batch_invariance``: each graph's output alone against its rows in the batch.
- ``causal_no_leak_conv`` / ``causal_no_leak_attention``: the gradient of a
  node's (position's) output with respect to every later input is exactly zero.
- ``bf16_autocast``: forward + backward of the batch under bfloat16 autocast are
  finite and within bf16 rounding of float32.
- ``sdpa_flash``: :func:`brl_graph.nn.functional.attention` runs with the SDPA
  backend restricted to FlashAttention for bf16 and no mask, and matches float64;
  with a key mask, the memory-efficient kernel runs instead (Flash takes no
  mask). BRLConv's fused call (nodes reading the tokens, which needs no mask)
  runs with Flash alone, for one graph and for a batch of mixed sizes. The
  causal-recall baseline's ``is_causal`` call runs with Flash alone.
- ``train_resume``: ``train.py`` on a small RingTransfer config on this device
  (bf16 where CUDA), 2 epochs, then resumed to 3: finite metrics, the device's
  peak-memory kind, and the resumed run continues the same log.
"""
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import pytest
import torch
from torch import Tensor
from torch.nn import Linear, ReLU, Sequential

from brl_graph.nn import BRLAttention, BRLConv, plan_batch
from brl_graph.nn.functional import SPLIT_ROWS, attention, split_blocks
from brl_graph.nn.models import FullCausalAttention

ROOT = Path(__file__).resolve().parents[2]
SIZES = (3, 17, 40, 1, 300)  # padding all to 300 would cost > 2x: buckets


def rel_err(a: Tensor, b: Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def probe_loss(*outs: Tensor) -> Tensor:
    """A fixed random linear functional of the outputs. (A sum of squares of a
    layer-normed output is nearly constant, so its gradient is near zero and
    relative errors of it mean nothing.)"""
    g = torch.Generator().manual_seed(123)
    total = torch.zeros((), dtype=torch.float64, device=outs[0].device)
    for o in outs:
        o = o if o.dtype == torch.float64 else o.float()
        r = torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device, o.dtype)
        total = total + (o * r).sum()
    return total


def make_conv(channels: int, causal: bool = False) -> BRLConv:
    from torch_geometric.nn import GINEConv
    mlp = Sequential(Linear(channels, channels), ReLU(), Linear(channels, channels))
    return BRLConv(channels, GINEConv(mlp, edge_dim=channels), num_tokens=8, heads=4,
                   causal=causal)


def make_batch(sizes: Sequence[int], channels: int, seed: int
               ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random graphs (about 4 in-edges per node) stacked into one batch."""
    g = torch.Generator().manual_seed(seed)
    xs, eis, eas, bs, off = [], [], [], [], 0
    for i, n in enumerate(sizes):
        e = 4 * n
        eis.append(torch.randint(0, n, (2, e), generator=g) + off)
        eas.append(torch.randn(e, channels, generator=g))
        xs.append(torch.randn(n, channels, generator=g))
        bs.append(torch.full((n,), i, dtype=torch.long))
        off += n
    return torch.cat(xs), torch.cat(eis, 1), torch.cat(eas), torch.cat(bs)


def graph_slices(sizes: Sequence[int]) -> List[slice]:
    starts = [0]
    for n in sizes:
        starts.append(starts[-1] + n)
    return [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]


def later_grads(f: Callable[[Tensor], Tensor], x: Tensor, positions: Sequence[int],
                axis: int) -> float:
    """Largest |d out[i] / d x[j]| over j > i for the given positions ``i``."""
    worst = 0.0
    for i in positions:
        xi = x.clone().requires_grad_()
        out = f(xi)
        out.select(axis, i).sum().backward()
        later = xi.grad.narrow(axis, i + 1, x.size(axis) - i - 1)
        worst = max(worst, float(later.abs().max()) if later.numel() else 0.0)
    return worst


def conv_errors_vs_float64(device: str, sizes: Sequence[int]) -> Dict[str, float]:
    """A float32 BRLConv on ``device`` against float64 on the CPU, same weights:
    relative errors of outputs, tokens and gradients on a batch of ``sizes``."""
    torch.manual_seed(0)
    conv = make_conv(32).train()
    x, ei, ea, b = make_batch(sizes, 32, seed=1)
    outs = {}
    for name, dev, dtype in (("ref", "cpu", torch.float64), ("dev", device, torch.float32)):
        m = make_conv(32)
        m.load_state_dict(conv.state_dict())
        m = m.to(dev, dtype)
        xi = x.to(dev, dtype).requires_grad_()
        y, t = m(xi, ei.to(dev), b.to(dev), edge_attr=ea.to(dev, dtype))
        probe_loss(y, t).backward()
        outs[name] = (y, t, xi.grad, m.seeds.grad)
    return {k: rel_err(d, r) for k, d, r in zip(("out", "tokens", "grad_x", "grad_seeds"),
                                                outs["dev"], outs["ref"])}


def test_brlconv_vs_float64(device, device_report):
    errs = conv_errors_vs_float64(device, SIZES)
    assert device_report.record(device, "brlconv_vs_float64", max(errs.values()) < 1e-4, errs,
                                "< 1e-4 (float32; TF32 off)"), errs


def test_split_node_axis_vs_float64(device, device_report):
    # A graph long enough that, off the CPU, the token-node products split the
    # node axis into blocks (functional.split_blocks), next to a small one.
    sizes = (3 * SPLIT_ROWS + 5, 40)
    errs = conv_errors_vs_float64(device, sizes)
    errs["blocks"] = split_blocks(torch.empty(1, sizes[0], 1, device=device))
    x, ei, _, b = make_batch(sizes, 32, seed=1)
    groups = plan_batch(x.size(0), ei.to(device), b.to(device), split=True).groups
    errs["padded_rows"] = max(g.max_nodes for g in groups)
    # on a GPU the check is only a check if the products did split, over a layout
    # padded to whole blocks
    ok = (max(v for k, v in errs.items() if k not in ("blocks", "padded_rows")) < 1e-4
          and (device == "cpu" or (errs["blocks"] > 1 and errs["padded_rows"] % SPLIT_ROWS == 0)))
    assert device_report.record(device, "split_node_axis_vs_float64", ok, errs,
                                "< 1e-4 (float32; TF32 off)"), errs


def test_batch_invariance(device, device_report):
    torch.manual_seed(0)
    conv = make_conv(32).to(device).eval()
    x, ei, ea, b = (t.to(device) for t in make_batch(SIZES, 32, seed=2))
    with torch.no_grad():
        y, t = conv(x, ei, b, edge_attr=ea)
        worst = 0.0
        for g, sl in enumerate(graph_slices(SIZES)):
            keep = (ei[0] >= sl.start) & (ei[0] < sl.stop)
            yi, ti = conv(x[sl], ei[:, keep] - sl.start,
                          torch.zeros(sl.stop - sl.start, dtype=torch.long, device=device),
                          edge_attr=ea[keep])
            worst = max(worst, float((yi - y[sl]).abs().max()), float((ti[0] - t[g]).abs().max()))
    assert device_report.record(device, "batch_invariance", worst < 1e-4, {"max_abs": worst},
                                "< 1e-4"), worst


def test_causal_no_leak_conv(device, device_report):
    torch.manual_seed(0)
    conv = make_conv(32, causal=True).to(device).train()
    x, ei, ea, b = (t.to(device) for t in make_batch((40, 70), 32, seed=3))
    worst = later_grads(lambda xi: conv(xi, ei, b, edge_attr=ea)[0], x, [0, 5, 39, 40, 77], 0)
    assert device_report.record(device, "causal_no_leak_conv", worst == 0.0,
                                {"max_abs_grad_to_later": worst}, "== 0 exactly"), worst


def causal_attention_leak(device: str, causal: bool = True) -> float:
    torch.manual_seed(0)
    attn = BRLAttention(32, heads=4, window=8, num_tokens=8, causal=causal).to(device).train()
    return later_grads(attn, torch.randn(2, 100, 32, device=device), [0, 7, 8, 50, 98], 1)


def test_causal_no_leak_attention(device, device_report):
    worst = causal_attention_leak(device)
    assert device_report.record(device, "causal_no_leak_attention", worst == 0.0,
                                {"max_abs_grad_to_later": worst}, "== 0 exactly"), worst


def test_the_leak_check_sees_a_leaking_layer():
    # The encoder (causal=False) sees both sides of every position.
    assert causal_attention_leak("cpu", causal=False) > 0


def test_bf16_autocast(device, device_report):
    torch.manual_seed(0)
    convs = {c: make_conv(64, causal=c).to(device).train() for c in (False, True)}
    x, ei, ea, b = (t.to(device) for t in make_batch(SIZES, 64, seed=4))
    values: Dict[str, Any] = {}
    ok = True
    for causal, conv in convs.items():
        res = {}
        for bf16 in (False, True):
            conv.zero_grad(set_to_none=True)
            xi = x.clone().requires_grad_()
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
                y, _ = conv(xi, ei, b, edge_attr=ea)
            probe_loss(y).backward()
            res[bf16] = (y.float(), xi.grad, conv.seeds.grad.clone())
        tag = "causal" if causal else "plain"
        finite = all(bool(torch.isfinite(t).all()) for t in res[True])
        errs = {f"{tag}_{k}": rel_err(a, r) for k, a, r in
                zip(("out", "grad_x", "grad_seeds"), res[True], res[False])}
        values.update(errs)
        values[f"{tag}_finite"] = finite
        ok = (ok and finite and errs[f"{tag}_out"] < 1e-2
              and max(errs[f"{tag}_grad_x"], errs[f"{tag}_grad_seeds"]) < 5e-2)
    assert device_report.record(device, "bf16_autocast", ok, values,
                                "finite; out < 1e-2 and gradients < 5e-2 of float32"), values


@pytest.mark.cuda
def test_sdpa_flash(device_report):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    values: Dict[str, Any] = {}
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(4, 4, n, 16, device="cuda", generator=g, dtype=torch.bfloat16)
               for n in (4096, 8, 8))
    ref = attention(q.double().cpu(), k.double().cpu(), v.double().cpu())
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        out = attention(q, k, v)
    values["flash_nodes_read_tokens_rel_err"] = rel_err(out, ref)
    mask = torch.rand(4, 1, 1, 8, device="cuda", generator=g) > 0.3
    mask[..., 0] = True
    try:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            attention(q, k, v, key_mask=mask)
        values["flash_with_mask"] = "ran (unexpected)"
    except RuntimeError:
        values["flash_with_mask"] = "refused (Flash takes no mask)"
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
        out_m = attention(q, k, v, key_mask=mask)
    ref_m = attention(q.double().cpu(), k.double().cpu(), v.double().cpu(), key_mask=mask.cpu())
    values["efficient_masked_rel_err"] = rel_err(out_m, ref_m)

    torch.manual_seed(0)
    conv = make_conv(64).cuda().train()
    x, ei, ea, _ = (t.cuda() for t in make_batch((500,), 64, seed=5))
    one = torch.zeros(500, dtype=torch.long, device="cuda")
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", torch.bfloat16):
        y, _ = conv(x, ei, one, edge_attr=ea)
    y.float().sum().backward()
    values["brlconv_one_graph_flash_only"] = "ran"
    xb, eib, eab, bb = (t.cuda() for t in make_batch(SIZES, 64, seed=6))
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", torch.bfloat16):
        y, _ = conv(xb, eib, bb, edge_attr=eab)
    y.float().sum().backward()
    values["brlconv_batch_flash_only"] = "ran"

    full = FullCausalAttention(64, 4).cuda()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", torch.bfloat16):
        full(torch.randn(2, 8192, 64, device="cuda")).float().sum().backward()
    values["full_causal_flash_only_8k"] = "ran"
    ok = (values["flash_nodes_read_tokens_rel_err"] < 1e-2
          and values["efficient_masked_rel_err"] < 1e-2)
    assert device_report.record("cuda", "sdpa_flash", ok, values,
                                "bf16 rel err < 1e-2; each restricted-kernel call runs"), values


def _log_rows(path: Path) -> List[Dict[str, str]]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_train_resume(device, device_report, tmp_path):
    out = tmp_path / "run"
    base = [sys.executable, str(ROOT / "train.py"), "--config",
            str(ROOT / "configs" / "ring-transfer.yaml"), "data.nodes=50",
            "data.options.num_train=256", "data.options.num_valid=64",
            "data.options.num_test=64", "train.batch_size=32", f"train.device={device}",
            f"train.bf16={'true' if device == 'cuda' else 'false'}", "train.progress=false",
            f"out_dir={out}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for extra in (["train.epochs=2"], ["train.epochs=3", "--resume"]):
        p = subprocess.run(base + extra, capture_output=True, text=True, env=env, timeout=600)
        if p.returncode != 0:
            device_report.record(device, "train_resume", False,
                                 {"stderr_tail": p.stderr[-2000:]}, "exit 0")
            pytest.fail(f"train.py exited with {p.returncode}:\n{p.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    log = _log_rows(out / "log.csv")
    kind = metrics.get("peak_memory_kind")
    want = "cuda_max_allocated" if device == "cuda" else kind
    finite = all(math.isfinite(float(metrics[split].get("accuracy", float("nan"))))
                 for split in ("valid", "test"))
    values = {"epochs_completed": metrics.get("epochs_completed"),
              "log_epochs": [r.get("epoch") for r in log],
              "peak_memory_mb": metrics.get("peak_memory_mb"), "peak_memory_kind": kind,
              "test_accuracy": metrics["test"].get("accuracy"),
              "seconds_per_epoch": metrics.get("seconds_per_epoch")}
    ok = (metrics.get("epochs_completed") == 3 and values["log_epochs"] == ["1", "2", "3"]
          and finite and kind == want)
    assert device_report.record(device, "train_resume", ok, values,
                                "3 epochs in one log after resume, finite metrics, "
                                "device peak memory"), values


def test_report_is_written_in_the_results_format(tmp_path):
    report = tmp_path / "gpu_check.json"
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        __file__, "-k", "test_batch_invariance and cpu",
                        "--device-report", str(report)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:]
    data = json.loads(report.read_text())
    assert data["environment"]["device"] == "cpu" and data["command"].startswith("python -m pytest")
    (check,) = data["checks"]
    assert check == {"name": "batch_invariance", "device": "cpu", "passed": True,
                     "values": check["values"], "bound": "< 1e-4"}
