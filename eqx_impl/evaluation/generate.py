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
| `"dpm_2"` | DPM-Solver-2 (midpoint in $\ln\sigma$, 2nd order) | $2N-1$ |
| `"dpmpp_2m"` | DPM-Solver++(2M) (multistep, 2nd order) | $N$ |
| `"dpmpp_2m_sde"` | DPM-Solver++(2M) SDE ($\eta = 1$, `S_noise` 1) | $N$ |
| `"ancestral"` | VDM/DDPM ancestral steps, then $\hat x(z;\lambda_{\mathrm{last}})$ | $N+1$ |
| `"ddim"` | deterministic DDIM, then $\hat x(z;\lambda_{\mathrm{last}})$ | $N+1$ |

The VP samplers step through log-SNRs $\lambda_0 < \dots < \lambda_N$: by default the EDM
levels $\lambda_i = -2\ln\sigma_i$ of `edm_sigmas(steps + 1)` without the final 0 (the same
discretisation as the EDM samplers), or, with `schedule`, $\lambda_i = \lambda(1 - i/N)$.
The last step returns the denoised $\hat x = (z - \sigma\hat\epsilon)/\alpha$, so every sampler
returns data-space samples (in $[-1, 1]$ for images, up to the model's error).

Two ways to run the steps, the same arithmetic and noise either way: `unroll=False` puts the
whole sampler in one jitted `lax.scan` (best for small models such as MLPs: one dispatch);
`unroll=True` runs the step loop in Python: the model call is the only compiled program
(once per batch shape, the noise level a traced argument) and the samplers' elementwise
step functions run eagerly around it. XLA:CPU runs convolutions tens of times slower inside
`lax.scan`/`lax.cond` bodies (jax#12868), so for a U-Net this is what keeps sampling fast,
and unlike unrolling the loop inside one program its compile time does not grow with
`steps`; the compiled model call is reused by every later call in the process with the same
batch shape, whatever the sampler, `steps`, `sigma_min`, `sigma_max` or `key`
(`benchmarks/sampler_compile.py` measures both).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from _checks import SAMPLERS  # the one table of sampler names
from eqx_impl import samplers
from eqx_impl._typing import Array, Float, PRNGKeyArray
from eqx_impl.data.dataset import unit_to_levels
from eqx_impl.edm import denoiser_from_eps, edm_sigmas
from eqx_impl.evaluation.estimate import check_batch_size, map_batches
from eqx_impl.schedules import AbstractSchedule, alpha_sigma, sigma_to_logsnr

__all__ = ["SAMPLERS", "GuidedEps", "generate", "sampler_steps", "to_levels"]

_EDM_SAMPLERS = ("heun", "euler", "stochastic", "dpm_2", "dpmpp_2m", "dpmpp_2m_sde")
_MULTISTEP = ("dpmpp_2m", "dpmpp_2m_sde")
_STOCHASTIC = ("stochastic", "dpmpp_2m_sde", "ancestral")


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


class GuidedEps(eqx.Module):
    r"""Classifier-free guidance of a class-conditional ε-model (module docstring):
    `GuidedEps(eps_model, w)(z, logsnr, label=c)` is
    $\hat\epsilon(z;\lambda,\varnothing) + w\,(\hat\epsilon(z;\lambda,c) - \hat\epsilon(z;\lambda,\varnothing))$,
    with `eps_model(z, logsnr)` the null label and `eps_model(z, logsnr, label=c)` class $c$.
    $w = 1$ and $w = 0$ call the model once and return its conditional or unconditional
    prediction exactly.
    """

    eps_model: Callable[..., Array]
    guidance: float = eqx.field(static=True)

    def __check_init__(self):
        if not math.isfinite(self.guidance):
            raise ValueError(f"guidance must be a finite number, got {self.guidance}.")

    def __call__(self, z, logsnr, *, label):
        r"""**Returns:** the guided $\hat\epsilon$, shape like `z`."""
        if self.guidance == 1.0:
            return self.eps_model(z, logsnr, label=label)
        uncond = self.eps_model(z, logsnr)
        if self.guidance == 0.0:
            return uncond
        cond = self.eps_model(z, logsnr, label=label)
        return uncond + self.guidance * (cond - uncond)


def _bind(eps_model, label):
    """The ε-model of one example: `eps_model` itself, or bound to its class `label`."""
    return eps_model if label is None else functools.partial(eps_model, label=label)


def _check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")


def _start(key, shape, sampler, levels, sigma_data):
    """Example `key`'s starting point (EDM or VP coordinates) and its sampler-noise key."""
    key_init, key_noise = jax.random.split(key)
    xi = jax.random.normal(key_init, shape, levels.dtype)
    if sampler in _EDM_SAMPLERS:
        return jnp.sqrt(levels[0] ** 2 + sigma_data**2) * xi, key_noise
    alpha0, sigma0 = alpha_sigma(levels[0])
    # x_edm = √(σ_edm² + σ_d²) ξ with σ_edm = σ₀/α₀, then z = α₀ x_edm
    return jnp.sqrt(sigma0**2 + (alpha0 * sigma_data) ** 2) * xi, key_noise


def _denoise_vp(eps_model, z, logsnr):
    alpha, sigma = alpha_sigma(logsnr)
    return (z - sigma * eps_model(z, logsnr)) / alpha


Churn = tuple[float, float, float, float]  # EDM's (S_churn, S_min, S_max, S_noise)


def _sde_settings(dtype) -> tuple[Array, Array]:
    r"""DPM-Solver++(2M) SDE's $(\eta, S_{\mathrm{noise}}) = (1, 1)$ as traced scalars."""
    one = jnp.ones((), dtype)
    return one, one


def _churn(sampler: str, churn: Churn, n_steps: int, dtype) -> tuple[Array, ...] | None:
    """Traced settings of the stochastic samplers: Heun's churn, or the SDE's (η, S_noise) = (1, 1)."""
    if sampler == "stochastic":
        S_churn, S_min, S_max, S_noise = churn
        return samplers.heun_churn(S_churn, S_min, S_max, S_noise, n_steps, dtype)
    if sampler == "dpmpp_2m_sde":
        return _sde_settings(dtype)
    return None


@eqx.filter_jit
def _sample_batch(eps_model, keys, levels, shape, sampler, sigma_data, churn, labels=None):
    # One program: the samplers' own `lax.scan`. `levels` is a static tuple, so the Heun and
    # DPM samplers decide their final step (to σ = 0) outside the loop.
    levels = jnp.asarray(levels, dtype=jnp.result_type(float))

    def one(key, label):
        eps_model_i = _bind(eps_model, label)
        x, key_noise = _start(key, shape, sampler, levels, sigma_data)
        denoiser = denoiser_from_eps(eps_model_i)
        if sampler == "euler":
            return samplers.euler_sampler(denoiser, x, levels)
        if sampler == "heun":
            return samplers.heun_sampler(denoiser, x, levels)
        if sampler == "stochastic":
            S_churn, S_min, S_max, S_noise = churn
            return samplers.heun_sampler(
                denoiser, x, levels, S_churn=S_churn, S_min=S_min, S_max=S_max, S_noise=S_noise, key=key_noise
            )
        if sampler == "dpm_2":
            return samplers.dpm_2_sampler(denoiser, x, levels)
        if sampler == "dpmpp_2m":
            return samplers.dpmpp_2m_sampler(denoiser, x, levels)
        if sampler == "dpmpp_2m_sde":
            eta, S_noise = _sde_settings(levels.dtype)
            return samplers.dpmpp_2m_sde_sampler(denoiser, x, levels, eta=eta, S_noise=S_noise, key=key_noise)
        if sampler == "ancestral":
            z = samplers.ancestral_sampler(eps_model_i, x, levels, key=key_noise)
        else:
            z = samplers.ddim_sampler(eps_model_i, x, levels)
        return _denoise_vp(eps_model_i, z, levels[-1])

    if labels is None:
        return jax.vmap(lambda key: one(key, None))(keys)
    return jax.vmap(one)(keys, labels)


# --- one compiled step, looped in Python ----------------------------------------------------


@eqx.filter_jit
def _start_batch(keys, level0, n_noise, shape, sampler, sigma_data):
    """Starting points and the per-step noise `(B, n_noise, *shape)` (None for deterministic
    samplers): exactly what the samplers draw from the same keys. Only the first level is
    passed, so a new number of steps recompiles nothing for a deterministic sampler."""

    def one(key):
        x, key_noise = _start(key, shape, sampler, level0[None], sigma_data)
        noise = jax.random.normal(key_noise, (n_noise, *shape), x.dtype) if n_noise else None
        return x, noise

    x, noise = jax.vmap(one)(keys)
    return x, noise


@eqx.filter_jit
def _model_batch(eps_model, x, level, edm, labels=None):
    r"""The only compiled program with the model in it: $D(x;\sigma)$ (`edm`) or $\hat\epsilon(z;\lambda)$ for
    the batch, `level` traced, so one compile serves every step, sampler and noise schedule."""
    if labels is None:
        if edm:
            return jax.vmap(lambda x: denoiser_from_eps(eps_model)(x, level))(x)
        return jax.vmap(lambda z: eps_model(z, level))(x)
    if edm:
        return jax.vmap(lambda x, c: denoiser_from_eps(_bind(eps_model, c))(x, level))(x, labels)
    return jax.vmap(lambda z, c: eps_model(z, level, label=c))(x, labels)


def _step(sampler, model, carry, level, level_next, xi, settings, last):
    """Step $i$ for the whole batch (the step functions are elementwise apart from `model`)."""
    if sampler == "euler":
        return samplers.euler_step(model, carry, level, level_next)
    if sampler in ("heun", "stochastic"):
        return samplers.heun_step(model, carry, level, level_next, correct=not last, churn=settings, xi=xi)
    if sampler == "dpm_2":
        return samplers.dpm_2_step(model, carry, level, level_next, midpoint=not last)
    if sampler == "dpmpp_2m":
        return samplers.dpmpp_2m_step(model, carry, level, level_next, final=last)
    if sampler == "dpmpp_2m_sde":
        eta, S_noise = settings
        return samplers.dpmpp_2m_step(model, carry, level, level_next, final=last, eta=eta, S_noise=S_noise, xi=xi)
    if sampler == "ancestral":
        return samplers.ancestral_step(model, carry, level, level_next, xi)
    return samplers.ddim_step(model, carry, level, level_next)


def _stepped_batch(eps_model, keys, levels, shape, sampler, sigma_data, churn, labels=None):
    """`_sample_batch` with the step loop in Python: the model runs in one compiled program
    (`_model_batch`), the samplers' elementwise step arithmetic runs eagerly around it."""
    dtype = jnp.result_type(float)
    values = np.asarray(levels, dtype=np.float64)
    n = values.size - 1
    levels = jax.device_put([np.asarray(v, dtype) for v in values])
    edm = sampler in _EDM_SAMPLERS
    n_noise = n if sampler in _STOCHASTIC else 0
    carry, noise = _start_batch(keys, levels[0], n_noise, shape, sampler, sigma_data)
    if sampler in _MULTISTEP:  # one step size for the whole batch: h_{i-1} is a scalar
        carry = samplers.dpmpp_2m_init(carry)
    settings = _churn(sampler, churn, n, dtype)

    def model(x, level):
        return _model_batch(eps_model, x, level, edm, labels)

    for i in range(n):
        last = edm and i == n - 1 and values[-1] == 0.0
        xi = None if noise is None else noise[:, i]
        carry = _step(sampler, model, carry, levels[i], levels[i + 1], xi, settings, bool(last))
    x = carry[0] if isinstance(carry, tuple) else carry  # a multistep state's first entry is x
    if edm:
        return x
    alpha, sigma = alpha_sigma(levels[-1])
    return (x - sigma * model(x, levels[-1])) / alpha


def _check_sizes(num, shape, batch_size, sigma_data) -> tuple[int, tuple[int, ...], int, float]:
    r"""`generate`'s sizes checked: `num >= 1` samples, `batch_size`, and $\sigma_{\mathrm{data}} \ge 0$.

    **Returns:** `(num, shape, batch_size, sigma_data)` as Python ints, a tuple and a float.
    """
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}.")
    shape = tuple(int(s) for s in shape)
    batch_size = check_batch_size(batch_size)
    sigma_data = float(sigma_data)
    if not math.isfinite(sigma_data) or sigma_data < 0:
        raise ValueError(f"sigma_data must be a finite number >= 0, got {sigma_data}.")
    return int(num), shape, batch_size, sigma_data


def _levels(sampler: str, steps: int, **kwargs) -> tuple[float, ...]:
    """`sampler_steps(sampler, steps, **kwargs)` as a static tuple of floats, the VP samplers'
    log-SNRs checked to increase.

    **Returns:** `steps + 1` floats.
    """
    levels = sampler_steps(sampler, steps, **kwargs)
    if sampler not in _EDM_SAMPLERS and not np.all(np.diff(np.asarray(levels)) > 0):
        raise ValueError("the log-SNR steps must increase; is the schedule decreasing in t?")
    return tuple(float(v) for v in np.asarray(levels))


def _check_labels(labels, num: int, guidance: float | None) -> np.ndarray | None:
    """The class of each sample checked: `num` integers, or `None` (then no `guidance` either).

    **Returns:** `labels` as a NumPy array, or `None`.
    """
    if labels is None:
        if guidance is not None:
            raise ValueError(
                "guidance needs labels: classifier-free guidance steers a class-conditional model "
                "towards the classes in labels; pass labels=, or leave guidance=None."
            )
        return None
    labels = np.asarray(labels)
    if labels.shape != (num,) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be {num} integers (one class per sample), got {labels.dtype} {labels.shape}.")
    return labels


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
    labels: npt.ArrayLike | None = None,
    guidance: float | None = None,
) -> Float[np.ndarray, " num *shape"]:
    r"""Draw `num` samples of one-example shape `shape` from `eps_model(z, logsnr) -> ε̂`.

    `sampler` is one of `SAMPLERS` (see the module docstring); `steps` is $N$. EDM samplers
    use `edm_sigmas(steps, sigma_min, sigma_max, rho)`; `S_*` are EDM's churn settings (used
    by `"stochastic"` only; the defaults are EDM's ImageNet values). The VP samplers use the
    same levels as log-SNRs unless `schedule` gives them (`schedule.logsnr(1 - i/N)`).
    Batches of `batch_size` run through one `eqx.filter_jit`-ed, vmapped function; sample
    $i$ depends only on `key` and $i$, not on `batch_size`. `unroll=True` keeps the model out
    of XLA loops: the model call is compiled once per batch shape and the steps run from
    Python (see the module docstring; use it for convolutional models); `unroll=False` runs
    the sampler's `lax.scan` in one program. Both give the same samples up to float rounding.

    **Returns:** a float32 NumPy array `(num, *shape)` in model (data) space.
    """
    _check_sampler(sampler)
    num, shape, batch_size, sigma_data = _check_sizes(num, shape, batch_size, sigma_data)
    levels = _levels(sampler, steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, schedule=schedule)
    churn = (float(S_churn), float(S_min), float(S_max), float(S_noise))
    keys = jax.random.split(key, num)
    sample_batch = _stepped_batch if unroll else _sample_batch
    labels = _check_labels(labels, num, guidance)
    if labels is None:

        def run(keys, _index):
            return sample_batch(eps_model, keys, levels, shape, sampler, sigma_data, churn)

        return map_batches(run, (keys,), batch_size=batch_size, progress=progress, desc=sampler)
    guided = GuidedEps(eps_model, 1.0 if guidance is None else float(guidance))

    def run_labelled(keys, labels, _index):
        return sample_batch(guided, keys, levels, shape, sampler, sigma_data, churn, jnp.asarray(labels, jnp.int32))

    return map_batches(run_labelled, (keys, labels), batch_size=batch_size, progress=progress, desc=sampler)


def to_levels(samples: npt.ArrayLike, num_levels: int) -> np.ndarray:
    """Model-space samples in $[-1, 1]$ to the nearest integer levels $0..V-1$ (clipped);
    the inverse of `levels_to_unit` on bin centres.

    **Returns:** an int64 NumPy array shaped like `samples`.
    """
    return unit_to_levels(np.asarray(samples), num_levels)
