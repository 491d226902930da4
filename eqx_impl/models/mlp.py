r"""A λ-conditioned MLP denoiser for low-dimensional data."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from eqx_impl._typing import Array, ArrayLike, Float, Int, PRNGKeyArray, ScalarLike
from eqx_impl.models.embeddings import NoiseEmbedding, add_label, fourier_features, label_embedding

__all__ = ["MLP"]


class MLP(eqx.Module):
    r"""Denoiser network for one example $z \in \mathbb R^d$.

    $$h_0 = z \oplus \mathrm{ff}(z),\quad
      h_{k+1} = \mathrm{SiLU}\big(W_k h_k + b_k + C_k\,e(\lambda) + c_k\big),\quad
      \mathrm{out} = W_{\mathrm{out}} h_{\mathrm{depth}} + b_{\mathrm{out}},$$
    with $e$ the `NoiseEmbedding` of $\lambda$ (`embed_dim` wide) and $\mathrm{ff}$ VDM's
    Fourier features for `fourier_exponents` (none by default). The output layer starts at
    zero (`zero_init_output`), so an untrained model predicts 0 for its target.
    With `num_classes`, $e(\lambda)$ becomes $e(\lambda) + E[c]$ for a class label $c$, $E$ an
    `eqx.nn.Embedding(num_classes + 1, embed_dim)` whose last row is the null label
    (`label=None`); without, the network is unconditional.
    Batch with `jax.vmap(model)(z, logsnr)`.
    """

    embedding: NoiseEmbedding
    label_embedding: eqx.nn.Embedding | None
    layers: tuple[eqx.nn.Linear, ...]
    conditioning: tuple[eqx.nn.Linear, ...]
    output: eqx.nn.Linear
    data_dim: int = eqx.field(static=True)
    fourier_exponents: tuple[int, ...] = eqx.field(static=True)
    num_classes: int | None = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        *,
        key: PRNGKeyArray,
        width: int = 256,
        depth: int = 3,
        embed_dim: int = 64,
        num_features: int = 32,
        fourier_exponents: tuple[int, ...] = (),
        zero_init_output: bool = True,
        min_period: float = 1.0,
        max_period: float = 200.0,
        num_classes: int | None = None,
    ):
        if depth < 1 or width < 1 or data_dim < 1:
            raise ValueError(f"MLP needs data_dim, width and depth >= 1, got {data_dim}, {width}, {depth}.")
        embed_key, layers_key, cond_key, out_key = jax.random.split(key, 4)
        self.embedding = NoiseEmbedding(
            num_features, embed_dim, key=embed_key, min_period=min_period, max_period=max_period
        )
        # Its own key (not one of the split above), so an unconditional MLP is unchanged.
        self.label_embedding = label_embedding(num_classes, embed_dim, key=jax.random.fold_in(key, 1))
        self.num_classes = None if num_classes is None else int(num_classes)
        in_dim = data_dim * (1 + 2 * len(fourier_exponents))
        sizes = [in_dim] + [width] * depth
        self.layers = tuple(
            eqx.nn.Linear(m, n, key=k)
            for m, n, k in zip(sizes[:-1], sizes[1:], jax.random.split(layers_key, depth), strict=True)
        )
        self.conditioning = tuple(eqx.nn.Linear(embed_dim, width, key=k) for k in jax.random.split(cond_key, depth))
        output = eqx.nn.Linear(width, data_dim, key=out_key)
        if zero_init_output:
            output = eqx.tree_at(
                lambda m: (m.weight, m.bias),
                output,
                (jnp.zeros_like(output.weight), jnp.zeros_like(output.bias)),  # pyright: ignore[reportArgumentType]  # built with a bias
            )
        self.output = output
        self.data_dim = data_dim
        self.fourier_exponents = tuple(int(n) for n in fourier_exponents)

    def __call__(
        self,
        z: Float[Array, " data_dim"],
        logsnr: ScalarLike,
        *,
        key: PRNGKeyArray | None = None,
        label: Int[ArrayLike, ""] | None = None,
    ) -> Float[Array, " data_dim"]:
        """`key` is accepted for a uniform network interface and unused (no dropout). `label`:
        the class in `0..num_classes-1` (`None`: the null label; only for a conditional MLP).

        **Returns:** the prediction for one example, shape `(data_dim,)`.
        """
        del key
        if z.shape != (self.data_dim,):
            raise ValueError(
                f"MLP acts on one example of shape ({self.data_dim},), got {z.shape}; "
                "for a batch use jax.vmap(model)(z, logsnr)."
            )
        emb = add_label(self.embedding(jnp.asarray(logsnr, dtype=z.dtype)), self.label_embedding, label)
        h = z
        if self.fourier_exponents:
            h = jnp.concatenate([z, fourier_features(z, self.fourier_exponents)])
        h = h.astype(self.output.weight.dtype)  # bfloat16 under that precision policy
        for layer, cond in zip(self.layers, self.conditioning, strict=True):
            h = jax.nn.silu(layer(h) + cond(emb))
        return self.output(h).astype(z.dtype)
