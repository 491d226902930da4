r"""EDM preconditioning, loss weight, time steps and denoiser adapters (Karras et al. 2022).

Mirror of `reference.edm`. $\sigma = e^{-\lambda/2}$ is the EDM noise level,
$x_{\mathrm{edm}} = z/\alpha = x + \sigma\epsilon$, $\alpha = 1/\sqrt{1+\sigma^2}$,
$\sigma_{\mathrm{vp}} = \sigma\alpha$. Denoisers follow $D(x_{\mathrm{edm}}, \sigma) \to \hat x$ for one
example; models follow `model(z, logsnr)`. Hyperparameters (`sigma_data`, …) are Python
floats, validated eagerly; `sigma` may be traced, and must be > 0 (not checked under jit).
Results take the dtype of `sigma` / `x_edm`.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp

import _checks
from eqx_impl._floats import as_float
from eqx_impl._typing import Array, ArrayLike, Data, Float, Scalar, ScalarLike
from eqx_impl.schedules import sigma_to_logsnr

Sigma = Float[ArrayLike, "*shape"]
Coefficients = tuple[Float[Array, "*shape"], Float[Array, "*shape"], Float[Array, "*shape"], Float[Array, "*shape"]]


# --- preconditioning (EDM Table 1) ---------------------------------------------------------


def edm_precond(sigma: Sigma, sigma_data: float = 0.5) -> Coefficients:
    r"""EDM's preconditioning, so that $D(x;\sigma) = c_{\mathrm{skip}} x + c_{\mathrm{out}} F(c_{\mathrm{in}} x;\, c_{\mathrm{noise}})$.

    $$c_{\mathrm{skip}} = \frac{\sigma_d^2}{\sigma^2+\sigma_d^2},\quad
      c_{\mathrm{out}} = \frac{\sigma\sigma_d}{\sqrt{\sigma^2+\sigma_d^2}},\quad
      c_{\mathrm{in}} = \frac{1}{\sqrt{\sigma^2+\sigma_d^2}},\quad
      c_{\mathrm{noise}} = \tfrac14\ln\sigma.$$

    **Returns:** `(c_skip, c_out, c_in, c_noise)`, arrays shaped like `sigma`.
    """
    sigma = as_float(sigma)
    sd = _checks.positive("sigma_data", sigma_data)
    norm = jnp.hypot(sigma, sd)  # √(σ² + σ_d²) without overflow
    return (sd / norm) ** 2, sigma * sd / norm, 1.0 / norm, 0.25 * jnp.log(sigma)


def vp_precond(sigma: Sigma, beta_d: float = 19.9, beta_min: float = 0.1, M: float = 1000) -> Coefficients:
    r"""Preconditioning of the VP (DDPM++) column of EDM Table 1.

    $c_{\mathrm{skip}} = 1$, $c_{\mathrm{out}} = -\sigma$, $c_{\mathrm{in}} = 1/\sqrt{\sigma^2+1}$,
    $c_{\mathrm{noise}} = (M-1)\,t(\sigma)$ with $t = 2g/(\beta_{\min} + \sqrt{\beta_{\min}^2 + 2\beta_d g})$,
    $g = \ln(1+\sigma^2)$, the inverse of $\sigma(t) = \sqrt{e^{\frac12\beta_d t^2 + \beta_{\min}t} - 1}$.

    **Returns:** `(c_skip, c_out, c_in, c_noise)`, arrays shaped like `sigma`.
    """
    sigma = as_float(sigma)
    beta_d = _checks.positive("beta_d", beta_d)
    beta_min = _checks.positive("beta_min", beta_min)
    M = _checks.positive("M", M)
    g = jnp.log1p(sigma**2)
    t = 2.0 * g / (beta_min + jnp.sqrt(beta_min**2 + 2.0 * beta_d * g))
    return jnp.ones_like(sigma), -sigma, 1.0 / jnp.hypot(sigma, 1.0), (M - 1.0) * t


def ve_precond(sigma: Sigma) -> Coefficients:
    r"""Preconditioning of the VE (NCSN++) column of EDM Table 1:
    $c_{\mathrm{skip}} = 1$, $c_{\mathrm{out}} = \sigma$, $c_{\mathrm{in}} = 1$, $c_{\mathrm{noise}} = \ln(\tfrac12\sigma)$.

    **Returns:** `(c_skip, c_out, c_in, c_noise)`, arrays shaped like `sigma`.
    """
    sigma = as_float(sigma)
    return jnp.ones_like(sigma), sigma, jnp.ones_like(sigma), jnp.log(0.5 * sigma)


def edm_loss_weight(sigma: Sigma, sigma_data: float = 0.5) -> Float[Array, "*shape"]:
    r"""$\lambda_{\mathrm{EDM}}(\sigma) = \frac{\sigma^2+\sigma_d^2}{(\sigma\sigma_d)^2} = \frac{1}{c_{\mathrm{out}}^2}$, computed as $1/\sigma^2 + 1/\sigma_d^2$.

    **Returns:** array shaped like `sigma`.
    """
    sigma = as_float(sigma)
    sd = _checks.positive("sigma_data", sigma_data)
    return 1.0 / sigma**2 + 1.0 / sd**2


# --- time steps ----------------------------------------------------------------------------


def edm_sigmas(
    n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> Float[Array, " n_plus_1"]:
    r"""EDM's sampling noise levels: $n$ levels evenly spaced in $\sigma^{1/\rho}$, then 0.

    $$\sigma_i = \Big(\sigma_{\max}^{1/\rho} + \tfrac{i}{n-1}\big(\sigma_{\min}^{1/\rho} - \sigma_{\max}^{1/\rho}\big)\Big)^{\rho},
      \quad i < n, \qquad \sigma_n = 0.$$
    The arguments are static Python numbers; the levels are computed in the default float
    dtype (float32, or float64 under `jax.enable_x64`), as $(\,(1-r_i)\sigma_{\max}^{1/\rho} + r_i\sigma_{\min}^{1/\rho})^\rho$ with
    $r_i = i/(n-1)$ (relative error about $\rho$ units of roundoff).

    **Returns:** array of shape `(n + 1,)`, strictly decreasing from `sigma_max` to 0.
    """
    n, sigma_min, sigma_max, rho = _checks.edm_sigmas(n, sigma_min, sigma_max, rho)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    ramp = jnp.arange(n, dtype=float) / (n - 1)
    levels = ((1.0 - ramp) * hi + ramp * lo) ** rho
    return jnp.append(levels, jnp.zeros(1, levels.dtype))


# --- denoiser adapters: D(x_edm, σ) → x̂ -----------------------------------------------------


def _vp_view(x_edm: Data, sigma: ScalarLike):
    """(z, λ, α, σ_vp) of the VP point whose EDM view is `(x_edm, σ)`, in the dtype of `x_edm`."""
    sigma = jnp.asarray(sigma, x_edm.dtype)
    alpha = 1.0 / jnp.hypot(1.0, sigma)  # α² = sigmoid(λ) = 1/(1 + σ²)
    return alpha * x_edm, sigma_to_logsnr(sigma), alpha, sigma * alpha


class _EpsDenoiser(eqx.Module):
    eps_model: Callable

    def __call__(self, x_edm: Data, sigma: ScalarLike) -> Data:
        z, logsnr, _, _ = _vp_view(x_edm, sigma)
        return x_edm - jnp.asarray(sigma, x_edm.dtype) * self.eps_model(z, logsnr)


class _XDenoiser(eqx.Module):
    x_model: Callable

    def __call__(self, x_edm: Data, sigma: ScalarLike) -> Data:
        z, logsnr, _, _ = _vp_view(x_edm, sigma)
        return self.x_model(z, logsnr)


class _VDenoiser(eqx.Module):
    v_model: Callable

    def __call__(self, x_edm: Data, sigma: ScalarLike) -> Data:
        z, logsnr, alpha, sigma_vp = _vp_view(x_edm, sigma)
        return alpha * z - sigma_vp * self.v_model(z, logsnr)


class _FDenoiser(eqx.Module):
    F_model: Callable
    sigma_data: float = eqx.field(static=True)

    def __check_init__(self):
        _checks.positive("sigma_data", self.sigma_data)

    def __call__(self, x_edm: Data, sigma: ScalarLike) -> Data:
        c_skip, c_out, c_in, c_noise = edm_precond(jnp.asarray(sigma, x_edm.dtype), self.sigma_data)
        return c_skip * x_edm + c_out * self.F_model(c_in * x_edm, c_noise)


def denoiser_from_eps(eps_model: Callable[[Data, Scalar], Data]) -> Callable[[Data, Scalar], Data]:
    r"""Denoiser from an ε-model: $z = \alpha x_{\mathrm{edm}}$, $\hat x = x_{\mathrm{edm}} - \sigma\,\hat\epsilon(z;\lambda)$.

    **Returns:** an `eqx.Module` `denoiser(x_edm, sigma) -> x̂` (a pytree holding the model).
    """
    return _EpsDenoiser(eps_model)


def denoiser_from_x(x_model: Callable[[Data, Scalar], Data]) -> Callable[[Data, Scalar], Data]:
    r"""Denoiser from an x-model: $\hat x = \hat x(\alpha x_{\mathrm{edm}};\lambda)$.

    **Returns:** an `eqx.Module` `denoiser(x_edm, sigma) -> x̂`.
    """
    return _XDenoiser(x_model)


def denoiser_from_v(v_model: Callable[[Data, Scalar], Data]) -> Callable[[Data, Scalar], Data]:
    r"""Denoiser from a v-model ($v = \alpha\epsilon - \sigma_{\mathrm{vp}}x$): $\hat x = \alpha z - \sigma_{\mathrm{vp}}\hat v(z;\lambda)$.

    **Returns:** an `eqx.Module` `denoiser(x_edm, sigma) -> x̂`.
    """
    return _VDenoiser(v_model)


def denoiser_from_F(F_model: Callable[[Data, Scalar], Data], sigma_data: float = 0.5) -> Callable[[Data, Scalar], Data]:
    r"""EDM's preconditioned denoiser $D = c_{\mathrm{skip}} x_{\mathrm{edm}} + c_{\mathrm{out}} F(c_{\mathrm{in}} x_{\mathrm{edm}};\, c_{\mathrm{noise}})$.

    `F_model(network_input, c_noise)` gets the preconditioned input and noise label.

    **Returns:** an `eqx.Module` `denoiser(x_edm, sigma) -> x̂`.
    """
    return _FDenoiser(F_model, float(sigma_data))
