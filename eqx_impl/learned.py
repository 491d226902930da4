r"""VDM's learned monotone noise schedule (Kingma et al. 2021, App. H; SPEC §6).

With $\gamma = -\lambda$ increasing in $t$:
$$\gamma(t) = l_1(t) + l_3\big(\phi(l_2(t))\big),\qquad \phi(h) = 2(\mathrm{sigmoid}(h) - \tfrac12),$$
every weight of $l_1, l_2, l_3$ made non-negative by `abs`, so $\gamma$ is increasing. $l_1$ starts
as the linear schedule; $l_2$ has `width` (1024) units. With `fixed_endpoints` the network
is renormalised so $\gamma(0) = -\lambda_{\max}$, $\gamma(1) = -\lambda_{\min}$ exactly;
otherwise the endpoints are learned too.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

import _checks
from eqx_impl._floats import as_float
from eqx_impl._typing import Array, PRNGKeyArray
from eqx_impl.schedules import DEFAULT_LOGSNR_MAX, DEFAULT_LOGSNR_MIN, AbstractSchedule, bisect_inverse


class Learned(AbstractSchedule):
    """VDM's monotone network schedule; trainable, so train it to minimise the estimator variance."""

    l1_weight: Array
    l1_bias: Array
    l2_weight: Array
    l2_bias: Array
    l3_weight: Array
    init_logsnr_min: float = eqx.field(static=True)
    init_logsnr_max: float = eqx.field(static=True)
    fixed_endpoints: bool = eqx.field(static=True)

    def __init__(
        self,
        logsnr_min: float = DEFAULT_LOGSNR_MIN,
        logsnr_max: float = DEFAULT_LOGSNR_MAX,
        *,
        key: PRNGKeyArray,
        width: int = 1024,
        fixed_endpoints: bool = True,
    ):
        lo, hi = _checks.logsnr_range(logsnr_min, logsnr_max)
        if int(width) < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}.")
        k2, k2b, k3 = jax.random.split(key, 3)
        self.init_logsnr_min, self.init_logsnr_max = lo, hi
        self.fixed_endpoints = bool(fixed_endpoints)
        # l1(t) = (γ_max - γ_min) t + γ_min: exactly the linear schedule at initialisation.
        self.l1_weight = jnp.asarray(hi - lo)
        self.l1_bias = jnp.asarray(-hi)
        self.l2_weight = jax.random.normal(k2, (width,))
        self.l2_bias = jax.random.normal(k2b, (width,))
        self.l3_weight = 1e-2 * jax.random.normal(k3, (width,)) / width

    def gamma_unnormalised(self, t) -> Array:
        """The raw monotone network $\\gamma(t)$ (elementwise in `t`)."""
        t = as_float(t)
        linear = jnp.abs(self.l1_weight) * t + self.l1_bias
        hidden = 2.0 * (jax.nn.sigmoid(jnp.abs(self.l2_weight) * t[..., None] + self.l2_bias) - 0.5)
        return linear + hidden @ jnp.abs(self.l3_weight)

    def logsnr(self, t) -> Array:
        gamma = self.gamma_unnormalised(t)
        if not self.fixed_endpoints:
            return -gamma
        g0, g1 = self.gamma_unnormalised(0.0), self.gamma_unnormalised(1.0)
        unit = (gamma - g0) / (g1 - g0)
        return self.init_logsnr_max + unit * (self.init_logsnr_min - self.init_logsnr_max)

    @property
    def logsnr_min(self):
        return self.init_logsnr_min if self.fixed_endpoints else -self.gamma_unnormalised(1.0)

    @property
    def logsnr_max(self):
        return self.init_logsnr_max if self.fixed_endpoints else -self.gamma_unnormalised(0.0)

    def inverse(self, logsnr) -> Array:
        return bisect_inverse(self.logsnr, logsnr)
