"""A fixed random MLP ε-model with identical weights in NumPy (float64) and JAX.

`eps_model(z, logsnr) -> ε̂` for one example of any shape: the packages' `ProbeNet` (flatten
z, append features of λ, tanh hidden layers, reshape), here with two hidden layers. Used
wherever a test needs a "random-network denoiser" that both packages can evaluate.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import eqx_impl as E
import reference as R


def init_params(dim: int, hidden: int = 32, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    sizes = [dim + 2, hidden, hidden, dim]
    return [
        (rng.normal(size=(m, n)) / np.sqrt(m), 0.1 * rng.normal(size=n))
        for m, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def numpy_mlp(params) -> R.ProbeNet:
    return R.ProbeNet(params)


def jax_mlp(params, dtype=jnp.float32) -> E.ProbeNet:
    return jax_mlp_apply([(jnp.asarray(w, dtype), jnp.asarray(b, dtype)) for w, b in params])


def jax_mlp_apply(jparams) -> E.ProbeNet:
    return E.ProbeNet(list(jparams))
