import equinox as eqx
import jax.numpy as jnp

import eqx_impl as ex


class Laplace(ex.AbstractSchedule):
    """λ ~ Laplace(mu, b) truncated to [logsnr_min, logsnr_max]; λ(t) is its decreasing inverse CDF."""

    mu: float = eqx.field(default=0.0, static=True)
    b: float = eqx.field(default=1.0, static=True)
    logsnr_min: float = eqx.field(default=-10.0, static=True)
    logsnr_max: float = eqx.field(default=10.0, static=True)

    def _cdf(self, lam):
        y = (jnp.asarray(lam, dtype=float) - self.mu) / self.b
        half_tail = 0.5 * jnp.exp(-jnp.abs(y))
        return jnp.where(y < 0, half_tail, 1.0 - half_tail)

    def logsnr(self, t):  # F(λ(t)) = F(λ_max) - t (F(λ_max) - F(λ_min)); invert F piecewise
        lo, hi = self._cdf(self.logsnr_min), self._cdf(self.logsnr_max)
        q = hi - jnp.asarray(t, dtype=float) * (hi - lo)
        return jnp.where(q < 0.5, self.mu + self.b * jnp.log(2 * q), self.mu - self.b * jnp.log(2 - 2 * q))

    def inverse(self, logsnr):
        lo, hi = self._cdf(self.logsnr_min), self._cdf(self.logsnr_max)
        return (hi - self._cdf(logsnr)) / (hi - lo)


schedule = Laplace(mu=1.0, b=1.5)
lam = jnp.linspace(-10.0, 10.0, 2001)
p = schedule.density(lam)  # -dt/dλ, from the autodiff slope of logsnr (AbstractSchedule.density)
mass = jnp.sum(0.5 * (p[1:] + p[:-1]) * jnp.diff(lam))
assert abs(float(mass) - 1.0) < 1e-3  # a density on [λ_min, λ_max]
# As a proposal it changes only the variance of the loss estimator (Gaussian data, Bayes-optimal model):
data, w = ex.GaussianData(0.5, 4), ex.Sigmoid(2.0)
for name, s in {"Cosine": ex.Cosine(-10.0, 10.0), "Laplace(1, 1.5)": schedule}.items():
    var = ex.estimator_variance(w, s.density, data.loss_mean, data.loss_second_moment, -10.0, 10.0, points=(1.0,))
    print(f"Var[{name}] = {float(var):.2f}")
print(f"Var_min = {float(ex.optimal_variance(w, data.loss_mean, data.loss_second_moment, -10.0, 10.0)):.2f}")
