r"""The ELBO theorems of Kingma & Gao 2023 (SPEC §4), computed by adaptive quadrature.

`eps` holds $n$ fixed noise draws, shape `(n, *x.shape)`; every integrand uses the mean loss
over them, $\bar\ell(\lambda) = \frac1n\sum_k \|\epsilon_k - \hat\epsilon(z_k;\lambda)\|^2$,
$z_k = \alpha x + \sigma\epsilon_k$ (common random numbers). The identities below are
calculus, so they hold exactly for any fixed draws;
with $n \to \infty$, $\bar\ell \to \mathbb E_\epsilon\ell$.

- Truncated KL (the ELBO of noise-perturbed data):
  $L(t;x) = \tfrac12\int_t^1(-\lambda'(s))\,\bar\ell(\lambda_s)\,ds + \mathrm{KL}_{\mathrm{prior}}
  = \tfrac12\int_{\lambda_{\min}}^{\lambda(t)}\bar\ell\,d\lambda
  + \mathrm{KL}(q(z_1|x)\|\mathcal N(0,I))$.
- Weighted loss:
  $\mathcal L_w(x) = \tfrac12\int_{\lambda_{\min}}^{\lambda_{\max}} w\,\bar\ell\,d\lambda$.
- Integration by parts: $\mathcal L_w = \int_0^1 \tfrac{d}{dt}w(\lambda_t)\,L(t;x)\,dt
  + w(\lambda_{\max})L(0;x) - w(\lambda_{\min})L(1;x)$.
- For non-increasing $w$: $p_w(t) = \tfrac{d}{dt}w(\lambda_t)/Z$ on $(0,1]$ plus mass
  $w(\lambda_{\max})/Z$ at $t=0$, $Z = w(\lambda_{\min})$, and
  $\mathcal L_w = Z\,\mathbb E_{t\sim p_w}[L(t;x)] - Z\,\mathrm{KL}_{\mathrm{prior}}$.

Integrals over time are evaluated in log-SNR ($d\lambda = \lambda'(t)\,dt$), where the
integrands are smooth; `scipy.integrate.quad` runs at `epsrel = 1e-12` with the
weighting's `kinks` as break points.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import integrate

import _checks
from reference.losses import eps_loss, prior_kl
from reference.weightings import is_monotonic

__all__ = [
    "AugmentationDistribution",
    "augmentation_distribution",
    "ibp_rhs",
    "truncated_kl",
    "weighted_loss_integral",
]

_QUAD: dict[str, Any] = dict(epsabs=1e-14, epsrel=1e-12, limit=400)
# Width of the panels whose partial integrals `_CumulativeLoss` caches (in log-SNR).
_PANEL_WIDTH = 1.0
# Bisection steps for inverse-CDF sampling: 2^-64 of a 100-wide range is below float64 spacing.
_BISECTION_STEPS = 64


def _mean_loss(eps_model, x, eps):
    r"""$\lambda \mapsto \bar\ell(\lambda)$, the ε-loss averaged over the fixed draws."""
    x, eps = np.asarray(x, dtype=np.float64), np.asarray(eps, dtype=np.float64)
    _checks.noise_draws(x, eps)

    def loss(logsnr):
        return float(np.mean([eps_loss(eps_model, x, logsnr, e) for e in eps]))

    return loss


def _inner_points(weighting, lo: float, hi: float) -> list[float]:
    return sorted(k for k in weighting.kinks if lo < k < hi)


def _half_integral(loss, lo: float, hi: float) -> float:
    r"""$\tfrac12\int_{lo}^{hi}\bar\ell\,d\lambda$."""
    if hi <= lo:
        return 0.0
    return 0.5 * integrate.quad(loss, lo, hi, **_QUAD)[0]


def truncated_kl(eps_model, x, t, schedule, eps):
    r"""$L(t; x) = \mathrm{KL}(q(z_{t..1}|x)\,\|\,p(z_{t..1}))$: diffusion loss on $[t,1]$ + prior.

    $$L(t;x) = \tfrac12\int_{\lambda_{\min}}^{\lambda(t)}\bar\ell(\lambda)\,d\lambda
      + \mathrm{KL}(q(z_1|x)\,\|\,\mathcal N(0,I)).$$

    **Returns:** a float64 scalar; $L(1;x)$ is `prior_kl(x, schedule.logsnr_min)`.
    """
    lam_min = float(schedule.logsnr_min)
    lam_t = float(schedule.logsnr(np.float64(t)))
    return _half_integral(_mean_loss(eps_model, x, eps), lam_min, lam_t) + prior_kl(x, lam_min)


def weighted_loss_integral(eps_model, x, weighting, schedule, eps):
    r"""$\mathcal L_w(x) = \tfrac12\int_{\lambda_{\min}}^{\lambda_{\max}} w\,\bar\ell\,d\lambda$.

    **Returns:** a float64 scalar (by `quad`, break points at the weighting's kinks).
    """
    loss = _mean_loss(eps_model, x, eps)
    lo, hi = float(schedule.logsnr_min), float(schedule.logsnr_max)
    value, _ = integrate.quad(
        lambda lam: float(weighting(lam)) * loss(lam),
        lo,
        hi,
        points=_inner_points(weighting, lo, hi) or None,
        **_QUAD,
    )
    return 0.5 * value


class _CumulativeLoss:
    r"""$\lambda \mapsto \tfrac12\int_{\lambda_{\min}}^{\lambda}\bar\ell$.

    Cached integrals over unit panels plus one short `quad` inside the last panel.
    """

    def __init__(self, loss, lo: float, hi: float):
        self.loss = loss
        num = max(1, math.ceil((hi - lo) / _PANEL_WIDTH))
        self.edges = np.linspace(lo, hi, num + 1)
        parts = [_half_integral(loss, a, b) for a, b in zip(self.edges[:-1], self.edges[1:], strict=True)]
        self.cumulative = np.concatenate([[0.0], np.cumsum(parts)])

    def __call__(self, lam: float) -> float:
        k = int(np.clip(np.searchsorted(self.edges, lam, side="right") - 1, 0, len(self.edges) - 2))
        return float(self.cumulative[k]) + _half_integral(self.loss, float(self.edges[k]), lam)


def ibp_rhs(eps_model, x, weighting, schedule, eps):
    r"""Right-hand side of the integration-by-parts identity (Kingma & Gao 2023).

    $$\int_0^1 \tfrac{d}{dt}w(\lambda_t)\,L(t;x)\,dt + w(\lambda_{\max})L(0;x)
      - w(\lambda_{\min})L(1;x),$$
    with $\tfrac{d}{dt}w(\lambda_t)\,dt = w'(\lambda)\,d\lambda$, so the first term is
    $-\int_{\lambda_{\min}}^{\lambda_{\max}} w'(\lambda)\,L(t(\lambda);x)\,d\lambda$; the inner
    integral in $L$ (cached per unit panel, plus a short `quad`) is nested inside the outer
    `quad`. Equals `weighted_loss_integral` for
    every $w$.

    **Returns:** a float64 scalar.
    """
    loss = _mean_loss(eps_model, x, eps)
    lo, hi = float(schedule.logsnr_min), float(schedule.logsnr_max)
    kl = prior_kl(x, lo)
    diffusion = _CumulativeLoss(loss, lo, hi)  # L(t(λ); x) - KL

    outer, _ = integrate.quad(
        lambda lam: float(weighting.derivative(lam)) * (diffusion(lam) + kl),
        lo,
        hi,
        points=_inner_points(weighting, lo, hi) or None,
        **_QUAD,
    )
    w_max, w_min = float(weighting(hi)), float(weighting(lo))
    return -outer + w_max * (diffusion(hi) + kl) - w_min * kl


class AugmentationDistribution:
    r"""The distribution over time of the noise augmentation implied by a monotone weighting.

    $$p_w(t) = \frac{1}{Z}\,\frac{d}{dt}w(\lambda_t)\ \text{on } (0, 1],\qquad
      P(t = 0) = \frac{w(\lambda_{\max})}{Z},\qquad Z = w(\lambda_{\min}),$$
    so the CDF is $F(t) = w(\lambda_t)/Z$ and
    $\mathcal L_w(x) = Z\,\mathbb E_{t\sim p_w}[L(t;x)] - Z\,\mathrm{KL}_{\mathrm{prior}}$.
    Build it with `augmentation_distribution`, which checks monotonicity.
    """

    def __init__(self, weighting, schedule):
        self.weighting = weighting
        self.schedule = schedule
        self.normalizer = float(weighting(schedule.logsnr_min))
        self.point_mass = float(weighting(schedule.logsnr_max)) / self.normalizer

    def density(self, t):
        r"""$p_w(t) = w'(\lambda_t)\,\lambda'(t)/Z$ on $(0, 1]$ (the point mass at 0 is separate).

        **Returns:** float64 array like `t`.
        """
        t = np.asarray(t, dtype=np.float64)
        lam = self.schedule.logsnr(t)
        return self.weighting.derivative(lam) * self.schedule.dlogsnr_dt(t) / self.normalizer

    def cdf(self, t):
        r"""$F(t) = P(T \le t) = w(\lambda_t)/Z$ on $[0, 1]$; $F(0)$ = `point_mass`, $F(1) = 1$.

        **Returns:** float64 array like `t`.
        """
        t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
        return self.weighting(self.schedule.logsnr(t)) / self.normalizer

    def sample(self, u):
        r"""Inverse-CDF sampling: the smallest $t$ with $F(t) \ge u$, for $u \in [0, 1)$.

        $t = 0$ when $u <$ `point_mass`; otherwise $t = t(\lambda)$ with $\lambda$ the largest
        log-SNR where $w(\lambda) \ge uZ$, found by bisection.

        **Returns:** float64 array like `u`.
        """
        u = np.asarray(u, dtype=np.float64)
        level = u * self.normalizer
        lo = np.full_like(u, float(self.schedule.logsnr_min))  # w(lo) >= level throughout
        hi = np.full_like(u, float(self.schedule.logsnr_max))
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            keep = self.weighting(mid) >= level
            lo, hi = np.where(keep, mid, lo), np.where(keep, hi, mid)
        t = np.clip(self.schedule.inverse(0.5 * (lo + hi)), 0.0, 1.0)
        return np.where(u < self.point_mass, 0.0, t)

    def augmented_loss(self, eps_model, x, u, eps):
        r"""One-sample estimate of $\mathcal L_w(x)$ by the augmentation form, $t$ = `sample(u)`:

        $$Z\,\big(L(t;x) - \mathrm{KL}_{\mathrm{prior}}\big)
          = Z\cdot\tfrac12\int_{\lambda_{\min}}^{\lambda(t)}\bar\ell\,d\lambda;$$
        its mean over $u \sim U(0,1)$ is $\mathcal L_w(x)$.

        **Returns:** a float64 scalar.
        """
        lam_t = float(self.schedule.logsnr(self.sample(np.float64(u))))
        loss = _mean_loss(eps_model, x, eps)
        return self.normalizer * _half_integral(loss, float(self.schedule.logsnr_min), lam_t)


def augmentation_distribution(weighting, schedule):
    r"""The augmentation distribution $p_w(t)$ of a monotone (non-increasing) weighting.

    **Returns:** an `AugmentationDistribution`. Raises `ValueError` if `weighting` is not monotone.
    """
    lo, hi = _checks.logsnr_range(schedule.logsnr_min, schedule.logsnr_max)
    _checks.monotone(weighting, lo, hi, is_monotonic(weighting, lo, hi))
    return AugmentationDistribution(weighting, schedule)
