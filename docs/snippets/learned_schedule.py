import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqx_impl as ex

data, w = ex.GaussianData(0.5, 4), ex.Sigmoid(2.0)  # Bayes-optimal model: E ℓ and E ℓ² are exact
nodes, weights = np.polynomial.legendre.leggauss(400)
u, du = jnp.asarray(0.5 * (nodes + 1.0), dtype=float), jnp.asarray(0.5 * weights, dtype=float)  # ∫_0^1 du


def moments(schedule):
    """E[L̂] and E[L̂²] of L̂ = ½ w(λ_t)(-λ'(t)) ℓ(λ_t), t ~ U(0, 1), by quadrature over t."""
    lam, slope = schedule.logsnr(u), schedule.dlogsnr_dt(u)
    scale = 0.5 * w(lam) * (-slope)  # ½ w(λ) / p(λ)
    return jnp.sum(du * scale * data.loss_mean(lam)), jnp.sum(du * scale**2 * data.loss_second_moment(lam))


schedule = ex.Learned(-10.0, 10.0, key=jax.random.key(0))  # starts as LinearLogSNR(-10, 10)
optimizer = optax.adam(1e-1)
opt_state = optimizer.init(eqx.filter(schedule, eqx.is_array))


@eqx.filter_jit
def step(schedule, opt_state):  # train the schedule on E[L̂²]: E[L̂] = L_w does not depend on it
    grads = eqx.filter_grad(lambda s: moments(s)[1])(schedule)
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(schedule, eqx.is_array))
    return eqx.apply_updates(schedule, updates), opt_state


history = []
for i in range(301):
    if i % 100 == 0:
        mean, second = moments(schedule)
        history.append((float(mean), float(second - mean**2)))
        print(f"step {i}: E[L̂] = {history[-1][0]:.4f}, Var[L̂] = {history[-1][1]:.2f}")
    schedule, opt_state = step(schedule, opt_state)
target = float(ex.estimator_mean(w, data.loss_mean, -10.0, 10.0))
assert all(abs(m - target) < 1e-4 * target for m, _ in history)  # the objective never moved
assert history[-1][1] < 0.5 * history[0][1]  # only the variance did
assert jnp.all(schedule.dlogsnr_dt(u) < 0) and abs(float(schedule.logsnr(0.0)) - 10.0) < 1e-3  # still monotone
