"""brl_graph: graph transformers with Bottleneck Regularized Linear (BRL) attention."""

__version__ = "0.1.0"
