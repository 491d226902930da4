r"""The residual block of the U-Net, conditioned on the λ-embedding."""

from __future__ import annotations

import equinox as eqx
import jax

from eqx_impl._typing import Array, Float, PRNGKeyArray
from eqx_impl.models.precision import float32_norm

__all__ = ["ResBlock"]


class ResBlock(eqx.Module):
    r"""DDPM-style residual block on one `(channels, height, width)` feature map.

    $$h = \mathrm{conv}_1(\mathrm{SiLU}(\mathrm{GN}_1(x))) + W_e\,\mathrm{SiLU}(e) + b_e,$$
    $$\mathrm{out} = \mathrm{skip}(x)
      + \mathrm{conv}_2(\mathrm{drop}(\mathrm{SiLU}(\mathrm{GN}_2(h)))),$$
    3×3 convolutions, `skip` a 1×1 convolution when the width changes (else the identity),
    the embedding term broadcast over space. Works in the dtype of `x` (which `emb` and the
    layers share); the group norms compute in float32.
    """

    norm1: eqx.nn.GroupNorm
    conv1: eqx.nn.Conv2d
    embed: eqx.nn.Linear
    norm2: eqx.nn.GroupNorm
    dropout: eqx.nn.Dropout
    conv2: eqx.nn.Conv2d
    skip: eqx.nn.Conv2d | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embed_dim: int,
        *,
        key: PRNGKeyArray,
        groups: int = 8,
        dropout: float = 0.0,
    ):
        conv1_key, embed_key, conv2_key, skip_key = jax.random.split(key, 4)
        self.norm1 = eqx.nn.GroupNorm(groups, in_channels)
        self.conv1 = eqx.nn.Conv2d(in_channels, out_channels, 3, padding=1, key=conv1_key)
        self.embed = eqx.nn.Linear(embed_dim, out_channels, key=embed_key)
        self.norm2 = eqx.nn.GroupNorm(groups, out_channels)
        self.dropout = eqx.nn.Dropout(dropout)
        self.conv2 = eqx.nn.Conv2d(out_channels, out_channels, 3, padding=1, key=conv2_key)
        self.skip = None if in_channels == out_channels else eqx.nn.Conv2d(in_channels, out_channels, 1, key=skip_key)

    def __call__(
        self,
        x: Float[Array, "in_channels height width"],
        emb: Float[Array, " embed_dim"],
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "out_channels height width"]:
        """`key` drives dropout; needed only when `dropout > 0` and training.

        **Returns:** the block's output, `(out_channels, height, width)`.
        """
        h = self.conv1(jax.nn.silu(float32_norm(self.norm1, x)))
        h = h + self.embed(jax.nn.silu(emb))[:, None, None]
        h = self.conv2(self.dropout(jax.nn.silu(float32_norm(self.norm2, h)), key=key))
        return (x if self.skip is None else self.skip(x)) + h
