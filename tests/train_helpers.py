"""Small configurations for the training tests: a tiny MLP on the 2-D Gaussian mixture."""

from __future__ import annotations

from eqx_impl.train import Config, config_from_dict


def tiny_config(
    *,
    schedule: str = "adaptive",
    schedule_args: dict | None = None,
    weighting: str = "sigmoid",
    weighting_args: dict | None = None,
    target: str = "eps",
    steps: int = 20,
    steps_per_dispatch: int = 1,
    batch_size: int = 32,
    width: int = 32,
    seed: int = 0,
    lr: float = 3e-3,
    **train_args,
) -> Config:
    return config_from_dict(
        {
            "data": {"name": "gmm", "args": {"num_train": 512, "num_test": 256, "seed": 0}},
            "model": {"name": "mlp", "args": {"width": width, "depth": 2, "embed_dim": 16, "num_features": 8}},
            "objective": {
                "weighting": weighting,
                "weighting_args": weighting_args or {},
                "schedule": schedule,
                "schedule_args": schedule_args or {},
                "target": target,
                "logsnr_min": -10.0,
                "logsnr_max": 10.0,
            },
            "optim": {"lr": lr, "warmup_steps": 5, "ema_decay": 0.99},
            "train": {
                "steps": steps,
                "batch_size": batch_size,
                "seed": seed,
                "steps_per_dispatch": steps_per_dispatch,
                "log_every": 5,
                "checkpoint_every": 10,
                "preflight": False,
                **train_args,
            },
            "eval": {"num_samples": 64, "sampling_steps": 4, "metrics": [], "batch_size": 64},
        }
    )
