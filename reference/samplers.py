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
        x_hat = x + sigma * math.sqrt(gamma * (2.0 + gamma)) * S_noise * xi(i) if gamma else x  # pyright: ignore[reportOptionalCall]  # xi is set whenever some gamma > 0
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


# --- DPM-Solver family (Lu et al. 2022, 2022b) -------------------------------------------------
#
# In EDM coordinates with t = −ln σ (so λ = 2t) the probability-flow ODE is linear in x,
# dx/dt = D(x; σ) − x, and its exact solution from t_i to t_{i+1} = t_i + h is
# x_{i+1} = e^{−h} x_i + ∫ e^{−(t_{i+1} − τ)} D dτ (docs/theory/edm.md, "DPM-Solver").


def _dpm_ratio(sigma, sigma_next):
    """$e^{-h} = \\sigma_{i+1}/\\sigma_i$ and $h = \\ln(\\sigma_i/\\sigma_{i+1})$ ($h = \\infty$ when $\\sigma_{i+1} = 0$)."""
    ratio = sigma_next / sigma
    return ratio, (math.log(sigma / sigma_next) if sigma_next > 0 else math.inf)


def dpm_2_sampler(denoiser, x, sigmas):
    r"""DPM-Solver-2 (Lu et al. 2022, Alg. 1 with $r_1 = \tfrac12$) in $(x_{\mathrm{edm}}, \sigma)$; k-diffusion's `sample_dpm_2`.

    With $d(x;\sigma) = (x - D(x;\sigma))/\sigma$ ($=\hat\epsilon$) and the midpoint in $t = -\ln\sigma$,
    $\sigma_{\mathrm{mid}} = \sqrt{\sigma_i\sigma_{i+1}}$:
    $$x' = x_i + (\sigma_{\mathrm{mid}} - \sigma_i)\,d(x_i;\sigma_i),\qquad
    x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)\,d(x';\sigma_{\mathrm{mid}}),$$
    and a plain Euler step when $\sigma_{i+1} = 0$. With `sigmas` ending in 0 that is $2N - 1$
    denoiser calls. Deterministic (for churn use `heun_sampler`).

    **Returns:** the sample at `sigmas[-1]`, shaped like `x`.
    """
    x = np.asarray(x, dtype=np.float64)
    sigmas = _sigmas(sigmas)
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        d = (x - denoiser(x, sigma)) / sigma
        if sigma_next == 0:
            x = x + (sigma_next - sigma) * d
            continue
        sigma_mid = math.sqrt(sigma * sigma_next)
        x_mid = x + (sigma_mid - sigma) * d
        x = x + (sigma_next - sigma) * (x_mid - denoiser(x_mid, sigma_mid)) / sigma_mid
    return x


def dpmpp_2m_sampler(denoiser, x, sigmas):
    r"""DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): the exponential integrator in data prediction
    with a second-order multistep correction; k-diffusion's `sample_dpmpp_2m`.

    With $h_i = \ln(\sigma_i/\sigma_{i+1})$, $D_i = D(x_i;\sigma_i)$ and $r_i = h_{i-1}/h_i$:
    $$x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i}x_i + \big(1 - e^{-h_i}\big)\Big(D_i + \frac{D_i - D_{i-1}}{2r_i}\Big),$$
    first order ($D_{i-1}$ term dropped) on the first step and on a step to $\sigma_{i+1} = 0$,
    which returns $D_i$. One denoiser call per step: $N$.

    **Returns:** the sample at `sigmas[-1]`, shaped like `x`.
    """
    return _dpmpp_2m(denoiser, x, sigmas, eta=0.0, S_noise=0.0, xi=None)


def dpmpp_2m_sde_sampler(denoiser, x, sigmas, *, eta: float = 1.0, S_noise: float = 1.0, noise=None, rng=None):
    r"""DPM-Solver++(2M) SDE (Lu et al. 2022b, §5 SDE solver; k-diffusion's `sample_dpmpp_2m_sde`, midpoint form).

    Integrates $dx = (1 + \eta)(D - x)\,dt + \sigma\sqrt{2\eta}\,dW_t$ in $t = -\ln\sigma$, which has the
    marginals of the probability-flow ODE for every $\eta \ge 0$. With $h_i = \ln(\sigma_i/\sigma_{i+1})$:
    $$x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i}e^{-\eta h_i}x_i + \big(1 - e^{-(1+\eta)h_i}\big)\Big(D_i + \frac{D_i - D_{i-1}}{2r_i}\Big)
    + \sigma_{i+1}\sqrt{1 - e^{-2\eta h_i}}\,S_{\mathrm{noise}}\,\xi_i,$$
    first order on the first step, and $x_N = D_{N-1}$ on a step to $\sigma = 0$. $\eta = 0$ is
    `dpmpp_2m_sampler`; the first-order step with $\eta = 1$ is the ancestral (DDPM) step.
    $N$ denoiser calls; $\xi_i$ from `noise[i]` (shape `(N, *x.shape)`) or `rng`, needed when $\eta > 0$.

    **Returns:** the sample at `sigmas[-1]`, shaped like `x`.
    """
    x = np.asarray(x, dtype=np.float64)
    sigmas = _sigmas(sigmas)
    eta, S_noise = float(eta), float(S_noise)
    if not (math.isfinite(eta) and eta >= 0):
        raise ValueError(f"eta must be finite and >= 0, got {eta}; 0 gives the ODE solver dpmpp_2m_sampler.")
    if not (math.isfinite(S_noise) and S_noise >= 0):
        raise ValueError(f"S_noise must be finite and >= 0, got {S_noise}.")
    n = sigmas.size - 1
    xi = _noise_source(noise, rng, n, x.shape, "dpmpp_2m_sde_sampler") if eta > 0 else None
    return _dpmpp_2m(denoiser, x, sigmas, eta=eta, S_noise=S_noise, xi=xi)


def _dpmpp_2m(denoiser, x, sigmas, *, eta, S_noise, xi):
    x = np.asarray(x, dtype=np.float64)
    sigmas = _sigmas(sigmas)
    old_denoised, h_last = None, None
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
            continue
        ratio, h = _dpm_ratio(sigma, sigma_next)
        # 1 − e^{−(1+η)h} without cancellation for small h
        data_coef = -math.expm1(-(1.0 + eta) * h)
        target = denoised
        if old_denoised is not None:
            target = denoised + (denoised - old_denoised) * (h / (2.0 * h_last))  # pyright: ignore[reportOperatorIssue]  # h_last is set with old_denoised
        x = ratio * math.exp(-eta * h) * x + data_coef * target
        if eta > 0:
            x = x + sigma_next * math.sqrt(-math.expm1(-2.0 * eta * h)) * S_noise * xi(i)
        old_denoised, h_last = denoised, h
    return x
