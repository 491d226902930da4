r"""VDM's learned monotone noise schedule in float64 (Kingma et al. 2021, App. H/I.2; SPEC §6).

With $\gamma = -\lambda$ increasing in $t$:
$$\gamma(t) = |w_1|\,t + b_1 + \sum_j |w_{3j}|\,\phi(|w_{2j}|\,t + b_{2j}),\qquad
  \phi(h) = 2(\mathrm{sigmoid}(h) - \tfrac12),$$
so $\gamma'(t) = |w_1| + \sum_j |w_{3j}|\,2\,\mathrm{sigmoid}'(h_j)\,|w_{2j}| > 0$, evaluated
analytically here (the eqx twin differentiates by autodiff). With `fixed_endpoints` the
network is renormalised so $\lambda(0) = \lambda_{\max}$, $\lambda(1) = \lambda_{\min}$ exactly;
otherwise $\lambda = -\gamma$ and the endpoints are learned too.

The weights are public attributes (`PARAMETERS`): the pre-flight and the equivalence tests
set them to the eqx schedule's trained values.
"""

from __future__ import annotations

import numpy as np
from scipy import special

import _checks
from reference._typing import FloatArray
from reference.schedules import DEFAULT_LOGSNR_MAX, DEFAULT_LOGSNR_MIN, AbstractSchedule

__all__ = ["PARAMETERS", "Learned"]

# The trainable weights, in the order of the eqx module's fields.
PARAMETERS = ("l1_weight", "l1_bias", "l2_weight", "l2_bias", "l3_weight")

_BISECTION_STEPS = 100  # halves [0, 1] down to float64 resolution


class Learned(AbstractSchedule):
    """VDM's monotone network schedule: `rng` draws the weights as the eqx twin's `key` does
    ($l_1$ the linear schedule, $l_2 \\sim N(0, 1)$, $l_3 \\sim 10^{-2} N(0, 1)/\\text{width}$)."""

    def __init__(
        self,
        logsnr_min: float = DEFAULT_LOGSNR_MIN,
        logsnr_max: float = DEFAULT_LOGSNR_MAX,
        *,
        rng: np.random.Generator,
        width: int = 1024,
        fixed_endpoints: bool = True,
    ):
        lo, hi = _checks.logsnr_range(logsnr_min, logsnr_max)
        if int(width) < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}.")
        self.init_logsnr_min, self.init_logsnr_max = lo, hi
        self.fixed_endpoints = bool(fixed_endpoints)
        self.l1_weight = np.float64(hi - lo)
        self.l1_bias = np.float64(-hi)
        self.l2_weight = rng.normal(size=int(width))
        self.l2_bias = rng.normal(size=int(width))
        self.l3_weight = 1e-2 * rng.normal(size=int(width)) / int(width)

    def _hidden(self, t) -> FloatArray:
        return np.abs(np.asarray(self.l2_weight, np.float64)) * np.asarray(t, np.float64)[..., None] + self.l2_bias

    def gamma_unnormalised(self, t) -> FloatArray:
        """The raw monotone network $\\gamma(t)$ (elementwise in `t`)."""
        t = np.asarray(t, np.float64)
        phi = 2.0 * (special.expit(self._hidden(t)) - 0.5)
        return np.abs(self.l1_weight) * t + self.l1_bias + phi @ np.abs(np.asarray(self.l3_weight, np.float64))

    def _dgamma_dt(self, t) -> FloatArray:
        s = special.expit(self._hidden(t))
        slopes = 2.0 * s * (1.0 - s) * np.abs(np.asarray(self.l2_weight, np.float64))
        return np.abs(self.l1_weight) + slopes @ np.abs(np.asarray(self.l3_weight, np.float64))

    def _scale(self) -> tuple[float, float]:
        """`(offset, factor)` with $\\lambda = \\lambda_{\\max} + (\\gamma - \\text{offset})\\cdot\\text{factor}$."""
        if not self.fixed_endpoints:
            return 0.0, -1.0
        g0, g1 = float(self.gamma_unnormalised(0.0)), float(self.gamma_unnormalised(1.0))
        return g0, (self.init_logsnr_min - self.init_logsnr_max) / (g1 - g0)

    def logsnr(self, t) -> FloatArray:
        offset, factor = self._scale()
        top = self.init_logsnr_max if self.fixed_endpoints else 0.0
        return np.float64(top) + (self.gamma_unnormalised(t) - offset) * factor

    def dlogsnr_dt(self, t) -> FloatArray:
        return self._dgamma_dt(t) * self._scale()[1]

    @property
    def logsnr_min(self) -> float:
        return self.init_logsnr_min if self.fixed_endpoints else -float(self.gamma_unnormalised(1.0))

    @property
    def logsnr_max(self) -> float:
        return self.init_logsnr_max if self.fixed_endpoints else -float(self.gamma_unnormalised(0.0))

    def inverse(self, logsnr) -> FloatArray:
        """$t(\\lambda)$ by bisection on $[0, 1]$ ($\\lambda$ is decreasing), to float64 resolution."""
        logsnr = np.asarray(logsnr, np.float64)
        lo, hi = np.zeros(logsnr.shape), np.ones(logsnr.shape)
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            above = self.logsnr(mid) > logsnr
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return 0.5 * (lo + hi)
