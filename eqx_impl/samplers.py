r"""Samplers: EDM's Heun/Euler, DPM-Solver-2 and DPM-Solver++(2M) (ODE and SDE) in $(x_{\mathrm{edm}}, \sigma)$, and VDM ancestral/DDIM in VP coordinates.

Mirror of `reference.samplers` for one example: the steps run in `jax.lax.scan`, so a
sampler is jittable (wrap the whole call in `eqx.filter_jit`; nothing here jits itself)
and batches with `jax.vmap` at the call site, e.g.
`jax.vmap(lambda x, k: heun_sampler(D, x, sigmas, S_churn=40.0, key=k))(xs, keys)`.
Step sizes (`sigmas`, `logsnrs`) and noise are cast to the dtype of `x`. Explicit `noise`
has shape `(N, *x.shape)`; a `key` draws exactly `jax.random.normal(key, (N, *x.shape))`,
so `key=k` and `noise=jax.random.normal(k, …)` give the same sample.

Each sampler is a loop over one step function (`euler_step`, `heun_step`, …, below); the
step functions are elementwise apart from the model, so `eqx_impl.evaluation.generate` also
runs them on whole batches from Python around one compiled model call, which keeps a
convolutional model out of XLA loops (see `generate`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import _checks
from eqx_impl._floats import concrete
from eqx_impl._typing import Array, ArrayLike, Data, Float, PRNGKeyArray, Scalar
from eqx_impl.schedules import alpha_sigma

Denoiser = Callable[[Data, Scalar], Data]
EpsModel = Callable[[Data, Scalar], Data]
# (x, D_{i-1}, h_{i-1}) of the multistep DPM-Solver++ samplers; h_{i-1} = 0 before the first step
MultistepState = tuple[Data, Data, Scalar]


def _steps_array(values, x: Array, name: str, increasing: bool) -> Array:
    """`values` (sigmas or log-SNRs) in the dtype of `x`; their order is checked unless traced."""
    values = jnp.asarray(values, x.dtype)
    order = "strictly increasing, noisiest first" if increasing else "strictly decreasing, >= 0"
    if values.ndim != 1 or values.shape[0] < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 values ({order}), got shape {values.shape}.")
    known = concrete(values)
    if known is not None:  # the shared checks apply
        (_checks.logsnrs if increasing else _checks.sigmas)(known.astype(np.float64))
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


def _concrete(value) -> float | None:
    """`float(value)`, or None while `value` is traced (then it cannot be checked eagerly)."""
    known = concrete(value)
    return None if known is None else float(known)


def _run(step, carry, inputs, final_sigma, unroll):
    r"""`carry = step(carry, inputs[i], last)` for every step: the first $N-1$ in `lax.scan`
    with `last=False`, the final one with `last` $= (\sigma_N = 0)$.

    σ decreases strictly to σ_N >= 0, so only the last step can land on σ = 0, and it is
    decided outside the loop (XLA:CPU runs convolutions far slower inside a `cond`, so there
    is none unless σ_N is traced).
    """
    head = jax.tree.map(lambda a: a[:-1], inputs)
    tail = jax.tree.map(lambda a: a[-1], inputs)
    carry, _ = lax.scan(lambda c, a: (step(c, a, False), None), carry, head, unroll=unroll)
    value = _concrete(final_sigma)
    if value is None:
        return lax.cond(final_sigma > 0, lambda c: step(c, tail, False), lambda c: step(c, tail, True), carry)
    return step(carry, tail, value == 0.0)


# --- step functions (one example, one step) ---------------------------------------------------


def euler_step(denoiser: Denoiser, x: Data, sigma: Scalar, sigma_next: Scalar) -> Data:
    r"""$x + (\sigma_{i+1} - \sigma_i)(x - D(x;\sigma_i))/\sigma_i$. **Returns:** $x_{i+1}$."""
    return x + (sigma_next - sigma) * (x - denoiser(x, sigma)) / sigma


def heun_step(
    denoiser: Denoiser,
    x: Data,
    sigma: Scalar,
    sigma_next: Scalar,
    *,
    correct: bool,
    churn: tuple[Scalar, Scalar, Scalar, Scalar] | None = None,
    xi: Data | None = None,
) -> Data:
    r"""One step of EDM Alg. 2: churn $(\gamma_{\max}, S_{\min}, S_{\max}, S_{\mathrm{noise}})$ with noise
    `xi` (or none), an Euler step, and the Heun correction when `correct` ($\sigma_{i+1} > 0$).

    **Returns:** $x_{i+1}$.
    """
    if churn is not None:
        gamma_max, S_min, S_max, S_noise = churn
        inside = (sigma >= S_min) & (sigma <= S_max)
        gamma = jnp.where(inside, gamma_max, jnp.zeros((), x.dtype))
        sigma_hat = sigma * (1.0 + gamma)
        # √(σ̂² − σ²) = σ√(γ(2+γ)), without the cancellation; γ = 0 leaves x unchanged
        x = x + sigma * jnp.sqrt(gamma * (2.0 + gamma)) * S_noise * xi  # pyright: ignore[reportOperatorIssue]  # churn comes with xi
        sigma = sigma_hat
    d = (x - denoiser(x, sigma)) / sigma
    x_next = x + (sigma_next - sigma) * d
    if not correct:
        return x_next
    d_next = (x_next - denoiser(x_next, sigma_next)) / sigma_next
    return x + (sigma_next - sigma) * 0.5 * (d + d_next)


def dpm_2_step(denoiser: Denoiser, x: Data, sigma: Scalar, sigma_next: Scalar, *, midpoint: bool) -> Data:
    r"""DPM-Solver-2: $x_{i+1} = x + (\sigma_{i+1} - \sigma_i)\,d(x';\sqrt{\sigma_i\sigma_{i+1}})$ with
    $x' = x + (\sqrt{\sigma_i\sigma_{i+1}} - \sigma_i)\,d(x;\sigma_i)$; an Euler step unless `midpoint`.

    **Returns:** $x_{i+1}$.
    """
    d = (x - denoiser(x, sigma)) / sigma
    if not midpoint:
        return x + (sigma_next - sigma) * d
    sigma_mid = jnp.sqrt(sigma * sigma_next)
    x_mid = x + (sigma_mid - sigma) * d
    return x + (sigma_next - sigma) * (x_mid - denoiser(x_mid, sigma_mid)) / sigma_mid


def dpmpp_2m_init(x: Data) -> MultistepState:
    """The multistep state before the first step: no previous denoised value ($h_{-1} = 0$)."""
    return x, jnp.zeros_like(x), jnp.zeros((), x.dtype)


def dpmpp_2m_step(
    denoiser: Denoiser,
    state: MultistepState,
    sigma: Scalar,
    sigma_next: Scalar,
    *,
    final: bool,
    eta: float | Scalar = 0.0,
    S_noise: float | Scalar = 1.0,
    xi: Data | None = None,
) -> MultistepState:
    r"""One DPM-Solver++(2M) step, with SDE noise when $\eta > 0$ (see `dpmpp_2m_sde_sampler`);
    `final` ($\sigma_{i+1} = 0$) returns $D_i$. The second-order term is used when $h_{i-1} > 0$.

    **Returns:** the new state $(x_{i+1}, D_i, h_i)$.
    """
    x, old, h_last = state
    denoised = denoiser(x, sigma)
    if final:
        return denoised, denoised, jnp.zeros((), x.dtype)
    h = jnp.log(sigma / sigma_next)
    has_old = h_last > 0
    slope = jnp.where(has_old, h / (2.0 * jnp.where(has_old, h_last, 1.0)), jnp.zeros((), x.dtype))
    target = denoised + slope * (denoised - old)
    if isinstance(eta, float | int) and eta == 0:
        x = (sigma_next / sigma) * x - jnp.expm1(-h) * target
    else:
        x = (sigma_next / sigma) * jnp.exp(-eta * h) * x - jnp.expm1(-(1.0 + eta) * h) * target
        x = x + sigma_next * jnp.sqrt(-jnp.expm1(-2.0 * eta * h)) * S_noise * xi  # pyright: ignore[reportOperatorIssue]  # eta > 0 comes with xi
    return x, denoised, h


def ancestral_step(eps_model: EpsModel, z: Data, logsnr_t: Scalar, logsnr_s: Scalar, xi: Data) -> Data:
    r"""$z_s = \frac{\alpha_s}{\alpha_t}(z_t - \sigma_t c\,\hat\epsilon) + \sqrt{\sigma_s^2 c}\,\xi$. **Returns:** $z_s$."""
    c = -jnp.expm1(logsnr_t - logsnr_s)
    sigma_t, sigma_s = alpha_sigma(logsnr_t)[1], alpha_sigma(logsnr_s)[1]
    eps_hat = eps_model(z, logsnr_t)
    return _alpha_ratio(logsnr_s, logsnr_t) * (z - sigma_t * c * eps_hat) + sigma_s * jnp.sqrt(c) * xi


def ddim_step(eps_model: EpsModel, z: Data, logsnr_t: Scalar, logsnr_s: Scalar) -> Data:
    r"""$z_s = \frac{\alpha_s}{\alpha_t} z_t - \sigma_s\operatorname{expm1}(\tfrac12(\lambda_s-\lambda_t))\hat\epsilon$. **Returns:** $z_s$."""
    eps_hat = eps_model(z, logsnr_t)
    sigma_s = alpha_sigma(logsnr_s)[1]
    return _alpha_ratio(logsnr_s, logsnr_t) * z - sigma_s * jnp.expm1(0.5 * (logsnr_s - logsnr_t)) * eps_hat


def _alpha_ratio(logsnr_s: Array, logsnr_t: Array) -> Array:
    r"""$\alpha_s/\alpha_t = \exp\big(\tfrac12(\ln\mathrm{sigmoid}\,\lambda_s - \ln\mathrm{sigmoid}\,\lambda_t)\big)$."""
    return jnp.exp(0.5 * (jax.nn.log_sigmoid(logsnr_s) - jax.nn.log_sigmoid(logsnr_t)))


# --- EDM samplers ----------------------------------------------------------------------------


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
    only) is passed to `lax.scan`.

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
    if churn != 0.0:
        xi = _noise(noise, key, n, x, "heun_sampler")
        settings = heun_churn(S_churn, S_min, S_max, S_noise, n, x.dtype)
    else:
        xi, settings = jnp.zeros((n, 0), x.dtype), None  # scanned over but unused

    def step(x, inputs, last):
        sigma, sigma_next, xi_i = inputs
        xi_i = None if settings is None else xi_i
        return heun_step(denoiser, x, sigma, sigma_next, correct=not last, churn=settings, xi=xi_i)

    return _run(step, x, (sigmas[:-1], sigmas[1:], xi), sigmas[-1], unroll)


def heun_churn(S_churn, S_min, S_max, S_noise, n_steps: int, dtype) -> tuple[Array, Array, Array, Array]:
    r"""`heun_step`'s churn settings: $(\min(S_{\mathrm{churn}}/N, \sqrt2 - 1), S_{\min}, S_{\max}, S_{\mathrm{noise}})$ as `dtype` arrays.

    **Returns:** a 4-tuple of scalars.
    """
    gamma_max = jnp.minimum(jnp.asarray(S_churn, dtype) / n_steps, math.sqrt(2.0) - 1.0)
    S_min, S_max, S_noise = (jnp.asarray(v, dtype) for v in (S_min, S_max, S_noise))
    return gamma_max, S_min, S_max, S_noise


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
        return euler_step(denoiser, x, *inputs), None

    x, _ = lax.scan(step, x, (sigmas[:-1], sigmas[1:]), unroll=unroll)
    return x


def dpm_2_sampler(
    denoiser: Denoiser, x: Data, sigmas: Float[ArrayLike, " n_plus_1"], *, unroll: int | bool = 1
) -> Data:
    r"""DPM-Solver-2 (Lu et al. 2022) in $(x_{\mathrm{edm}}, \sigma)$, k-diffusion's `sample_dpm_2`:
    midpoint steps in $t = -\ln\sigma$ (`dpm_2_step`), an Euler step to $\sigma = 0$; $2N - 1$
    denoiser calls with `sigmas` ending in 0. Deterministic.

    **Returns:** the sample at `sigmas[-1]`, shaped like `x`.
    """
    x = jnp.asarray(x)
    sigmas = _steps_array(sigmas, x, "sigmas", increasing=False)

    def step(x, inputs, last):
        return dpm_2_step(denoiser, x, *inputs, midpoint=not last)

    return _run(step, x, (sigmas[:-1], sigmas[1:]), sigmas[-1], unroll)


def dpmpp_2m_sampler(
    denoiser: Denoiser, x: Data, sigmas: Float[ArrayLike, " n_plus_1"], *, unroll: int | bool = 1
) -> Data:
    r"""DPM-Solver++(2M) (Lu et al. 2022b), k-diffusion's `sample_dpmpp_2m`: with
    $h_i = \ln(\sigma_i/\sigma_{i+1})$, $r_i = h_{i-1}/h_i$,
    $x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i}x_i + (1 - e^{-h_i})\big(D_i + (D_i - D_{i-1})/(2r_i)\big)$,
    first order on the first step, $D_{N-1}$ on a step to $\sigma = 0$. $N$ denoiser calls.

    **Returns:** the sample at `sigmas[-1]`, shaped like `x`.
    """
    x = jnp.asarray(x)
    sigmas = _steps_array(sigmas, x, "sigmas", increasing=False)

    def step(state, inputs, last):
        return dpmpp_2m_step(denoiser, state, *inputs, final=last)

    return _run(step, dpmpp_2m_init(x), (sigmas[:-1], sigmas[1:]), sigmas[-1], unroll)[0]


def dpmpp_2m_sde_sampler(
    denoiser: Denoiser,
    x: Data,
    sigmas: Float[ArrayLike, " n_plus_1"],
    *,
    eta: float | Float[ArrayLike, ""] = 1.0,
    S_noise: float | Float[ArrayLike, ""] = 1.0,
    noise: Float[ArrayLike, " n *dims"] | None = None,
    key: PRNGKeyArray | None = None,
    unroll: int | bool = 1,
) -> Data:
    r"""DPM-Solver++(2M) SDE (Lu et al. 2022b), k-diffusion's `sample_dpmpp_2m_sde` (midpoint):
    $$x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i}e^{-\eta h_i}x_i + \big(1 - e^{-(1+\eta)h_i}\big)\Big(D_i + \frac{D_i - D_{i-1}}{2r_i}\Big)
    + \sigma_{i+1}\sqrt{1 - e^{-2\eta h_i}}\,S_{\mathrm{noise}}\,\xi_i,$$
    $D_{N-1}$ on a step to $\sigma = 0$. $\xi$ from `noise` or `key` (required unless `eta`
    is a concrete 0, which is `dpmpp_2m_sampler`). $N$ denoiser calls.

    **Returns:** the sample at `sigmas[-1]`, shaped like `x`.
    """
    x = jnp.asarray(x)
    sigmas = _steps_array(sigmas, x, "sigmas", increasing=False)
    n = sigmas.shape[0] - 1
    eta_value, s_noise = _concrete(eta), _concrete(S_noise)
    if eta_value is not None and (not math.isfinite(eta_value) or eta_value < 0):
        raise ValueError(f"eta must be finite and >= 0, got {eta}; 0 gives the ODE solver dpmpp_2m_sampler.")
    if s_noise is not None and (not math.isfinite(s_noise) or s_noise < 0):
        raise ValueError(f"S_noise must be finite and >= 0, got {S_noise}.")
    if eta_value == 0.0:
        return dpmpp_2m_sampler(denoiser, x, sigmas, unroll=unroll)
    xi = _noise(noise, key, n, x, "dpmpp_2m_sde_sampler")
    eta, S_noise = jnp.asarray(eta, x.dtype), jnp.asarray(S_noise, x.dtype)

    def step(state, inputs, last):
        sigma, sigma_next, xi_i = inputs
        return dpmpp_2m_step(denoiser, state, sigma, sigma_next, final=last, eta=eta, S_noise=S_noise, xi=xi_i)

    return _run(step, dpmpp_2m_init(x), (sigmas[:-1], sigmas[1:], xi), sigmas[-1], unroll)[0]


# --- VP samplers -----------------------------------------------------------------------------


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
        return ancestral_step(eps_model, z, *inputs), None

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
        return ddim_step(eps_model, z, *inputs), None

    z, _ = lax.scan(step, z, (logsnrs[:-1], logsnrs[1:]), unroll=unroll)
    return z
