import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import eqx_impl as ex

data, w = ex.GaussianData(0.5, 4), ex.Sigmoid(2.0)  # Bayes-optimal model: m1 = E ℓ, m2 = E ℓ² exact
nodes, weights = np.polynomial.legendre.leggauss(400)
u, du = jnp.asarray(0.5 * (nodes + 1.0), dtype=float), jnp.asarray(0.5 * weights, dtype=float)  # ∫_0^1

for seed in (0, 1):
    key_init, key_bend = jax.random.split(jax.random.key(seed))
    schedule = ex.Learned(-10.0, 10.0, key=key_init)  # endpoints fixed: λ(0) = 10, λ(1) = -10
    bend = 40.0 * jax.random.normal(key_bend, (1024,)) / 1024  # push it far from the linear init
    schedule = eqx.tree_at(lambda s: s.l3_weight, schedule, bend)
    lam, slope = schedule.logsnr(u), schedule.dlogsnr_dt(u)
    assert jnp.all(slope < 0) and abs(float(lam[0]) - 10.0) < 0.1  # monotone, pinned ends
    estimate = 0.5 * w(lam) * (-slope)  # L̂ / ℓ for t = u, i.e. ½ w(λ)/p(λ)
    mean = jnp.sum(du * estimate * data.loss_mean(lam))
    second = jnp.sum(du * estimate**2 * data.loss_second_moment(lam))
    print(f"seed {seed}: E[L̂] = {float(mean):.4f}, Var[L̂] = {float(second - mean**2):.2f}")

print(f"L_w = {float(ex.estimator_mean(w, data.loss_mean, -10.0, 10.0)):.4f} for every schedule")
