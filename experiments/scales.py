"""The study's sizes: `smoke` (a check that the pipeline runs, minutes), `cpu` (the study,
sized for 90 minutes on 2 CPU cores) and `gpu` (the main job's U-Net and step count).

Every scale runs the same arms, the same seeds design and the same tests; only the networks,
step counts and sample counts differ.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCALES", "scale"]

_OPTIM = dict(
    lr=2e-3, warmup_steps=100, lr_decay="cosine", final_lr_ratio=0.05, weight_decay=1e-4, grad_clip=1.0, ema_decay=0.999
)


def _digits(channels, steps, batch, samples, heun_steps, warmup, ema) -> dict[str, Any]:
    return dict(
        data=dict(name="digits", args={}),
        model=dict(name="unet", args=dict(channels=list(channels), num_res_blocks=1, mid_attention=False, groups=8)),
        objective=dict(target="eps", logsnr_min=-12.0, logsnr_max=8.0),
        optim=dict(_OPTIM, warmup_steps=warmup, ema_decay=ema),
        train=dict(steps=steps, batch_size=batch, steps_per_dispatch=1),
        eval=dict(
            num_samples=samples, sampling_steps=heun_steps, bpd_num_t=4, batch_size=400, ode_steps=12, ode_probes=1
        ),
        ode_examples=64,  # the probability-flow NLL on the first 64 test images (RK4, 12 steps, 1 probe)
    )


def _gmm(width, depth, steps, samples, heun_steps, ode_steps) -> dict[str, Any]:
    return dict(
        data=dict(name="gmm", args={"num_train": 10000, "num_test": 2000}),
        model=dict(name="mlp", args=dict(width=width, depth=depth)),
        objective=dict(target="eps", logsnr_min=-15.0, logsnr_max=15.0),
        optim=_OPTIM,
        train=dict(steps=steps, batch_size=256),
        eval=dict(num_samples=samples, sampling_steps=heun_steps, bpd_num_t=16, ode_steps=ode_steps, batch_size=1000),
    )


# `ancestral_steps` = 2 x Heun steps: the same number of network evaluations (Heun: 2N - 1).
SCALES: dict[str, dict[str, Any]] = {
    "smoke": dict(
        seeds=5,
        chunk_digits=1,
        digits=_digits((8, 16), steps=150, batch=32, samples=200, heun_steps=8, warmup=20, ema=0.98),
        gmm=_gmm(64, 2, steps=300, samples=1000, heun_steps=12, ode_steps=16),
        floor_draws=20,
        note="a pipeline check: tiny U-Nets trained for 150 steps; its numbers are not evidence for or against the paper",
    ),
    "cpu": dict(
        seeds=5,
        chunk_digits=1,
        digits=_digits((16, 32), steps=1200, batch=64, samples=400, heun_steps=16, warmup=100, ema=0.995),
        gmm=_gmm(128, 3, steps=2000, samples=2000, heun_steps=24, ode_steps=32),
        floor_draws=20,
        note="the study sized for 2 CPU cores: U-Nets of channels (16, 32), 1200 steps",
    ),
    "gpu": dict(
        seeds=5,
        chunk_digits=1,
        digits=_digits((32, 64), steps=2500, batch=64, samples=400, heun_steps=24, warmup=200, ema=0.999),
        gmm=_gmm(256, 3, steps=4000, samples=2000, heun_steps=32, ode_steps=64),
        floor_draws=20,
        note="the main job's U-Net (channels (32, 64)) and step count (2500), configs/digits.yaml",
    ),
}


def scale(name: str) -> dict[str, Any]:
    """The settings of scale `name`. **Returns:** a dict (see `SCALES`)."""
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; choose one of {sorted(SCALES)}.")
    return SCALES[name]
