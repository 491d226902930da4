r"""EDM preconditioning, loss weight, time steps and denoiser adapters (Karras et al. 2022).

Notation: $\sigma$ is the EDM noise level of a point with log-SNR $\lambda$,
$\sigma = e^{-\lambda/2}$, and $x_{\mathrm{edm}} = z/\alpha = x + \sigma\epsilon$ is the
variance-exploding view of the VP latent $z = \alpha x + \sigma_{\mathrm{vp}}\epsilon$, with
$\alpha = 1/\sqrt{1+\sigma^2}$ and $\sigma_{\mathrm{vp}} = \sigma\alpha$.

Samplers use the denoiser convention $D(x_{\mathrm{edm}}, \sigma) \to \hat x$ (k-diffusion's
`model(x, sigma)`); the adapters below turn ε-, x-, v- and F-models, which follow the
package's `model(z, logsnr)` convention, into such denoisers. Arrays are float64; a
denoiser passes a whole array (a batch works) to the model with a scalar or broadcastable
$\sigma$.
"""

from __future__ import annotations

import numpy as np

import _checks
from reference.schedules import sigma_to_logsnr


def _sigma(sigma, name: str = "sigma"):
    """`sigma` as a float64 array, checked finite and > 0 (every formula here divides by or logs it)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    if not np.all(np.isfinite(sigma) & (sigma > 0)):
        raise ValueError(
            f"{name} must be finite and > 0, got {sigma!r}; the final σ = 0 of a sampling "
            "schedule is never passed to a denoiser or preconditioner."
        )
    return sigma


# --- preconditioning (EDM Table 1) ---------------------------------------------------------


def edm_precond(sigma, sigma_data: float = 0.5):
    r"""EDM's preconditioning, so that $D(x;\sigma) = c_{\mathrm{skip}} x + c_{\mathrm{out}} F(c_{\mathrm{in}} x;\, c_{\mathrm{noise}})$.

    $$c_{\mathrm{skip}} = \frac{\sigma_d^2}{\sigma^2+\sigma_d^2},\quad
      c_{\mathrm{out}} = \frac{\sigma\sigma_d}{\sqrt{\sigma^2+\sigma_d^2}},\quad
      c_{\mathrm{in}} = \frac{1}{\sqrt{\sigma^2+\sigma_d^2}},\quad
      c_{\mathrm{noise}} = \tfrac14\ln\sigma.$$
    With data of standard deviation $\sigma_d$, the network input $c_{\mathrm{in}} x$ and its
    regression target $F = (x_0 - c_{\mathrm{skip}} x)/c_{\mathrm{out}}$ both have unit variance.

    **Returns:** `(c_skip, c_out, c_in, c_noise)`, float64 arrays shaped like `sigma`.
    """
    sigma = _sigma(sigma)
    sd = _checks.positive("sigma_data", sigma_data)
    norm = np.hypot(sigma, sd)  # √(σ² + σ_d²) without overflow
    return (sd / norm) ** 2, sigma * sd / norm, 1.0 / norm, 0.25 * np.log(sigma)


def vp_precond(sigma, beta_d: float = 19.9, beta_min: float = 0.1, M: float = 1000):
    r"""Preconditioning of the VP (DDPM++) column of EDM Table 1: an ε-network in disguise.

    $$c_{\mathrm{skip}} = 1,\quad c_{\mathrm{out}} = -\sigma,\quad c_{\mathrm{in}} = \frac{1}{\sqrt{\sigma^2+1}},
      \quad c_{\mathrm{noise}} = (M-1)\,t(\sigma),$$
    where $t(\sigma)$ inverts the VP-SDE schedule $\sigma(t) = \sqrt{e^{\frac12\beta_d t^2 + \beta_{\min}t} - 1}$:
    $t = 2g/\big(\beta_{\min} + \sqrt{\beta_{\min}^2 + 2\beta_d g}\big)$, $g = \ln(1+\sigma^2)$
    (the root without cancellation). $F$ then predicts ε from the VP latent $z = c_{\mathrm{in}}x$.

    **Returns:** `(c_skip, c_out, c_in, c_noise)`, float64 arrays shaped like `sigma`.
    """
    sigma = _sigma(sigma)
    beta_d = _checks.positive("beta_d", beta_d)
    beta_min = _checks.positive("beta_min", beta_min)
    M = _checks.positive("M", M)
    g = np.log1p(sigma**2)
    t = 2.0 * g / (beta_min + np.sqrt(beta_min**2 + 2.0 * beta_d * g))
    return np.ones_like(sigma), -sigma, 1.0 / np.hypot(sigma, 1.0), (M - 1.0) * t


def ve_precond(sigma):
    r"""Preconditioning of the VE (NCSN++) column of EDM Table 1.

    $$c_{\mathrm{skip}} = 1,\quad c_{\mathrm{out}} = \sigma,\quad c_{\mathrm{in}} = 1,\quad
      c_{\mathrm{noise}} = \ln(\tfrac12\sigma).$$

    **Returns:** `(c_skip, c_out, c_in, c_noise)`, float64 arrays shaped like `sigma`.
    """
    sigma = _sigma(sigma)
    return np.ones_like(sigma), sigma, np.ones_like(sigma), np.log(0.5 * sigma)


def edm_loss_weight(sigma, sigma_data: float = 0.5):
    r"""EDM's per-noise-level loss weight on the x-error, $\lambda_{\mathrm{EDM}}(\sigma) = \frac{\sigma^2+\sigma_d^2}{(\sigma\sigma_d)^2} = \frac{1}{c_{\mathrm{out}}^2}$.

    It turns $\lambda_{\mathrm{EDM}}\|x - D\|^2$ into the unit-weighted F-loss
    $\|F - \hat F\|^2$; computed as $1/\sigma^2 + 1/\sigma_d^2$.

    **Returns:** float64 array shaped like `sigma`.
    """
    sigma = _sigma(sigma)
    sd = _checks.positive("sigma_data", sigma_data)
    return 1.0 / sigma**2 + 1.0 / sd**2


# --- time steps ----------------------------------------------------------------------------


def edm_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
    r"""EDM's sampling noise levels (eq. 5): $n$ levels evenly spaced in $\sigma^{1/\rho}$, then 0.

    $$\sigma_i = \Big(\sigma_{\max}^{1/\rho} + \tfrac{i}{n-1}\big(\sigma_{\min}^{1/\rho} - \sigma_{\max}^{1/\rho}\big)\Big)^{\rho},
      \quad i = 0, \dots, n-1, \qquad \sigma_n = 0.$$

    **Returns:** float64 array of shape `(n + 1,)`, strictly decreasing from `sigma_max` to 0.
    """
    n, sigma_min, sigma_max, rho = _checks.edm_sigmas(n, sigma_min, sigma_max, rho)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    # (1 - r)·hi + r·lo rather than hi + r(lo - hi): both ends exact, even for rho = 1
    ramp = np.arange(n, dtype=np.float64) / (n - 1)
    return np.append(((1.0 - ramp) * hi + ramp * lo) ** rho, 0.0)


# --- denoiser adapters: D(x_edm, σ) → x̂ -----------------------------------------------------


def _vp_view(x_edm, sigma):
    """(z, λ, α, σ_vp) of the VP point whose EDM view is `(x_edm, σ)`."""
    sigma = _sigma(sigma)
    alpha = 1.0 / np.hypot(1.0, sigma)  # α² = sigmoid(λ) = 1/(1 + σ²)
    return alpha * np.asarray(x_edm, dtype=np.float64), sigma_to_logsnr(sigma), alpha, sigma * alpha


def denoiser_from_eps(eps_model):
    r"""Denoiser from an ε-model: $z = \alpha x_{\mathrm{edm}}$, $\hat x = (z - \sigma_{\mathrm{vp}}\hat\epsilon)/\alpha = x_{\mathrm{edm}} - \sigma\,\hat\epsilon(z; \lambda)$.

    **Returns:** `denoiser(x_edm, sigma) -> x̂`.
    """

    def denoiser(x_edm, sigma):
        z, logsnr, _, _ = _vp_view(x_edm, sigma)
        return np.asarray(x_edm, dtype=np.float64) - sigma * eps_model(z, logsnr)

    return denoiser


def denoiser_from_x(x_model):
    r"""Denoiser from an x-model: $\hat x = \hat x(\alpha x_{\mathrm{edm}}; \lambda)$.

    **Returns:** `denoiser(x_edm, sigma) -> x̂`.
    """

    def denoiser(x_edm, sigma):
        z, logsnr, _, _ = _vp_view(x_edm, sigma)
        return np.asarray(x_model(z, logsnr), dtype=np.float64)

    return denoiser


def denoiser_from_v(v_model):
    r"""Denoiser from a v-model. With $v = \alpha\epsilon - \sigma_{\mathrm{vp}}x$ and $z = \alpha x + \sigma_{\mathrm{vp}}\epsilon$,
    $\alpha z - \sigma_{\mathrm{vp}} v = (\alpha^2 + \sigma_{\mathrm{vp}}^2)x = x$, so $\hat x = \alpha z - \sigma_{\mathrm{vp}}\hat v(z; \lambda)$.

    **Returns:** `denoiser(x_edm, sigma) -> x̂`.
    """

    def denoiser(x_edm, sigma):
        z, logsnr, alpha, sigma_vp = _vp_view(x_edm, sigma)
        return alpha * z - sigma_vp * v_model(z, logsnr)

    return denoiser


def denoiser_from_F(F_model, sigma_data: float = 0.5):
    r"""EDM's preconditioned denoiser $D = c_{\mathrm{skip}} x_{\mathrm{edm}} + c_{\mathrm{out}} F(c_{\mathrm{in}} x_{\mathrm{edm}};\, c_{\mathrm{noise}})$ (see `edm_precond`).

    `F_model(network_input, c_noise)` is called with the preconditioned input and noise
    label, not with `(z, logsnr)`.

    **Returns:** `denoiser(x_edm, sigma) -> x̂`.
    """
    sigma_data = _checks.positive("sigma_data", sigma_data)

    def denoiser(x_edm, sigma):
        c_skip, c_out, c_in, c_noise = edm_precond(sigma, sigma_data)
        x_edm = np.asarray(x_edm, dtype=np.float64)
        return c_skip * x_edm + c_out * F_model(c_in * x_edm, c_noise)

    return denoiser
