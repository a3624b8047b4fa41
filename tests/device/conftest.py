"""The device checks' report: with ``--device-report PATH`` every check's measured
values are written to PATH in the ``gpu_check.json`` format that
``experiments/make_results.py`` reads (section 7 of ``docs/RESULTS.md``)."""
import os
import platform
from typing import Any, Dict, List, Optional

import pytest
import torch

from brl_graph.io import atomic_write_json


class DeviceReport:
    """The checks run in this session: name, device, pass/fail, values and bound."""

    def __init__(self) -> None:
        self.checks: List[Dict[str, Any]] = []

    def record(self, device: str, name: str, passed: bool, values: Dict[str, Any],
               bound: str) -> bool:
        """Keeps one check's outcome; returns ``passed`` for the test to assert."""
        self.checks.append({"name": name, "device": device, "passed": bool(passed),
                            "values": values, "bound": bound})
        return bool(passed)


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


@pytest.fixture(scope="session")
def device_report(request):
    report = DeviceReport()
    yield report
    path: Optional[str] = request.config.getoption("--device-report")
    if path and report.checks:
        device = "cuda" if any(c["device"] == "cuda" for c in report.checks) else "cpu"
        args = " ".join(request.config.invocation_params.args)
        atomic_write_json(path, {"environment": environment(device), "checks": report.checks,
                                 "command": f"python -m pytest {args}"})


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> str:
    """Each check runs on the CPU and, marked ``cuda``, on the GPU where there is one."""
    return request.param
