"""The optimisers: AdamW with linear warm-up and global-norm clipping for the model, Adam
for a learned schedule, and the exponential moving average of the weights."""

from __future__ import annotations

import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from eqx_impl.train.config import OptimConfig

__all__ = ["ema_decay_at", "ema_update", "learning_rate", "model_optimizer"]


def learning_rate(config: OptimConfig, total_steps: int) -> Callable:
    r"""Step → learning rate: linear from 0 to `lr` over `warmup_steps`, then constant or a
    cosine decay to `lr·final_lr_ratio` at `total_steps`.

    **Returns:** an optax schedule.
    """
    after: Callable
    if config.lr_decay == "cosine":
        decay_steps = max(total_steps - config.warmup_steps, 1)
        after = optax.cosine_decay_schedule(config.lr, decay_steps, alpha=config.final_lr_ratio)
    else:
        after = optax.constant_schedule(config.lr)
    if config.warmup_steps == 0:
        return after
    warmup = optax.linear_schedule(0.0, config.lr, config.warmup_steps)
    return optax.join_schedules([warmup, after], [config.warmup_steps])


def _matrices(params):
    """Weight decay mask: matrices and convolution kernels only (not biases or norms)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


@functools.cache
def model_optimizer(config: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """Clip the global gradient norm to `grad_clip`, then AdamW. Built once per process for
    equal (frozen, hashable) settings, so trainers from equal configs hold the same object,
    are equal pytrees and share compiled steps.

    **Returns:** an optax `GradientTransformation` on the model's floating-point leaves.
    """
    adamw = optax.adamw(
        learning_rate(config, total_steps),
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
        weight_decay=config.weight_decay,
        mask=_matrices,
    )
    if config.grad_clip is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), adamw)


def ema_decay_at(decay: float, step) -> jax.Array:
    r"""$\min(\beta, (1 + s)/(10 + s))$: a short memory early on, so the EMA does not drag
    the random initialisation through the first thousands of steps.

    **Returns:** a scalar float32 array.
    """
    s = jnp.asarray(step, jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + s) / (10.0 + s))


def ema_update(ema, model, decay):
    r"""$\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta$ on the floating-point leaves.

    **Returns:** the new EMA model (non-float leaves from `model`).
    """
    ema_params = eqx.filter(ema, eqx.is_inexact_array)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    new = jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p).astype(p.dtype), ema_params, params)
    return eqx.combine(new, static)
