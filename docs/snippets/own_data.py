import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import eqx_impl as ex

data_key, model_key, train_key = jax.random.split(jax.random.key(0), 3)
data = ex.GaussianData(0.5, 2)  # stand-in with a known optimum; use any array of shape (N, *example_shape)
x_all = data.sample(4096, key=data_key)
model = ex.EpsModel(ex.MLP(2, key=model_key, width=64, depth=2), target="eps")
weighting, schedule = ex.Sigmoid(2.0), ex.Cosine(-10.0, 10.0)
optimizer = optax.adam(3e-3)
opt_state = optimizer.init(eqx.filter(model, eqx.is_array))


def per_example_losses(model, x, key):
    u_key, eps_key = jax.random.split(key)
    u = (jax.random.uniform(u_key) + jnp.arange(x.shape[0]) / x.shape[0]) % 1.0  # stratified t ~ U(0, 1)
    logsnr = schedule.logsnr(u)
    return jax.vmap(ex.weighted_loss, in_axes=(None, 0, 0, 0, None, 0))(
        model, x, logsnr, jax.random.normal(eps_key, x.shape), weighting, schedule.density(logsnr)
    )  # ½ w(λ)/p(λ) ℓ(λ) per example: unbiased for L_w = ½ ∫ w E[ℓ] dλ


def batch_loss(model, x, key):
    return jnp.mean(per_example_losses(model, x, key))


@eqx.filter_jit
def train_step(model, opt_state, x, key):
    loss, grads = eqx.filter_value_and_grad(batch_loss)(model, x, key)
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, updates), opt_state, loss


for step in range(300):
    batch_key, step_key = jax.random.split(jax.random.fold_in(train_key, step))
    batch = x_all[jax.random.randint(batch_key, (256,), 0, x_all.shape[0])]
    model, opt_state, loss = train_step(model, opt_state, batch, step_key)

# The Bayes-optimal denoiser's loss is the floor no model can beat (closed form for Gaussian data):
floor = ex.estimator_mean(weighting, data.loss_mean, -10.0, 10.0)
losses = eqx.filter_jit(per_example_losses)(model, x_all, jax.random.key(1))  # all 4096 examples
stderr = jnp.std(losses) / jnp.sqrt(losses.size)
print(f"trained L_w ≈ {float(jnp.mean(losses)):.3f} ± {float(stderr):.3f}; Bayes floor {float(floor):.3f}")
