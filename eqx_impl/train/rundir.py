"""Reopen a finished or interrupted run from its directory (for `sample`, `evaluate`, `plot`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from eqx_impl.train.config import Config, ConfigError
from eqx_impl.train.config_io import load_config

if TYPE_CHECKING:  # load_run imports them: run_config alone does not load JAX
    from eqx_impl.train.loop import Setup
    from eqx_impl.train.state import TrainState

__all__ = ["load_run", "run_config"]


def run_config(run_dir: str | Path, overrides=()) -> Config:
    """The resolved `config.yaml` of a run directory, with optional overrides (`eval.*`).

    **Returns:** a `Config` whose `train.run_dir` is `run_dir`.
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise ConfigError(f"Run directory {str(run_dir)!r} does not exist; train first.")
    if not path.is_file():
        raise ConfigError(
            f"{str(run_dir)!r} is not a run directory (no config.yaml); pass the --run-dir that `train` wrote."
        )
    config = load_config(path, overrides)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, run_dir=str(run_dir)))


def load_run(
    run_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    overrides=(),
    report: Callable[[str], None] | None = None,
) -> tuple[Setup, TrainState, Path]:
    """Rebuild a run from its config and restore a checkpoint (`checkpoint`, else the newest
    usable one; `report` gets the one-line notice of each unusable newer checkpoint, see
    `checkpoint.restore_latest`).

    **Returns:** `(setup, state, checkpoint path)`.
    """
    from eqx_impl.train import checkpoint as ckpt
    from eqx_impl.train.loop import build

    config = run_config(run_dir, overrides)
    # Sampling and evaluation run on one device, whatever devices the run trained on.
    setup = build(dataclasses.replace(config, train=dataclasses.replace(config.train, data_parallel=False)))
    if checkpoint is not None:
        path = Path(checkpoint)
        return setup, ckpt.load_checkpoint(path, setup.initial), path
    state, path = ckpt.restore_latest(Path(run_dir) / "checkpoints", setup.initial, report=report)
    if state is None or path is None:
        raise ckpt.CheckpointError(f"No checkpoint in {str(Path(run_dir) / 'checkpoints')!r}; train (or resume) first.")
    return setup, state, path
