import pytest

from brl_graph.data import available_datasets, load_dataset


def test_available_names():
    names = available_datasets()
    for n in ("ogbg-molhiv", "ogbg-molesol", "peptides-func", "peptides-struct", "pascalvoc-sp",
              "coco-sp", "pcqm-contact", "tree-neighbors-match", "ring-transfer", "smiles-csv"):
        assert n in names


def test_unknown_name_and_option():
    with pytest.raises(KeyError, match="ogbg-molhiv"):
        load_dataset("molhiv")
    with pytest.raises(ValueError, match="unknown option.*'depht'"):
        load_dataset("tree-neighbors-match", depht=3)
    with pytest.raises(ValueError, match="unknown pe"):
        load_dataset("ring-transfer", nodes=6, pe="spd")


def test_default_root_from_environment(monkeypatch, tmp_path):
    from brl_graph.data.raw import default_root, resolve_root
    from brl_graph.data.cache import default_cache_dir
    monkeypatch.setenv("BRL_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("BRL_CACHE", str(tmp_path / "c"))
    assert default_root() == tmp_path / "d" == resolve_root(None)
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BRL_DATA")
    assert default_root().name == "datasets"


def test_synthetic_datasets_need_no_ogb(monkeypatch):
    import brl_graph.data.api as api

    def missing():
        raise ImportError("the ogb package is required for ogbg-* datasets")

    monkeypatch.setattr(api, "ogb_mol_names", missing)
    names = api.available_datasets()
    assert "ring-transfer" in names and not any(n.startswith("ogbg-") for n in names)
    bench = api.load_dataset("ring-transfer", nodes=6)
    assert bench.name == "ring-transfer" and len(bench.train) > 0
    with pytest.raises(ImportError, match="ogb package"):
        api.load_dataset("ogbg-molhiv")
    with pytest.raises(KeyError, match="unknown dataset"):
        api.load_dataset("no-such-set")
