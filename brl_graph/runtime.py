"""Process settings for the command-line entry points (``train.py``, the tests).

Imports nothing heavy, so it can run before torch is loaded.
"""
import os
from contextlib import contextmanager
from typing import Iterator, Optional


def prefer_passive_omp_wait() -> None:
    """Makes idle OpenMP threads sleep instead of spin, unless the user chose.

    Spinning OpenMP workers make PyTorch on a busy CPU (cores shared with other
    processes) up to 100x slower; passive waiting costs little on an idle
    machine. OpenMP reads the variable once, when torch loads its runtime: call
    this before the first ``import torch``. An explicit ``OMP_WAIT_POLICY`` wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def machine_text(device: str, threads: int) -> str:
    """What a results file's rows ran on (its ``machine`` entry), read from this
    machine, not written in by hand: a row made on a GPU box or with more threads
    then says so."""
    if device.startswith("cuda"):
        import torch

        gpu = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "a CUDA GPU"
        return f"{gpu}, {os.cpu_count()} CPU cores"
    return f"{os.cpu_count()}-core CPU, no GPU, {threads} thread(s) per run"


@contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[None]:
    """Runs the block with ``threads`` torch threads (``None``: as they are), and
    gives the caller its own count back however the block ends."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
