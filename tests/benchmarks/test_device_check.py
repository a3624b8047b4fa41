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


def run_tree_step(out: Path, **env: str) -> str:
    environ = dict(os.environ, TREE_DEVICE="cpu", TREE_SIZES="2", TREE_SECONDS="120", **env)
    # the script calls `python`: make it this interpreter
    environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + environ.get("PATH", "")
    done = subprocess.run(["bash", str(SCRIPT), str(out), "tree"], env=environ, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def unpack(out: Path, dest: Path) -> Path:
    parts = sorted(out.glob("tree_r2.tar.part-*"))
    assert parts, f"no tar parts in {sorted(p.name for p in out.iterdir())}"
    whole = dest / "tree_r2.tar"
    whole.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(whole) as tar:
        tar.extractall(dest / "runs", filter="data")
    (folder,) = (dest / "runs").iterdir()
    return folder


@pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/device_check.sh is not in this checkout")
def test_tree_step_returns_run_folders_that_resume(tmp_path):
    first = tmp_path / "lease1"
    log = run_tree_step(first)
    assert "--device cpu" in log and "tree-published" in log
    # only flat files come back: no lock file beside the JSON, the run folder as tar parts
    assert not (first / "long_range_gpu.json.lock").exists()
    rows = json.loads((first / "long_range_gpu.json").read_text())["rows"]
    assert [(r["task"], r["size"], r["model"], r["finished"]) for r in rows] == [
        ("tree-published", 2, "brl", True)]

    folder = unpack(first, tmp_path)
    assert folder.name.startswith("tree-published-2-brl-s0-published-head1-log10")
    assert (folder / "checkpoints" / "last.pt").is_file()

    second = tmp_path / "lease2"
    log = run_tree_step(second, TREE_RUNS=str(tmp_path / "runs"))
    assert "resuming after epoch" in log, log[-2000:]
    assert json.loads((second / "long_range_gpu.json").read_text())["rows"][0]["command"].endswith(
        f"out_dir={folder}")
