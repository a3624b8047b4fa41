r"""Raw files: where they are, how they are checked and downloaded.

Rules (see ``datasets/README.md``):

* ``root`` holds the raw files in their official layout. It defaults to
  ``$BRL_DATA``, else the project's ``datasets/`` folder (a source checkout),
  else ``./datasets``. It may be read-only: nothing here writes into it,
  except a download when files are missing and the folder is writable.
* A missing or corrupt file raises :class:`RawDataError` naming the expected
  path and the official URL. Known checksums are verified, before a file is
  parsed (or unpickled) and after every download.
* Nothing prompts on stdin.
"""
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

PathLike = Union[str, os.PathLike]


class RawDataError(RuntimeError):
    """A raw file is missing, corrupt or could not be downloaded."""


@dataclass(frozen=True)
class RawFile:
    r"""One raw file of a dataset.

    Args:
        path: location relative to the dataset's folder.
        url: the official address of this file (or of the archive it is in).
        md5: known MD5 hex digest, if any.
        sha256: known SHA-256 hex digest, if any.
    """
    path: str
    url: str
    md5: Optional[str] = None
    sha256: Optional[str] = None


def default_root() -> Path:
    """``$BRL_DATA``, else ``<project>/datasets`` in a source checkout,
    else ``./datasets``."""
    if os.environ.get("BRL_DATA"):
        return Path(os.environ["BRL_DATA"]).expanduser()
    project = Path(__file__).resolve().parents[2]
    if (project / "setup.py").is_file() or (project / "datasets").is_dir():
        return project / "datasets"
    return Path.cwd() / "datasets"


def resolve_root(root: Optional[PathLike]) -> Path:
    """``root`` as a path, or :func:`default_root` when ``None``."""
    return Path(root).expanduser() if root is not None else default_root()


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, spec: RawFile) -> None:
    """Checks ``path`` against the known checksums of ``spec``.

    Raises:
        RawDataError: naming the file, the expected and actual digests and
            the official URL.
    """
    for algorithm, expected in (("md5", spec.md5), ("sha256", spec.sha256)):
        if expected is None:
            continue
        actual = file_digest(path, algorithm)
        if actual != expected:
            raise RawDataError(
                f"{path} is corrupt: its {algorithm} is {actual}, expected "
                f"{expected}. Delete it and download it again from "
                f"{spec.url}")


def missing_error(folder: Path, missing: Sequence[RawFile], why: str) -> RawDataError:
    """A :class:`RawDataError` listing each missing file with its URL."""
    lines = "\n".join(f"  {folder / f.path}  (official URL: {f.url})"
                      for f in missing)
    return RawDataError(f"missing raw file(s):\n{lines}\n{why}")


def is_writable(folder: Path) -> bool:
    """Whether files may be created in ``folder`` or in its nearest existing
    ancestor (the folder is created on download).

    A folder without any write permission bit counts as read-only even for
    the super-user, who could write anyway: the bits state the owner's intent.
    """
    p = Path(folder)
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        return False
    return bool(p.stat().st_mode & 0o222)


@contextmanager
def removed_on_failure(folder: Path) -> Iterator[None]:
    """Deletes ``folder`` if the body fails and the folder did not exist
    before, so a failed download leaves nothing behind."""
    existed = Path(folder).exists()
    try:
        yield
    except BaseException:
        if not existed and Path(folder).exists():
            shutil.rmtree(folder, ignore_errors=True)
        raise


def download_file(url: str, target: Path, spec: Optional[RawFile] = None) -> Path:
    """Downloads ``url`` to ``target`` atomically and verifies ``spec``.

    Raises:
        RawDataError: when the download fails or the checksum differs.
    """
    from torch_geometric.data import download_url

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=target.parent, prefix=".download-"))
    try:
        try:
            got = Path(download_url(url, str(tmp_dir), log=False))
        except Exception as exc:
            raise RawDataError(f"downloading {url} to {target} failed: "
                               f"{exc}") from exc
        if spec is not None:
            verify_file(got, spec)
        os.replace(got, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def ensure_files(folder: Path, files: Sequence[RawFile], download: bool,
                 verify: bool = True) -> None:
    r"""Makes sure each of ``files`` exists under ``folder``.

    Missing files are downloaded one by one from their URL when ``download``
    is set and ``folder`` is writable; otherwise the error names them.
    Present files are checked against known checksums when ``verify``.
    """
    missing = [f for f in files if not (folder / f.path).is_file()]
    if missing:
        if not download:
            raise missing_error(folder, missing,
                                "Downloads are disabled (download=False).")
        if not is_writable(folder):
            raise missing_error(
                folder, missing, f"{folder} is not writable, so they cannot "
                "be downloaded there; download them yourself or pass a "
                "writable root=.")
        with removed_on_failure(folder):
            for f in missing:
                download_file(f.url, folder / f.path, f)
    if verify:
        for f in files:
            if f not in missing:
                verify_file(folder / f.path, f)
