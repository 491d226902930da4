r"""Samplers: EDM's Heun/Euler in $(x_{\mathrm{edm}}, \sigma)$, and VDM ancestral/DDIM in VP coordinates.

Mirror of `reference.samplers` for one example: the steps run in `jax.lax.scan`, so a
sampler is jittable (wrap the whole call in `eqx.filter_jit`; nothing here jits itself)
and batches with `jax.vmap` at the call site, e.g.
`jax.vmap(lambda x, k: heun_sampler(D, x, sigmas, S_churn=40.0, key=k))(xs, keys)`.
Step sizes (`sigmas`, `logsnrs`) and noise are cast to the dtype of `x`. Explicit `noise`
has shape `(N, *x.shape)`; a `key` draws exactly `jax.random.normal(key, (N, *x.shape))`,
so `key=k` and `noise=jax.random.normal(k, …)` give the same sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from eqx_impl._typing import Array, ArrayLike, Data, Float, PRNGKeyArray, Scalar
from eqx_impl.schedules import alpha_sigma
from reference.samplers import _logsnrs, _sigmas

Denoiser = Callable[[Data, Scalar], Data]
EpsModel = Callable[[Data, Scalar], Data]


def _steps_array(values, x: Array, name: str, increasing: bool) -> Array:
    """`values` (sigmas or log-SNRs) in the dtype of `x`; their order is checked unless traced."""
    values = jnp.asarray(values, x.dtype)
    order = "strictly increasing, noisiest first" if increasing else "strictly decreasing, >= 0"
    if values.ndim != 1 or values.shape[0] < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 values ({order}), got shape {values.shape}.")
    if not isinstance(values, jax.core.Tracer):  # concrete: the reference's checks apply
        (_logsnrs if increasing else _sigmas)(np.asarray(values, dtype=np.float64))
    return values


def _noise(noise, key, n_steps: int, x: Array, who: str) -> Array:
    shape = (n_steps, *x.shape)
    if noise is not None:
        noise = jnp.asarray(noise, x.dtype)
        if noise.shape != shape:
            raise ValueError(
                f"noise has shape {noise.shape} but {who} needs {shape} (one standard-normal "
                "slice per step, each shaped like x; batch over examples with jax.vmap)."
            )
        return noise
    if key is None:
        raise ValueError(f"{who} is stochastic here: pass noise= (shape {shape}) or key=jax.random.key(seed).")
    return jax.random.normal(key, shape, x.dtype)


# --- EDM samplers ----------------------------------------------------------------------------


def _concrete(value) -> float | None:
    """`float(value)`, or None while `value` is traced (then it cannot be checked eagerly)."""
    return None if isinstance(value, jax.core.Tracer) else float(value)


def heun_sampler(
    denoiser: Denoiser,
    x: Data,
    sigmas: Float[ArrayLike, " n_plus_1"],
    *,
    S_churn: float | Float[ArrayLike, ""] = 0.0,
    S_min: float | Float[ArrayLike, ""] = 0.0,
    S_max: float | Float[ArrayLike, ""] = math.inf,
    S_noise: float | Float[ArrayLike, ""] = 1.0,
    noise: Float[ArrayLike, " n *dims"] | None = None,
    key: PRNGKeyArray | None = None,
    unroll: int | bool = 1,
) -> Data:
    r"""EDM's stochastic Heun sampler (Algorithm 2); deterministic (Algorithm 1) when `S_churn = 0`.

    At step $i$ of $N$: $\gamma_i = \min(S_{\mathrm{churn}}/N, \sqrt2-1)$ if
    $S_{\min} \le \sigma_i \le S_{\max}$ else 0, $\hat\sigma = \sigma_i(1+\gamma_i)$,
    $\hat x = x_i + \sqrt{\hat\sigma^2-\sigma_i^2}\,S_{\mathrm{noise}}\xi_i$,
    $d = (\hat x - D(\hat x;\hat\sigma))/\hat\sigma$,
    Euler step $x_{i+1} = \hat x + (\sigma_{i+1}-\hat\sigma)d$, then the Heun correction with
    the average slope unless $\sigma_{i+1} = 0$ (only the last step can be: it costs one
    call, $2N-1$ in all). `x` is one example already scaled by `sigmas[0]`. `unroll` (eqx
    only) is passed to `lax.scan`: `unroll=True` is much faster for convolutional models
    on XLA:CPU, at the price of a longer compile.

    The `S_*` may be traced scalars (sweeps under one jit). $\xi$ comes from `noise` or
    `key`, required unless `S_churn` is a concrete 0 (then both are ignored).

    **Returns:** the sample at `sigmas[-1]`, shaped like `x`.
    """
    x = jnp.asarray(x)
    sigmas = _steps_array(sigmas, x, "sigmas", increasing=False)
    n = sigmas.shape[0] - 1
    churn, s_noise = _concrete(S_churn), _concrete(S_noise)
    if churn is not None and (not math.isfinite(churn) or churn < 0):
        raise ValueError(f"S_churn must be finite and >= 0, got {S_churn}.")
    if s_noise is not None and (not math.isfinite(s_noise) or s_noise < 0):
        raise ValueError(f"S_noise must be finite and >= 0, got {S_noise}.")
    s_min, s_max = _concrete(S_min), _concrete(S_max)
    if s_min is not None and s_max is not None and not s_min <= s_max:
        raise ValueError(f"S_min={S_min} must be <= S_max={S_max}; swap them if reversed.")
    stochastic = churn != 0.0
    if stochastic:
        xi = _noise(noise, key, n, x, "heun_sampler")
        gamma_max = jnp.minimum(jnp.asarray(S_churn, x.dtype) / n, math.sqrt(2.0) - 1.0)
        S_min, S_max, S_noise = (jnp.asarray(v, x.dtype) for v in (S_min, S_max, S_noise))
    else:
        xi = jnp.zeros((n, 0), x.dtype)  # scanned over but unused

    def euler(x, sigma, sigma_next, xi_i):
        if stochastic:
            inside = (sigma >= S_min) & (sigma <= S_max)
            gamma = jnp.where(inside, gamma_max, jnp.zeros((), x.dtype))
            sigma_hat = sigma * (1.0 + gamma)
            # √(σ̂² − σ²) = σ√(γ(2+γ)), without the cancellation; γ = 0 leaves x unchanged
            x_hat = x + sigma * jnp.sqrt(gamma * (2.0 + gamma)) * S_noise * xi_i
        else:
            sigma_hat, x_hat = sigma, x
        d = (x_hat - denoiser(x_hat, sigma_hat)) / sigma_hat
        return x_hat, sigma_hat, d, x_hat + (sigma_next - sigma_hat) * d

    def heun(x, sigma, sigma_next, xi_i):
        x_hat, sigma_hat, d, x_euler = euler(x, sigma, sigma_next, xi_i)
        d_next = (x_euler - denoiser(x_euler, sigma_next)) / sigma_next
        return x_hat + (sigma_next - sigma_hat) * 0.5 * (d + d_next)

    # σ decreases strictly to σ_N >= 0, so only the last step can land on σ = 0: the first
    # N - 1 steps always correct, and the last is decided outside the loop (XLA:CPU runs
    # convolutions far slower inside a `cond`, so there is none unless σ_N is traced).
    x, _ = lax.scan(lambda x, a: (heun(x, *a), None), x, (sigmas[:-2], sigmas[1:-1], xi[:-1]), unroll=unroll)
    last = (sigmas[-2], sigmas[-1], xi[-1])
    final_sigma = _concrete(sigmas[-1]) if not isinstance(sigmas, jax.core.Tracer) else None
    if final_sigma is None:
        return lax.cond(last[1] > 0, lambda x: heun(x, *last), lambda x: euler(x, *last)[3], x)
    return heun(x, *last) if final_sigma > 0 else euler(x, *last)[3]


def euler_sampler(
    denoiser: Denoiser, x: Data, sigmas: Float[ArrayLike, " n_plus_1"], *, unroll: int | bool = 1
) -> Data:
    r"""First-order Euler steps of the probability-flow ODE ($N$ denoiser calls):
    $x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)(x_i - D(x_i;\sigma_i))/\sigma_i$.

    **Returns:** the sample at `sigmas[-1]`, shaped like `x`.
    """
    x = jnp.asarray(x)
    sigmas = _steps_array(sigmas, x, "sigmas", increasing=False)

    def step(x, inputs):
        sigma, sigma_next = inputs
        return x + (sigma_next - sigma) * (x - denoiser(x, sigma)) / sigma, None

    x, _ = lax.scan(step, x, (sigmas[:-1], sigmas[1:]), unroll=unroll)
    return x


# --- VP samplers -----------------------------------------------------------------------------


def _alpha_ratio(logsnr_s: Array, logsnr_t: Array) -> Array:
    r"""$\alpha_s/\alpha_t = \exp\big(\tfrac12(\ln\mathrm{sigmoid}\,\lambda_s - \ln\mathrm{sigmoid}\,\lambda_t)\big)$."""
    return jnp.exp(0.5 * (jax.nn.log_sigmoid(logsnr_s) - jax.nn.log_sigmoid(logsnr_t)))


def ancestral_sampler(
    eps_model: EpsModel,
    z: Data,
    logsnrs: Float[ArrayLike, " n_plus_1"],
    *,
    noise: Float[ArrayLike, " n *dims"] | None = None,
    key: PRNGKeyArray | None = None,
    unroll: int | bool = 1,
) -> Data:
    r"""VDM / DDPM ancestral sampling, $z_s \sim q(z_s \mid z_t, x = \hat x(z_t))$, for one example.

    For consecutive log-SNRs $\lambda_t < \lambda_s$, $c = -\operatorname{expm1}(\lambda_t - \lambda_s)$:
    $$z_s = \frac{\alpha_s}{\alpha_t}\big(z_t - \sigma_t c\,\hat\epsilon(z_t;\lambda_t)\big) + \sqrt{\sigma_s^2 c}\;\xi.$$
    `logsnrs` must increase (not checked under jit); $\xi$ from `noise` or `key`.

    **Returns:** $z$ at `logsnrs[-1]`, shaped like `z`.
    """
    z = jnp.asarray(z)
    logsnrs = _steps_array(logsnrs, z, "logsnrs", increasing=True)
    xi = _noise(noise, key, logsnrs.shape[0] - 1, z, "ancestral_sampler")

    def step(z, inputs):
        lt, ls, xi_i = inputs
        c = -jnp.expm1(lt - ls)
        sigma_t, sigma_s = alpha_sigma(lt)[1], alpha_sigma(ls)[1]
        eps_hat = eps_model(z, lt)
        return _alpha_ratio(ls, lt) * (z - sigma_t * c * eps_hat) + sigma_s * jnp.sqrt(c) * xi_i, None

    z, _ = lax.scan(step, z, (logsnrs[:-1], logsnrs[1:], xi), unroll=unroll)
    return z


def ddim_sampler(
    eps_model: EpsModel, z: Data, logsnrs: Float[ArrayLike, " n_plus_1"], *, unroll: int | bool = 1
) -> Data:
    r"""Deterministic DDIM, $\hat x = (z_t - \sigma_t\hat\epsilon)/\alpha_t$, $z_s = \alpha_s\hat x + \sigma_s\hat\epsilon$, for one example.

    Evaluated as $z_s = \frac{\alpha_s}{\alpha_t} z_t - \sigma_s\operatorname{expm1}\big(\tfrac12(\lambda_s-\lambda_t)\big)\hat\epsilon$
    (no cancellation at low SNR). `logsnrs` must increase (not checked under jit).

    **Returns:** $z$ at `logsnrs[-1]`, shaped like `z`.
    """
    z = jnp.asarray(z)
    logsnrs = _steps_array(logsnrs, z, "logsnrs", increasing=True)

    def step(z, inputs):
        lt, ls = inputs
        eps_hat = eps_model(z, lt)
        sigma_s = alpha_sigma(ls)[1]
        return _alpha_ratio(ls, lt) * z - sigma_s * jnp.expm1(0.5 * (ls - lt)) * eps_hat, None

    z, _ = lax.scan(step, z, (logsnrs[:-1], logsnrs[1:]), unroll=unroll)
    return z
