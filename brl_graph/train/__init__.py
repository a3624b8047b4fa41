r"""Training: configs, the :func:`fit` engine, checkpoints and distributed runs.

.. code-block:: python

    from brl_graph.train import fit
    metrics = fit("configs/ogbg-molhiv.yaml", overrides=["train.epochs=5"])
    metrics = fit({"train": {"epochs": 20}}, bench=my_from_pyg_bench)
"""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import DEFAULTS, ConfigError, load_config, parse_overrides, save_config
from .engine import (NonFiniteLossError, build_bench, build_model, count_parameters, evaluate,
                     fit, make_scheduler, predict)
from .losses import task_loss
from .optim import make_optimizer

__all__ = [
    "fit",
    "load_config",
    "parse_overrides",
    "save_config",
    "DEFAULTS",
    "ConfigError",
    "CheckpointError",
    "NonFiniteLossError",
    "build_bench",
    "build_model",
    "count_parameters",
    "evaluate",
    "predict",
    "make_scheduler",
    "make_optimizer",
    "load_checkpoint",
    "save_checkpoint",
    "task_loss",
]
