import json
import math
import os

import numpy as np
import pytest
import torch

from brl_graph.io import (atomic_write, atomic_write_json, atomic_write_text, file_mode, jsonable,
                          write_json)


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert os.stat(path).st_mode & 0o777 == file_mode()
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.bin"
    atomic_write(path, lambda f: f.write(b"good"))

    def broken(f):
        f.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        atomic_write(path, broken)
    assert path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def _increment_many(path: str, times: int) -> None:
    from brl_graph.io import update_json_locked

    for _ in range(times):
        update_json_locked(path, lambda d: {"n": d.get("n", 0) + 1})


def test_update_json_locked_loses_no_update_across_processes(tmp_path):
    import multiprocessing as mp

    path = str(tmp_path / "counter.json")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_increment_many, args=(path, 25)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    import json

    assert json.loads(open(path).read()) == {"n": 75}


def test_update_json_locked_default_and_failed_update_keeps_file(tmp_path):
    from brl_graph.io import update_json_locked

    path = tmp_path / "rows.json"
    assert update_json_locked(path, lambda d: d + [1], default=list) == [1]

    def broken(d):
        raise ValueError("not a rows file")

    with pytest.raises(ValueError, match="not a rows file"):
        update_json_locked(path, broken)
    assert path.read_text().split() == ["[", "1", "]"]


@pytest.mark.parametrize("write", [write_json, atomic_write_json])
def test_json_writers_replace_non_finite(tmp_path, write):
    path = tmp_path / "r.json"
    write(path, {"a": math.inf, "b": [1.0, math.nan], 3: {"c": np.float32(2.0)}})
    # Strict JSON: Python's reader would take a bare NaN token, so refuse it explicitly.
    strict = json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(token))
    assert strict == {"a": None, "b": [1.0, None], "3": {"c": 2.0}}
    assert not list(tmp_path.glob(".*tmp"))


def test_jsonable_converts_numpy_and_torch():
    out = jsonable({"n": np.float32(0.5), "i": np.int64(3), "t": torch.tensor([1.0, math.nan]),
                    "nan": np.float64("nan"), "flag": True, "none": None, "s": "x"})
    assert out == {"n": 0.5, "i": 3, "t": [1.0, None], "nan": None, "flag": True,
                   "none": None, "s": "x"}
    assert type(out["i"]) is int and type(out["flag"]) is bool
