"""Layers and models: :class:`BRLConv`, :class:`BRLAttention`, :class:`BRLGraphModel`."""
from brl_graph.nn.brl_attention import BRLAttention
from brl_graph.nn.brl_conv import BRLConv, fold_read
from brl_graph.nn.encoders import FeatureEncoder, PEEncoder
from brl_graph.nn.functional import prefix_softmax_pool
from brl_graph.nn.model import BRLGraphModel, make_local_conv
from brl_graph.nn.plan import BatchPlan, plan_batch
from brl_graph.nn.reservoir import TokenReservoir, fold_pool
from brl_graph.nn.token_mixer import TokenMixer

__all__ = ["BRLAttention", "BRLConv", "BRLGraphModel", "BatchPlan", "FeatureEncoder",
           "PEEncoder", "TokenMixer", "TokenReservoir", "fold_pool", "fold_read",
           "make_local_conv", "plan_batch", "prefix_softmax_pool"]
