r"""Weighting functions $w(\lambda)$ in ε-space (Kingma & Gao 2023, Table 1).

The weighted loss is $\mathcal L_w(x) = \tfrac12\int w(\lambda)\,\mathbb E_\epsilon\|\epsilon - \hat\epsilon(z_\lambda;\lambda)\|^2 d\lambda$;
$w \equiv 1$ is the ELBO. A weighting that is non-increasing in $\lambda$ (monotone) makes
$\mathcal L_w$ the ELBO of Gaussian-noise-augmented data.

Every weighting is callable on float64 arrays and has `derivative(logsnr)` $= dw/d\lambda$
(analytic where it is short, else a 4th-order central difference), and `kinks`: the
log-SNRs where the derivative may jump, which quadrature uses as break points.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from scipy import optimize, special

import _checks
from reference._typing import FloatArray
from reference.schedules import DEFAULT_LOGSNR_MAX, DEFAULT_LOGSNR_MIN, AbstractSchedule
from reference.targets import target_factor


def _arr(x):
    return np.asarray(x, dtype=np.float64)


def _log_sech(y):
    """$\\ln\\mathrm{sech}(y) = \\ln 2 - |y| - \\ln(1 + e^{-2|y|})$, finite for any float64 $y$."""
    a = np.abs(y)
    return math.log(2.0) - a - np.log1p(np.exp(-2.0 * a))


class AbstractWeighting(abc.ABC):
    """A weighting $w(\\lambda) > 0$ over log-SNR.

    `kinks` lists the log-SNRs where $dw/d\\lambda$ may jump (quadrature break points): a
    smooth weighting declares `kinks: ClassVar[tuple[float, ...]] = ()`, one with kinks a
    property of its parameters.
    """

    @property
    @abc.abstractmethod
    def kinks(self) -> tuple[float, ...]:
        """Log-SNRs where $dw/d\\lambda$ may jump."""

    @abc.abstractmethod
    def __call__(self, logsnr) -> FloatArray:
        """$w(\\lambda)$."""

    def derivative(self, logsnr):
        r"""$dw/d\lambda$ by the 4th-order central difference (error $O(h^4)$, $h = 10^{-3}$)."""
        logsnr = _arr(logsnr)
        h = 1e-3  # truncation ~h⁴ = 1e-12, rounding ~ε·|λ|/h < 1e-11 for |λ| <= 50
        f = self.__call__
        return (-f(logsnr + 2 * h) + 8 * f(logsnr + h) - 8 * f(logsnr - h) + f(logsnr - 2 * h)) / (12 * h)


class ELBO(AbstractWeighting):
    """$w(\\lambda) = 1$: the plain ELBO (maximum likelihood)."""

    kinks: ClassVar[tuple[float, ...]] = ()

    def __call__(self, logsnr):
        return np.ones_like(_arr(logsnr))

    def derivative(self, logsnr):
        return np.zeros_like(_arr(logsnr))


class EpsCosine(AbstractWeighting):
    """$w(\\lambda) = \\mathrm{sech}(\\lambda/2)$: ε-MSE with the cosine schedule (IDDPM "simple")."""

    kinks: ClassVar[tuple[float, ...]] = ()

    def __call__(self, logsnr):
        return np.exp(_log_sech(0.5 * _arr(logsnr)))

    def derivative(self, logsnr):
        logsnr = _arr(logsnr)
        return -0.5 * self(logsnr) * np.tanh(0.5 * logsnr)


class EDM(AbstractWeighting):
    r"""EDM's implied weighting: $w(\lambda) = \mathcal N(\lambda; -2P_{\mathrm{mean}}, (2P_{\mathrm{std}})^2)\,(e^{-\lambda} + \sigma_d^2)/\sigma_d^2$."""

    kinks: ClassVar[tuple[float, ...]] = ()

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2, sigma_data: float = 0.5):
        self.p_mean = _checks.finite("p_mean", p_mean)
        self.p_std = _checks.positive("p_std", p_std)
        self.sigma_data = _checks.positive("sigma_data", sigma_data)

    def _log(self, logsnr):
        mu, s = -2.0 * self.p_mean, 2.0 * self.p_std
        log_normal = -0.5 * ((logsnr - mu) / s) ** 2 - math.log(s * math.sqrt(2.0 * math.pi))
        log_sd2 = 2.0 * math.log(self.sigma_data)
        return log_normal + np.logaddexp(-logsnr, log_sd2) - log_sd2

    def __call__(self, logsnr):
        return np.exp(self._log(_arr(logsnr)))

    def derivative(self, logsnr):
        logsnr = _arr(logsnr)
        mu, s = -2.0 * self.p_mean, 2.0 * self.p_std
        dlog = -(logsnr - mu) / s**2 - special.expit(-logsnr - 2.0 * math.log(self.sigma_data))
        return self(logsnr) * dlog


class Exponential(AbstractWeighting):
    """$w(\\lambda) = e^{-\\mathrm{rate}\\,\\lambda}$: v-prediction + cosine, and flow matching (OT) at rate ½."""

    kinks: ClassVar[tuple[float, ...]] = ()

    def __init__(self, rate: float = 0.5):
        self.rate = _checks.finite("rate", rate)

    def __call__(self, logsnr):
        return np.exp(-self.rate * _arr(logsnr))

    def derivative(self, logsnr):
        return -self.rate * self(logsnr)


class InDI(AbstractWeighting):
    """$w(\\lambda) = e^{-\\lambda}\\,\\mathrm{sech}^2(\\lambda/4)$: InDI / x-prediction with the flow schedule."""

    kinks: ClassVar[tuple[float, ...]] = ()

    def __call__(self, logsnr):
        logsnr = _arr(logsnr)
        return np.exp(-logsnr + 2.0 * _log_sech(0.25 * logsnr))

    def derivative(self, logsnr):
        logsnr = _arr(logsnr)
        return self(logsnr) * (-1.0 - 0.5 * np.tanh(0.25 * logsnr))


class MinSNR(AbstractWeighting):
    r"""Min-SNR-$\gamma$ with the cosine schedule: $w(\lambda) = \mathrm{sech}(\lambda/2)\min(1, \gamma e^{-\lambda})$."""

    def __init__(self, gamma: float = 5.0):
        self.gamma = _checks.positive("gamma", gamma)

    @property
    def kinks(self) -> tuple[float, ...]:
        """$\\ln\\gamma$, where the clip $\\min(1, \\gamma e^{-\\lambda})$ starts."""
        return (math.log(self.gamma),)

    def __call__(self, logsnr):
        logsnr = _arr(logsnr)
        clip = np.minimum(0.0, math.log(self.gamma) - logsnr)  # ln min(1, γ e^{-λ})
        return np.exp(_log_sech(0.5 * logsnr) + clip)

    def derivative(self, logsnr):
        logsnr = _arr(logsnr)
        dlog = -0.5 * np.tanh(0.5 * logsnr) - (logsnr > math.log(self.gamma))
        return self(logsnr) * dlog


class Sigmoid(AbstractWeighting):
    """$w(\\lambda) = \\mathrm{sigmoid}(-\\lambda + b)$: the monotone weighting Kingma & Gao propose ($b = 2$)."""

    kinks: ClassVar[tuple[float, ...]] = ()

    def __init__(self, bias: float = 2.0):
        self.bias = _checks.finite("bias", bias)

    def __call__(self, logsnr):
        return special.expit(self.bias - _arr(logsnr))

    def derivative(self, logsnr):
        w = self(logsnr)
        return -w * (1.0 - w)


class Shifted(AbstractWeighting):
    """$w_{\\mathrm{shifted}}(\\lambda) = w(\\lambda - \\mathrm{shift})$, the paper's "-shifted" variants."""

    def __init__(self, weighting: AbstractWeighting, shift: float):
        self.weighting = weighting
        self.shift = _checks.finite("shift", shift)

    @property
    def kinks(self) -> tuple[float, ...]:
        """The inner weighting's kinks, shifted."""
        return tuple(k + self.shift for k in self.weighting.kinks)

    def __call__(self, logsnr):
        return self.weighting(_arr(logsnr) - self.shift)

    def derivative(self, logsnr):
        return self.weighting.derivative(_arr(logsnr) - self.shift)


class Monotonic(AbstractWeighting):
    r"""The smallest monotone majorant: $\tilde w(\lambda) = \max_{\lambda \le \lambda' \le \lambda_{\max}} w(\lambda')$.

    A maximum over an interval sits at an end or at an interior local maximum, so
    $\tilde w(\lambda) = \max\big(w(\lambda),\, w(\lambda_{\max}),\, \max\{w(\lambda_p) : \lambda_p \ge \lambda\}\big)$
    with the local maxima $\lambda_p$ located on a grid and refined to machine precision.
    For unimodal $w$ this is $w(\max(\lambda, \lambda^*))$ (EDM-monotonic). Above $\lambda_{\max}$ it is $w$.
    """

    def __init__(
        self,
        weighting: AbstractWeighting,
        logsnr_min: float = DEFAULT_LOGSNR_MIN,
        logsnr_max: float = DEFAULT_LOGSNR_MAX,
        grid_size: int = 4001,
    ):
        self.weighting = weighting
        self.logsnr_min, self.logsnr_max = _checks.logsnr_range(logsnr_min, logsnr_max)
        grid = np.linspace(self.logsnr_min, self.logsnr_max, grid_size)
        values = np.asarray(weighting(grid))  # an array for an array grid (FloatArray also admits a scalar)
        is_peak = (values[1:-1] > values[:-2]) & (values[1:-1] >= values[2:])
        peaks = []
        for k in np.flatnonzero(is_peak) + 1:
            res = optimize.minimize_scalar(
                lambda lam: -float(weighting(lam)),
                bounds=(grid[k - 1], grid[k + 1]),
                method="bounded",
                options={"xatol": 1e-12},
            )
            peaks.append(float(res.x))  # pyright: ignore[reportAttributeAccessIssue]  # scipy's stub types the result as object
        self.peaks = np.array(peaks, dtype=np.float64)
        self.peak_values = weighting(self.peaks)

    @property
    def kinks(self) -> tuple[float, ...]:
        """The inner weighting's interior local maxima (`peaks`)."""
        return tuple(self.peaks.tolist())

    def __call__(self, logsnr):
        logsnr = _arr(logsnr)
        inside = logsnr <= self.logsnr_max
        right_end = np.where(inside, self.weighting(self.logsnr_max), 0.0)
        later_peaks = np.where(self.peaks >= logsnr[..., None], self.peak_values, 0.0).max(axis=-1, initial=0.0)
        return np.maximum(self.weighting(logsnr), np.maximum(right_end, later_peaks))

    def derivative(self, logsnr):
        logsnr = _arr(logsnr)
        on_curve = self.weighting(logsnr) >= self(logsnr)
        return np.where(on_curve, self.weighting.derivative(logsnr), 0.0)


class Implied(AbstractWeighting):
    r"""The ε-space weighting implied by "MSE on `target`, weighted per level, with $t \sim U(0,1)$".

    $$\mathbb E_{t}\big[\tilde w(\lambda_t)\,\|y - \hat y\|^2\big] = \int p(\lambda)\,\tilde w(\lambda) f_y(\lambda)\,\ell\,d\lambda
      \;\Rightarrow\; w(\lambda) = 2\,p(\lambda)\,f_y(\lambda)\,\tilde w(\lambda).$$
    `target_weight` is $\tilde w$ (a callable of log-SNR; `None` means 1).
    """

    kinks: ClassVar[tuple[float, ...]] = ()

    def __init__(
        self,
        schedule: AbstractSchedule,
        target: str = "eps",
        target_weight: Callable | None = None,
        sigma_data: float = 0.5,
    ):
        self.schedule = schedule
        self.target = _checks.target(target)
        self.target_weight = target_weight
        self.sigma_data = _checks.positive("sigma_data", sigma_data)

    def __call__(self, logsnr):
        logsnr = _arr(logsnr)
        extra = 1.0 if self.target_weight is None else self.target_weight(logsnr)
        factor = target_factor(self.target, logsnr, self.sigma_data)
        return 2.0 * self.schedule.density(logsnr) * factor * extra


def is_monotonic(
    weighting: AbstractWeighting,
    logsnr_min: float = DEFAULT_LOGSNR_MIN,
    logsnr_max: float = DEFAULT_LOGSNR_MAX,
    num: int = 10001,
    rtol: float | None = None,
) -> bool:
    """Whether `weighting` is non-increasing in λ on a `num`-point grid of `[logsnr_min, logsnr_max]`.

    `rtol=None` allows rounding noise of the values' dtype: 1e-10 in float64 (here), 1e-6 in float32.

    **Returns:** `True` when no step rises by more than `rtol` times the largest value.
    """
    logsnr_min, logsnr_max = _checks.logsnr_range(logsnr_min, logsnr_max)
    values = np.asarray(weighting(np.linspace(logsnr_min, logsnr_max, num)))
    rtol = _checks.monotone_rtol(values.dtype) if rtol is None else rtol
    return bool(np.all(np.diff(values) <= rtol * np.max(np.abs(values))))
