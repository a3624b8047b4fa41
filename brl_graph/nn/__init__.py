"""Layers and models: :class:`BRLConv`, :class:`BRLAttention`, :class:`BRLGraphModel`."""
from brl_graph.nn.brl_attention import BRLAttention
from brl_graph.nn.brl_conv import BRLConv
from brl_graph.nn.encoders import FeatureEncoder, PEEncoder
from brl_graph.nn.functional import prefix_softmax_pool
from brl_graph.nn.model import BRLGraphModel, make_local_conv
from brl_graph.nn.token_mixer import TokenMixer

__all__ = ["BRLAttention", "BRLConv", "BRLGraphModel", "FeatureEncoder", "PEEncoder",
           "TokenMixer", "make_local_conv", "prefix_softmax_pool"]
