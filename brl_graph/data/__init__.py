r"""Datasets for brl_graph: OGB molecules, LRGB, synthetic long-range tasks
and bring-your-own data, offline-first.

.. code-block:: python

    from brl_graph.data import load_dataset
    bench = load_dataset('ogbg-molhiv')
    bench.train, bench.valid, bench.test   # PyG datasets
    bench.evaluate(y_true, y_pred)         # {'rocauc': ...}

See ``datasets/README.md`` for the folder layout and the cache rules.
"""
from .api import available_datasets, load_dataset
from .benchmark import Benchmark, from_pyg
from .loader import SharedStructureLoader
from .metrics import HIGHER_IS_BETTER, compute_metric, filtered_mrr, macro_f1
from .raw import RawDataError

__all__ = [
    "Benchmark",
    "HIGHER_IS_BETTER",
    "RawDataError",
    "SharedStructureLoader",
    "available_datasets",
    "compute_metric",
    "filtered_mrr",
    "from_pyg",
    "load_dataset",
    "macro_f1",
]
