"""Names of the graph attributes that the data loaders write and the model reads.

One definition, so a loader and the model cannot drift apart on a spelling.
This module imports nothing, so both :mod:`brl_graph.data` and
:mod:`brl_graph.nn` can depend on it.
"""
from typing import Dict

#: Random-walk structural encoding, ``[N, rwse_dim]``.
RWSE = "rwse"
#: Laplacian eigenvector positional encoding, ``[N, lap_pe_dim]``.
LAP_PE = "lap_pe"
#: Boolean node mask marking each graph's readout node (one per graph).
READOUT_MASK = "readout_mask"

#: PE kind (as in ``pe="rwse"`` / ``model.pe``) -> the attribute it fills.
PE_ATTRS: Dict[str, str] = {"rwse": RWSE, "lap": LAP_PE}
#: The PE kinds, in a fixed order.
PE_KINDS = tuple(PE_ATTRS)
