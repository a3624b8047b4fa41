import os
from pathlib import Path

from brl_graph.runtime import prefer_passive_omp_wait

prefer_passive_omp_wait()  # before the test modules import torch

import pytest  # noqa: E402

SHARED_DATASETS = Path(os.environ.get(
    "BRL_SHARED_DATASETS",
    Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


@pytest.fixture
def shared_datasets() -> Path:
    """The read-only real-data folder (``../shared/datasets``); skips with the reason if absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real data folder {SHARED_DATASETS} is absent (set BRL_SHARED_DATASETS)")
    return SHARED_DATASETS
