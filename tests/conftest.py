import importlib.util
import os
import sys
from pathlib import Path

from brl_graph.runtime import prefer_passive_omp_wait

prefer_passive_omp_wait()  # before the test modules import torch

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get(
    "BRL_SHARED_DATASETS",
    Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


def pytest_addoption(parser):
    parser.addoption("--device-report", default=None, metavar="PATH",
                     help="write the device checks' measured values (tests/device) to PATH as "
                          "JSON, the gpu_check.json format read by experiments/make_results.py")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped, with the reason, where CUDA is absent."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="CUDA is not available on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_datasets() -> Path:
    """The read-only real-data folder (``../shared/datasets``); skips with the reason if absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real data folder {SHARED_DATASETS} is absent (set BRL_SHARED_DATASETS)")
    return SHARED_DATASETS


def load_script(folder: str, name: str):
    """Imports ``<folder>/<name>.py`` (a script folder, not a package) as a module
    and yields it; registered in ``sys.modules`` because dataclasses resolve their
    module by name."""
    spec = importlib.util.spec_from_file_location(f"{name}_{folder}_script",
                                                  REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="session")
def script_loader():
    """:func:`load_script`, for module-scoped fixtures of the script folders' tests."""
    return load_script


@pytest.fixture
def one_thread():
    """Runs a test with one torch thread: several OpenMP threads per process
    oversubscribe a shared machine and slow small ops down by an order of magnitude."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
