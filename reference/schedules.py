r"""Noise schedules $t \mapsto \lambda(t)$, the log-SNR, on $[\lambda_{\min}, \lambda_{\max}]$.

Time runs from $t=0$ (least noise, $\lambda_{\max}$) to $t=1$ (most noise,
$\lambda_{\min}$). Under $t \sim U(0,1)$ a schedule induces the density
$p(\lambda) = -\,dt/d\lambda$ on $[\lambda_{\min}, \lambda_{\max}]$: in the weighted-ELBO
view this density is only an importance-sampling proposal (Kingma & Gao 2023, §3).

All functions act elementwise on float64 NumPy arrays.
"""

from __future__ import annotations

import abc
import math

import numpy as np
from scipy import special

import _checks
from reference._typing import FloatArray

DEFAULT_LOGSNR_MIN = -20.0
DEFAULT_LOGSNR_MAX = 20.0


# --- λ ↔ (α, σ) and the EDM σ -------------------------------------------------------------


def alpha_sigma(logsnr):
    r"""Variance-preserving scales: $\alpha^2 = \mathrm{sigmoid}(\lambda)$, $\sigma^2 = \mathrm{sigmoid}(-\lambda)$.

    **Returns:** `(alpha, sigma)`, arrays like `logsnr`.
    """
    logsnr = np.asarray(logsnr, dtype=np.float64)
    return np.sqrt(special.expit(logsnr)), np.sqrt(special.expit(-logsnr))


def logsnr_to_sigma(logsnr):
    r"""EDM noise level of the same point: $\sigma_{\mathrm{edm}} = e^{-\lambda/2}$."""
    return np.exp(-0.5 * np.asarray(logsnr, dtype=np.float64))


def sigma_to_logsnr(sigma):
    r"""Inverse of `logsnr_to_sigma`: $\lambda = -2 \ln \sigma_{\mathrm{edm}}$."""
    return -2.0 * np.log(np.asarray(sigma, dtype=np.float64))


# --- the abstract schedule -----------------------------------------------------------------


class AbstractSchedule(abc.ABC):
    """A strictly decreasing map $t \\mapsto \\lambda(t)$ from $[0, 1]$ onto $[\\lambda_{\\min}, \\lambda_{\\max}]$."""

    logsnr_min: float
    logsnr_max: float

    @abc.abstractmethod
    def logsnr(self, t) -> FloatArray:
        """$\\lambda(t)$."""

    @abc.abstractmethod
    def inverse(self, logsnr) -> FloatArray:
        """$t(\\lambda)$, the inverse of `logsnr`."""

    @abc.abstractmethod
    def dlogsnr_dt(self, t) -> FloatArray:
        """$d\\lambda/dt < 0$."""

    def density(self, logsnr):
        r"""$p(\lambda) = -dt/d\lambda = 1/|\lambda'(t(\lambda))|$: the density of $\lambda$ when $t \sim U(0,1)$."""
        return -1.0 / self.dlogsnr_dt(self.inverse(logsnr))


def _as_array(x):
    return np.asarray(x, dtype=np.float64)


class _TwoSidedLog(AbstractSchedule):
    r"""Schedules of the form $\lambda = 2\ln g(c + (1-t)\Delta) - 2\ln g(a + t\Delta) + \mathrm{shift}$.

    Both arguments stay small near their own end, so float32 keeps full relative precision
    at both ends of the range (no $\ln\tan$ of an angle close to $\pi/2$).
    """

    a: float
    c: float
    delta: float
    shift: float

    @staticmethod
    @abc.abstractmethod
    def _log_g(u, /) -> FloatArray:
        """$\\ln g(u)$."""

    @staticmethod
    @abc.abstractmethod
    def _dlog_g(u, /) -> FloatArray:
        """$d \\ln g / du$."""

    def logsnr(self, t):
        t = _as_array(t)
        lo = self.a + t * self.delta
        hi = self.c + (1.0 - t) * self.delta
        return 2.0 * (self._log_g(hi) - self._log_g(lo)) + self.shift

    def dlogsnr_dt(self, t):
        t = _as_array(t)
        lo = self.a + t * self.delta
        hi = self.c + (1.0 - t) * self.delta
        return -2.0 * self.delta * (self._dlog_g(hi) + self._dlog_g(lo))


class LinearLogSNR(AbstractSchedule):
    r"""VDM's fixed schedule: $\lambda(t) = \lambda_{\max} + t(\lambda_{\min} - \lambda_{\max})$, uniform $p(\lambda)$."""

    def __init__(self, logsnr_min: float = DEFAULT_LOGSNR_MIN, logsnr_max: float = DEFAULT_LOGSNR_MAX):
        self.logsnr_min, self.logsnr_max = _checks.logsnr_range(logsnr_min, logsnr_max)

    def logsnr(self, t):
        return self.logsnr_max + _as_array(t) * (self.logsnr_min - self.logsnr_max)

    def inverse(self, logsnr):
        return (self.logsnr_max - _as_array(logsnr)) / (self.logsnr_max - self.logsnr_min)

    def dlogsnr_dt(self, t):
        return np.full_like(_as_array(t), self.logsnr_min - self.logsnr_max)

    def density(self, logsnr):
        return np.full_like(_as_array(logsnr), 1.0 / (self.logsnr_max - self.logsnr_min))


class Cosine(_TwoSidedLog):
    r"""The (shifted) cosine schedule truncated to $[\lambda_{\min}, \lambda_{\max}]$.

    $$\lambda(t) = -2\ln\tan(a + t(b-a)) + \mathrm{shift},\quad
      a = \arctan e^{-(\lambda_{\max}-\mathrm{shift})/2},\ b = \arctan e^{-(\lambda_{\min}-\mathrm{shift})/2},$$
    $$p(\lambda) = \frac{\mathrm{sech}((\lambda - \mathrm{shift})/2)}{4(b-a)}.$$
    Simple diffusion's shifted cosine for resolution $d$ is `shift = 2 * log(base / d)`.
    """

    def __init__(
        self,
        logsnr_min: float = DEFAULT_LOGSNR_MIN,
        logsnr_max: float = DEFAULT_LOGSNR_MAX,
        shift: float = 0.0,
    ):
        self.logsnr_min, self.logsnr_max = _checks.logsnr_range(logsnr_min, logsnr_max)
        self.shift = _checks.finite("shift", shift)
        # With tan(u) = e^{-(λ-shift)/2}: a at λ_max, and c = π/2 - b at λ_min, both computed
        # directly so neither loses precision near π/2.
        self.a = math.atan(math.exp(-0.5 * (self.logsnr_max - self.shift)))
        self.c = math.atan(math.exp(0.5 * (self.logsnr_min - self.shift)))
        self.delta = 0.5 * math.pi - self.a - self.c  # = b - a

    # λ = 2 ln cot(u) + shift = 2 ln sin(π/2 - u) - 2 ln sin(u) + shift
    _log_g = staticmethod(lambda u: np.log(np.sin(u)))
    _dlog_g = staticmethod(lambda u: 1.0 / np.tan(u))

    def inverse(self, logsnr):
        y = _as_array(logsnr) - self.shift
        # Pick the well-conditioned side: arctan(e^{-y/2}) - a, or delta - (arctan(e^{y/2}) - c).
        t_lo = (np.arctan(np.exp(-0.5 * y)) - self.a) / self.delta
        t_hi = 1.0 - (np.arctan(np.exp(0.5 * y)) - self.c) / self.delta
        return np.where(y >= 0.0, t_lo, t_hi)

    def density(self, logsnr):
        y = _as_array(logsnr) - self.shift
        return 1.0 / (4.0 * self.delta * np.cosh(0.5 * y))


class CosineInterpolated(AbstractSchedule):
    r"""Interpolation between two shifted cosines (simple diffusion's "interpolated" schedule).

    $$\lambda(t) = (1-t)\,\lambda_{\cos,\mathrm{shift\_start}}(t) + t\,\lambda_{\cos,\mathrm{shift\_end}}(t),$$
    both cosines on the same range, so the endpoints stay $\lambda_{\max}$ and $\lambda_{\min}$.
    The inverse is found by bisection; the constructor checks that $\lambda$ is strictly decreasing.
    """

    def __init__(
        self,
        logsnr_min: float = DEFAULT_LOGSNR_MIN,
        logsnr_max: float = DEFAULT_LOGSNR_MAX,
        shift_start: float = 0.0,
        shift_end: float = 0.0,
    ):
        self.logsnr_min, self.logsnr_max = _checks.logsnr_range(logsnr_min, logsnr_max)
        self.shift_start = _checks.finite("shift_start", shift_start)
        self.shift_end = _checks.finite("shift_end", shift_end)
        self._start = Cosine(logsnr_min, logsnr_max, shift_start)
        self._end = Cosine(logsnr_min, logsnr_max, shift_end)
        _checks.interpolated_slope(self.dlogsnr_dt(np.linspace(0.0, 1.0, 4097)), shift_start, shift_end)

    def logsnr(self, t):
        t = _as_array(t)
        return (1.0 - t) * self._start.logsnr(t) + t * self._end.logsnr(t)

    def dlogsnr_dt(self, t):
        t = _as_array(t)
        return (
            self._end.logsnr(t)
            - self._start.logsnr(t)
            + (1.0 - t) * self._start.dlogsnr_dt(t)
            + t * self._end.dlogsnr_dt(t)
        )

    def inverse(self, logsnr, iterations: int = 60):
        logsnr = _as_array(logsnr)
        lo, hi = np.zeros_like(logsnr), np.ones_like(logsnr)
        for _ in range(iterations):  # 2^-60 < float64 spacing on [0, 1]
            mid = 0.5 * (lo + hi)
            above = self.logsnr(mid) > logsnr  # λ decreasing: the root lies right of mid
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return 0.5 * (lo + hi)


class DDPMLinear(AbstractSchedule):
    r"""The VP-SDE / DDPM linear-β schedule.

    $$\lambda(t) = -\ln\operatorname{expm1}\!\big(\beta_0\tau + \tfrac12(\beta_1-\beta_0)\tau^2\big),
      \quad \tau = t_\epsilon + t(1 - t_\epsilon),$$
    inverse $\tau = \big(-\beta_0 + \sqrt{\beta_0^2 + 2(\beta_1-\beta_0)\,\mathrm{softplus}(-\lambda)}\big)/(\beta_1-\beta_0)$.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_eps: float = 1e-5):
        self.beta_min, self.beta_max, self.t_eps = _checks.ddpm_linear(beta_min, beta_max, t_eps)
        self.logsnr_max = float(self.logsnr(0.0))
        self.logsnr_min = float(self.logsnr(1.0))

    def _tau(self, t):
        return self.t_eps + _as_array(t) * (1.0 - self.t_eps)

    def _integral(self, tau):
        return self.beta_min * tau + 0.5 * (self.beta_max - self.beta_min) * tau**2

    def logsnr(self, t):
        return -np.log(np.expm1(self._integral(self._tau(t))))

    def dlogsnr_dt(self, t):
        tau = self._tau(t)
        beta = self.beta_min + (self.beta_max - self.beta_min) * tau
        # d/dτ [-ln expm1(g)] = -β e^g / expm1(g) = β / expm1(-g)
        return beta / np.expm1(-self._integral(tau)) * (1.0 - self.t_eps)

    def inverse(self, logsnr):
        g = np.logaddexp(0.0, -_as_array(logsnr))  # softplus(-λ) = ln(1 + e^{-λ})
        db = self.beta_max - self.beta_min
        tau = 2.0 * g / (self.beta_min + np.sqrt(self.beta_min**2 + 2.0 * db * g))  # stable root
        return (tau - self.t_eps) / (1.0 - self.t_eps)


class EDMLogNormal(AbstractSchedule):
    r"""EDM's training distribution $\ln\sigma \sim \mathcal N(P_{\mathrm{mean}}, P_{\mathrm{std}}^2)$ as a schedule.

    In log-SNR, $\lambda = -2\ln\sigma \sim \mathcal N(\mu, s^2)$, $\mu = -2P_{\mathrm{mean}}$,
    $s = 2P_{\mathrm{std}}$, truncated to $[\lambda_{\min}, \lambda_{\max}]$; $\lambda(t)$ is its
    decreasing inverse CDF, so $p(\lambda)$ is the truncated normal density.
    """

    def __init__(
        self,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        logsnr_min: float = DEFAULT_LOGSNR_MIN,
        logsnr_max: float = DEFAULT_LOGSNR_MAX,
    ):
        self.p_mean = _checks.finite("p_mean", p_mean)
        self.p_std = _checks.positive("p_std", p_std)
        self.logsnr_min, self.logsnr_max = _checks.logsnr_range(logsnr_min, logsnr_max)
        self.mu, self.s = -2.0 * self.p_mean, 2.0 * self.p_std
        # Masses below λ_min and above λ_max, and the mass kept, each without cancellation.
        self.mass_below = special.ndtr((self.logsnr_min - self.mu) / self.s)
        self.mass_above = special.ndtr((self.mu - self.logsnr_max) / self.s)
        mass = special.ndtr((self.logsnr_max - self.mu) / self.s) - self.mass_below
        self.mass = _checks.kept_mass(mass, self.logsnr_min, self.logsnr_max)

    def logsnr(self, t):
        t = _as_array(t)
        below = self.mass_below + (1.0 - t) * self.mass  # P(Λ < λ(t))
        above = self.mass_above + t * self.mass  # P(Λ > λ(t))
        lam = np.where(
            below < 0.5,
            self.mu + self.s * special.ndtri(np.minimum(below, 0.5)),
            self.mu - self.s * special.ndtri(np.minimum(above, 0.5)),
        )
        # The inverse CDF is exact inside; at t∈{0,1} ndtri may round past the truncation point.
        return np.clip(lam, self.logsnr_min, self.logsnr_max)

    def inverse(self, logsnr):
        y = (_as_array(logsnr) - self.mu) / self.s
        t_from_above = (special.ndtr(-y) - self.mass_above) / self.mass
        t_from_below = 1.0 - (special.ndtr(y) - self.mass_below) / self.mass
        return np.where(y >= 0.0, t_from_above, t_from_below)

    def density(self, logsnr):
        y = (_as_array(logsnr) - self.mu) / self.s
        return np.exp(-0.5 * y**2) / (math.sqrt(2.0 * math.pi) * self.s * self.mass)

    def dlogsnr_dt(self, t):
        return -1.0 / self.density(self.logsnr(t))


class FlowOT(_TwoSidedLog):
    r"""Rectified flow / OT path $\alpha = 1-t$, $\sigma = t$: $\lambda = 2\ln((1-t)/t)$, truncated.

    With $t' = t_{\min} + t\,\Delta$ mapping $[0,1]$ onto the truncated interval,
    $p(\lambda) = \mathrm{sech}^2(\lambda/4) / (8\Delta)$, $\Delta = \mathrm{sigmoid}(-\lambda_{\min}/2) - \mathrm{sigmoid}(-\lambda_{\max}/2)$.
    """

    def __init__(self, logsnr_min: float = DEFAULT_LOGSNR_MIN, logsnr_max: float = DEFAULT_LOGSNR_MAX):
        self.logsnr_min, self.logsnr_max = _checks.logsnr_range(logsnr_min, logsnr_max)
        self.shift = 0.0
        self.a = float(special.expit(-0.5 * self.logsnr_max))  # t' at λ_max
        self.c = float(special.expit(0.5 * self.logsnr_min))  # 1 - t' at λ_min
        self.delta = 1.0 - self.a - self.c

    # λ = 2 ln(1 - t') - 2 ln t'
    _log_g = staticmethod(np.log)
    _dlog_g = staticmethod(lambda u: 1.0 / u)

    def inverse(self, logsnr):
        logsnr = _as_array(logsnr)
        t_lo = (special.expit(-0.5 * logsnr) - self.a) / self.delta
        t_hi = 1.0 - (special.expit(0.5 * logsnr) - self.c) / self.delta
        return np.where(logsnr >= 0.0, t_lo, t_hi)

    def density(self, logsnr):
        return 1.0 / (8.0 * self.delta * np.cosh(0.25 * _as_array(logsnr)) ** 2)
