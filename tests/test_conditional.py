"""Class-conditional networks and classifier-free guidance: the label embedding leaves an
unconditional network as it was, its initialisation, label dropout, the guided denoiser,
guided sampling, a short conditional training run, and the CLI's and config's errors."""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import eqx_impl as ex
from eqx_impl.cli import main
from eqx_impl.edm import denoiser_from_eps
from eqx_impl.evaluation.generate import GuidedEps, generate
from eqx_impl.models.init import initialise
from eqx_impl.train import ConfigError, build, config_from_dict, dump_config, run_steps
from eqx_impl.train.step import drop_labels

K = 4  # classes of the small test networks


def _mlp(key, num_classes=None):
    return ex.MLP(
        3, key=key, width=16, depth=2, embed_dim=8, num_features=8, num_classes=num_classes, zero_init_output=False
    )


def _unet(key, num_classes=None):
    return ex.UNet(
        1, key=key, channels=(8,), groups=2, mid_attention=False, num_classes=num_classes, zero_init_output=False
    )


def _leaves(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_array))


@eqx.filter_jit
def _forward(net, z, labels=None):
    """The output without a label, or one output per entry of `labels` (one compilation)."""
    if labels is None:
        return net(z, 1.5)
    return jax.vmap(lambda c: net(z, 1.5, label=c))(labels)


# --- networks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, z", [(_mlp, jnp.linspace(-1.0, 1.0, 3)), (_unet, jnp.linspace(-1.0, 1.0, 16).reshape(1, 4, 4))]
)
def test_unconditional_network_is_unchanged_by_the_label_option(make, z):
    key = jax.random.key(0)
    plain = initialise(lambda k: make(k), key)
    conditional = initialise(lambda k: make(k, num_classes=K), key)
    assert plain.label_embedding is None and plain.num_classes is None
    assert not any(isinstance(n, eqx.nn.Embedding) for n in jax.tree.leaves(plain, is_leaf=eqx.is_array))
    table = conditional.label_embedding.weight
    assert table.shape == (K + 1, conditional.label_embedding.embedding_size)
    # The conditional network holds one array more: the label table. With the plain network's
    # parameters and a zero table it computes exactly what the plain network does, for every
    # class and the null label.
    leaves, treedef = jax.tree.flatten(conditional)
    at = next(i for i, leaf in enumerate(leaves) if leaf is table)
    plain_leaves = jax.tree.leaves(plain)
    assert len(plain_leaves) == len(leaves) - 1
    mixed = jax.tree.unflatten(treedef, [*plain_leaves[:at], jnp.zeros_like(table), *plain_leaves[at:]])
    reference = np.asarray(_forward(plain, z))
    labels = jnp.arange(K + 1)
    assert np.array_equal(np.asarray(_forward(mixed, z)), reference)  # the null label, unbatched: exact
    for out in np.asarray(_forward(mixed, z, labels)):  # vmapped: float32 rounding of batched matmuls
        np.testing.assert_allclose(out, reference, rtol=1e-6, atol=1e-6)
    # the labels change the output; label=None is the last row, the null label
    out = np.asarray(_forward(conditional, z, labels))
    assert not np.allclose(out[0], out[1])
    np.testing.assert_allclose(np.asarray(_forward(conditional, z)), out[K], rtol=1e-6, atol=1e-6)
    assert not np.allclose(out[0], out[K])
    with pytest.raises(ValueError, match="unconditional"):
        _forward(plain, z, labels)


def test_num_classes_must_be_a_positive_integer():
    for bad in (0, -2):
        with pytest.raises(ValueError, match="num_classes must be a positive integer"):
            _mlp(jax.random.key(0), num_classes=bad)


def test_initialise_draws_the_label_embedding_from_a_standard_normal():
    # Equinox's own rule for eqx.nn.Embedding: N(0, 1); a KS test at p > 1e-3 on 11 x 64 values.
    net = initialise(lambda k: ex.MLP(64, key=k, embed_dim=64, num_classes=10), jax.random.key(2))
    w = np.asarray(net.label_embedding.weight)
    assert w.shape == (11, 64) and w.dtype == np.float32
    assert stats.kstest(w.ravel(), "norm").pvalue > 1e-3
    # the unconditional network has the same layers and streams as before the option existed
    plain = initialise(lambda k: ex.MLP(64, key=k, embed_dim=64), jax.random.key(2))
    assert len(_leaves(plain)) == len(_leaves(net)) - 1


# --- label dropout -----------------------------------------------------------------------------


def test_label_dropout_rate_and_null_label():
    n, rate = 40_000, 0.1
    labels = jnp.asarray(np.arange(n) % K, jnp.int32)
    dropped = np.asarray(drop_labels(jax.random.key(0), labels, K, rate))
    null = dropped == K
    # kept labels are untouched; the dropped fraction is Binomial(n, rate)/n: within 5 s.d.
    assert np.array_equal(dropped[~null], np.asarray(labels)[~null])
    assert abs(null.mean() - rate) < 5 * math.sqrt(rate * (1 - rate) / n)
    assert not np.any(np.asarray(drop_labels(jax.random.key(0), labels, K, 0.0)) == K)


# --- guidance ------------------------------------------------------------------------------------


def test_guidance_zero_and_one_are_the_unconditional_and_conditional_denoisers():
    net = initialise(lambda k: _mlp(k, num_classes=K), jax.random.key(1))
    model = ex.EpsModel(net, "eps")
    x, sigma, c = jnp.asarray([0.4, -1.2, 2.0]), jnp.asarray(0.8), 2

    def denoise(eps_model):
        return np.asarray(denoiser_from_eps(eps_model)(x, sigma))

    uncond, cond = denoise(model), denoise(functools.partial(model, label=c))
    assert np.array_equal(denoise(functools.partial(GuidedEps(model, 0.0), label=c)), uncond)
    assert np.array_equal(denoise(functools.partial(GuidedEps(model, 1.0), label=c)), cond)
    assert not np.allclose(uncond, cond)
    # any w: D_w = D(∅) + w (D(c) − D(∅)) (D is affine in ε̂), to float32 rounding
    w = 2.5
    guided = denoise(functools.partial(GuidedEps(model, w), label=c))
    np.testing.assert_allclose(guided, uncond + w * (cond - uncond), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="finite"):
        GuidedEps(model, float("nan"))


@pytest.mark.parametrize("sampler, unroll", [("heun", False), ("ddim", True)])
def test_guided_sampling_follows_the_labels(sampler, unroll):
    model = ex.EpsModel(initialise(lambda k: _mlp(k, num_classes=K), jax.random.key(3)), "eps")
    kwargs = dict(key=jax.random.key(0), sampler=sampler, steps=4, sigma_max=10.0, unroll=unroll)
    same, other = np.zeros(6, int), np.arange(6) % K
    # w = 0 ignores the labels: the unconditional samples, whatever was asked
    base = generate(model, 6, (3,), **kwargs)
    for labels in (same, other):
        np.testing.assert_allclose(generate(model, 6, (3,), labels=labels, guidance=0.0, **kwargs), base, atol=1e-6)
    # w = 1 (the default) is the model given each label; sample i depends only on its own label
    cond = generate(model, 6, (3,), labels=other, **kwargs)
    assert not np.allclose(cond, base, atol=1e-3)
    again = generate(model, 6, (3,), labels=same, **kwargs)
    asked_same = other == same  # samples 0 and 4 ask for class 0 both times
    np.testing.assert_allclose(again[asked_same], cond[asked_same], atol=1e-6)
    assert not np.allclose(again[~asked_same], cond[~asked_same], atol=1e-3)
    with pytest.raises(ValueError, match="guidance needs labels"):
        generate(model, 6, (3,), guidance=2.0, **kwargs)
    with pytest.raises(ValueError, match="labels must be 6 integers"):
        generate(model, 6, (3,), labels=np.zeros(5, int), **kwargs)


# --- training -------------------------------------------------------------------------------------


def _digits_config(**model_args):
    values = {
        "data": {"name": "digits", "args": {"seed": 0}},
        "model": {"name": "mlp", "args": {"width": 64, "depth": 2, "embed_dim": 16, "num_features": 8, **model_args}},
        "objective": {
            "weighting": "sigmoid",
            "weighting_args": {"bias": 2.0},
            "schedule": "cosine",
            "logsnr_min": -10.0,
            "logsnr_max": 8.0,
        },
        "train": {"steps": 200, "batch_size": 64, "preflight": False},
        "optim": {"lr": 3e-3, "warmup_steps": 10, "ema_decay": 0.9},
    }
    return config_from_dict(values)


def test_a_short_conditional_run_lowers_the_loss():
    setup = build(_digits_config(num_classes=10))
    assert setup.trainer.num_classes == 10 and setup.trainer.label_dropout == 0.1
    x = jnp.asarray(setup.dataset.model_data("train"))
    y = jnp.asarray(setup.dataset.train_labels, jnp.int32)
    rng = np.random.default_rng(0)
    idx = jnp.asarray(rng.integers(0, len(x), (200, 64)), jnp.int32)
    state, metrics = run_steps(setup.trainer, setup.initial, (x, y), idx)
    losses = np.asarray(metrics["loss"])
    assert np.all(np.isfinite(losses))
    assert losses[-40:].mean() < 0.7 * losses[:40].mean()
    with pytest.raises(ValueError, match="needs batches"):
        setup.trainer.step(setup.initial, x[:8])


def test_a_conditional_model_needs_labelled_data_and_valid_settings():
    with pytest.raises(ConfigError, match="needs labels"):
        build(config_from_dict({"data": {"name": "gmm"}, "model": {"name": "mlp", "args": {"num_classes": 3}}}))
    with pytest.raises(ConfigError, match="num_classes must be an integer > 9"):
        build(_digits_config(num_classes=5))
    with pytest.raises(ConfigError, match="objective.label_dropout"):
        config_from_dict({"objective": {"label_dropout": 1.0}})
    with pytest.raises(ConfigError, match="eval.guidance"):
        config_from_dict({"eval": {"guidance": 2.0}})  # an unconditional model takes no guidance


# --- CLI -------------------------------------------------------------------------------------------


def _run_dir(tmp_path, conditional: bool):
    run = tmp_path / ("conditional" if conditional else "plain")
    run.mkdir()
    args = {"num_classes": 10} if conditional else {}
    dump_config(_digits_config(**args), run / "config.yaml")
    return run


@pytest.mark.parametrize(
    "conditional, flags, message",
    [
        (False, ["--class", "3"], "--class: this run's model is unconditional"),
        (False, ["--guidance", "2"], "--guidance: this run's model is unconditional"),
        (True, ["--class", "10"], "--class 10: the run's data set has the classes 0..9"),
        (True, ["--class", "three"], "--class three: the run's data set has the classes 0..9"),
        (True, ["--guidance", "2"], "give a finite scale together with --class"),
        (True, ["--class", "3", "--guidance", "nan"], "give a finite scale together with --class"),
    ],
)
def test_sample_class_and_guidance_errors(tmp_path, capsys, conditional, flags, message):
    run = _run_dir(tmp_path, conditional)
    assert main(["sample", "--run-dir", str(run), *flags]) == 2
    assert message in capsys.readouterr().err
