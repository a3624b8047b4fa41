import pytest


@pytest.fixture(scope="module")
def lt(benchmark_script):
    yield from benchmark_script("loader_time")


def test_prints_both_loaders_per_depth(lt, capsys):
    assert lt.main(["--depths", "2", "--batch-size", "16", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "batches checked equal" in out
    line = next(line for line in out.splitlines() if line.startswith("r = 2"))
    assert "pyg DataLoader" in line and "SharedStructureLoader" in line and line.endswith("x")


def test_stops_when_the_batches_differ(lt, monkeypatch):
    class Shifted(lt.SharedStructureLoader):
        def collate(self, positions):
            batch = super().collate(positions)
            batch.y = batch.y + 1
            return batch

    monkeypatch.setattr(lt, "LOADERS", [lt.DataLoader, Shifted])
    with pytest.raises(SystemExit, match="differ in 'y'"):
        lt.main(["--depths", "2", "--batch-size", "16", "--rounds", "1"])


def test_refuses_an_empty_budget(lt):
    with pytest.raises(SystemExit, match="at least 1"):
        lt.main(["--depths", "2", "--rounds", "0"])
