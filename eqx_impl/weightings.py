r"""Weightings $w(\lambda)$ in ε-space as Equinox modules (mirror of `reference.weightings`).

`derivative` is forward-mode autodiff of `__call__` (weightings act elementwise).
Work in log space so every weighting is finite for $\lambda \in [-30, 30]$ in float32.
"""

import abc
import math
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from equinox import AbstractVar

import _checks
from eqx_impl._floats import as_float
from eqx_impl._typing import Array, LogSNR
from eqx_impl.schedules import DEFAULT_LOGSNR_MAX, DEFAULT_LOGSNR_MIN, AbstractSchedule
from eqx_impl.targets import target_factor

_static: dict[str, Any] = dict(static=True, converter=float)


def _log_sech(y):
    a = jnp.abs(y)
    return math.log(2.0) - a - jnp.log1p(jnp.exp(-2.0 * a))


class AbstractWeighting(eqx.Module):
    """A weighting $w(\\lambda) > 0$.

    `kinks` lists the log-SNRs where $dw/d\\lambda$ may jump (quadrature break points): a
    smooth weighting declares `kinks: ClassVar[tuple[float, ...]] = ()`, one with kinks a
    property of its parameters.
    """

    kinks: AbstractVar[tuple[float, ...]]

    @abc.abstractmethod
    def __call__(self, logsnr: LogSNR) -> Array:
        """$w(\\lambda)$."""

    def derivative(self, logsnr: LogSNR) -> Array:
        """$dw/d\\lambda$ by `jax.jvp`."""
        logsnr = as_float(logsnr)
        return jax.jvp(self.__call__, (logsnr,), (jnp.ones_like(logsnr),))[1]


class ELBO(AbstractWeighting):
    """$w = 1$."""

    kinks: ClassVar[tuple[float, ...]] = ()

    def __call__(self, logsnr):
        return jnp.ones_like(as_float(logsnr))


class EpsCosine(AbstractWeighting):
    """$w = \\mathrm{sech}(\\lambda/2)$."""

    kinks: ClassVar[tuple[float, ...]] = ()

    def __call__(self, logsnr):
        return jnp.exp(_log_sech(0.5 * as_float(logsnr)))


class EDM(AbstractWeighting):
    r"""$w = \mathcal N(\lambda; -2P_{\mathrm{mean}}, (2P_{\mathrm{std}})^2)(e^{-\lambda} + \sigma_d^2)/\sigma_d^2$."""

    kinks: ClassVar[tuple[float, ...]] = ()

    p_mean: float = eqx.field(default=-1.2, **_static)
    p_std: float = eqx.field(default=1.2, **_static)
    sigma_data: float = eqx.field(default=0.5, **_static)

    def __check_init__(self):
        _checks.finite("p_mean", self.p_mean)
        _checks.positive("p_std", self.p_std)
        _checks.positive("sigma_data", self.sigma_data)

    def __call__(self, logsnr):
        logsnr = as_float(logsnr)
        mu, s = -2.0 * self.p_mean, 2.0 * self.p_std
        log_sd2 = 2.0 * math.log(self.sigma_data)
        log_normal = -0.5 * ((logsnr - mu) / s) ** 2 - math.log(s * math.sqrt(2.0 * math.pi))
        return jnp.exp(log_normal + jnp.logaddexp(-logsnr, log_sd2) - log_sd2)


class Exponential(AbstractWeighting):
    """$w = e^{-\\mathrm{rate}\\,\\lambda}$."""

    kinks: ClassVar[tuple[float, ...]] = ()

    rate: float = eqx.field(default=0.5, **_static)

    def __check_init__(self):
        _checks.finite("rate", self.rate)

    def __call__(self, logsnr):
        return jnp.exp(-self.rate * as_float(logsnr))


class InDI(AbstractWeighting):
    """$w = e^{-\\lambda}\\,\\mathrm{sech}^2(\\lambda/4)$."""

    kinks: ClassVar[tuple[float, ...]] = ()

    def __call__(self, logsnr):
        logsnr = as_float(logsnr)
        return jnp.exp(-logsnr + 2.0 * _log_sech(0.25 * logsnr))


class MinSNR(AbstractWeighting):
    r"""$w = \mathrm{sech}(\lambda/2)\min(1, \gamma e^{-\lambda})$."""

    gamma: float = eqx.field(default=5.0, **_static)

    def __check_init__(self):
        _checks.positive("gamma", self.gamma)

    def __call__(self, logsnr):
        logsnr = as_float(logsnr)
        return jnp.exp(_log_sech(0.5 * logsnr) + jnp.minimum(0.0, math.log(self.gamma) - logsnr))

    @property
    def kinks(self) -> tuple[float, ...]:
        """$\\ln\\gamma$, where the clip $\\min(1, \\gamma e^{-\\lambda})$ starts."""
        return (math.log(self.gamma),)


class Sigmoid(AbstractWeighting):
    """$w = \\mathrm{sigmoid}(-\\lambda + b)$."""

    kinks: ClassVar[tuple[float, ...]] = ()

    bias: float = eqx.field(default=2.0, **_static)

    def __check_init__(self):
        _checks.finite("bias", self.bias)

    def __call__(self, logsnr):
        return jax.nn.sigmoid(self.bias - as_float(logsnr))


class Shifted(AbstractWeighting):
    """$w(\\lambda - \\mathrm{shift})$."""

    weighting: AbstractWeighting
    shift: float = eqx.field(**_static)

    def __check_init__(self):
        _checks.finite("shift", self.shift)

    def __call__(self, logsnr):
        return self.weighting(as_float(logsnr) - self.shift)

    @property
    def kinks(self) -> tuple[float, ...]:
        """The inner weighting's kinks, shifted."""
        return tuple(k + self.shift for k in self.weighting.kinks)


def _local_maxima(weighting, logsnr_min: float, logsnr_max: float, grid_size: int) -> tuple[float, ...]:
    """Interior local maxima of `weighting`, located on a grid and refined by bisection on $w'$."""
    grid = np.linspace(logsnr_min, logsnr_max, grid_size)
    values = np.asarray(weighting(jnp.asarray(grid)))
    is_peak = (values[1:-1] > values[:-2]) & (values[1:-1] >= values[2:])
    peaks = []
    for k in np.flatnonzero(is_peak) + 1:
        lo, hi = float(grid[k - 1]), float(grid[k + 1])
        for _ in range(45):  # w' > 0 left of the peak, < 0 right of it; 2^-45 of a grid step
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if float(weighting.derivative(jnp.asarray(mid))) > 0 else (lo, mid)
        peaks.append(0.5 * (lo + hi))
    return tuple(peaks)


class Monotonic(AbstractWeighting):
    r"""$\tilde w(\lambda) = \max_{\lambda \le \lambda' \le \lambda_{\max}} w(\lambda')$: the interval maximum sits at
    an end or at an interior local maximum $\lambda_p$ (found once, at construction, outside `jit`).
    """

    weighting: AbstractWeighting
    logsnr_min: float = eqx.field(**_static)
    logsnr_max: float = eqx.field(**_static)
    peaks: tuple[float, ...] = eqx.field(static=True)

    def __init__(
        self,
        weighting: AbstractWeighting,
        logsnr_min: float = DEFAULT_LOGSNR_MIN,
        logsnr_max: float = DEFAULT_LOGSNR_MAX,
        grid_size: int = 4001,
    ):
        self.weighting = weighting
        self.logsnr_min, self.logsnr_max = _checks.logsnr_range(logsnr_min, logsnr_max)
        self.peaks = _local_maxima(weighting, self.logsnr_min, self.logsnr_max, grid_size)

    def __call__(self, logsnr):
        logsnr = as_float(logsnr)
        inner = self.weighting(logsnr)
        best = jnp.where(logsnr <= self.logsnr_max, self.weighting(jnp.full_like(logsnr, self.logsnr_max)), 0.0)
        for peak in self.peaks:
            peak_value = self.weighting(jnp.full_like(logsnr, peak))
            best = jnp.maximum(best, jnp.where(logsnr <= peak, peak_value, 0.0))
        # `where`, not `maximum`: on a tie the derivative is w'(λ), not half of it.
        return jnp.where(inner >= best, inner, best)

    @property
    def kinks(self) -> tuple[float, ...]:
        """The inner weighting's interior local maxima (`peaks`)."""
        return self.peaks


class Implied(AbstractWeighting):
    r"""$w(\lambda) = 2\,p(\lambda)\,f_{\mathrm{target}}(\lambda)\,\tilde w(\lambda)$ for "MSE on target, $t \sim U(0,1)$"."""

    kinks: ClassVar[tuple[float, ...]] = ()

    schedule: AbstractSchedule
    target: str = eqx.field(default="eps", static=True)
    target_weight: Callable | None = eqx.field(default=None, static=True)
    sigma_data: float = eqx.field(default=0.5, **_static)

    def __check_init__(self):
        _checks.target(self.target)
        _checks.positive("sigma_data", self.sigma_data)

    def __call__(self, logsnr):
        logsnr = as_float(logsnr)
        factor = target_factor(self.target, logsnr, self.sigma_data)
        extra = 1.0 if self.target_weight is None else self.target_weight(logsnr)
        return 2.0 * self.schedule.density(logsnr) * factor * extra


def is_monotonic(
    weighting: AbstractWeighting,
    logsnr_min: float = DEFAULT_LOGSNR_MIN,
    logsnr_max: float = DEFAULT_LOGSNR_MAX,
    num: int = 10001,
    rtol: float | None = None,
) -> bool:
    """Whether `weighting` is non-increasing on a grid (a check run eagerly, not under `jit`).

    `rtol=None` allows rounding noise of the values' dtype: 1e-6 in float32, 1e-10 in float64
    (as the reference).

    **Returns:** a Python `bool`.
    """
    logsnr_min, logsnr_max = _checks.logsnr_range(logsnr_min, logsnr_max)
    values = np.asarray(weighting(jnp.linspace(logsnr_min, logsnr_max, num)))
    rtol = _checks.monotone_rtol(values.dtype) if rtol is None else rtol
    values = values.astype(np.float64)
    return bool(np.all(np.diff(values) <= rtol * np.max(np.abs(values))))
