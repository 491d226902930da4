"""Prediction-target conversions and the denoiser networks (values, not just shapes).

Conversions are checked against the definitions (SPEC §0, EDM's c_skip/c_out, the flow path
α_f = 1-t, σ_f = t) in float64; the networks against float64 NumPy re-implementations that
read the modules' weights. float32-vs-float64 network tolerances: a few hundred products
per output with unit roundoff 6e-8 and GroupNorm divisions, so 1e-4 of the output scale.
"""

import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_impl as E
import reference as R
from eqx_impl.models import (
    MLP,
    EpsModel,
    NoiseEmbedding,
    ResBlock,
    SelfAttention,
    UNet,
    count_params,
    fourier_features,
    sinusoidal_embedding,
)

TARGET = pytest.mark.parametrize("target", R.TARGETS)
KEY = jax.random.key(0, impl="rbg")  # cheaper to compile than threefry, per layer shape


def f64(x):
    return np.asarray(x, dtype=np.float64)


# --- conversions against the definitions ---------------------------------------------------


def _definition_coefficients(target, lam, sigma_data):
    """(a, b) with target = a·x + b·ε, straight from each target's definition."""
    alpha, sigma = np.sqrt(1 / (1 + np.exp(-lam))), np.sqrt(1 / (1 + np.exp(lam)))
    if target == "eps":
        return 0.0, 1.0
    if target == "x":
        return 1.0, 0.0
    if target == "v":  # v = αε − σx
        return -sigma, alpha
    if target == "F":  # x = c_skip·z_edm + c_out·F, z_edm = x + σ_edm·ε
        s = np.exp(-lam / 2)
        c_skip = sigma_data**2 / (s**2 + sigma_data**2)
        c_out = s * sigma_data / np.sqrt(s**2 + sigma_data**2)
        return (1 - c_skip) / c_out, -c_skip * s / c_out
    return -1.0, 1.0  # u = ε − x


@TARGET
@pytest.mark.parametrize("sigma_data", [0.5, 1.3])
def test_conversions_solve_the_definitions(target, sigma_data):
    """(x̂, ε̂) solve [[α, σ], [a, b]]·(x̂, ε̂) = (z, ŷ): every conversion, moderate λ."""
    rng = np.random.default_rng(1)
    for lam in np.linspace(-8.0, 8.0, 17):
        alpha, sigma = R.alpha_sigma(lam)
        a, b = _definition_coefficients(target, lam, sigma_data)
        x, eps, y_hat, z = rng.normal(size=(4, 6))
        np.testing.assert_allclose(
            R.target_value(target, x, eps, lam, sigma_data), a * x + b * eps, rtol=1e-12, atol=1e-12
        )
        x_hat, eps_hat = np.linalg.solve([[alpha, sigma], [a, b]], np.stack([z, y_hat]))
        np.testing.assert_allclose(
            R.eps_from_prediction(target, y_hat, z, lam, sigma_data), eps_hat, rtol=1e-9, atol=1e-9
        )
        np.testing.assert_allclose(
            R.prediction_from_eps(target, eps_hat, z, lam, sigma_data), y_hat, rtol=1e-9, atol=1e-9
        )


def test_flow_velocity_conversion_on_the_flow_path():
    """u: z_f = (1−t)x + tε with t = sigmoid(−λ/2) is z/(α+σ); ε̂ = z_f + (1−t)û."""
    rng = np.random.default_rng(2)
    for lam in np.linspace(-20.0, 20.0, 21):
        t = 1 / (1 + np.exp(lam / 2))
        alpha, sigma = R.alpha_sigma(lam)
        x, eps, u_hat = rng.normal(size=(3, 5))
        z = alpha * x + sigma * eps
        z_flow = (1 - t) * x + t * eps
        np.testing.assert_allclose(z_flow, z / (alpha + sigma), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(
            R.eps_from_prediction("u", u_hat, z, lam), z_flow + (1 - t) * u_hat, rtol=1e-12, atol=1e-12
        )


def _term_scale(fn, target, a, b, lam, sigma_data=0.5):
    """|A|·|a| + |B|·|b| for the linear map fn(target, a, b, λ) = A·a + B·b."""
    one, zero = np.ones(1), np.zeros(1)
    coef_a = fn(target, one, zero, lam, sigma_data)
    coef_b = fn(target, zero, one, lam, sigma_data)
    return np.abs(coef_a) * np.abs(a) + np.abs(coef_b) * np.abs(b)


@TARGET
def test_exact_target_gives_exact_eps(target):
    """For the true target value, ε̂ = ε up to rounding of the terms (λ across [−30, 30])."""
    rng = np.random.default_rng(3)
    for lam in np.linspace(-30.0, 30.0, 25):
        alpha, sigma = R.alpha_sigma(lam)
        x, eps = rng.normal(size=(2, 8))
        z = alpha * x + sigma * eps
        y = R.target_value(target, x, eps, lam)
        scale = _term_scale(R.eps_from_prediction, target, y, z, lam) + 1.0
        err = np.abs(R.eps_from_prediction(target, y, z, lam) - eps)
        assert np.all(err <= 1e-13 * scale), (lam, err.max())


@TARGET
@pytest.mark.parametrize("sigma_data", [0.5, 2.0])
def test_target_factor_is_the_loss_ratio_reference(target, sigma_data):
    """‖y − ŷ‖² = f(λ)·‖ε − ε̂‖² for random ŷ: checks conversions and target_factor together.

    float64 over [−30, 30]: ε − ε̂ is O(α) at low SNR, computed from O(1) terms, so the
    relative error grows like 1e-16/α² ≤ 1e-3·1e-7; rtol 1e-7.
    """
    rng = np.random.default_rng(4)
    for lam in np.linspace(-30.0, 30.0, 31):
        alpha, sigma = R.alpha_sigma(lam)
        x, eps, y_hat = rng.normal(size=(3, 16))
        z = alpha * x + sigma * eps
        y = R.target_value(target, x, eps, lam, sigma_data)
        eps_hat = R.eps_from_prediction(target, y_hat, z, lam, sigma_data)
        lhs = np.sum((y - y_hat) ** 2)
        rhs = R.target_factor(target, lam, sigma_data) * np.sum((eps - eps_hat) ** 2)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-7)


@TARGET
def test_target_factor_is_the_loss_ratio_eqx(target):
    """The same identity in float32 eqx, λ ∈ [−10, 30] (below, ε − ε̂ = O(α) cancels in float32)."""
    rng = np.random.default_rng(5)
    for lam in np.linspace(-10.0, 30.0, 21):
        alpha, sigma = R.alpha_sigma(lam)
        x, eps, y_hat = rng.normal(size=(3, 16))
        z = jnp.asarray(alpha * x + sigma * eps, jnp.float32)
        lam32 = jnp.float32(lam)
        x, eps, y_hat = (jnp.asarray(v, jnp.float32) for v in (x, eps, y_hat))
        y = E.target_value(target, x, eps, lam32)
        eps_hat = E.eps_from_prediction(target, y_hat, z, lam32)
        lhs = f64(jnp.sum((y - y_hat) ** 2))
        rhs = f64(E.target_factor(target, lam32)) * f64(jnp.sum((eps - eps_hat) ** 2))
        np.testing.assert_allclose(lhs, rhs, rtol=2e-3)


@TARGET
def test_prediction_round_trip(target):
    rng = np.random.default_rng(6)
    for lam in np.linspace(-20.0, 20.0, 21):
        p, z = rng.normal(size=(2, 8))
        back = R.prediction_from_eps(target, R.eps_from_prediction(target, p, z, lam), z, lam)
        np.testing.assert_allclose(back, p, rtol=0, atol=1e-9 * (np.abs(p) + np.abs(z)).max())


@TARGET
def test_float32_conversions_finite_at_extremes(target):
    """λ = ±30 in float32: every conversion and its gradients (in the arrays and in λ) finite."""
    z = jnp.linspace(-3.0, 3.0, 7, dtype=jnp.float32)
    for fn in (E.eps_from_prediction, E.prediction_from_eps, E.target_value):
        for lam in (jnp.float32(-30.0), jnp.float32(30.0)):

            def loss(a, b, lam, fn=fn):
                return jnp.sum(fn(target, a, b, lam) ** 2)

            value = loss(0.5 * z, z, lam)
            grads = jax.grad(loss, argnums=(0, 1, 2))(0.5 * z, z, lam)
            assert np.isfinite(value)
            assert all(np.all(np.isfinite(g)) for g in grads)
    assert np.all(np.isfinite(E.target_factor(target, jnp.asarray([-30.0, 30.0], jnp.float32))))


# --- NumPy re-implementations of the layers ------------------------------------------------


def silu(x):
    return x / (1 + np.exp(-x))


def np_linear(layer, x):
    return f64(layer.weight) @ x + f64(layer.bias)


def np_group_norm(norm, x):
    xg = x.reshape(norm.groups, -1)
    y = (xg - xg.mean(1, keepdims=True)) / np.sqrt(xg.var(1, keepdims=True) + norm.eps)
    return y.reshape(x.shape) * f64(norm.weight)[:, None, None] + f64(norm.bias)[:, None, None]


def np_conv(conv, x):
    """Cross-correlation with zero padding, as `eqx.nn.Conv2d` (weight `(out, in, k, k)`)."""
    w, (stride, _), ((pad, _), _) = f64(conv.weight), conv.stride, conv.padding
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h_out = (x.shape[1] + 2 * pad - k) // stride + 1
    w_out = (x.shape[2] + 2 * pad - k) // stride + 1
    out = np.zeros((w.shape[0], h_out, w_out))
    for di in range(k):
        for dj in range(k):
            patch = xp[:, di : di + stride * h_out : stride, dj : dj + stride * w_out : stride]
            out += np.einsum("oc,chw->ohw", w[:, :, di, dj], patch)
    return out + f64(conv.bias).reshape(-1, 1, 1)


def np_embedding(embedding, lam):
    half = embedding.num_features // 2
    periods = embedding.min_period * (embedding.max_period / embedding.min_period) ** (np.arange(half) / (half - 1))
    features = np.concatenate([np.sin(2 * np.pi * lam / periods), np.cos(2 * np.pi * lam / periods)])
    return np_linear(embedding.linear2, silu(np_linear(embedding.linear1, features)))


def np_fourier(z, exponents):
    return np.concatenate(
        [np.sin(2.0**n * np.pi * z) for n in exponents] + [np.cos(2.0**n * np.pi * z) for n in exponents]
    )


def np_resblock(block, x, emb):
    h = np_conv(block.conv1, silu(np_group_norm(block.norm1, x)))
    h = h + np_linear(block.embed, silu(emb))[:, None, None]
    h = np_conv(block.conv2, silu(np_group_norm(block.norm2, h)))
    return (x if block.skip is None else np_conv(block.skip, x)) + h


def np_attention(attn, x):
    c, height, width = x.shape
    heads, dh = attn.num_heads, c // attn.num_heads
    qkv = np_conv(attn.qkv, np_group_norm(attn.norm, x)).reshape(3, heads, dh, height * width)
    out = np.zeros((heads, dh, height * width))
    for h in range(heads):
        q, k, v = qkv[0, h], qkv[1, h], qkv[2, h]
        logits = q.T @ k / np.sqrt(dh)  # [query i, key j]
        weights = np.exp(logits - logits.max(1, keepdims=True))
        weights /= weights.sum(1, keepdims=True)
        out[h] = v @ weights.T
    return x + np_conv(attn.out, out.reshape(c, height, width))


def np_unet(net, z, lam):
    """The architecture as described in `UNet`'s docstring, on the module's weights."""
    emb = np_embedding(net.embedding, lam)
    h = np.concatenate([z, np_fourier(z, net.fourier_exponents)]) if net.fourier_exponents else z
    h = np_conv(net.conv_in, h)
    skips = [h]
    levels = len(net.channels)
    for level in range(levels):
        for block, attn in zip(net.down_blocks[level], net.down_attention[level], strict=True):
            h = np_resblock(block, h, emb)
            h = h if attn is None else np_attention(attn, h)
            skips.append(h)
        if level < levels - 1:
            h = np_conv(net.downsamples[level], h)
            skips.append(h)
    h = np_resblock(net.mid_block1, h, emb)
    h = h if net.mid_attention is None else np_attention(net.mid_attention, h)
    h = np_resblock(net.mid_block2, h, emb)
    for i, level in enumerate(reversed(range(levels))):
        for block, attn in zip(net.up_blocks[i], net.up_attention[i], strict=True):
            h = np_resblock(block, np.concatenate([h, skips.pop()]), emb)
            h = h if attn is None else np_attention(attn, h)
        if level > 0:
            h = np_conv(net.upsamples[i], h.repeat(2, axis=1).repeat(2, axis=2))
    assert not skips
    return np_conv(net.conv_out, silu(np_group_norm(net.norm_out, h)))


def np_mlp(net, z, lam):
    emb = np_embedding(net.embedding, lam)
    h = np.concatenate([z, np_fourier(z, net.fourier_exponents)]) if net.fourier_exponents else z
    for layer, cond in zip(net.layers, net.conditioning, strict=True):
        h = silu(np_linear(layer, h) + np_linear(cond, emb))
    return np_linear(net.output, h)


def random_model(cls, *args, seed=0, scale=0.2, **kwargs):
    """`cls(*args, **kwargs)` with every float leaf drawn N(0, scale²) by NumPy.

    Built by `eqx.filter_eval_shape`, so no JAX initialiser runs (each layer shape would cost
    a compilation); random norms and biases exercise every parameter.
    """
    rng = np.random.default_rng(seed)
    skeleton = eqx.filter_eval_shape(lambda: cls(*args, key=KEY, **kwargs))
    return jax.tree.map(
        lambda leaf: (
            jnp.asarray(scale * rng.normal(size=leaf.shape), leaf.dtype)
            if isinstance(leaf, jax.ShapeDtypeStruct)
            else leaf
        ),
        skeleton,
        is_leaf=lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct),
    )


def assert_close_to_scale(actual, expected, rtol):
    actual, expected = f64(actual), f64(expected)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * np.abs(expected).max())


@eqx.filter_jit
def apply(fn, *args):
    """One jit for every module call in this file: eager JAX compiles each op per shape."""
    return fn(*args)


def resblocks(net):
    return [b for level in net.down_blocks + net.up_blocks for b in level] + [
        net.mid_block1,
        net.mid_block2,
    ]


# A few networks, built once: every layer shape costs a compilation of its initialiser.


@pytest.fixture(scope="module")
def mlp():
    return random_model(
        MLP,
        3,
        width=16,
        depth=2,
        embed_dim=8,
        num_features=6,
        fourier_exponents=(0, 2),
        zero_init_output=False,
    )


@pytest.fixture(scope="module")
def unet():
    """Two levels (8×8 → 4×4), attention at level 1 and in the middle, Fourier features."""
    return random_model(
        UNet,
        1,
        channels=(8, 16),
        num_res_blocks=1,
        attention_levels=(1,),
        num_heads=2,
        groups=4,
        fourier_exponents=(1, 3),
        zero_init_output=False,
    )


@pytest.fixture(scope="module")
def tiny_unet():
    """One level at 4×4, two groups: the cheapest U-Net to compile (gradients, dropout)."""
    return random_model(UNet, 1, channels=(4,), groups=2, num_features=4, embed_dim=8)


# --- embeddings ----------------------------------------------------------------------------


def test_sinusoidal_embedding_formula():
    lam = np.array([-30.0, -1.3, 0.0, 7.5, 30.0])
    periods = np.geomspace(0.5, 300.0, 6)
    phase = 2 * np.pi * lam[:, None] / periods
    expected = np.concatenate([np.sin(phase), np.cos(phase)], axis=1)
    embed = jax.vmap(lambda v: sinusoidal_embedding(v, 12, 0.5, 300.0))
    actual = embed(jnp.asarray(lam, jnp.float32))
    np.testing.assert_allclose(f64(actual), expected, atol=2e-5)  # phases up to ~380 rad


def test_fourier_features_formula():
    z = np.random.default_rng(7).uniform(-1, 1, size=(2, 3, 3))
    actual = fourier_features(jnp.asarray(z, jnp.float32), (0, 3, 7))
    assert actual.shape == (12, 3, 3)
    # blocks: sin n=0, sin n=3, sin n=7, cos n=0, cos n=3, cos n=7, each with z's 2 channels
    np.testing.assert_allclose(f64(actual[4:6]), np.sin(2.0**7 * np.pi * z), atol=5e-5)
    np.testing.assert_allclose(f64(actual[6:8]), np.cos(np.pi * z), atol=1e-6)
    np.testing.assert_allclose(f64(actual), np_fourier(z, (0, 3, 7)), atol=5e-5)  # |phase| ≤ 403


def test_noise_embedding_value(mlp):
    assert isinstance(mlp.embedding, NoiseEmbedding)
    for lam in (-30.0, 0.4, 30.0):
        actual = apply(mlp.embedding, jnp.float32(lam))
        assert_close_to_scale(actual, np_embedding(mlp.embedding, lam), 1e-5)


# --- MLP -----------------------------------------------------------------------------------


def test_mlp_values_and_batching(mlp):
    rng = np.random.default_rng(8)
    z, lam = rng.normal(size=(5, 3)), np.array([-30.0, -3.0, 0.0, 4.0, 30.0])
    batched = apply(jax.vmap(mlp), jnp.asarray(z, jnp.float32), jnp.asarray(lam, jnp.float32))
    for i in range(5):
        assert_close_to_scale(batched[i], np_mlp(mlp, z[i], lam[i]), 1e-5)
        single = apply(mlp, jnp.asarray(z[i], jnp.float32), jnp.float32(lam[i]))
        np.testing.assert_allclose(f64(batched[i]), f64(single), rtol=1e-6, atol=1e-6)


def test_mlp_rejects_a_batch(mlp):
    # `inspect.unwrap`: the message callers see, without the tests' run-time shape check
    # (tests/conftest.py), which rejects the batch against `Float[Array, " data_dim"]` first.
    with pytest.raises(ValueError, match="jax.vmap"):
        inspect.unwrap(type(mlp).__call__)(mlp, jnp.zeros((4, 3), jnp.float32), jnp.float32(0.0))


def test_mlp_parameter_count_by_hand(mlp):
    embedding = (6 * 8 + 8) + (8 * 8 + 8)  # 6 features → embed_dim 8 → 8
    layers = (15 * 16 + 16) + (16 * 16 + 16)  # input 3·(1 + 2·2 Fourier) = 15 → 16 → 16
    conditioning = 2 * (8 * 16 + 16)  # embed_dim → width, per layer
    output = 16 * 3 + 3
    assert count_params(mlp) == embedding + layers + conditioning + output == 995


def test_zero_init_output():
    """The real initialisers: the output layer starts at exactly 0 (so the prediction is 0),
    the others do not; `zero_init_output=False` keeps the random output layer."""
    mlp = MLP(2, key=KEY, width=4, depth=1, embed_dim=4, num_features=4)
    assert np.all(f64(mlp.output.weight) == 0) and np.all(f64(mlp.output.bias) == 0)
    assert np.all(f64(mlp.layers[0].weight) != 0)
    unet = UNet(1, key=KEY, channels=(2,), groups=1, num_features=2, embed_dim=2)
    assert np.all(f64(unet.conv_out.weight) == 0) and np.all(f64(unet.conv_out.bias) == 0)
    assert np.all(f64(unet.conv_in.weight) != 0)
    random_out = MLP(2, key=KEY, width=4, depth=1, embed_dim=4, num_features=4, zero_init_output=False)
    assert np.all(f64(random_out.output.weight) != 0)


# --- U-Net components ----------------------------------------------------------------------


def test_resblock_value(unet):
    block = unet.up_blocks[0][1]  # 16 + 8 skip channels → 16: has the 1×1 skip convolution
    assert isinstance(block, ResBlock) and block.skip is not None
    rng = np.random.default_rng(9)
    x, emb = rng.normal(size=(24, 4, 4)), rng.normal(size=32)
    actual = apply(block, jnp.asarray(x, jnp.float32), jnp.asarray(emb, jnp.float32))
    assert_close_to_scale(actual, np_resblock(block, x, emb), 1e-4)


def test_self_attention_value(unet):
    attn = unet.mid_attention
    assert isinstance(attn, SelfAttention) and attn.num_heads == 2
    x = np.random.default_rng(10).normal(size=(16, 4, 4))
    actual = apply(attn, jnp.asarray(x, jnp.float32))
    assert_close_to_scale(actual, np_attention(attn, x), 1e-4)


# --- U-Net ---------------------------------------------------------------------------------


def test_unet_values_match_numpy(unet):
    z = np.random.default_rng(11).normal(size=(1, 8, 8))
    for lam in (-30.0, 2.0, 30.0):
        actual = apply(unet, jnp.asarray(z, jnp.float32), jnp.float32(lam))
        assert_close_to_scale(actual, np_unet(unet, z, lam), 1e-4)


def test_unet_parameter_count_by_hand(unet):
    e = 4 * 8  # embed_dim = 4·channels[0]

    def resblock(c_in, c_out):
        skip = 0 if c_in == c_out else c_in * c_out + c_out
        norms = 2 * c_in + 2 * c_out
        convs = (9 * c_in * c_out + c_out) + (9 * c_out * c_out + c_out)
        return norms + convs + (e * c_out + c_out) + skip

    def attention(c):
        return 2 * c + (c * 3 * c + 3 * c) + (c * c + c)

    def conv3(c_in, c_out):
        return 9 * c_in * c_out + c_out

    embedding = (8 * e + e) + (e * e + e)  # num_features = channels[0] = 8
    conv_in = conv3(1 * (1 + 2 * 2), 8)  # z and 2 Fourier exponents × (sin, cos)
    # skips: conv_in 8, level-0 block 8, downsample 8, level-1 block 16
    down = resblock(8, 8) + conv3(8, 8) + resblock(8, 16) + attention(16)
    mid = 2 * resblock(16, 16) + attention(16)
    up = resblock(16 + 16, 16) + resblock(16 + 8, 16) + 2 * attention(16) + conv3(16, 16)
    up += resblock(16 + 8, 8) + resblock(8 + 8, 8)
    out = 2 * 8 + conv3(8, 1)
    assert count_params(unet) == embedding + conv_in + down + mid + up + out == 45_257


def test_unet_zero_output_is_the_conversion_of_zero(tiny_unet):
    """Zero output conv ⇒ prediction 0 ⇒ ε̂ = eps_from_prediction(0) (here for "F", with c_in)."""
    zero_out = eqx.tree_at(
        lambda m: (m.conv_out.weight, m.conv_out.bias),
        tiny_unet,
        (jnp.zeros_like(tiny_unet.conv_out.weight), jnp.zeros_like(tiny_unet.conv_out.bias)),
    )
    z = jnp.asarray(np.random.default_rng(12).normal(size=(1, 4, 4)), jnp.float32)
    lam = jnp.asarray([-30.0, 0.0, 30.0], jnp.float32)
    actual = apply(jax.vmap(EpsModel(zero_out, "F"), in_axes=(None, 0)), z, lam)
    for i in range(3):
        expected = R.eps_from_prediction("F", np.zeros((1, 4, 4)), f64(z), float(lam[i]))
        np.testing.assert_allclose(f64(actual[i]), expected, rtol=1e-5, atol=1e-30)


def test_unet_on_cifar_shape_with_attention():
    """(3, 32, 32), three levels, attention at 16×16 (256 tokens): values against NumPy."""
    net = random_model(UNet, 3, channels=(8, 16, 16), attention_levels=(1,), groups=4)
    z = np.random.default_rng(13).normal(size=(3, 32, 32))
    actual = apply(net, jnp.asarray(z, jnp.float32), jnp.float32(-2.0))
    assert_close_to_scale(actual, np_unet(net, z, -2.0), 1e-4)


def test_unet_batch_independence(tiny_unet):
    """jax.vmap over a batch equals the per-example computation (NumPy, one at a time)."""
    model = EpsModel(tiny_unet, "v")
    rng = np.random.default_rng(14)
    z = rng.normal(size=(3, 1, 4, 4))
    lam = np.array([-30.0, 0.5, 30.0])
    batched = apply(jax.vmap(model), jnp.asarray(z, jnp.float32), jnp.asarray(lam, jnp.float32))
    for i in range(3):
        prediction = np_unet(tiny_unet, z[i], lam[i])
        expected = R.eps_from_prediction("v", prediction, z[i], lam[i])
        scale = _term_scale(R.eps_from_prediction, "v", prediction, z[i], lam[i])
        np.testing.assert_allclose(f64(batched[i]), expected, rtol=0, atol=1e-4 * scale.max())
    # changing one example leaves the others' outputs bitwise unchanged
    z_other = jnp.asarray(z, jnp.float32).at[0].set(5.0)
    other = apply(jax.vmap(model), z_other, jnp.asarray(lam, jnp.float32))
    np.testing.assert_array_equal(f64(other[1:]), f64(batched[1:]))
    assert not np.allclose(f64(other[0]), f64(batched[0]))


def test_unet_rejects_bad_shapes(unet):
    with pytest.raises(ValueError, match="jax.vmap"):  # unwrapped as in test_mlp_rejects_a_batch
        inspect.unwrap(type(unet).__call__)(unet, jnp.zeros((2, 1, 8, 8), jnp.float32), jnp.float32(0.0))
    with pytest.raises(ValueError, match="divisible by 2"):
        unet(jnp.zeros((1, 7, 8), jnp.float32), jnp.float32(0.0))
    with pytest.raises(ValueError, match="groups"):
        UNet(1, key=KEY, channels=(12,), groups=8)
    with pytest.raises(ValueError, match="attention_levels"):
        UNet(1, key=KEY, channels=(8,), groups=4, attention_levels=(1,))


def test_unet_dropout(tiny_unet):
    """Dropout is active with a key and off in inference mode (then equal to no dropout)."""
    blocks = resblocks(tiny_unet)
    with_dropout = eqx.tree_at(
        lambda m: [b.dropout for b in resblocks(m)], tiny_unet, [eqx.nn.Dropout(0.5)] * len(blocks)
    )
    z, lam = jnp.ones((1, 4, 4), jnp.float32), jnp.float32(0.0)
    train = apply(lambda m, z, lam, k: m(z, lam, key=k), with_dropout, z, lam, jax.random.key(1))
    evaluation = apply(eqx.nn.inference_mode(with_dropout), z, lam)
    assert_close_to_scale(evaluation, np_unet(tiny_unet, np.ones((1, 4, 4)), 0.0), 1e-4)  # no dropout
    assert not np.allclose(f64(train), f64(evaluation))


# --- EpsModel ------------------------------------------------------------------------------


def test_eps_model_input_scaling_is_edm_c_in():
    """For F the network sees c_in·z_edm = z/(α·√(σ_edm² + σ_d²)); otherwise z itself."""
    seen = {}

    def net(z_in, logsnr):
        seen["z_in"], seen["logsnr"] = z_in, logsnr
        return jnp.zeros_like(z_in)

    z = jnp.asarray([0.3, -1.2, 2.0], jnp.float32)
    for lam in (-30.0, -2.0, 5.0, 30.0):
        alpha, _ = R.alpha_sigma(lam)
        s = np.exp(-lam / 2)
        c_in = 1 / np.sqrt(s**2 + 0.5**2)
        EpsModel(net, "F")(z, jnp.float32(lam))
        np.testing.assert_allclose(f64(seen["z_in"]), c_in * f64(z) / alpha, rtol=1e-5)
        assert float(seen["logsnr"]) == np.float32(lam)
        EpsModel(net, "v")(z, jnp.float32(lam))
        np.testing.assert_array_equal(f64(seen["z_in"]), f64(z))


@TARGET
def test_eps_model_matches_conversion_of_network_output(mlp, target):
    model = EpsModel(mlp, target, sigma_data=0.7)
    z = np.random.default_rng(15).normal(size=3)
    lam = np.array([-30.0, -1.0, 30.0])
    actual = apply(jax.vmap(model, in_axes=(None, 0)), jnp.asarray(z, jnp.float32), lam.astype(np.float32))
    for i, lam_i in enumerate(lam):
        d = 1 / (1 + np.exp(lam_i)) + 0.49 / (1 + np.exp(-lam_i))  # σ² + σ_d²α²
        z_in = z / np.sqrt(d) if target == "F" else z
        prediction = np_mlp(mlp, z_in, lam_i)
        expected = R.eps_from_prediction(target, prediction, z, lam_i, 0.7)
        scale = _term_scale(R.eps_from_prediction, target, prediction, z, lam_i, 0.7)
        np.testing.assert_allclose(f64(actual[i]), expected, rtol=0, atol=1e-4 * scale.max())


def _loss(model, z, eps, lam):
    return jnp.sum((eps - jax.vmap(model)(z, lam)) ** 2)


def test_gradients_finite_at_extreme_logsnr(mlp, tiny_unet):
    """‖ε − ε̂‖² at λ = ±30 in float32: loss and every parameter gradient finite.

    MLP: all five targets; U-Net: "x", whose conversion amplifies by 1/σ = e^15 at λ = 30.
    """
    lam = jnp.asarray([-30.0, 30.0], jnp.float32)
    grad = eqx.filter_value_and_grad(_loss)

    def check(value, grads):
        assert np.isfinite(float(value))
        assert all(np.all(np.isfinite(f64(g))) for g in jax.tree.leaves(grads))

    z = jnp.asarray([[-1.0, 0.5, 2.0], [1.0, -0.5, 0.0]], jnp.float32)
    results = apply(lambda net: [grad(EpsModel(net, t), z, 0.5 * z, lam) for t in R.TARGETS], mlp)
    for value, grads in results:
        check(value, grads)
    z = jnp.stack([-jnp.ones((1, 4, 4), jnp.float32), jnp.ones((1, 4, 4), jnp.float32)])
    check(*apply(lambda net: grad(EpsModel(net, "x"), z, 0.5 * z, lam), tiny_unet))


def test_eps_model_validates():
    with pytest.raises(ValueError, match="Unknown target"):
        EpsModel(lambda z, lam: z, "score")
    with pytest.raises(ValueError, match="sigma_data"):
        EpsModel(lambda z, lam: z, "F", sigma_data=0.0)
    with pytest.raises(ValueError, match="one value per input dimension"):
        EpsModel(lambda z, lam: z[:1], "eps")(jnp.ones(3, jnp.float32), jnp.float32(0.0))
