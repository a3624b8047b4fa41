import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str):
    """Imports ``benchmarks/<name>.py`` (a script folder, not a package) as a
    module and yields it; registered in ``sys.modules`` because dataclasses
    resolve their module by name."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="session")
def benchmark_script():
    """The :func:`load_script` generator, for module-scoped fixtures."""
    return load_script
