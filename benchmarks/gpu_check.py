r"""Device checks for the accelerator paths: CUDA, bf16 autocast and SDPA kernels.

The unit tests run on CPU (CI has no GPU). This script checks, on whatever
device it is given, the properties that could break only there, and writes
one JSON record per check:

- ``brlconv_vs_float64``: :class:`~brl_graph.nn.BRLConv` on a batch of graphs of
  mixed sizes (so the dense padding splits into buckets), float32 on the device
  against a float64 CPU reference with the same weights: outputs, tokens and
  input gradients, as :math:`\lVert a-b\rVert / \lVert b\rVert`.
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

On CPU the SDPA-kernel checks are skipped with a reason; everything else runs,
so the script itself is tested where there is no GPU.

Usage::

    python benchmarks/gpu_check.py --device cuda --json out/gpu_check.json
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn import Linear, ReLU, Sequential

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from brl_graph.io import atomic_write_json  # noqa: E402
from brl_graph.nn import BRLAttention, BRLConv  # noqa: E402
from brl_graph.nn.functional import attention  # noqa: E402

Check = Dict[str, Any]


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


# ---------------------------------------------------------------- checks
SIZES = (3, 17, 40, 1, 300)  # padding all to 300 would cost > 2x: buckets


def check_brlconv_vs_float64(device: str) -> Check:
    torch.manual_seed(0)
    conv = make_conv(32).train()
    x, ei, ea, b = make_batch(SIZES, 32, seed=1)
    outs = {}
    for name, dev, dtype in (("ref", "cpu", torch.float64), ("dev", device, torch.float32)):
        m = make_conv(32)
        m.load_state_dict(conv.state_dict())
        m = m.to(dev, dtype)
        xi = x.to(dev, dtype).requires_grad_()
        y, t = m(xi, ei.to(dev), b.to(dev), edge_attr=ea.to(dev, dtype))
        probe_loss(y, t).backward()
        outs[name] = (y, t, xi.grad, m.seeds.grad)
    errs = {k: rel_err(d, r) for k, d, r in zip(("out", "tokens", "grad_x", "grad_seeds"),
                                               outs["dev"], outs["ref"])}
    return {"name": "brlconv_vs_float64", "passed": max(errs.values()) < 1e-4,
            "values": errs, "bound": "< 1e-4 (float32; TF32 off)"}


def check_batch_invariance(device: str) -> Check:
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
    return {"name": "batch_invariance", "passed": worst < 1e-4, "values": {"max_abs": worst},
            "bound": "< 1e-4"}


def _later_grads(f: Callable[[Tensor], Tensor], x: Tensor, positions: Sequence[int],
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


def check_causal_no_leak_conv(device: str) -> Check:
    torch.manual_seed(0)
    conv = make_conv(32, causal=True).to(device).train()
    sizes = (40, 70)
    x, ei, ea, b = (t.to(device) for t in make_batch(sizes, 32, seed=3))
    worst = _later_grads(lambda xi: conv(xi, ei, b, edge_attr=ea)[0], x, [0, 5, 39, 40, 77], 0)
    return {"name": "causal_no_leak_conv", "passed": worst == 0.0,
            "values": {"max_abs_grad_to_later": worst}, "bound": "== 0 exactly"}


def check_causal_no_leak_attention(device: str) -> Check:
    torch.manual_seed(0)
    attn = BRLAttention(32, heads=4, window=8, num_tokens=8, causal=True).to(device).train()
    x = torch.randn(2, 100, 32, device=device)
    worst = _later_grads(attn, x, [0, 7, 8, 50, 98], 1)
    return {"name": "causal_no_leak_attention", "passed": worst == 0.0,
            "values": {"max_abs_grad_to_later": worst}, "bound": "== 0 exactly"}


def check_bf16_autocast(device: str) -> Check:
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
    return {"name": "bf16_autocast", "passed": ok, "values": values,
            "bound": "finite; out < 1e-2 and gradients < 5e-2 of float32"}


def check_sdpa_flash(device: str) -> Check:
    if device != "cuda":
        return {"name": "sdpa_flash", "passed": None, "skipped": "SDPA kernel choice is CUDA-only"}
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

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from causal_recall import FullCausalAttention
    full = FullCausalAttention(64, 4).cuda()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", torch.bfloat16):
        full(torch.randn(2, 8192, 64, device="cuda")).float().sum().backward()
    values["full_causal_flash_only_8k"] = "ran"
    ok = (values["flash_nodes_read_tokens_rel_err"] < 1e-2
          and values["efficient_masked_rel_err"] < 1e-2)
    return {"name": "sdpa_flash", "passed": ok, "values": values,
            "bound": "bf16 rel err < 1e-2; each restricted-kernel call runs"}


def _log_rows(path: Path) -> List[Dict[str, str]]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def check_train_resume(device: str) -> Check:
    with tempfile.TemporaryDirectory(prefix="gpu_check_run_") as tmp:
        return _train_resume(device, Path(tmp) / "run")


def _train_resume(device: str, out: Path) -> Check:
    base = [sys.executable, str(ROOT / "train.py"), "--config",
            str(ROOT / "configs" / "ring-transfer.yaml"), "data.nodes=50",
            "data.options.num_train=256", "data.options.num_valid=64",
            "data.options.num_test=64", "train.batch_size=32", f"train.device={device}",
            f"train.bf16={'true' if device == 'cuda' else 'false'}", "train.progress=false",
            f"out_dir={out}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    runs = []
    for extra in (["train.epochs=2"], ["train.epochs=3", "--resume"]):
        p = subprocess.run(base + extra, capture_output=True, text=True, env=env, timeout=600)
        runs.append(p)
        if p.returncode != 0:
            return {"name": "train_resume", "passed": False,
                    "values": {"stderr_tail": p.stderr[-2000:]}, "bound": "exit 0"}
    metrics = json.loads((out / "metrics.json").read_text())
    log = _log_rows(out / "log.csv")
    kind = metrics.get("peak_memory_kind")
    want = "cuda_max_allocated" if device == "cuda" else kind
    finite = all(math.isfinite(float(v)) for v in
                 (metrics["valid"].get("accuracy", float("nan")), metrics["test"].get("accuracy",
                                                                                   float("nan"))))
    values = {"epochs_completed": metrics.get("epochs_completed"),
              "log_epochs": [r.get("epoch") for r in log], "peak_memory_mb":
              metrics.get("peak_memory_mb"), "peak_memory_kind": kind,
              "test_accuracy": metrics["test"].get("accuracy"),
              "seconds_per_epoch": metrics.get("seconds_per_epoch")}
    ok = (metrics.get("epochs_completed") == 3 and len(log) == 3 and finite and kind == want)
    return {"name": "train_resume", "passed": ok, "values": values,
            "bound": "3 epochs in one log after resume, finite metrics, device peak memory"}


CHECKS = (check_brlconv_vs_float64, check_batch_invariance, check_causal_no_leak_conv,
          check_causal_no_leak_attention, check_bf16_autocast, check_sdpa_flash,
          check_train_resume)


def environment(device: str) -> Dict[str, Any]:
    import torch_geometric
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "torch_geometric": torch_geometric.__version__, "device": device,
           "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}
    if device == "cuda":
        env.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                   capability=".".join(map(str, torch.cuda.get_device_capability())))
    return env


def run(device: str, names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    results: List[Check] = []
    for fn in CHECKS:
        name = fn.__name__.removeprefix("check_")
        if names and name not in names:
            continue
        t0 = time.perf_counter()
        try:
            res = fn(device)
        except Exception as e:  # a crash is a failed check, reported with its cause
            res = {"name": name, "passed": False, "error": f"{type(e).__name__}: {e}",
                   "traceback": traceback.format_exc()[-3000:]}
        res["seconds"] = round(time.perf_counter() - t0, 2)
        results.append(res)
        status = "SKIP" if res.get("passed") is None else ("PASS" if res["passed"] else "FAIL")
        shown = res.get("values", res.get("error", res.get("skipped")))
        print(f"{status:4}  {res['name']:<26} {shown}", flush=True)
    return {"environment": environment(device), "checks": results,
            "command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:])}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--checks", nargs="*", default=None,
                   help="names of checks to run (default: all), e.g. bf16_autocast")
    p.add_argument("--json", default=None, help="write the results here (atomic)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda requested but torch.cuda.is_available() is False")
    known = [fn.__name__.removeprefix("check_") for fn in CHECKS]
    unknown = sorted(set(args.checks or []) - set(known))
    if unknown:
        p.error(f"unknown check(s) {unknown}; choose from {known}")
    payload = run(args.device, args.checks)
    if args.json:
        atomic_write_json(Path(args.json), payload)
    failed = [c["name"] for c in payload["checks"] if c.get("passed") is False]
    print("failed: " + (", ".join(failed) if failed else "none"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
