r"""Training: configs, config → benchmark and model (:mod:`.build`), the
:func:`fit` engine, checkpoints and distributed runs.

.. code-block:: python

    from brl_graph.train import fit
    metrics = fit("configs/ogbg-molhiv.yaml", overrides=["train.epochs=5"])
    metrics = fit({"train": {"epochs": 20}}, bench=my_from_pyg_bench)
"""
from .build import build_bench, build_model, count_parameters, dataset_options, model_kwargs
from .checkpoint import CheckpointError, load_checkpoint, load_model_checkpoint, save_checkpoint
from .config import DEFAULTS, ConfigError, load_config, parse_overrides, save_config
from .engine import fit
from .loop import ConstantPredictionWarning, NonFiniteLossError, evaluate, make_scheduler, predict
from .losses import task_loss
from .optim import WeightAverage, make_optimizer
from .stopping import StopRule, stop_rule

__all__ = [
    "fit",
    "load_config",
    "parse_overrides",
    "save_config",
    "DEFAULTS",
    "ConfigError",
    "CheckpointError",
    "NonFiniteLossError",
    "ConstantPredictionWarning",
    "build_bench",
    "build_model",
    "count_parameters",
    "dataset_options",
    "model_kwargs",
    "evaluate",
    "predict",
    "make_scheduler",
    "make_optimizer",
    "WeightAverage",
    "StopRule",
    "stop_rule",
    "load_checkpoint",
    "load_model_checkpoint",
    "save_checkpoint",
    "task_loss",
]
