import contextlib

import pytest
import torch

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # then only torch's pool is limited
    threadpool_limits = None


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run many tiny solves and backward passes, which threads only slow
    down on a shared machine (torch's and BLAS's pools contend for the same cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    blas = threadpool_limits(1) if threadpool_limits else contextlib.nullcontext()
    with blas:
        yield
    torch.set_num_threads(before)
