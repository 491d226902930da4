"""Training: configs, the jitted step, checkpoints, the pre-flight check and the loop.

from eqx_impl.train import load_config, train
result = train(load_config("configs/gmm.yaml", ["train.steps=2000"]))
"""

from typing import TYPE_CHECKING

from eqx_impl._lazy import lazy_exports

# Imported on first use: `eqx_impl.train.config` (the CLI's config checks) loads no JAX.
if TYPE_CHECKING:
    from eqx_impl.train.checkpoint import (
        CheckpointError,
        list_checkpoints,
        load_checkpoint,
        restore_latest,
        save_checkpoint,
    )
    from eqx_impl.train.config import (
        Config,
        ConfigError,
        DataConfig,
        EvalConfig,
        ModelConfig,
        ObjectiveConfig,
        OptimConfig,
        TrainConfig,
    )
    from eqx_impl.train.config_io import apply_overrides, config_from_dict, config_to_dict, dump_config, load_config
    from eqx_impl.train.fit import TrainingDiverged
    from eqx_impl.train.loop import Setup, TrainResult, build, train
    from eqx_impl.train.preflight import PreflightError, PreflightReport, run_preflight
    from eqx_impl.train.state import TrainState
    from eqx_impl.train.step import Trainer, batch_losses, lower_steps, run_steps, stratified_uniforms

__getattr__, __dir__, _ = lazy_exports(__name__, __file__)

__all__ = [
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "PreflightError",
    "PreflightReport",
    "Setup",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TrainingDiverged",
    "apply_overrides",
    "batch_losses",
    "build",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "list_checkpoints",
    "load_checkpoint",
    "restore_latest",
    "run_preflight",
    "lower_steps",
    "run_steps",
    "save_checkpoint",
    "stratified_uniforms",
    "train",
]
