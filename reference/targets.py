r"""Prediction targets and their exact factors relative to the ε-loss (SPEC §0).

For each target $y$, $\|y - \hat y\|^2 = f_y(\lambda)\,\|\epsilon - \hat\epsilon\|^2$:

| target | $f_y(\lambda)$ |
|---|---|
| `"eps"` | $1$ |
| `"x"` | $e^{-\lambda}$ |
| `"v"` ($v = \alpha\epsilon - \sigma x$) | $1 + e^{-\lambda}$ |
| `"F"` (EDM, $x = c_{\rm skip} z_{\rm edm} + c_{\rm out}F$) | $1+e^{-\lambda}/\sigma_d^2$ |
| `"u"` (flow velocity $\epsilon - x$, $\alpha = 1-t$, $\sigma = t$) | $(1 + e^{-\lambda/2})^2$ |
"""

from __future__ import annotations

import abc

import numpy as np
from scipy import special

import _checks
from reference._typing import FloatArray
from reference.schedules import alpha_sigma

TARGETS = _checks.TARGETS


# --- the targets; the denominator D of EDM's F ------------------------------------------
#
# With $D = \sigma^2 + \sigma_d^2\alpha^2 = \alpha^2(\sigma_{\mathrm{edm}}^2 + \sigma_d^2)$ the EDM
# preconditioning becomes $c_{\mathrm{in}} z_{\mathrm{edm}} = z/\sqrt D$ and
# $\hat\epsilon = \sigma z / D - \alpha\sigma_d \hat F/\sqrt D$: no division by a small number,
# since $D \ge \min(1, \sigma_d^2)$.


def _edm_denominator(logsnr, sigma_data: float):
    r"""$D = \sigma^2 + \sigma_d^2 \alpha^2$
    $= \mathrm{sigmoid}(-\lambda) + \sigma_d^2\,\mathrm{sigmoid}(\lambda)$.

    **Returns:** an array like `logsnr`.
    """
    return special.expit(-logsnr) + sigma_data**2 * special.expit(logsnr)


class _AbstractTarget(abc.ABC):
    r"""One prediction target $y$: its factor $f_y$, its value, and the conversions to and from ε̂.

    The public functions cast to float64, validate, compute $\alpha, \sigma$ once and dispatch
    here; every method acts elementwise.
    """

    @abc.abstractmethod
    def factor(self, logsnr, sigma_data: float) -> FloatArray:
        r"""$f_y(\lambda)$."""

    @abc.abstractmethod
    def value(self, x, eps, alpha, sigma, logsnr, sigma_data: float) -> FloatArray:
        r"""$y(x, \epsilon, \lambda)$."""

    @abc.abstractmethod
    def eps_from_prediction(self, prediction, z, alpha, sigma, logsnr, sigma_data: float) -> FloatArray:
        r"""$\hat\epsilon$ from $\hat y$ at $z$."""

    @abc.abstractmethod
    def prediction_from_eps(self, eps_hat, z, alpha, sigma, logsnr, sigma_data: float) -> FloatArray:
        r"""$\hat y$ from $\hat\epsilon$ at $z$."""


class _Eps(_AbstractTarget):
    r"""$y = \epsilon$, $f = 1$; the conversions are the identity (copies)."""

    def factor(self, logsnr, sigma_data):
        return np.ones_like(logsnr)

    def value(self, x, eps, alpha, sigma, logsnr, sigma_data):
        return eps.copy()

    def eps_from_prediction(self, prediction, z, alpha, sigma, logsnr, sigma_data):
        return prediction.copy()

    def prediction_from_eps(self, eps_hat, z, alpha, sigma, logsnr, sigma_data):
        return eps_hat.copy()


class _X(_AbstractTarget):
    r"""$y = x$, $f = e^{-\lambda}$.

    $\hat\epsilon = (z - \alpha\hat x)/\sigma$, $\hat x = (z - \sigma\hat\epsilon)/\alpha$.
    """

    def factor(self, logsnr, sigma_data):
        return np.exp(-logsnr)

    def value(self, x, eps, alpha, sigma, logsnr, sigma_data):
        return x.copy()

    def eps_from_prediction(self, prediction, z, alpha, sigma, logsnr, sigma_data):
        return (z - alpha * prediction) / sigma

    def prediction_from_eps(self, eps_hat, z, alpha, sigma, logsnr, sigma_data):
        return (z - sigma * eps_hat) / alpha


class _V(_AbstractTarget):
    r"""$y = v = \alpha\epsilon - \sigma x$, $f = 1 + e^{-\lambda}$.

    $\hat\epsilon = \sigma z + \alpha\hat v$ (since $\sigma z + \alpha v = (\sigma^2 + \alpha^2)\epsilon$),
    $\hat v = (\hat\epsilon - \sigma z)/\alpha$.
    """

    def factor(self, logsnr, sigma_data):
        return 1.0 + np.exp(-logsnr)

    def value(self, x, eps, alpha, sigma, logsnr, sigma_data):
        return alpha * eps - sigma * x

    def eps_from_prediction(self, prediction, z, alpha, sigma, logsnr, sigma_data):
        return sigma * z + alpha * prediction

    def prediction_from_eps(self, eps_hat, z, alpha, sigma, logsnr, sigma_data):
        return (eps_hat - sigma * z) / alpha


class _F(_AbstractTarget):
    r"""EDM's $F$: $y = (\sigma x/\sigma_d - \alpha\sigma_d\epsilon)/\sqrt D$, $f = e^{-\lambda}/\sigma_d^2 + 1$.

    $\hat\epsilon = \sigma z/D - \alpha\sigma_d\hat F/\sqrt D$,
    $\hat F = \frac{\sqrt D}{\alpha\sigma_d}(\sigma z/D - \hat\epsilon)$, $D = \sigma^2 + \sigma_d^2\alpha^2$.
    """

    def factor(self, logsnr, sigma_data):
        return np.exp(-logsnr) / sigma_data**2 + 1.0

    def value(self, x, eps, alpha, sigma, logsnr, sigma_data):
        d = _edm_denominator(logsnr, sigma_data)
        return (sigma * x / sigma_data - alpha * sigma_data * eps) / np.sqrt(d)

    def eps_from_prediction(self, prediction, z, alpha, sigma, logsnr, sigma_data):
        d = _edm_denominator(logsnr, sigma_data)
        return sigma * z / d - alpha * sigma_data * prediction / np.sqrt(d)

    def prediction_from_eps(self, eps_hat, z, alpha, sigma, logsnr, sigma_data):
        d = _edm_denominator(logsnr, sigma_data)
        return np.sqrt(d) / (alpha * sigma_data) * (sigma * z / d - eps_hat)


class _U(_AbstractTarget):
    r"""Flow velocity $y = u = \epsilon - x$, $f = (1 + e^{-\lambda/2})^2$.

    $\hat\epsilon = (z + \alpha\hat u)/(\alpha + \sigma)$, $\hat u = ((\alpha + \sigma)\hat\epsilon - z)/\alpha$.
    """

    def factor(self, logsnr, sigma_data):
        return (1.0 + np.exp(-0.5 * logsnr)) ** 2

    def value(self, x, eps, alpha, sigma, logsnr, sigma_data):
        return eps - x

    def eps_from_prediction(self, prediction, z, alpha, sigma, logsnr, sigma_data):
        return (z + alpha * prediction) / (alpha + sigma)

    def prediction_from_eps(self, eps_hat, z, alpha, sigma, logsnr, sigma_data):
        return ((alpha + sigma) * eps_hat - z) / alpha


_TARGETS: dict[str, _AbstractTarget] = {"eps": _Eps(), "x": _X(), "v": _V(), "F": _F(), "u": _U()}


def target_factor(target: str, logsnr, sigma_data: float = 0.5):
    r"""The factor $f$ in $\|y - \hat y\|^2 = f(\lambda)\|\epsilon - \hat\epsilon\|^2$, target $y$.

    **Returns:** an array like `logsnr`.
    """
    _checks.target(target)
    return _TARGETS[target].factor(np.asarray(logsnr, dtype=np.float64), sigma_data)


def target_value(target: str, x, eps, logsnr, sigma_data: float = 0.5):
    r"""The regression target $y(x, \epsilon, \lambda)$ of a network trained on `target`.

    $$y_{\epsilon} = \epsilon,\quad y_x = x,\quad y_v = \alpha\epsilon - \sigma x,\quad
      y_F = \frac{\sigma x/\sigma_d - \alpha\sigma_d\,\epsilon}{\sqrt{D}},\quad
      y_u = \epsilon - x,$$
    with $D = \sigma^2 + \sigma_d^2\alpha^2$. $y_F$ is EDM's $F = (x - c_{\mathrm{skip}}
    z_{\mathrm{edm}})/c_{\mathrm{out}}$ rewritten without dividing by $c_{\mathrm{out}}$ (exact for
    every $\lambda$). `logsnr` broadcasts against `x` (a scalar for one example).

    **Returns:** an array like `x`.
    """
    _checks.target(target)
    x, eps = np.asarray(x, dtype=np.float64), np.asarray(eps, dtype=np.float64)
    logsnr = np.asarray(logsnr, dtype=np.float64)
    alpha, sigma = alpha_sigma(logsnr)
    return _TARGETS[target].value(x, eps, alpha, sigma, logsnr, sigma_data)


def eps_from_prediction(target: str, prediction, z, logsnr, sigma_data: float = 0.5):
    r"""Convert a network's prediction of `target` at $z = \alpha x + \sigma\epsilon$ into ε̂.

    $$\hat\epsilon = \begin{cases}
      \hat y & \epsilon \\
      (z - \alpha\hat x)/\sigma & x \\
      \sigma z + \alpha\hat v & v \\
      \sigma z/D - \alpha\sigma_d\hat F/\sqrt{D} & F \\
      (z + \alpha\hat u)/(\alpha + \sigma) & u
    \end{cases}$$
    For $v$: $\sigma z + \alpha v = (\sigma^2 + \alpha^2)\epsilon = \epsilon$. For $F$: substitute
    $\hat x = c_{\mathrm{skip}} z_{\mathrm{edm}} + c_{\mathrm{out}}\hat F$ into
    $\hat\epsilon = (z - \alpha\hat x)/\sigma$ and use
    $\alpha^2(\sigma_{\mathrm{edm}}^2 + \sigma_d^2) = D$.
    For $u$: the flow path $\alpha_f = 1-t$, $\sigma_f = t$ with the same $\lambda$ has
    $\alpha_f = \alpha/(\alpha+\sigma)$, $z_f = z/(\alpha+\sigma)$, and
    $z_f = \alpha_f\hat x + \sigma_f\hat\epsilon = \hat\epsilon - \alpha_f\hat u$.
    Only `"x"` divides by a possibly small number ($\sigma$); its amplification $e^{\lambda/2}$
    is that of the problem ($\|\delta\hat\epsilon\|^2 = e^{\lambda}\|\delta\hat x\|^2$).

    **Returns:** $\hat\epsilon$, an array like `z`.
    """
    _checks.target(target)
    prediction, z = np.asarray(prediction, dtype=np.float64), np.asarray(z, dtype=np.float64)
    logsnr = np.asarray(logsnr, dtype=np.float64)
    alpha, sigma = alpha_sigma(logsnr)
    return _TARGETS[target].eps_from_prediction(prediction, z, alpha, sigma, logsnr, sigma_data)


def prediction_from_eps(target: str, eps_hat, z, logsnr, sigma_data: float = 0.5):
    r"""Inverse of `eps_from_prediction`: the prediction of `target` that yields $\hat\epsilon$.

    $$\hat x = (z - \sigma\hat\epsilon)/\alpha,\quad \hat v = (\hat\epsilon - \sigma z)/\alpha,\quad
      \hat F = \frac{\sqrt D}{\alpha\sigma_d}\Big(\frac{\sigma z}{D} - \hat\epsilon\Big),\quad
      \hat u = \frac{(\alpha+\sigma)\hat\epsilon - z}{\alpha}.$$
    All but `"eps"` divide by $\alpha$: inherent, since the factor $f_y(\lambda)$ grows like
    $e^{-\lambda}$ as $\lambda \to -\infty$.

    **Returns:** the prediction, an array like `z`.
    """
    _checks.target(target)
    eps_hat, z = np.asarray(eps_hat, dtype=np.float64), np.asarray(z, dtype=np.float64)
    logsnr = np.asarray(logsnr, dtype=np.float64)
    alpha, sigma = alpha_sigma(logsnr)
    return _TARGETS[target].prediction_from_eps(eps_hat, z, alpha, sigma, logsnr, sigma_data)
