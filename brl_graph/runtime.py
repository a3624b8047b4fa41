"""Process settings for the command-line entry points (``train.py``, the tests).

Imports nothing heavy, so it can run before torch is loaded.
"""
import os


def prefer_passive_omp_wait() -> None:
    """Makes idle OpenMP threads sleep instead of spin, unless the user chose.

    Spinning OpenMP workers make PyTorch on a busy CPU (cores shared with other
    processes) up to 100x slower; passive waiting costs little on an idle
    machine. OpenMP reads the variable once, when torch loads its runtime: call
    this before the first ``import torch``. An explicit ``OMP_WAIT_POLICY`` wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
