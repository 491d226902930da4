r"""Prediction targets, their factors relative to the ε-loss, conversions to ε̂ (SPEC §0).

For each target $y$, $\|y - \hat y\|^2 = f_y(\lambda)\,\|\epsilon - \hat\epsilon\|^2$:

| target | $y$ | $f_y(\lambda)$ |
|---|---|---|
| `"eps"` | $\epsilon$ | $1$ |
| `"x"` | $x$ | $e^{-\lambda}$ |
| `"v"` | $\alpha\epsilon - \sigma x$ | $1 + e^{-\lambda}$ |
| `"F"` | EDM's $(x - c_{\rm skip} z_{\rm edm})/c_{\rm out}$ | $1+e^{-\lambda}/\sigma_d^2$ |
| `"u"` | $\epsilon - x$ (flow, $\alpha_f = 1-t$, $\sigma_f = t$) | $(1 + e^{-\lambda/2})^2$ |

The twin of `reference.targets`. Accuracy in float32 for $\lambda \in [-30, 30]$ (all values
and gradients finite there; tested):

- `target_factor`: a few ulps; `target_value`: a few ulps of its terms (none amplified).
- `eps_from_prediction`: a few ulps of its terms. Only `"x"` has terms larger than the
  result, of size $e^{\lambda/2}|z|$: a prediction $\hat x = x$ returns $\epsilon$ to about
  $10^{-7} e^{\lambda/2}|x|$ (the rounding of $z$, amplified as $f_x = e^{-\lambda}$ says it
  must be), i.e. to $10^{-4}$ for $\lambda \lesssim 14$.
- `prediction_from_eps`: a few ulps of its terms, which for every target but `"eps"` grow
  like $e^{-\lambda/2}$ as $\lambda \to -\infty$ (the factors $f$ grow like $e^{-\lambda}$):
  to $10^{-4}$ relative for $\lambda \gtrsim -14$.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

import _checks
from eqx_impl._floats import as_float
from eqx_impl._typing import Array, Data, Float, LogSNR

TARGETS = _checks.TARGETS

__all__ = ["TARGETS", "eps_from_prediction", "prediction_from_eps", "target_factor", "target_value"]


def _alpha_sigma(logsnr: Array) -> tuple[Array, Array]:
    # exp(½ log_sigmoid) instead of sqrt(sigmoid): finite gradient however small α² gets.
    return jnp.exp(0.5 * jax.nn.log_sigmoid(logsnr)), jnp.exp(0.5 * jax.nn.log_sigmoid(-logsnr))


def _inv_alpha(logsnr: Array) -> Array:
    r"""$1/\alpha = e^{\frac12\mathrm{softplus}(-\lambda)}$: no division, finite for $|\lambda| \le 30$."""
    return jnp.exp(0.5 * jax.nn.softplus(-logsnr))


def _edm_denominator(logsnr: Array, sigma_data: float) -> Array:
    r"""$D = \sigma^2 + \sigma_d^2\alpha^2 = \alpha^2(\sigma_{\mathrm{edm}}^2 + \sigma_d^2)$.

    **Returns:** an array like `logsnr`, $\ge \min(1, \sigma_d^2)$.
    """
    return jax.nn.sigmoid(-logsnr) + sigma_data**2 * jax.nn.sigmoid(logsnr)


class _AbstractTarget(eqx.Module):
    r"""One prediction target $y$: its factor $f_y$, its value, and the conversions to and from ε̂.

    The public functions cast and validate, compute $\alpha, \sigma$ once and dispatch here;
    every method acts elementwise on arrays of one dtype.
    """

    @abc.abstractmethod
    def factor(self, logsnr: Array, sigma_data: float) -> Array:
        r"""$f_y(\lambda)$."""

    @abc.abstractmethod
    def value(self, x: Array, eps: Array, alpha: Array, sigma: Array, logsnr: Array, sigma_data: float) -> Array:
        r"""$y(x, \epsilon, \lambda)$."""

    @abc.abstractmethod
    def eps_from_prediction(
        self, prediction: Array, z: Array, alpha: Array, sigma: Array, logsnr: Array, sigma_data: float
    ) -> Array:
        r"""$\hat\epsilon$ from $\hat y$ at $z$."""

    @abc.abstractmethod
    def prediction_from_eps(
        self, eps_hat: Array, z: Array, alpha: Array, sigma: Array, logsnr: Array, sigma_data: float
    ) -> Array:
        r"""$\hat y$ from $\hat\epsilon$ at $z$."""


class _Eps(_AbstractTarget):
    r"""$y = \epsilon$, $f = 1$; the conversions are the identity."""

    def factor(self, logsnr, sigma_data):
        return jnp.ones_like(logsnr)

    def value(self, x, eps, alpha, sigma, logsnr, sigma_data):
        return eps

    def eps_from_prediction(self, prediction, z, alpha, sigma, logsnr, sigma_data):
        return prediction

    def prediction_from_eps(self, eps_hat, z, alpha, sigma, logsnr, sigma_data):
        return eps_hat


class _X(_AbstractTarget):
    r"""$y = x$, $f = e^{-\lambda}$.

    $\hat\epsilon = (z - \alpha\hat x)/\sigma$, $\hat x = (z - \sigma\hat\epsilon)/\alpha$.
    """

    def factor(self, logsnr, sigma_data):
        return jnp.exp(-logsnr)

    def value(self, x, eps, alpha, sigma, logsnr, sigma_data):
        return x

    def eps_from_prediction(self, prediction, z, alpha, sigma, logsnr, sigma_data):
        # 1/σ = exp(½ softplus(λ)): no division, finite for |λ| ≤ 30 in float32.
        return (z - alpha * prediction) * jnp.exp(0.5 * jax.nn.softplus(logsnr))

    def prediction_from_eps(self, eps_hat, z, alpha, sigma, logsnr, sigma_data):
        inv_alpha = _inv_alpha(logsnr)
        return (z - sigma * eps_hat) * inv_alpha


class _V(_AbstractTarget):
    r"""$y = \alpha\epsilon - \sigma x$, $f = 1 + e^{-\lambda}$.

    $\hat\epsilon = \sigma z + \alpha\hat v$, $\hat v = (\hat\epsilon - \sigma z)/\alpha$.
    """

    def factor(self, logsnr, sigma_data):
        return 1.0 + jnp.exp(-logsnr)

    def value(self, x, eps, alpha, sigma, logsnr, sigma_data):
        return alpha * eps - sigma * x

    def eps_from_prediction(self, prediction, z, alpha, sigma, logsnr, sigma_data):
        return sigma * z + alpha * prediction

    def prediction_from_eps(self, eps_hat, z, alpha, sigma, logsnr, sigma_data):
        inv_alpha = _inv_alpha(logsnr)
        return (eps_hat - sigma * z) * inv_alpha


class _F(_AbstractTarget):
    r"""EDM's $F$: $y = (\sigma x/\sigma_d - \alpha\sigma_d\epsilon)/\sqrt D$, $f = e^{-\lambda}/\sigma_d^2 + 1$.

    $\hat\epsilon = \sigma z/D - \alpha\sigma_d\hat F/\sqrt D$,
    $\hat F = \frac{\sqrt D}{\alpha\sigma_d}(\sigma z/D - \hat\epsilon)$, $D = \sigma^2 + \sigma_d^2\alpha^2$.
    """

    def factor(self, logsnr, sigma_data):
        return jnp.exp(-logsnr) / sigma_data**2 + 1.0

    def value(self, x, eps, alpha, sigma, logsnr, sigma_data):
        d = _edm_denominator(logsnr, sigma_data)
        return (sigma * x / sigma_data - alpha * sigma_data * eps) / jnp.sqrt(d)

    def eps_from_prediction(self, prediction, z, alpha, sigma, logsnr, sigma_data):
        d = _edm_denominator(logsnr, sigma_data)
        return sigma * z / d - alpha * sigma_data * prediction / jnp.sqrt(d)

    def prediction_from_eps(self, eps_hat, z, alpha, sigma, logsnr, sigma_data):
        inv_alpha = _inv_alpha(logsnr)
        d = _edm_denominator(logsnr, sigma_data)
        return jnp.sqrt(d) * inv_alpha / sigma_data * (sigma * z / d - eps_hat)


class _U(_AbstractTarget):
    r"""Flow velocity $y = \epsilon - x$, $f = (1 + e^{-\lambda/2})^2$.

    $\hat\epsilon = (z + \alpha\hat u)/(\alpha + \sigma)$, $\hat u = ((\alpha + \sigma)\hat\epsilon - z)/\alpha$.
    """

    def factor(self, logsnr, sigma_data):
        return (1.0 + jnp.exp(-0.5 * logsnr)) ** 2

    def value(self, x, eps, alpha, sigma, logsnr, sigma_data):
        return eps - x

    def eps_from_prediction(self, prediction, z, alpha, sigma, logsnr, sigma_data):
        return (z + alpha * prediction) / (alpha + sigma)

    def prediction_from_eps(self, eps_hat, z, alpha, sigma, logsnr, sigma_data):
        inv_alpha = _inv_alpha(logsnr)
        return ((alpha + sigma) * eps_hat - z) * inv_alpha


_TARGETS: dict[str, _AbstractTarget] = {"eps": _Eps(), "x": _X(), "v": _V(), "F": _F(), "u": _U()}


def target_factor(target: str, logsnr: LogSNR, sigma_data: float = 0.5) -> Float[Array, "*shape"]:
    r"""The factor $f$ in $\|y - \hat y\|^2 = f(\lambda)\|\epsilon - \hat\epsilon\|^2$, target $y$.

    $f_\epsilon = 1$, $f_x = e^{-\lambda}$, $f_v = 1 + e^{-\lambda}$,
    $f_F = e^{-\lambda}/\sigma_d^2 + 1$, $f_u = (1 + e^{-\lambda/2})^2$.

    **Returns:** an array like `logsnr` (float).
    """
    _checks.target(target)
    return _TARGETS[target].factor(as_float(logsnr), sigma_data)


def target_value(target: str, x: Data, eps: Data, logsnr: LogSNR, sigma_data: float = 0.5) -> Float[Array, "*dims"]:
    r"""The regression target $y(x, \epsilon, \lambda)$ of a network trained on `target`.

    $$y_{\epsilon} = \epsilon,\quad y_x = x,\quad y_v = \alpha\epsilon - \sigma x,\quad
      y_F = \frac{\sigma x/\sigma_d - \alpha\sigma_d\,\epsilon}{\sqrt{D}},\quad
      y_u = \epsilon - x,$$
    $D = \sigma^2 + \sigma_d^2\alpha^2$ ($y_F$ is EDM's
    $(x - c_{\mathrm{skip}} z_{\mathrm{edm}})/c_{\mathrm{out}}$ without the division by
    $c_{\mathrm{out}}$). `logsnr` is cast to the dtype of `x`.

    **Returns:** an array like `x`.
    """
    _checks.target(target)
    logsnr = jnp.asarray(logsnr, dtype=x.dtype)
    alpha, sigma = _alpha_sigma(logsnr)
    return _TARGETS[target].value(x, eps, alpha, sigma, logsnr, sigma_data)


def eps_from_prediction(
    target: str, prediction: Data, z: Data, logsnr: LogSNR, sigma_data: float = 0.5
) -> Float[Array, "*dims"]:
    r"""Convert a network's prediction of `target` at $z = \alpha x + \sigma\epsilon$ into ε̂.

    $$\hat\epsilon = \begin{cases}
      \hat y & \epsilon \\
      (z - \alpha\hat x)/\sigma & x \\
      \sigma z + \alpha\hat v & v \\
      \sigma z/D - \alpha\sigma_d\hat F/\sqrt{D} & F \\
      (z + \alpha\hat u)/(\alpha + \sigma) & u
    \end{cases}$$
    (see `reference.targets.eps_from_prediction` for the derivations). Only `"x"` divides by a
    possibly small number, $\sigma$; $D \ge \min(1, \sigma_d^2)$ and $\alpha + \sigma \ge 1$.
    `logsnr` is cast to the dtype of `z`.

    **Returns:** $\hat\epsilon$, an array like `z`.
    """
    _checks.target(target)
    logsnr = jnp.asarray(logsnr, dtype=z.dtype)
    alpha, sigma = _alpha_sigma(logsnr)
    return _TARGETS[target].eps_from_prediction(prediction, z, alpha, sigma, logsnr, sigma_data)


def prediction_from_eps(
    target: str, eps_hat: Data, z: Data, logsnr: LogSNR, sigma_data: float = 0.5
) -> Float[Array, "*dims"]:
    r"""Inverse of `eps_from_prediction`: the prediction of `target` that yields $\hat\epsilon$.

    $$\hat x = (z - \sigma\hat\epsilon)/\alpha,\quad \hat v = (\hat\epsilon - \sigma z)/\alpha,\quad
      \hat F = \frac{\sqrt D}{\alpha\sigma_d}\Big(\frac{\sigma z}{D} - \hat\epsilon\Big),\quad
      \hat u = \frac{(\alpha+\sigma)\hat\epsilon - z}{\alpha}.$$
    All but `"eps"` multiply by $1/\alpha = e^{\frac12\mathrm{softplus}(-\lambda)}$ (inherent: the
    factors grow like $e^{-\lambda}$ as $\lambda \to -\infty$).

    **Returns:** the prediction, an array like `z`.
    """
    _checks.target(target)
    logsnr = jnp.asarray(logsnr, dtype=z.dtype)
    alpha, sigma = _alpha_sigma(logsnr)
    return _TARGETS[target].prediction_from_eps(eps_hat, z, alpha, sigma, logsnr, sigma_data)
