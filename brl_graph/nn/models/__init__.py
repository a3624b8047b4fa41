"""Models built from the layers for experiments beyond graphs: :class:`RecallLM`."""
from brl_graph.nn.models.recall_lm import (ATTENTION_KINDS, BOS, Block, FullCausalAttention,
                                           LinearCausalAttention, RecallLM, make_attention)

__all__ = ["ATTENTION_KINDS", "BOS", "Block", "FullCausalAttention", "LinearCausalAttention",
           "RecallLM", "make_attention"]
