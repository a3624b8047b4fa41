import functools

import pytest


@pytest.fixture(scope="session")
def experiment_script(script_loader):
    """Loads ``experiments/<name>.py``: ``yield from experiment_script("<name>")``."""
    return functools.partial(script_loader, "experiments")
