r"""Multi-head self-attention over the pixels of one feature map."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from eqx_impl._typing import Array, Float, PRNGKeyArray
from eqx_impl.models.precision import float32_norm

__all__ = ["SelfAttention"]


class SelfAttention(eqx.Module):
    r"""Residual self-attention: $x + W_o\,\mathrm{MHA}(\mathrm{GN}(x))$ over the $HW$ positions.

    With $q, k, v = W_{qkv}\,\mathrm{GN}(x)$ (1×1 convolutions) split into `num_heads` heads of
    size $d_h = C/\mathrm{heads}$, each head computes
    $\mathrm{softmax}_j(q_i^\top k_j/\sqrt{d_h})\,v_j$. Works in the dtype of `x`; the norm and
    the softmax compute in float32.
    """

    norm: eqx.nn.GroupNorm
    qkv: eqx.nn.Conv2d
    out: eqx.nn.Conv2d
    num_heads: int = eqx.field(static=True)

    def __init__(self, channels: int, *, key: PRNGKeyArray, num_heads: int = 1, groups: int = 8):
        if channels % num_heads:
            raise ValueError(
                f"channels={channels} must be divisible by num_heads={num_heads}; "
                "pick a head count that divides the width."
            )
        qkv_key, out_key = jax.random.split(key)
        self.norm = eqx.nn.GroupNorm(groups, channels)
        self.qkv = eqx.nn.Conv2d(channels, 3 * channels, 1, key=qkv_key)
        self.out = eqx.nn.Conv2d(channels, channels, 1, key=out_key)
        self.num_heads = num_heads

    def __call__(self, x: Float[Array, "channels height width"]) -> Float[Array, "channels height width"]:
        """**Returns:** the attended feature map, shape like `x`."""
        c, height, width = x.shape
        head_dim = c // self.num_heads
        qkv = self.qkv(float32_norm(self.norm, x)).reshape(3, self.num_heads, head_dim, height * width)
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = jnp.einsum("hdi,hdj->hij", q, k) / jnp.sqrt(jnp.asarray(head_dim, dtype=x.dtype))
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(x.dtype)
        h = jnp.einsum("hij,hdj->hdi", weights, v)
        return x + self.out(h.reshape(c, height, width))
