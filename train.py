"""Train a BRL graph transformer (or its MPNN-only twin) on a benchmark.

    python train.py                                        # offline default: configs/default.yaml
    python train.py --config configs/ogbg-molhiv.yaml      # the OGB benchmark
    python train.py --config configs/peptides-func.yaml data.root=/data train.epochs=50 model.num_tokens=0
    python train.py --config ... out_dir=runs/x --resume   # continue an interrupted run
    torchrun --nproc_per_node=4 train.py --config ...      # several GPUs (or CPU processes)

A thin command line over :func:`brl_graph.train.fit`; every ``key=value``
after the options overrides the config (values are YAML: ``train.seeds=[0,1,2,3]``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script, Python puts this file's folder (the checkout) first on the
# import path, so the package imports from here even when it is not installed.
from brl_graph.runtime import prefer_passive_omp_wait

HERE = Path(__file__).resolve().parent

prefer_passive_omp_wait()  # before anything imports torch

DEFAULT_CONFIG = HERE / "configs" / "default.yaml"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Train a BRL graph transformer; results go to out_dir/.",
        epilog="Overrides: dotted key=value pairs, e.g. train.epochs=50 model.num_tokens=0 "
               "data.root=/data out_dir=runs/x")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="YAML config (default: configs/default.yaml, an offline long-range task)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from out_dir/checkpoints/last.pt")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again in an out_dir that already holds a run")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)

    from brl_graph.data import RawDataError
    from brl_graph.train import CheckpointError, ConfigError, NonFiniteLossError, fit

    try:
        fit(args.config, resume=args.resume, overwrite=args.overwrite, overrides=args.overrides)
    except (ConfigError, CheckpointError, NonFiniteLossError, RawDataError, FileExistsError,
            FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
