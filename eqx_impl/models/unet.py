r"""A small DDPM/VDM-style U-Net for images, conditioned on λ."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp

from eqx_impl._typing import Array, ArrayLike, Float, Int, PRNGKeyArray, ScalarLike
from eqx_impl.models.attention import SelfAttention
from eqx_impl.models.embeddings import NoiseEmbedding, add_label, fourier_features, label_embedding
from eqx_impl.models.precision import float32_norm
from eqx_impl.models.resblock import ResBlock

__all__ = ["UNet"]


def _upsample(x: Array) -> Array:
    """Nearest-neighbour ×2 on the two spatial axes of `(channels, height, width)`."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _check_args(channels: tuple[int, ...], num_res_blocks: int, groups: int, attention_levels: tuple[int, ...]) -> None:
    """Raise a `ValueError` saying what to change if the U-Net's shape arguments are inconsistent."""
    if not channels or num_res_blocks < 1:
        raise ValueError(
            f"UNet needs at least one level and num_res_blocks >= 1, got channels={channels}, "
            f"num_res_blocks={num_res_blocks}."
        )
    if any(c % groups for c in channels):
        raise ValueError(
            f"Every width in channels={channels} must be divisible by groups={groups} "
            "(GroupNorm); change the widths or the number of groups."
        )
    if any(not 0 <= i < len(channels) for i in attention_levels):
        raise ValueError(f"attention_levels={attention_levels} must index levels 0..{len(channels) - 1}.")


@dataclasses.dataclass(frozen=True)
class _Layers:
    """The hyperparameters shared by every ResBlock and SelfAttention of one U-Net."""

    embed_dim: int
    groups: int
    dropout: float
    num_heads: int
    attention_levels: tuple[int, ...]

    def block(self, c_in: int, c_out: int, key: PRNGKeyArray) -> ResBlock:
        """A `ResBlock` from `c_in` to `c_out` channels, conditioned on the embedding."""
        return ResBlock(c_in, c_out, self.embed_dim, key=key, groups=self.groups, dropout=self.dropout)

    def attention(self, c: int, key: PRNGKeyArray) -> SelfAttention:
        """A `SelfAttention` over `c` channels."""
        return SelfAttention(c, key=key, num_heads=self.num_heads, groups=self.groups)

    def level_attention(self, level: int, c: int, key: PRNGKeyArray) -> SelfAttention | None:
        """`attention(c, key)` at a level in `attention_levels`, else `None` (`key` unused)."""
        return self.attention(c, key) if level in self.attention_levels else None


def _down_path(layers: _Layers, channels: tuple[int, ...], num_res_blocks: int, key: PRNGKeyArray):
    """The down path: per level $i$, `num_res_blocks` ResBlocks to `channels[i]` (each with its
    optional attention), then a stride-2 convolution except at the last level.

    Each block draws two keys (block, attention) and each downsample one, in that order, from
    `split(key, 3 L R + L)` ($L$ levels, $R$ = `num_res_blocks`); the surplus keys are unused.

    **Returns:** `((blocks, attention, downsamples), skips)`, `skips` the channel count of every
    feature map the up path concatenates, in the order produced (conv_in's output first).
    """
    keys = iter(jax.random.split(key, 3 * len(channels) * num_res_blocks + len(channels)))
    skips, width = [channels[0]], channels[0]
    down_blocks, down_attention, downsamples = [], [], []
    for level, c in enumerate(channels):
        blocks, attns = [], []
        for _ in range(num_res_blocks):
            blocks.append(layers.block(width, c, next(keys)))
            attns.append(layers.level_attention(level, c, next(keys)))
            width = c
            skips.append(width)
        down_blocks.append(tuple(blocks))
        down_attention.append(tuple(attns))
        if level < len(channels) - 1:
            downsamples.append(eqx.nn.Conv2d(c, c, 3, stride=2, padding=1, key=next(keys)))
            skips.append(width)
    return (tuple(down_blocks), tuple(down_attention), tuple(downsamples)), skips


def _middle(layers: _Layers, width: int, attention: bool, key: PRNGKeyArray):
    """The middle: ResBlock, SelfAttention (if `attention`, else `None`), ResBlock at `width`.

    **Returns:** `(block1, attention, block2)`, keyed by `split(key, 3)` in that order.
    """
    block1_key, attn_key, block2_key = jax.random.split(key, 3)
    attn = layers.attention(width, attn_key) if attention else None
    return layers.block(width, width, block1_key), attn, layers.block(width, width, block2_key)


def _up_path(layers: _Layers, channels: tuple[int, ...], num_res_blocks: int, skips: list[int], key: PRNGKeyArray):
    """The up path, levels $i = L-1..0$: `num_res_blocks + 1` ResBlocks to `channels[i]` on
    the concatenation with a popped skip (each with its optional attention), then a 3×3
    convolution (after ×2 upsampling in `__call__`) except at level 0.

    Keys as in `_down_path`, from `split(key, 3 L (R + 1))`. Consumes `skips` (emptied).

    **Returns:** `(blocks, attention, upsamples)`, each a tuple ordered from the deepest level.
    """
    keys = iter(jax.random.split(key, 3 * len(channels) * (num_res_blocks + 1)))
    width = channels[-1]
    up_blocks, up_attention, upsamples = [], [], []
    for level in reversed(range(len(channels))):
        c = channels[level]
        blocks, attns = [], []
        for _ in range(num_res_blocks + 1):
            blocks.append(layers.block(width + skips.pop(), c, next(keys)))
            attns.append(layers.level_attention(level, c, next(keys)))
            width = c
        up_blocks.append(tuple(blocks))
        up_attention.append(tuple(attns))
        if level > 0:
            upsamples.append(eqx.nn.Conv2d(c, c, 3, padding=1, key=next(keys)))
    assert not skips  # every skip connection is consumed exactly once
    return tuple(up_blocks), tuple(up_attention), tuple(upsamples)


def _output_conv(c_in: int, c_out: int, zero: bool, key: PRNGKeyArray) -> eqx.nn.Conv2d:
    """The final 3×3 convolution from `c_in` to `c_out` channels; weight and bias zero if `zero`,
    so an untrained model predicts 0."""
    conv = eqx.nn.Conv2d(c_in, c_out, 3, padding=1, key=key)
    if not zero:
        return conv
    return eqx.tree_at(
        lambda m: (m.weight, m.bias),
        conv,
        (jnp.zeros_like(conv.weight), jnp.zeros_like(conv.bias)),  # pyright: ignore[reportArgumentType]  # built with a bias
    )


class UNet(eqx.Module):
    r"""U-Net denoiser for one image `(in_channels, height, width)`.

    Levels $i = 0..L-1$ have width `channels[i]` at resolution $H/2^i$. Down path: per level
    `num_res_blocks` `ResBlock`s (each followed by `SelfAttention` if $i \in$
    `attention_levels`), then a stride-2 3×3 convolution except at the last level; every
    output is kept as a skip connection. Middle: ResBlock, attention (if `mid_attention`),
    ResBlock. Up path: per level `num_res_blocks + 1` ResBlocks on the concatenation with the
    popped skip, then nearest ×2 upsampling and a 3×3 convolution except at level 0. Output:
    GroupNorm, SiLU, 3×3 convolution to `in_channels`, initialised to zero
    (`zero_init_output`), so an untrained model predicts 0 for its target.

    Conditioning: `NoiseEmbedding` of $\lambda$ (width `4 * channels[0]`), added in every
    ResBlock. With `num_classes`, a class label $c$ is added to it: $e(\lambda) + E[c]$ with
    $E$ an `eqx.nn.Embedding(num_classes + 1, ·)` whose last row is the null label
    (`label=None`); without, the network is unconditional. Optional input features: VDM's Fourier features $\sin/\cos(2^n\pi z)$ for
    $n \in$ `fourier_exponents`, concatenated to $z$ on the channel axis.
    Height and width must be divisible by $2^{L-1}$. Batch with `jax.vmap(model)(z, logsnr)`.

    Precision: the layers compute in the dtype of their weights (see
    `eqx_impl.models.precision`): with bfloat16 convolutions the activations are bfloat16, the
    Fourier features, norms and attention softmax float32, and the output has `z`'s dtype.
    """

    embedding: NoiseEmbedding
    label_embedding: eqx.nn.Embedding | None
    conv_in: eqx.nn.Conv2d
    down_blocks: tuple[tuple[ResBlock, ...], ...]
    down_attention: tuple[tuple[SelfAttention | None, ...], ...]
    downsamples: tuple[eqx.nn.Conv2d, ...]
    mid_block1: ResBlock
    mid_attention: SelfAttention | None
    mid_block2: ResBlock
    up_blocks: tuple[tuple[ResBlock, ...], ...]
    up_attention: tuple[tuple[SelfAttention | None, ...], ...]
    upsamples: tuple[eqx.nn.Conv2d, ...]
    norm_out: eqx.nn.GroupNorm
    conv_out: eqx.nn.Conv2d
    in_channels: int = eqx.field(static=True)
    channels: tuple[int, ...] = eqx.field(static=True)
    num_res_blocks: int = eqx.field(static=True)
    attention_levels: tuple[int, ...] = eqx.field(static=True)
    fourier_exponents: tuple[int, ...] = eqx.field(static=True)
    num_classes: int | None = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        *,
        key: PRNGKeyArray,
        channels: tuple[int, ...] = (32, 64),
        num_res_blocks: int = 1,
        attention_levels: tuple[int, ...] = (),
        mid_attention: bool = True,
        num_heads: int = 1,
        groups: int = 8,
        dropout: float = 0.0,
        fourier_exponents: tuple[int, ...] = (),
        num_features: int | None = None,
        embed_dim: int | None = None,
        zero_init_output: bool = True,
        min_period: float = 1.0,
        max_period: float = 200.0,
        num_classes: int | None = None,
    ):
        channels = tuple(int(c) for c in channels)
        _check_args(channels, num_res_blocks, groups, attention_levels)
        num_features = channels[0] if num_features is None else num_features
        embed_dim = 4 * channels[0] if embed_dim is None else embed_dim
        (embed_key, in_key, down_key, mid_key, up_key, out_key) = jax.random.split(key, 6)
        self.embedding = NoiseEmbedding(
            num_features, embed_dim, key=embed_key, min_period=min_period, max_period=max_period
        )
        # Its own key (not one of the split above), so an unconditional U-Net is unchanged.
        self.label_embedding = label_embedding(num_classes, embed_dim, key=jax.random.fold_in(key, 1))
        net_in = in_channels * (1 + 2 * len(fourier_exponents))
        self.conv_in = eqx.nn.Conv2d(net_in, channels[0], 3, padding=1, key=in_key)

        layers = _Layers(embed_dim, groups, dropout, num_heads, tuple(attention_levels))
        down, skips = _down_path(layers, channels, num_res_blocks, down_key)
        self.down_blocks, self.down_attention, self.downsamples = down
        self.mid_block1, self.mid_attention, self.mid_block2 = _middle(layers, channels[-1], mid_attention, mid_key)
        self.up_blocks, self.up_attention, self.upsamples = _up_path(layers, channels, num_res_blocks, skips, up_key)
        self.norm_out = eqx.nn.GroupNorm(groups, channels[0])
        self.conv_out = _output_conv(channels[0], in_channels, zero_init_output, out_key)

        self.in_channels = in_channels
        self.channels = channels
        self.num_res_blocks = num_res_blocks
        self.attention_levels = tuple(int(i) for i in attention_levels)
        self.fourier_exponents = tuple(int(n) for n in fourier_exponents)
        self.num_classes = None if num_classes is None else int(num_classes)

    def __call__(
        self,
        z: Float[Array, "channels height width"],
        logsnr: ScalarLike,
        *,
        key: PRNGKeyArray | None = None,
        label: Int[ArrayLike, ""] | None = None,
    ) -> Float[Array, "channels height width"]:
        """`key` drives dropout; needed only when `dropout > 0` and training. `label`: the class
        in `0..num_classes-1` (`None`: the null label; only for a conditional U-Net).

        **Returns:** the prediction for one image, shape like `z`.
        """
        factor = 2 ** (len(self.channels) - 1)
        ok = z.ndim == 3 and z.shape[0] == self.in_channels
        if not ok or z.shape[1] % factor or z.shape[2] % factor:
            raise ValueError(
                f"UNet acts on one image of shape ({self.in_channels}, H, W) with H and W "
                f"divisible by {factor}, got {z.shape}; for a batch use jax.vmap(model)(z, logsnr)."
            )
        num_blocks = 2 + (2 * self.num_res_blocks + 1) * len(self.channels)
        keys = iter([None] * num_blocks if key is None else jax.random.split(key, num_blocks))
        compute = self.conv_in.weight.dtype  # bfloat16 under that precision policy
        emb = add_label(self.embedding(jnp.asarray(logsnr, dtype=z.dtype)), self.label_embedding, label)

        h = z
        if self.fourier_exponents:
            h = jnp.concatenate([z, fourier_features(z, self.fourier_exponents)], axis=0)
        h = self.conv_in(h.astype(compute))
        skips = [h]
        down = zip(self.down_blocks, self.down_attention, strict=True)
        for level, (blocks, attns) in enumerate(down):
            for block, attn in zip(blocks, attns, strict=True):
                h = block(h, emb, key=next(keys))
                h = h if attn is None else attn(h)
                skips.append(h)
            if level < len(self.downsamples):
                h = self.downsamples[level](h)
                skips.append(h)

        h = self.mid_block1(h, emb, key=next(keys))
        h = h if self.mid_attention is None else self.mid_attention(h)
        h = self.mid_block2(h, emb, key=next(keys))

        for i, (blocks, attns) in enumerate(zip(self.up_blocks, self.up_attention, strict=True)):
            for block, attn in zip(blocks, attns, strict=True):
                h = block(jnp.concatenate([h, skips.pop()], axis=0), emb, key=next(keys))
                h = h if attn is None else attn(h)
            if i < len(self.upsamples):
                h = self.upsamples[i](_upsample(h))
        return self.conv_out(jax.nn.silu(float32_norm(self.norm_out, h))).astype(z.dtype)
