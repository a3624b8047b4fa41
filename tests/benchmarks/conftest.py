import functools

import pytest


@pytest.fixture(scope="session")
def benchmark_script(script_loader):
    """Loads ``benchmarks/<name>.py``: ``yield from benchmark_script("<name>")``."""
    return functools.partial(script_loader, "benchmarks")
