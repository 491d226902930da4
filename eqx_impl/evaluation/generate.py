r"""Draw samples from an ε-model with the library's samplers (SPEC §7), batched with `jax.vmap`.

All samplers start from the same noise: example $i$ uses `jax.random.split(key, num)[i]`,
split into (initial noise $\xi$, sampler noise), and starts at
$x_{\mathrm{edm}} = \sqrt{\sigma_{\max}^2 + \sigma_{\mathrm{data}}^2}\,\xi$ (EDM coordinates), i.e.
$z = \alpha_{\max} x_{\mathrm{edm}}$ in VP coordinates. With the default `sigma_data = 0` this is
EDM's $\sigma_{\max}\xi$; a positive $\sigma_{\mathrm{data}}$ gives the exact marginal scale of
data with that standard deviation.

| `sampler` | method | denoiser calls |
|---|---|---|
| `"heun"` | EDM Alg. 1 (deterministic 2nd order) on `edm_sigmas(steps)` | $2N-1$ |
| `"euler"` | Euler steps of the probability-flow ODE | $N$ |
| `"stochastic"` | EDM Alg. 2 (Heun with churn `S_churn`, `S_min`, `S_max`, `S_noise`) | $2N-1$ |
| `"ancestral"` | VDM/DDPM ancestral steps, then $\hat x(z;\lambda_{\mathrm{last}})$ | $N+1$ |
| `"ddim"` | deterministic DDIM, then $\hat x(z;\lambda_{\mathrm{last}})$ | $N+1$ |

The VP samplers step through log-SNRs $\lambda_0 < \dots < \lambda_N$: by default the EDM
levels $\lambda_i = -2\ln\sigma_i$ of `edm_sigmas(steps + 1)` without the final 0 (the same
discretisation as the EDM samplers), or, with `schedule`, $\lambda_i = \lambda(1 - i/N)$.
The last step returns the denoised $\hat x = (z - \sigma\hat\epsilon)/\alpha$, so every sampler
returns data-space samples (in $[-1, 1]$ for images, up to the model's error).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from eqx_impl._typing import Array, Float, PRNGKeyArray
from eqx_impl.data.dataset import unit_to_levels
from eqx_impl.edm import denoiser_from_eps, edm_sigmas
from eqx_impl.evaluation.estimate import check_batch_size, map_batches
from eqx_impl.samplers import ancestral_sampler, ddim_sampler, euler_sampler, heun_sampler
from eqx_impl.schedules import AbstractSchedule, alpha_sigma, sigma_to_logsnr

__all__ = ["SAMPLERS", "generate", "sampler_steps", "to_levels"]

SAMPLERS = ("heun", "euler", "stochastic", "ancestral", "ddim")
_EDM_SAMPLERS = ("heun", "euler", "stochastic")


def sampler_steps(
    sampler: str,
    steps: int,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    schedule: AbstractSchedule | None = None,
) -> Float[Array, " n_plus_1"]:
    r"""The noise levels a sampler walks through.

    EDM samplers: `edm_sigmas(steps, sigma_min, sigma_max, rho)` ($N+1$ values ending in 0).
    VP samplers: increasing log-SNRs, $-2\ln$ of `edm_sigmas(steps + 1, …)[:-1]`, or
    `schedule.logsnr(1 - i/steps)` for $i = 0..N$ when a schedule is given.

    **Returns:** `sigmas` (EDM) or `logsnrs` (VP), shape `(steps + 1,)`.
    """
    _check_sampler(sampler)
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    steps = int(steps)
    if sampler in _EDM_SAMPLERS:
        if schedule is not None:
            raise ValueError(
                f"schedule only sets the log-SNR steps of 'ancestral' and 'ddim'; sampler "
                f"{sampler!r} uses edm_sigmas (set sigma_min, sigma_max, rho instead)."
            )
        if steps == 1:  # edm_sigmas needs two levels: one step goes straight to 0
            return jnp.asarray([sigma_max, 0.0], dtype=float)
        return edm_sigmas(steps, sigma_min, sigma_max, rho)
    if schedule is None:
        return sigma_to_logsnr(edm_sigmas(steps + 1, sigma_min, sigma_max, rho)[:-1])
    t = 1.0 - jnp.arange(steps + 1, dtype=float) / steps
    return schedule.logsnr(t)


def _check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")


@eqx.filter_jit
def _sample_batch(eps_model, keys, levels, shape, sampler, sigma_data, churn, unroll):
    # `levels` is a static tuple: concrete steps let the Heun sampler decide its final Euler
    # step outside the loop, and `unroll` keeps convolutions out of `lax.scan` on XLA:CPU.
    levels = jnp.asarray(levels, dtype=jnp.result_type(float))

    def one(key):
        key_init, key_noise = jax.random.split(key)
        dtype = levels.dtype
        xi = jax.random.normal(key_init, shape, dtype)
        if sampler in _EDM_SAMPLERS:
            x = jnp.sqrt(levels[0] ** 2 + sigma_data**2) * xi
            denoiser = denoiser_from_eps(eps_model)
            if sampler == "euler":
                return euler_sampler(denoiser, x, levels, unroll=unroll)
            if sampler == "heun":
                return heun_sampler(denoiser, x, levels, unroll=unroll)
            S_churn, S_min, S_max, S_noise = churn
            return heun_sampler(
                denoiser,
                x,
                levels,
                S_churn=S_churn,
                S_min=S_min,
                S_max=S_max,
                S_noise=S_noise,
                key=key_noise,
                unroll=unroll,
            )
        alpha0, sigma0 = alpha_sigma(levels[0])
        # x_edm = √(σ_edm² + σ_d²) ξ with σ_edm = σ₀/α₀, then z = α₀ x_edm
        z = jnp.sqrt(sigma0**2 + (alpha0 * sigma_data) ** 2) * xi
        if sampler == "ancestral":
            z = ancestral_sampler(eps_model, z, levels, key=key_noise, unroll=unroll)
        else:
            z = ddim_sampler(eps_model, z, levels, unroll=unroll)
        alpha, sigma = alpha_sigma(levels[-1])
        return (z - sigma * eps_model(z, levels[-1])) / alpha

    return jax.vmap(one)(keys)


def generate(
    eps_model,
    num: int,
    shape: tuple[int, ...],
    *,
    key: PRNGKeyArray,
    sampler: str = "heun",
    steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    S_churn: float = 40.0,
    S_min: float = 0.05,
    S_max: float = 50.0,
    S_noise: float = 1.003,
    schedule: AbstractSchedule | None = None,
    sigma_data: float = 0.0,
    batch_size: int = 256,
    progress: bool = False,
    unroll: bool = False,
) -> Float[np.ndarray, " num *shape"]:
    r"""Draw `num` samples of one-example shape `shape` from `eps_model(z, logsnr) -> ε̂`.

    `sampler` is one of `SAMPLERS` (see the module docstring); `steps` is $N$. EDM samplers
    use `edm_sigmas(steps, sigma_min, sigma_max, rho)`; `S_*` are EDM's churn settings (used
    by `"stochastic"` only; the defaults are EDM's ImageNet values). The VP samplers use the
    same levels as log-SNRs unless `schedule` gives them (`schedule.logsnr(1 - i/N)`).
    Batches of `batch_size` run through one `eqx.filter_jit`-ed, vmapped function; sample
    $i$ depends only on `key` and $i$, not on `batch_size`. `unroll=True` unrolls the
    sampler loop: use it for convolutional models on the CPU, where XLA runs convolutions
    inside loops many times slower (a longer compile buys a much faster run).

    **Returns:** a float32 NumPy array `(num, *shape)` in model (data) space.
    """
    _check_sampler(sampler)
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}.")
    shape = tuple(int(s) for s in shape)
    batch_size = check_batch_size(batch_size)
    sigma_data = float(sigma_data)
    if not math.isfinite(sigma_data) or sigma_data < 0:
        raise ValueError(f"sigma_data must be a finite number >= 0, got {sigma_data}.")
    levels = sampler_steps(sampler, steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, schedule=schedule)
    if sampler not in _EDM_SAMPLERS and not np.all(np.diff(np.asarray(levels)) > 0):
        raise ValueError("the log-SNR steps must increase; is the schedule decreasing in t?")
    churn = (float(S_churn), float(S_min), float(S_max), float(S_noise))
    keys = jax.random.split(key, int(num))

    levels = tuple(float(v) for v in np.asarray(levels))

    def run(keys, _index):
        return _sample_batch(eps_model, keys, levels, shape, sampler, sigma_data, churn, unroll)

    return map_batches(run, (keys,), batch_size=batch_size, progress=progress, desc=sampler)


def to_levels(samples: npt.ArrayLike, num_levels: int) -> np.ndarray:
    """Model-space samples in $[-1, 1]$ to the nearest integer levels $0..V-1$ (clipped);
    the inverse of `levels_to_unit` on bin centres.

    **Returns:** an int64 NumPy array shaped like `samples`.
    """
    return unit_to_levels(np.asarray(samples), num_levels)
