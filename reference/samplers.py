r"""Samplers: EDM's Heun/Euler in $(x_{\mathrm{edm}}, \sigma)$, and VDM ancestral/DDIM in VP coordinates.

EDM samplers integrate the probability-flow ODE $dx/d\sigma = (x - D(x;\sigma))/\sigma$ from
`sigmas[0]` down to `sigmas[-1]` with a denoiser `D(x, sigma) -> x̂` (see `reference.edm`
for adapters). VP samplers step an ε-model `eps_model(z, logsnr) -> ε̂` through an increasing
sequence of log-SNRs. All samplers pass the whole array to the model, so a leading batch
axis works; noise can be passed explicitly (shape `(N, *x.shape)`, one slice per step) so
that runs can be compared exactly with `eqx_impl`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from _checks import logsnrs as _logsnrs
from _checks import sigmas as _sigmas
from reference.schedules import alpha_sigma


def _noise_source(noise, rng, n_steps: int, shape, who: str):
    """A function `step -> ξ_step` reading explicit `noise` or drawing from `rng`."""
    if noise is not None:
        noise = np.asarray(noise, dtype=np.float64)
        if noise.shape != (n_steps, *shape):
            raise ValueError(
                f"noise has shape {noise.shape} but {who} needs {(n_steps, *shape)} "
                "(one standard-normal slice per step, each shaped like x)."
            )
        return lambda i: noise[i]
    if rng is None:
        raise ValueError(
            f"{who} is stochastic here: pass noise= (shape {(n_steps, *shape)}) or rng=np.random.default_rng(seed)."
        )
    return lambda i: rng.standard_normal(shape)


# --- EDM samplers ----------------------------------------------------------------------------


def heun_sampler(
    denoiser,
    x,
    sigmas,
    *,
    S_churn: float = 0.0,
    S_min: float = 0.0,
    S_max: float = math.inf,
    S_noise: float = 1.0,
    noise=None,
    rng=None,
):
    r"""EDM's stochastic Heun sampler (Algorithm 2); deterministic (Algorithm 1) when `S_churn = 0`.

    With $N$ = `len(sigmas) - 1` steps, at step $i$:
    $\gamma_i = \min(S_{\mathrm{churn}}/N, \sqrt2 - 1)$ if $S_{\min} \le \sigma_i \le S_{\max}$
    else 0; $\hat\sigma = \sigma_i(1+\gamma_i)$;
    $\hat x = x_i + \sqrt{\hat\sigma^2 - \sigma_i^2}\,S_{\mathrm{noise}}\,\xi_i$;
    $d = (\hat x - D(\hat x;\hat\sigma))/\hat\sigma$; $x_{i+1} = \hat x + (\sigma_{i+1} - \hat\sigma) d$;
    and unless $\sigma_{i+1} = 0$ the Heun correction
    $x_{i+1} = \hat x + (\sigma_{i+1} - \hat\sigma)\tfrac12\big(d + (x_{i+1} - D(x_{i+1};\sigma_{i+1}))/\sigma_{i+1}\big)$.
    With `sigmas` ending in 0 that is $2N - 1$ denoiser calls.

    `x` is the initial noise already scaled by `sigmas[0]`. Noise $\xi_i$ comes from
    `noise[i]` or `rng`; it is needed only when some $\gamma_i > 0$.

    **Returns:** the sample at `sigmas[-1]`, shaped like `x`.
    """
    x = np.asarray(x, dtype=np.float64)
    sigmas = _sigmas(sigmas)
    n = sigmas.size - 1
    S_churn, S_noise = float(S_churn), float(S_noise)
    if not (math.isfinite(S_churn) and S_churn >= 0):
        raise ValueError(f"S_churn must be finite and >= 0, got {S_churn}.")
    if not (math.isfinite(S_noise) and S_noise >= 0):
        raise ValueError(f"S_noise must be finite and >= 0, got {S_noise}.")
    if not float(S_min) <= float(S_max):
        raise ValueError(f"S_min={S_min} must be <= S_max={S_max}; swap them if reversed.")
    gamma_max = min(S_churn / n, math.sqrt(2.0) - 1.0)
    churned = [gamma_max > 0 and S_min <= s <= S_max for s in sigmas[:-1]]
    xi = _noise_source(noise, rng, n, x.shape, "heun_sampler") if any(churned) else None

    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        gamma = gamma_max if churned[i] else 0.0
        sigma_hat = sigma * (1.0 + gamma)
        # √(σ̂² − σ²) = σ√(γ(2+γ)), without the cancellation
        x_hat = x + sigma * math.sqrt(gamma * (2.0 + gamma)) * S_noise * xi(i) if gamma else x
        d = (x_hat - denoiser(x_hat, sigma_hat)) / sigma_hat
        x = x_hat + (sigma_next - sigma_hat) * d
        if sigma_next > 0:
            d_next = (x - denoiser(x, sigma_next)) / sigma_next
            x = x_hat + (sigma_next - sigma_hat) * 0.5 * (d + d_next)
    return x


def euler_sampler(denoiser, x, sigmas):
    r"""First-order Euler steps of the probability-flow ODE: $N$ denoiser calls.

    $$x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)\,\frac{x_i - D(x_i;\sigma_i)}{\sigma_i}.$$

    **Returns:** the sample at `sigmas[-1]`, shaped like `x`.
    """
    x = np.asarray(x, dtype=np.float64)
    sigmas = _sigmas(sigmas)
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        x = x + (sigma_next - sigma) * (x - denoiser(x, sigma)) / sigma
    return x


# --- VP samplers -----------------------------------------------------------------------------


def _alpha_ratio(logsnr_s, logsnr_t):
    r"""$\alpha_s/\alpha_t = \exp\big(\tfrac12(\ln\mathrm{sigmoid}\,\lambda_s - \ln\mathrm{sigmoid}\,\lambda_t)\big)$."""
    return np.exp(0.5 * (special.log_expit(logsnr_s) - special.log_expit(logsnr_t)))


def ancestral_sampler(eps_model, z, logsnrs, *, noise=None, rng=None):
    r"""VDM / DDPM ancestral sampling: draw $z_s \sim p(z_s \mid z_t) = q(z_s \mid z_t, x = \hat x(z_t))$.

    For consecutive log-SNRs $\lambda_t < \lambda_s$, with $c = -\operatorname{expm1}(\lambda_t - \lambda_s)$:
    $$z_s = \frac{\alpha_s}{\alpha_t}\big(z_t - \sigma_t c\,\hat\epsilon(z_t;\lambda_t)\big) + \sqrt{\sigma_s^2 c}\;\xi.$$
    $N$ = `len(logsnrs) - 1` model calls; $\xi$ from `noise[i]` or `rng`.

    **Returns:** $z$ at `logsnrs[-1]`, shaped like `z`.
    """
    z = np.asarray(z, dtype=np.float64)
    logsnrs = _logsnrs(logsnrs)
    n = logsnrs.size - 1
    xi = _noise_source(noise, rng, n, z.shape, "ancestral_sampler")
    for i in range(n):
        lt, ls = logsnrs[i], logsnrs[i + 1]
        c = -np.expm1(lt - ls)
        sigma_t, sigma_s = alpha_sigma(lt)[1], alpha_sigma(ls)[1]
        eps_hat = eps_model(z, lt)
        z = _alpha_ratio(ls, lt) * (z - sigma_t * c * eps_hat) + sigma_s * np.sqrt(c) * xi(i)
    return z


def ddim_sampler(eps_model, z, logsnrs):
    r"""Deterministic DDIM: $\hat x = (z_t - \sigma_t\hat\epsilon)/\alpha_t$, $z_s = \alpha_s\hat x + \sigma_s\hat\epsilon$.

    Evaluated in the equivalent form without cancellation at low SNR,
    $$z_s = \frac{\alpha_s}{\alpha_t} z_t - \sigma_s\operatorname{expm1}\!\big(\tfrac12(\lambda_s - \lambda_t)\big)\,\hat\epsilon,$$
    since $\alpha_s\sigma_t/\alpha_t = \sigma_s e^{(\lambda_s - \lambda_t)/2}$. In EDM coordinates
    $x = z/\alpha$ this is exactly `euler_sampler` with `denoiser_from_eps`. $N$ model calls.

    **Returns:** $z$ at `logsnrs[-1]`, shaped like `z`.
    """
    z = np.asarray(z, dtype=np.float64)
    logsnrs = _logsnrs(logsnrs)
    for lt, ls in zip(logsnrs[:-1], logsnrs[1:], strict=True):
        eps_hat = eps_model(z, lt)
        sigma_s = alpha_sigma(ls)[1]
        z = _alpha_ratio(ls, lt) * z - sigma_s * np.expm1(0.5 * (ls - lt)) * eps_hat
    return z
