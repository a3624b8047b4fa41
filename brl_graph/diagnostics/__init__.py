r"""Over-squashing diagnostics: effective resistance of a graph's geometry,
Jacobian sensitivity of a model, with and without BRL's global tokens, and
what those tokens pool.

Run ``python -m brl_graph.diagnostics --help`` for the dataset report.
"""
from brl_graph.diagnostics._graph import hop_distances
from brl_graph.diagnostics.jacobian import (jacobian_mass_beyond, jacobian_sensitivity,
                                            jacobian_sensitivity_estimate,
                                            pyg_total_influence, sensitivity_by_distance)
from brl_graph.diagnostics.resistance import (add_global_tokens, commute_time,
                                              component_total_resistance,
                                              effective_resistance, resistance_by_hop,
                                              resistance_summary, total_effective_resistance)
from brl_graph.diagnostics.tokens import TokenFocus, token_attention, token_focus

__all__ = [
    "effective_resistance",
    "total_effective_resistance",
    "component_total_resistance",
    "add_global_tokens",
    "commute_time",
    "resistance_by_hop",
    "resistance_summary",
    "hop_distances",
    "jacobian_sensitivity",
    "jacobian_sensitivity_estimate",
    "sensitivity_by_distance",
    "jacobian_mass_beyond",
    "pyg_total_influence",
    "token_attention",
    "token_focus",
    "TokenFocus",
]
