import math
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

import eqx_impl as ex


class P2(ex.AbstractWeighting):
    """P2 weighting (Choi et al. 2022) on the ε-loss with the cosine schedule: sech(λ/2) / (k + e^λ)^γ."""

    kinks: ClassVar[tuple[float, ...]] = ()  # smooth: no log-SNR where dw/dλ jumps
    k: float = eqx.field(default=1.0, static=True)
    gamma: float = eqx.field(default=1.0, static=True)

    def __call__(self, logsnr):
        logsnr = jnp.asarray(logsnr, dtype=float)
        log_p2 = -self.gamma * jnp.logaddexp(math.log(self.k), logsnr)  # -γ ln(k + e^λ), no overflow
        return ex.EpsCosine()(logsnr) * jnp.exp(log_p2)


w = P2()
lam = jnp.linspace(-10.0, 10.0, 201)
# The same objective spelled "ε-MSE × 1/(1 + SNR), t ~ U(0, 1), cosine schedule":
implied = ex.Implied(ex.Cosine(-10.0, 10.0), "eps", lambda l: jnp.exp(-jnp.logaddexp(0.0, l)))
ratio = implied(lam) / w(lam)
assert jnp.allclose(ratio, ratio[0], rtol=1e-4)  # proportional: one objective, two spellings
slope = w.derivative(lam)  # dw/dλ by autodiff (used by ibp_rhs and the augmentation density)
assert not ex.is_monotonic(w, -10.0, 10.0)  # it rises below its peak at λ = -ln 3
w_mono = ex.Monotonic(w, -10.0, 10.0)  # the smallest non-increasing majorant: an ELBO again
assert abs(w_mono.peaks[0] + math.log(3.0)) < 1e-3
aug = ex.augmentation_distribution(w_mono, ex.Cosine(-10.0, 10.0))
print(f"P2-monotonic: peak at λ = {w_mono.peaks[0]:.4f}, point mass at t = 0: {float(aug.point_mass):.3e}")
