r"""The results document, ``docs/RESULTS.md``, generated from ``benchmarks/results/*.json``.

Every number in the document is read from one of the JSON files written by
the experiment drivers and micro-benchmarks, next to the command that produced
it, so the document and the data cannot drift apart. A missing file is
reported as "not run"; it never stops the document from being written.

- :mod:`.load` reads the files and makes every row's model label current;
- one module per section computes its numbers and verdicts and writes its
  prose: :mod:`.scaling`, :mod:`.long_range`, :mod:`.graph_property`,
  :mod:`.causal` (with :mod:`.recall_modes`), :mod:`.oversquashing`, :mod:`.gpu`;
- :mod:`.document` puts them in order.

``python experiments/make_results.py`` is the command line.
"""
from brl_graph.results.document import render
from brl_graph.results.load import load_results

__all__ = ["load_results", "render"]
