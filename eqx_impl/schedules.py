r"""Noise schedules $t \mapsto \lambda(t)$ as Equinox modules (mirror of `reference.schedules`).

Hyperparameters are static Python floats, so a schedule is a pytree with no leaves
(except `Learned`, whose network weights are trainable). Derivatives come from
`jax.jvp` of `logsnr` unless a closed form is more accurate.
"""


import abc
import functools
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractVar
from jax.scipy import special

import _checks
from eqx_impl._floats import as_float
from eqx_impl._typing import Array, LogSNR

DEFAULT_LOGSNR_MIN = -20.0
DEFAULT_LOGSNR_MAX = 20.0

_static: dict[str, Any] = dict(static=True, converter=float)


def alpha_sigma(logsnr: LogSNR) -> tuple[Array, Array]:
    r"""$\alpha = \sqrt{\mathrm{sigmoid}(\lambda)}$, $\sigma = \sqrt{\mathrm{sigmoid}(-\lambda)}$ via `log_sigmoid` (no underflow)."""
    logsnr = as_float(logsnr)
    return jnp.exp(0.5 * jax.nn.log_sigmoid(logsnr)), jnp.exp(0.5 * jax.nn.log_sigmoid(-logsnr))


def logsnr_to_sigma(logsnr: LogSNR) -> Array:
    r"""$\sigma_{\mathrm{edm}} = e^{-\lambda/2}$."""
    return jnp.exp(-0.5 * as_float(logsnr))


def sigma_to_logsnr(sigma) -> Array:
    r"""$\lambda = -2\ln\sigma_{\mathrm{edm}}$."""
    return -2.0 * jnp.log(as_float(sigma))


class AbstractSchedule(eqx.Module):
    """A strictly decreasing map $t \\mapsto \\lambda(t)$ from $[0,1]$ onto $[\\lambda_{\\min}, \\lambda_{\\max}]$.

    A subclass gives the range and the two maps `logsnr` and `inverse`; the slope and the
    density are their derivatives (forward-mode autodiff), so a schedule whose maps are
    accurate has an accurate slope and density without further code. A schedule that needs
    an exact derivative where autodiff is not (e.g. through a clip) puts it in a
    `jax.custom_jvp` of its `logsnr`, as `EDMLogNormal` does.
    """

    logsnr_min: AbstractVar[float]
    logsnr_max: AbstractVar[float]

    @abc.abstractmethod
    def logsnr(self, t) -> Array:
        """$\\lambda(t)$."""

    @abc.abstractmethod
    def inverse(self, logsnr) -> Array:
        """$t(\\lambda)$."""

    def dlogsnr_dt(self, t) -> Array:
        """$d\\lambda/dt$ by forward-mode autodiff (the schedule acts elementwise)."""
        t = as_float(t)
        return jax.jvp(self.logsnr, (t,), (jnp.ones_like(t),))[1]

    def density(self, logsnr) -> Array:
        r"""$p(\lambda) = -dt/d\lambda = 1/|\lambda'(t(\lambda))|$, the density of $\lambda$ when $t \sim U(0,1)$.

        By forward-mode autodiff of `inverse` (elementwise): taken at $\lambda$ itself, so no
        round trip through $t$ loses precision in the tails.

        **Returns:** an array like `logsnr`.
        """
        logsnr = as_float(logsnr)
        return -jax.jvp(self.inverse, (logsnr,), (jnp.ones_like(logsnr),))[1]


def bisect_inverse(logsnr_fn, logsnr, iterations: int = 60) -> Array:
    r"""Solve $\lambda(t) = $ `logsnr` for a decreasing `logsnr_fn` on $[0, 1]$.

    Bisection finds $t_b$ (no gradient); a Newton step $t_1 = t_b - (\lambda(t_b) - \lambda)/\lambda'(t_b)$
    then carries the implicit-function derivative $dt/d\lambda = 1/\lambda'(t)$ to `logsnr` and to
    any parameters of `logsnr_fn`, and a second one from $t_1$ the second derivative
    $d^2t/d\lambda^2 = -\lambda''/\lambda'^3$ (so the density $-dt/d\lambda$ has the right gradient).
    At the root both steps leave the value unchanged.
    """
    logsnr = as_float(logsnr)
    target = jax.lax.stop_gradient(logsnr)

    def step(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = jax.lax.stop_gradient(logsnr_fn(mid)) > target
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, step, (jnp.zeros_like(logsnr), jnp.ones_like(logsnr)))
    t = jax.lax.stop_gradient(0.5 * (lo + hi))
    for _ in range(2):
        value, slope = jax.jvp(logsnr_fn, (t,), (jnp.ones_like(t),))
        t = t - (value - logsnr) / slope
    return t


class LinearLogSNR(AbstractSchedule):
    r"""$\lambda(t) = \lambda_{\max} + t(\lambda_{\min} - \lambda_{\max})$ (VDM's fixed schedule)."""

    logsnr_min: float = eqx.field(default=DEFAULT_LOGSNR_MIN, **_static)
    logsnr_max: float = eqx.field(default=DEFAULT_LOGSNR_MAX, **_static)

    def __check_init__(self):
        _checks.logsnr_range(self.logsnr_min, self.logsnr_max)

    def logsnr(self, t) -> Array:
        return self.logsnr_max + as_float(t) * (self.logsnr_min - self.logsnr_max)

    def inverse(self, logsnr) -> Array:
        return (self.logsnr_max - as_float(logsnr)) / (self.logsnr_max - self.logsnr_min)


class _AbstractTwoSidedLog(AbstractSchedule):
    r"""$\lambda = 2\ln g(c + (1-t)\Delta) - 2\ln g(a + t\Delta) + \mathrm{shift}$, accurate at both ends."""

    @property
    @abc.abstractmethod
    def _ends(self) -> tuple[float, float, float, float]:
        """`(a, c, delta, shift)`."""

    @staticmethod
    @abc.abstractmethod
    def _log_g(u, /) -> Array:
        """$\\ln g(u)$."""

    def logsnr(self, t) -> Array:
        a, c, delta, shift = self._ends
        t = as_float(t)
        return 2.0 * (self._log_g(c + (1.0 - t) * delta) - self._log_g(a + t * delta)) + shift


class Cosine(_AbstractTwoSidedLog):
    r"""Shifted cosine schedule truncated to $[\lambda_{\min}, \lambda_{\max}]$; $p(\lambda) = \mathrm{sech}((\lambda-\mathrm{shift})/2)/(4(b-a))$."""

    logsnr_min: float = eqx.field(default=DEFAULT_LOGSNR_MIN, **_static)
    logsnr_max: float = eqx.field(default=DEFAULT_LOGSNR_MAX, **_static)
    shift: float = eqx.field(default=0.0, **_static)

    def __check_init__(self):
        _checks.logsnr_range(self.logsnr_min, self.logsnr_max)
        _checks.finite("shift", self.shift)

    @property
    def _ends(self):
        a = math.atan(math.exp(-0.5 * (self.logsnr_max - self.shift)))
        c = math.atan(math.exp(0.5 * (self.logsnr_min - self.shift)))
        return a, c, 0.5 * math.pi - a - c, self.shift

    _log_g = staticmethod(lambda u: jnp.log(jnp.sin(u)))

    def inverse(self, logsnr) -> Array:
        a, c, delta, shift = self._ends
        y = as_float(logsnr) - shift
        t_lo = (jnp.arctan(jnp.exp(-0.5 * y)) - a) / delta
        t_hi = 1.0 - (jnp.arctan(jnp.exp(0.5 * y)) - c) / delta
        return jnp.where(y >= 0.0, t_lo, t_hi)


class CosineInterpolated(AbstractSchedule):
    r"""$\lambda(t) = (1-t)\lambda_{\cos,\mathrm{shift\_start}}(t) + t\lambda_{\cos,\mathrm{shift\_end}}(t)$; inverse by bisection."""

    logsnr_min: float = eqx.field(default=DEFAULT_LOGSNR_MIN, **_static)
    logsnr_max: float = eqx.field(default=DEFAULT_LOGSNR_MAX, **_static)
    shift_start: float = eqx.field(default=0.0, **_static)
    shift_end: float = eqx.field(default=0.0, **_static)

    def __check_init__(self):
        _checks.logsnr_range(self.logsnr_min, self.logsnr_max)
        _checks.finite("shift_start", self.shift_start)
        _checks.finite("shift_end", self.shift_end)
        # The hyperparameters are static, so the slope is known now, even inside a trace.
        with jax.ensure_compile_time_eval():
            slope = self.dlogsnr_dt(jnp.linspace(0.0, 1.0, 4097))
        _checks.interpolated_slope(slope, self.shift_start, self.shift_end)

    def logsnr(self, t) -> Array:
        t = as_float(t)
        start = Cosine(self.logsnr_min, self.logsnr_max, self.shift_start)
        end = Cosine(self.logsnr_min, self.logsnr_max, self.shift_end)
        return (1.0 - t) * start.logsnr(t) + t * end.logsnr(t)

    def inverse(self, logsnr, iterations: int = 60) -> Array:
        """$t(\\lambda)$ by `iterations` bisection steps and one Newton step (`bisect_inverse`)."""
        return bisect_inverse(self.logsnr, logsnr, iterations)


class DDPMLinear(AbstractSchedule):
    r"""VP-SDE linear β: $\lambda(t) = -\ln\operatorname{expm1}(\beta_0\tau + \tfrac12(\beta_1-\beta_0)\tau^2)$, $\tau = t_\epsilon + t(1-t_\epsilon)$."""

    beta_min: float = eqx.field(default=0.1, **_static)
    beta_max: float = eqx.field(default=20.0, **_static)
    t_eps: float = eqx.field(default=1e-5, **_static)

    def __check_init__(self):
        _checks.ddpm_linear(self.beta_min, self.beta_max, self.t_eps)

    def _integral(self, t):
        tau = self.t_eps + as_float(t) * (1.0 - self.t_eps)
        return self.beta_min * tau + 0.5 * (self.beta_max - self.beta_min) * tau**2

    @property
    def logsnr_min(self) -> float:
        return -math.log(math.expm1(self.beta_min + 0.5 * (self.beta_max - self.beta_min)))

    @property
    def logsnr_max(self) -> float:
        g = self.beta_min * self.t_eps + 0.5 * (self.beta_max - self.beta_min) * self.t_eps**2
        return -math.log(math.expm1(g))

    def logsnr(self, t) -> Array:
        return -jnp.log(jnp.expm1(self._integral(t)))

    def inverse(self, logsnr) -> Array:
        g = jax.nn.softplus(-as_float(logsnr))
        tau = 2.0 * g / (self.beta_min + jnp.sqrt(self.beta_min**2 + 2.0 * (self.beta_max - self.beta_min) * g))
        return (tau - self.t_eps) / (1.0 - self.t_eps)


def _ndtr(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


class EDMLogNormal(AbstractSchedule):
    r"""$\lambda = -2\ln\sigma \sim \mathcal N(-2P_{\mathrm{mean}}, (2P_{\mathrm{std}})^2)$ truncated; $\lambda(t)$ its decreasing inverse CDF."""

    p_mean: float = eqx.field(default=-1.2, **_static)
    p_std: float = eqx.field(default=1.2, **_static)
    logsnr_min: float = eqx.field(default=DEFAULT_LOGSNR_MIN, **_static)
    logsnr_max: float = eqx.field(default=DEFAULT_LOGSNR_MAX, **_static)

    def __check_init__(self):
        _checks.finite("p_mean", self.p_mean)
        _checks.positive("p_std", self.p_std)
        _checks.logsnr_range(self.logsnr_min, self.logsnr_max)
        _checks.kept_mass(self._masses[4], self.logsnr_min, self.logsnr_max)

    @property
    def _masses(self) -> tuple[float, float, float, float, float]:
        mu, s = -2.0 * self.p_mean, 2.0 * self.p_std
        below = _ndtr((self.logsnr_min - mu) / s)
        above = _ndtr((mu - self.logsnr_max) / s)
        return mu, s, below, above, _ndtr((self.logsnr_max - mu) / s) - below

    def logsnr(self, t) -> Array:
        return _edm_lognormal_logsnr(self, as_float(t))

    def _inverse_cdf(self, t: Array) -> Array:
        """$\\lambda(t)$ from the side of the median where the tail mass is small (no cancellation)."""
        mu, s, below0, above0, mass = self._masses
        below, above = below0 + (1.0 - t) * mass, above0 + t * mass
        lam = jnp.where(
            below < 0.5,
            mu + s * special.ndtri(jnp.minimum(below, 0.5)),
            mu - s * special.ndtri(jnp.minimum(above, 0.5)),
        )
        return jnp.clip(lam, self.logsnr_min, self.logsnr_max)

    def inverse(self, logsnr) -> Array:
        mu, s, below, above, mass = self._masses
        y = (as_float(logsnr) - mu) / s
        return jnp.where(y >= 0.0, (special.ndtr(-y) - above) / mass, 1.0 - (special.ndtr(y) - below) / mass)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _edm_lognormal_logsnr(schedule: "EDMLogNormal", t: Array) -> Array:
    return schedule._inverse_cdf(t)


@_edm_lognormal_logsnr.defjvp
def _edm_lognormal_logsnr_jvp(schedule, primals, tangents):
    r"""$\lambda'(t) = -1/p(\lambda(t))$ with $p$ the truncated normal density: exact at the clipped
    ends and in the tails, where autodiff through `ndtri` and the clip is not."""
    (t,), (t_dot,) = primals, tangents
    lam = schedule._inverse_cdf(t)
    return lam, -t_dot / schedule.density(lam)


class FlowOT(_AbstractTwoSidedLog):
    r"""Rectified flow $\alpha=1-t$, $\sigma=t$: $\lambda = 2\ln((1-t)/t)$ truncated; $p(\lambda) = \mathrm{sech}^2(\lambda/4)/(8\Delta)$."""

    logsnr_min: float = eqx.field(default=DEFAULT_LOGSNR_MIN, **_static)
    logsnr_max: float = eqx.field(default=DEFAULT_LOGSNR_MAX, **_static)

    def __check_init__(self):
        _checks.logsnr_range(self.logsnr_min, self.logsnr_max)

    @property
    def _ends(self):
        a = 1.0 / (1.0 + math.exp(0.5 * self.logsnr_max))  # t' at λ_max
        c = 1.0 / (1.0 + math.exp(-0.5 * self.logsnr_min))  # 1 - t' at λ_min
        return a, c, 1.0 - a - c, 0.0

    _log_g = staticmethod(jnp.log)

    def inverse(self, logsnr) -> Array:
        a, c, delta, _ = self._ends
        logsnr = as_float(logsnr)
        t_lo = (jax.nn.sigmoid(-0.5 * logsnr) - a) / delta
        t_hi = 1.0 - (jax.nn.sigmoid(0.5 * logsnr) - c) / delta
        return jnp.where(logsnr >= 0.0, t_lo, t_hi)
