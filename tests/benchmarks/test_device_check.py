"""``benchmarks/device_check.sh``'s ``tree`` step, tried on the CPU at r = 2.

On a lease the step trains r = 5 and 6 on the GPU and hands each run folder back
as a split tar (a lease returns files at most two folders down, 8 at most). What
must hold here is the round trip: the parts unpack into a run folder with its
checkpoint, and the step, pointed at the unpacked folders, resumes them.
"""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"


def run_tree_step(out: Path, runs: Path, **env: str) -> str:
    environ = dict(os.environ, TREE_DEVICE="cpu", TREE_SIZES="2", TREE_SECONDS="240",
                   TREE_RUNS=str(runs), **env)
    # the script calls `python`: make it this interpreter, whatever sits beside it
    bin_dir = out.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "python"
    if not wrapper.exists():  # a wrapper, not a link: a link to a venv's python loses the venv
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        wrapper.chmod(0o755)
    environ["PATH"] = str(bin_dir) + os.pathsep + environ.get("PATH", "")
    done = subprocess.run(["bash", str(SCRIPT), str(out), "tree"], env=environ, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    log = done.stdout + done.stderr
    # the script goes on past a failed step; each step's status is in its log
    assert done.returncode == 0 and "### exit 0" in log and "### exit 1" not in log, log[-3000:]
    return log


def returned_files(out: Path) -> list:
    """What a lease hands back: plain files at most two folders below OUT."""
    return [p for p in out.rglob("*") if p.is_file() and len(p.relative_to(out).parts) <= 3]


def unpack(out: Path, dest: Path) -> list:
    """Joins the tar parts and unpacks them into ``dest``; the names of the members' top folders."""
    parts = sorted(out.glob("tree_r2.tar.part-*"))
    assert parts, f"no tar parts in {sorted(p.name for p in out.iterdir())}"
    whole = out.parent / "tree_r2.tar"
    whole.write_bytes(b"".join(p.read_bytes() for p in parts))
    # filter= (safe extraction) exists from Python 3.11.4 / 3.10.12 on
    kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(whole) as tar:
        tops = sorted({Path(m.name).parts[0] for m in tar.getmembers()})
        tar.extractall(dest, **kwargs)
    return tops


@pytest.mark.slow
def test_tree_step_returns_run_folders_that_resume(tmp_path):
    first = tmp_path / "lease1"
    log = run_tree_step(first, tmp_path / "runs1")
    assert "--device cpu" in log and "tree-published" in log
    # everything comes back within the lease's limits: no lock file, no run folder in OUT
    files = returned_files(first)
    assert len(files) <= 8 and not (first / "long_range_gpu.json.lock").exists(), files
    assert not any(p.relative_to(first).parts[0] == "tree_runs" for p in files), files
    rows = json.loads((first / "long_range_gpu.json").read_text())["rows"]
    assert [(r["task"], r["size"], r["model"], r["finished"]) for r in rows] == [
        ("tree-published", 2, "brl", True)]

    # the next lease: the folders unpacked, beside an older run of another log interval
    runs = tmp_path / "runs2"
    tops = unpack(first, runs)
    assert len(tops) == 1 and tops[0].startswith("tree-published-2-brl-s0-published-head1-log10")
    folder = runs / tops[0]
    assert (folder / "checkpoints" / "last.pt").is_file()
    (runs / "tree-published-2-brl-s0-published-head1-log20" / "checkpoints").mkdir(parents=True)

    second = tmp_path / "lease2"
    log = run_tree_step(second, runs)
    assert "resuming after epoch" in log, log[-2000:]
    assert json.loads((second / "long_range_gpu.json").read_text())["rows"][0]["command"].endswith(
        f"out_dir={folder}")
    # only this step's folder is packed, not the older one beside it
    assert unpack(second, tmp_path / "runs3") == tops
