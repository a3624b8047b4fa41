import os

# Spinning OpenMP workers starve each other on small shared CPU machines (a
# training step measured 100x slower); set before torch loads its runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

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
