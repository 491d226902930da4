r"""A random probe network (mirror of `reference.probe`): a fixed tanh MLP that stands in for a
trained denoiser wherever both packages must evaluate the same network (the pre-flight's
loss check, the equivalence tests of losses and samplers).

For one example $z$ of any shape, $h_0 = (\operatorname{vec} z, \tanh(\lambda/10), \sin(\lambda/4))$,
$h_{k+1} = \tanh(h_k W_k + b_k)$ for the hidden layers and $h_K W_K + b_K$ for the last,
reshaped like $z$.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from eqx_impl._typing import Array

__all__ = ["ProbeNet"]


class ProbeNet(eqx.Module):
    """`layers`: `[(W, b), ...]` with `W` of shape `(fan_in, fan_out)`; the first takes
    `z.size + 2` inputs, the last gives `z.size` outputs. Computes in `z`'s dtype; `key` is
    accepted (and unused) like any network of `eqx_impl.models`."""

    layers: list[tuple[Array, Array]]

    def __call__(self, z, logsnr, *, key=None) -> Array:
        del key
        lam = jnp.asarray(logsnr, z.dtype)
        h = jnp.concatenate([z.reshape(-1), jnp.stack([jnp.tanh(lam / 10.0), jnp.sin(lam / 4.0)])])
        for k, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if k < len(self.layers) - 1:
                h = jnp.tanh(h)
        return h.reshape(z.shape)
