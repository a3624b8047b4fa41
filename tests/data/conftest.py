"""Fixtures for the data tests: read-only copies of the real data and
session-wide caches, so each real dataset is processed once per session."""
import os
import shutil
import stat
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

# Same location rule as the ``shared_datasets`` fixture of tests/conftest.py;
# tests that use the copies also request that fixture, which skips when the
# real data is absent.
_SHARED = Path(os.environ.get(
    "BRL_SHARED_DATASETS",
    Path(__file__).resolve().parents[2].parent / "shared" / "datasets"))

_COPIED = ("ogbg_molhiv", "ogbg_molesol", "peptides-functional", "moleculenet")


def make_read_only(root: Path) -> None:
    """``chmod -R a-w``."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            p.chmod(p.stat().st_mode & ~0o222)
    root.chmod(root.stat().st_mode & ~0o222)


def make_writable(root: Path) -> None:
    root.chmod(root.stat().st_mode | stat.S_IWUSR)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def split_labels(ds) -> "torch.Tensor":
    """Graph labels of a split straight from the collated storage (reading
    tens of thousands of graphs one by one is slow); the first is checked
    against the public per-graph access."""
    import torch
    y = ds._data.y[torch.tensor(ds.indices())]
    assert torch.equal(ds[0].y, y[:1])
    return y


def snapshot(root: Path) -> List[Tuple[str, int, int]]:
    """Every path under ``root`` with size and mtime: proves nothing was
    written (also when tests run as root, who ignores permission bits)."""
    out = []
    for p in sorted(root.rglob("*")):
        st = p.stat()
        out.append((str(p.relative_to(root)), st.st_size, st.st_mtime_ns))
    return out


@pytest.fixture(scope="session")
def _readonly_copy(tmp_path_factory):
    if not _SHARED.is_dir():
        yield None
        return
    root = tmp_path_factory.mktemp("ro_root")
    for name in _COPIED:
        if (_SHARED / name).exists():
            shutil.copytree(_SHARED / name, root / name)
    make_read_only(root)
    yield root
    make_writable(root)


@pytest.fixture
def ro_root(shared_datasets, _readonly_copy) -> Path:
    """A read-only temporary copy of the real data (skips if absent)."""
    return _readonly_copy


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """A cache folder shared by the whole session."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def _loaded() -> Dict[str, object]:
    return {}


@pytest.fixture
def load_once(ro_root, session_cache, _loaded):
    """``load_once(name, **options)``: loads from the read-only copy into the
    session cache, once per (name, options)."""
    from brl_graph.data import load_dataset

    def load(name, **options):
        key = (name, repr(sorted(options.items())))
        if key not in _loaded:
            _loaded[key] = load_dataset(name, root=ro_root,
                                        cache_dir=session_cache, **options)
        return _loaded[key]
    return load
