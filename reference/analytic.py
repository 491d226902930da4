r"""Analytic test distributions: data whose noisy marginals and Bayes-optimal denoisers are exact.

Under the VP convention $z_\lambda = \alpha x + \sigma\epsilon$, $\alpha^2 = \mathrm{sigmoid}(\lambda)$,
$\sigma^2 = \mathrm{sigmoid}(-\lambda)$, a Gaussian (mixture) stays a Gaussian (mixture), so
$p(z_\lambda)$, $\mathbb E[x \mid z_\lambda]$ and the optimal $\hat\epsilon$ are closed forms.
They give the floor that any trained model is measured against (Kingma & Gao 2023, §4; SPEC §8).

One example is an array of shape `(dim,)`; every method also broadcasts over leading batch
axes (the log-SNR broadcasts against those batch axes), so samplers can pass whole batches.
Variances are handled as logs, $\ln(\alpha^2 s^2 + \sigma^2) = \mathrm{logaddexp}(\ln\mathrm{sigmoid}(\lambda) + \ln s^2,
\ln\mathrm{sigmoid}(-\lambda))$, so nothing divides by a tiny $\sigma$ or $\alpha$: every method is
finite for $\lambda \in [-50, 50]$ in float64.
"""

from __future__ import annotations

import abc
import math

import numpy as np
from scipy import special

import _checks
from reference._typing import FloatArray

_LOG_2PI = math.log(2.0 * math.pi)


def _arr(x):
    return np.asarray(x, dtype=np.float64)


def _log_sigmoid(x):
    """$\\ln\\mathrm{sigmoid}(x) = -\\mathrm{softplus}(-x)$, finite for any float64 $x$."""
    return -np.logaddexp(0.0, -x)


def _scales(logsnr):
    """$(\\alpha, \\sigma, \\ln\\alpha^2, \\ln\\sigma^2)$ without underflow."""
    log_a2, log_s2 = _log_sigmoid(logsnr), _log_sigmoid(-logsnr)
    return np.exp(0.5 * log_a2), np.exp(0.5 * log_s2), log_a2, log_s2


def _x_minus_log1p_series(x):
    r"""$x - \ln(1+x) = \sum_{k=2}^{20} (-x)^k/k$; truncation $< 10^{-20}$ relative for $|x| < 0.1$."""
    series = np.zeros_like(x)
    for k in range(20, 1, -1):  # Horner on x^2 (1/2 - x/3 + x^2/4 - ...)
        series = series * (-x) + 1.0 / k
    return x * x * series


class AbstractAnalyticData(abc.ABC):
    r"""Data with exact noisy marginals $p(z_\lambda)$ and Bayes-optimal $\hat\epsilon(z; \lambda) = \mathbb E[\epsilon \mid z_\lambda = z]$."""

    dim: int

    @abc.abstractmethod
    def sample(self, num: int, *, rng: np.random.Generator) -> np.ndarray:
        """`num` exact samples, shape `(num, dim)`."""

    @abc.abstractmethod
    def log_prob(self, x) -> FloatArray:
        r"""$\ln p(x)$, summed over the last axis."""

    @abc.abstractmethod
    def log_prob_noisy(self, z, logsnr) -> FloatArray:
        r"""$\ln p(z_\lambda)$, the density of $z_\lambda = \alpha x + \sigma\epsilon$."""

    @abc.abstractmethod
    def denoise(self, z, logsnr) -> FloatArray:
        r"""$\hat x(z;\lambda) = \mathbb E[x \mid z_\lambda = z]$."""

    @abc.abstractmethod
    def eps(self, z, logsnr) -> FloatArray:
        r"""$\hat\epsilon(z;\lambda) = \mathbb E[\epsilon \mid z_\lambda = z] = (z - \alpha\hat x)/\sigma$."""

    def optimal_loss_from_noise(self, x, logsnr, eps):
        r"""Per-example loss of the Bayes-optimal model for given data and noise.

        $$\ell^*(\lambda) = \|\epsilon - \hat\epsilon(\alpha x + \sigma\epsilon;\lambda)\|^2.$$

        `x`, `eps`: `(..., dim)`; `logsnr` broadcasts against `x.shape[:-1]`.

        **Returns:** $\ell^*$, shape `broadcast(x.shape[:-1], logsnr.shape)`.
        """
        x, eps = _arr(x), _arr(eps)
        _checks.same_shape("x", x, "eps", eps)
        _checks.last_axis("x", x, self.dim)
        alpha, sigma, _, _ = _scales(_arr(logsnr)[..., None])
        z = alpha * x + sigma * eps
        return np.sum((eps - self.eps(z, logsnr)) ** 2, axis=-1)

    def optimal_loss(self, logsnr, num: int, *, rng: np.random.Generator):
        r"""Monte Carlo estimate of the Bayes-optimal loss, the floor of any trained model.

        $$\mathbb E_{x,\epsilon}\|\epsilon - \hat\epsilon(z_\lambda;\lambda)\|^2 \approx
          \frac1n\sum_{i=1}^n \ell^*_i(\lambda),$$
        with the same `num` draws of $(x, \epsilon)$ for every entry of `logsnr`.

        **Returns:** the estimate, shape of `logsnr`.
        """
        x = self.sample(num, rng=rng)
        eps = rng.standard_normal(x.shape)
        return np.mean(self.optimal_loss_from_noise(x, _arr(logsnr)[..., None], eps), axis=-1)


class GaussianData(AbstractAnalyticData):
    r"""$x \sim \mathcal N(0, s^2 I_d)$ with $s^2$ = `var`, $d$ = `dim`.

    The noisy marginal is $z_\lambda \sim \mathcal N(0, v I)$, $v = \alpha^2 s^2 + \sigma^2$, and
    $$\hat x = \frac{\alpha s^2}{v} z, \qquad \hat\epsilon = \frac{\sigma}{v} z,$$
    the latter because $z - \alpha\hat x = z\,\sigma^2/v$ (no division by $\sigma$).
    """

    def __init__(self, var: float, dim: int):
        self.var = _checks.positive("var", var)
        self.dim = _checks.dim(dim)

    def _log_v(self, logsnr):
        r"""$\ln v = \ln(\alpha^2 s^2 + \sigma^2)$."""
        return np.logaddexp(_log_sigmoid(logsnr) + math.log(self.var), _log_sigmoid(-logsnr))

    def sample_from_noise(self, noise):
        """`noise` ~ N(0, I) of shape `(..., dim)` mapped to data. **Returns:** $s \\cdot$ `noise`."""
        noise = _arr(noise)
        _checks.last_axis("noise", noise, self.dim)
        return math.sqrt(self.var) * noise

    def sample(self, num: int, *, rng: np.random.Generator):
        """**Returns:** `num` draws of $x$, shape `(num, dim)`."""
        return self.sample_from_noise(rng.standard_normal((num, self.dim)))

    def log_prob(self, x) -> FloatArray:
        r"""$\ln p(x) = -\tfrac12\big(\|x\|^2/s^2 + d\ln(2\pi s^2)\big)$. **Returns:** shape `x.shape[:-1]`."""
        x = _arr(x)
        _checks.last_axis("x", x, self.dim)
        return -0.5 * (np.sum(x**2, axis=-1) / self.var + self.dim * (_LOG_2PI + math.log(self.var)))

    def log_prob_noisy(self, z, logsnr) -> FloatArray:
        r"""$\ln\mathcal N(z; 0, vI)$, $v = \alpha^2 s^2 + \sigma^2$. **Returns:** shape `broadcast(z.shape[:-1], logsnr.shape)`."""
        z = _arr(z)
        _checks.last_axis("z", z, self.dim)
        log_v = self._log_v(_arr(logsnr))
        return -0.5 * (np.sum(z**2, axis=-1) * np.exp(-log_v) + self.dim * (_LOG_2PI + log_v))

    def denoise(self, z, logsnr) -> FloatArray:
        r"""$\hat x = \alpha s^2 z / v$. **Returns:** shape of `z` (broadcast with `logsnr[..., None]`)."""
        z = _arr(z)
        _checks.last_axis("z", z, self.dim)
        lam = _arr(logsnr)[..., None]
        return np.exp(0.5 * _log_sigmoid(lam) + math.log(self.var) - self._log_v(lam)) * z

    def eps(self, z, logsnr) -> FloatArray:
        r"""$\hat\epsilon = \sigma z / v$. **Returns:** shape of `z` (broadcast with `logsnr[..., None]`)."""
        z = _arr(z)
        _checks.last_axis("z", z, self.dim)
        lam = _arr(logsnr)[..., None]
        return np.exp(0.5 * _log_sigmoid(-lam) - self._log_v(lam)) * z

    # --- closed forms of the optimal loss and the ELBO terms (SPEC §4, §5) -------------------

    def loss_mean(self, logsnr):
        r"""$\mathbb E\,\ell^*(\lambda) = d\cdot\mathrm{sigmoid}(\lambda + \ln s^2)$. **Returns:** shape of `logsnr`."""
        return self.dim * special.expit(_arr(logsnr) + math.log(self.var))

    def loss_second_moment(self, logsnr):
        r"""$\mathbb E\,\ell^{*2} = v_\ell^2 (d^2 + 2d)$ since $\ell^* \sim v_\ell\chi^2_d$, $v_\ell = \mathrm{sigmoid}(\lambda + \ln s^2)$.

        **Returns:** shape of `logsnr`.
        """
        v = special.expit(_arr(logsnr) + math.log(self.var))
        return v**2 * (self.dim**2 + 2 * self.dim)

    def mutual_information(self, logsnr):
        r"""$I(x; z_\lambda) = \tfrac d2 \ln(v/\sigma^2) = \tfrac d2\,\mathrm{softplus}(\lambda + \ln s^2)$ (nats).

        **Returns:** shape of `logsnr`.
        """
        return 0.5 * self.dim * np.logaddexp(0.0, _arr(logsnr) + math.log(self.var))

    def marginal_prior_kl(self, logsnr):
        r"""$\mathrm{KL}(q(z_\lambda)\,\|\,\mathcal N(0, I)) = \tfrac d2 (v - 1 - \ln v)$ for $q(z_\lambda) = \mathcal N(0, vI)$.

        With $u = v - 1 = \mathrm{sigmoid}(\lambda)(s^2 - 1)$ this is $\tfrac d2(u - \ln(1+u))$,
        computed without cancellation when $v \approx 1$.

        **Returns:** shape of `logsnr`.
        """
        lam = _arr(logsnr)
        u = special.expit(lam) * (self.var - 1.0)
        # ln v = log1p(u) unless v <= 1/2 (tiny var, high SNR), where 1 + u cancels: use the
        # log-space form there. Near v = 1 the difference u - ln v cancels: use the series.
        log_v = np.where(u > -0.5, np.log1p(np.maximum(u, -0.5)), self._log_v(lam))
        small = np.abs(u) < 0.1
        kl = np.where(small, _x_minus_log1p_series(np.where(small, u, 0.0)), u - log_v)
        return 0.5 * self.dim * kl


class GaussianMixture(AbstractAnalyticData):
    r"""$p(x) = \sum_k w_k\,\mathcal N(x; \mu_k, \mathrm{diag}(s_k^2))$.

    `weights` `(K,)` positive, summing to 1; `means` `(K, dim)`; `stds` `(K,)` (isotropic) or
    `(K, dim)` (diagonal). Noisy marginal: components $\mathcal N(\alpha\mu_k, v_k)$,
    $v_k = \alpha^2 s_k^2 + \sigma^2$; with responsibilities $r_k(z) \propto w_k\mathcal N(z; \alpha\mu_k, v_k)$,
    $$\hat x = \sum_k r_k\Big(\mu_k + \frac{\alpha s_k^2}{v_k}(z - \alpha\mu_k)\Big), \qquad
      \hat\epsilon = \sum_k r_k \frac{\sigma}{v_k}(z - \alpha\mu_k).$$
    """

    def __init__(self, weights, means, stds):
        self.weights, self.means, self.stds = _checks.mixture(weights, means, stds)
        self.num_components, self.dim = self.means.shape
        self._stds = np.broadcast_to(self.stds.reshape(self.num_components, -1), self.means.shape)
        self._log_var = 2.0 * np.log(self._stds)  # (K, dim)

    def _components(self, z, logsnr):
        """Responsibilities `(..., K)` and $z - \\alpha\\mu_k$, $\\ln v_k$ `(..., K, dim)`."""
        z = _arr(z)
        _checks.last_axis("z", z, self.dim)
        lam = _arr(logsnr)[..., None, None]
        alpha, _, log_a2, log_s2 = _scales(lam)
        log_v = np.logaddexp(log_a2 + self._log_var, log_s2)
        diff = z[..., None, :] - alpha * self.means
        logits = np.log(self.weights) + _log_normal(diff, log_v)
        return special.softmax(logits, axis=-1), diff, log_v, logits

    def sample_from_noise(self, u, noise):
        r"""Exact samples from uniforms and standard normals.

        Component $k$ is the first with $u < \sum_{j \le k} w_j$; then $x = \mu_k + s_k\odot$ `noise`.
        `u` `(...)` in $[0, 1)$; `noise` `(..., dim)`.

        **Returns:** samples, shape of `noise`.
        """
        u, noise = _arr(u), _arr(noise)
        _checks.last_axis("noise", noise, self.dim)
        k = np.minimum(np.searchsorted(np.cumsum(self.weights), u, side="right"), self.num_components - 1)
        return self.means[k] + self._stds[k] * noise

    def sample(self, num: int, *, rng: np.random.Generator):
        """**Returns:** `num` exact draws, shape `(num, dim)`."""
        return self.sample_from_noise(rng.random(num), rng.standard_normal((num, self.dim)))

    def log_prob(self, x) -> FloatArray:
        r"""$\ln p(x) = \mathrm{logsumexp}_k\big(\ln w_k + \ln\mathcal N(x; \mu_k, s_k^2)\big)$. **Returns:** shape `x.shape[:-1]`."""
        x = _arr(x)
        _checks.last_axis("x", x, self.dim)
        logits = np.log(self.weights) + _log_normal(x[..., None, :] - self.means, self._log_var)
        return special.logsumexp(logits, axis=-1)  # pyright: ignore[reportReturnType]  # stub includes the return_sign=True tuple

    def log_prob_noisy(self, z, logsnr) -> FloatArray:
        r"""$\ln p(z_\lambda) = \mathrm{logsumexp}_k\big(\ln w_k + \ln\mathcal N(z; \alpha\mu_k, v_k)\big)$.

        **Returns:** shape `broadcast(z.shape[:-1], logsnr.shape)`.
        """
        return special.logsumexp(self._components(z, logsnr)[3], axis=-1)  # pyright: ignore[reportReturnType]  # as above

    def denoise(self, z, logsnr) -> FloatArray:
        r"""$\hat x = \sum_k r_k(\mu_k + \alpha s_k^2 (z - \alpha\mu_k)/v_k)$. **Returns:** shape of `z` (broadcast with `logsnr[..., None]`)."""
        resp, diff, log_v, _ = self._components(z, logsnr)
        log_a = 0.5 * _log_sigmoid(_arr(logsnr)[..., None, None])
        post = self.means + np.exp(log_a + self._log_var - log_v) * diff
        return np.sum(resp[..., None] * post, axis=-2)

    def eps(self, z, logsnr) -> FloatArray:
        r"""$\hat\epsilon = \sum_k r_k\,\sigma(z - \alpha\mu_k)/v_k$. **Returns:** shape of `z` (broadcast with `logsnr[..., None]`)."""
        resp, diff, log_v, _ = self._components(z, logsnr)
        log_s = 0.5 * _log_sigmoid(-_arr(logsnr)[..., None, None])
        return np.sum(resp[..., None] * np.exp(log_s - log_v) * diff, axis=-2)


def _log_normal(diff, log_var):
    r"""$\sum_j \ln\mathcal N(\mathrm{diff}_j; 0, e^{\mathrm{log\_var}_j})$ over the last axis."""
    return -0.5 * np.sum(diff**2 * np.exp(-log_var) + log_var + _LOG_2PI, axis=-1)
