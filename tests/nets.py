"""A fixed random MLP ε-model with identical weights in NumPy (float64) and JAX.

`eps_model(z, logsnr) -> ε̂` for one example of any shape: flatten z, append
features of λ, two tanh hidden layers, reshape. Used wherever a test needs a
"random-network denoiser" that both packages can evaluate.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def init_params(dim: int, hidden: int = 32, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    sizes = [dim + 2, hidden, hidden, dim]
    return [
        (rng.normal(size=(m, n)) / np.sqrt(m), 0.1 * rng.normal(size=n))
        for m, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def numpy_mlp(params):
    def eps_model(z, logsnr):
        z = np.asarray(z, dtype=np.float64)
        lam = np.float64(logsnr)
        h = np.concatenate([z.reshape(-1), [np.tanh(lam / 10.0), np.sin(lam / 4.0)]])
        for k, (w, b) in enumerate(params):
            h = h @ w + b
            if k < len(params) - 1:
                h = np.tanh(h)
        return h.reshape(z.shape)

    return eps_model


def jax_mlp(params, dtype=jnp.float32):
    jparams = [(jnp.asarray(w, dtype), jnp.asarray(b, dtype)) for w, b in params]
    return jax_mlp_apply(jparams)


def jax_mlp_apply(jparams):
    def eps_model(z, logsnr):
        lam = jnp.asarray(logsnr, z.dtype)
        h = jnp.concatenate([z.reshape(-1), jnp.stack([jnp.tanh(lam / 10.0), jnp.sin(lam / 4.0)])])
        for k, (w, b) in enumerate(jparams):
            h = h @ w + b
            if k < len(jparams) - 1:
                h = jnp.tanh(h)
        return h.reshape(z.shape)

    return eps_model
