r"""Input features: sinusoidal features of $\lambda$ and VDM's Fourier features of $z$."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from eqx_impl._typing import Array, ArrayLike, Float, Int, PRNGKeyArray, ScalarLike

__all__ = ["NoiseEmbedding", "add_label", "fourier_features", "label_embedding", "sinusoidal_embedding"]


def sinusoidal_embedding(
    logsnr: ScalarLike, num_features: int, min_period: float = 1.0, max_period: float = 200.0
) -> Float[Array, " features"]:
    r"""Transformer-style features of a scalar, with periods measured in units of $\lambda$.

    $$e(\lambda) = \big[\sin(2\pi\lambda/P_k)\big]_{k<K}
      \oplus \big[\cos(2\pi\lambda/P_k)\big]_{k<K},
      \quad P_k = P_{\min}(P_{\max}/P_{\min})^{k/(K-1)},\ K = \tfrac{\mathrm{num\_features}}{2}.$$
    The default periods, 1 to 200, resolve $\lambda$ finely over $[-30, 30]$ (the shortest)
    and encode its position almost linearly (the longest). EDM feeds
    $c_{\mathrm{noise}} = \tfrac14\ln\sigma_{\mathrm{edm}} = -\lambda/8$ to the same kind of
    embedding: that is this one with every period divided by 8.

    **Returns:** `(num_features,)` features in the dtype of `logsnr`.
    """
    if num_features < 2 or num_features % 2:
        raise ValueError(f"num_features must be a positive even number, got {num_features}.")
    logsnr = jnp.asarray(logsnr)
    periods = np.geomspace(min_period, max_period, num_features // 2)
    phase = logsnr * jnp.asarray(2.0 * math.pi / periods, dtype=logsnr.dtype)
    return jnp.concatenate([jnp.sin(phase), jnp.cos(phase)])


def fourier_features(
    z: Float[Array, " channels *spatial"], exponents: tuple[int, ...]
) -> Float[Array, " features *spatial"]:
    r"""VDM's Fourier features of the input (Kingma et al. 2021, App. C), stacked on axis 0.

    $$\big[\sin(2^n\pi z)\big]_{n \in N} \oplus \big[\cos(2^n\pi z)\big]_{n \in N},
      \quad N = \mathrm{exponents}.$$
    High frequencies ($n = 7, 8$ for 8-bit data in $[-1, 1]$, bin width $2^{-7}$) let the
    network see the fine detail that decides the likelihood at high SNR.

    **Returns:** `(2 * len(exponents) * channels, *spatial)`, `sin` blocks then `cos` blocks,
    each block ordered like `z`'s channels.
    """
    phases = [(2.0**n * math.pi) * z for n in exponents]
    return jnp.concatenate([jnp.sin(p) for p in phases] + [jnp.cos(p) for p in phases], axis=0)


class NoiseEmbedding(eqx.Module):
    r"""$\lambda \mapsto W_2\,\mathrm{SiLU}(W_1 e(\lambda) + b_1) + b_2$ ($e$: sinusoidal).

    The features are computed in the dtype of $\lambda$, the layers in that of their weights
    (bfloat16 under the `bfloat16` precision policy); the result has the weights' dtype.
    """

    linear1: eqx.nn.Linear
    linear2: eqx.nn.Linear
    num_features: int = eqx.field(static=True)
    min_period: float = eqx.field(static=True)
    max_period: float = eqx.field(static=True)

    def __init__(
        self,
        num_features: int,
        embed_dim: int,
        *,
        key: PRNGKeyArray,
        min_period: float = 1.0,
        max_period: float = 200.0,
    ):
        key1, key2 = jax.random.split(key)
        self.linear1 = eqx.nn.Linear(num_features, embed_dim, key=key1)
        self.linear2 = eqx.nn.Linear(embed_dim, embed_dim, key=key2)
        self.num_features = num_features
        self.min_period = float(min_period)
        self.max_period = float(max_period)

    def __check_init__(self):
        if self.num_features < 2 or self.num_features % 2:
            raise ValueError(f"num_features must be a positive even number, got {self.num_features}.")
        if not 0.0 < self.min_period <= self.max_period:
            raise ValueError(f"Need 0 < min_period <= max_period, got {self.min_period}, {self.max_period}.")

    def __call__(self, logsnr: ScalarLike) -> Float[Array, " embed_dim"]:
        """**Returns:** the embedding of one $\\lambda$, shape `(embed_dim,)`."""
        features = sinusoidal_embedding(logsnr, self.num_features, self.min_period, self.max_period)
        h = jax.nn.silu(self.linear1(features.astype(self.linear1.weight.dtype)))
        return self.linear2(h)


def label_embedding(num_classes: int | None, embed_dim: int, *, key: PRNGKeyArray) -> eqx.nn.Embedding | None:
    r"""The class-label embedding of a conditional network: `eqx.nn.Embedding(num_classes + 1,
    embed_dim)`, whose last row (index `num_classes`) is the null label $\varnothing$ of
    classifier-free guidance. `num_classes=None`: an unconditional network, no embedding.

    **Returns:** the embedding, or `None`.
    """
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer (or None: unconditional), got {num_classes!r}.")
    return eqx.nn.Embedding(int(num_classes) + 1, embed_dim, key=key)


def add_label(
    emb: Float[Array, " embed_dim"],
    embedding: eqx.nn.Embedding | None,
    label: Int[ArrayLike, ""] | None,
) -> Float[Array, " embed_dim"]:
    r"""$e(\lambda) + E[c]$: the noise embedding plus the label's row ($c = \varnothing$, the last
    row, when `label` is None). An unconditional network (`embedding` None) takes no label.

    **Returns:** the conditioning vector, shape and dtype of `emb`.
    """
    if embedding is None:
        if label is not None:
            raise ValueError(
                "This network is unconditional (built without num_classes) and takes no label; "
                "call it without label=, or build it with num_classes (model.args.num_classes)."
            )
        return emb
    index = embedding.num_embeddings - 1 if label is None else label
    return emb + embedding(jnp.asarray(index, jnp.int32)).astype(emb.dtype)
