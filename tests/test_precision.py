"""The precision policy (`eqx_impl.models.precision`) and fast model construction
(`eqx_impl.models.init`): float32 masters under bfloat16, the pre-flight at full precision,
and host initialisation that follows each layer's rule."""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import eqx_impl as ex
from eqx_impl.models import precision as precision_lib
from eqx_impl.models.init import initialise
from eqx_impl.models.precision import Precision, resolve_precision
from eqx_impl.train import build, config_from_dict, run_steps
from eqx_impl.train import config as config_lib
from eqx_impl.train import preflight as preflight_lib
from tests.train_helpers import tiny_config


def _unet(key, **kwargs):
    return ex.UNet(1, key=key, channels=(16, 32), attention_levels=(1,), groups=8, **kwargs)


# --- the policy ----------------------------------------------------------------------------


def test_policy_names_agree_with_the_config():
    assert config_lib.PRECISIONS == precision_lib.PRECISIONS


@pytest.mark.parametrize(("backend", "expected"), [("cpu", "float32"), ("gpu", "bfloat16"), ("tpu", "bfloat16")])
def test_auto_resolves_per_backend(backend, expected):
    assert resolve_precision("auto", backend) == expected
    assert resolve_precision("tf32", backend) == "tf32"


def test_bad_precision_names_are_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16")
    with pytest.raises(config_lib.ConfigError, match="train.precision"):
        config_from_dict({"train": {"precision": "half"}})
    with pytest.raises(ValueError, match="resolve 'auto'"):
        Precision("auto")


def test_cast_touches_only_linear_and_conv_layers():
    model = initialise(_unet, jax.random.key(0))
    cast = Precision("bfloat16").cast(model)
    assert cast.conv_in.weight.dtype == jnp.bfloat16
    assert cast.embedding.linear1.weight.dtype == jnp.bfloat16
    assert cast.norm_out.weight.dtype == jnp.float32  # norms keep float32
    assert Precision("tf32").cast(model) is model


def test_bfloat16_forward_is_close_to_float32():
    # bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%); through ~10 layers the
    # output error stays within a few percent of the output's scale.
    model = initialise(_unet, jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (8, 1, 8, 8))
    logsnr = jnp.linspace(-6.0, 6.0, 8)
    full = jax.vmap(model)(z, logsnr)
    half = jax.vmap(Precision("bfloat16").cast(model))(z, logsnr)
    assert half.dtype == jnp.float32
    scale = float(jnp.sqrt(jnp.mean(full**2)))
    assert float(jnp.sqrt(jnp.mean((half - full) ** 2))) < 0.03 * scale


def _bf16_config(steps: int, **kwargs):
    config = tiny_config(steps=steps, **kwargs)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, precision="bfloat16"))


def test_bfloat16_training_keeps_float32_masters_and_finite_loss():
    setup = build(_bf16_config(3))
    assert setup.trainer.precision.name == "bfloat16"
    data = jnp.asarray(setup.dataset.model_data("train"))
    state = setup.initial
    for step in range(3):
        state, metrics = run_steps(setup.trainer, state, data, jnp.arange(32, dtype=jnp.int32)[None] + step)
        assert np.isfinite(float(metrics["loss"][0]))
    for tree in (state.model, state.ema, state.opt_state):
        dtypes = {leaf.dtype for leaf in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))}
        assert dtypes == {jnp.dtype(jnp.float32)}, dtypes


def test_bfloat16_training_on_digits_lowers_the_loss():
    # A small MLP on digits for 150 steps: the mean loss of the last 30 steps is below that of
    # the first 30 by more than 3 standard errors of their difference.
    config = config_from_dict(
        {
            "data": {"name": "digits", "args": {"seed": 0}},
            "model": {"name": "mlp", "args": {"width": 128, "depth": 2}},
            "objective": {
                "weighting": "sigmoid",
                "weighting_args": {"bias": 2.0},
                "schedule": "cosine",
                "logsnr_min": -12.0,
                "logsnr_max": 8.0,
            },
            "optim": {"lr": 2e-3, "warmup_steps": 10},
            "train": {"steps": 150, "batch_size": 64, "preflight": False, "precision": "bfloat16"},
        }
    )
    setup = build(config)
    data = jnp.asarray(setup.dataset.model_data("train"))
    rng = np.random.default_rng(0)
    state, losses = setup.initial, []
    for _ in range(150):
        idx = jnp.asarray(rng.integers(0, len(data), (1, 64)), jnp.int32)
        state, metrics = run_steps(setup.trainer, state, data, idx)
        losses.append(float(metrics["loss"][0]))
    first, last = np.asarray(losses[:30]), np.asarray(losses[-30:])
    stderr = math.sqrt(first.var(ddof=1) / 30 + last.var(ddof=1) / 30)
    assert first.mean() - last.mean() > 3 * stderr, (first.mean(), last.mean(), stderr)


def test_preflight_runs_at_full_float32_precision(monkeypatch):
    seen = []
    original = preflight_lib.batch_losses

    def recording(*args, **kwargs):
        seen.append(jax.config.jax_default_matmul_precision)
        return original(*args, **kwargs)

    monkeypatch.setattr(preflight_lib, "batch_losses", recording)
    setup = build(_bf16_config(2))
    with jax.default_matmul_precision("bfloat16"):  # whatever the caller has in force
        report = preflight_lib.run_preflight(
            setup.config, setup.dataset, setup.weighting, setup.proposal, setup.initial.proposal_state, num_points=32
        )
    assert report.passed, str(report)
    assert seen and set(seen) == {"highest"}


# --- fast construction ---------------------------------------------------------------------


def test_initialise_builds_the_constructors_structure():
    eager = _unet(jax.random.key(0))
    fast = initialise(_unet, jax.random.key(0), zero=lambda m: (m.conv_out,))
    assert jax.tree.structure(eager) == jax.tree.structure(fast)
    arrays = [jax.tree.leaves(eqx.filter(m, eqx.is_array)) for m in (eager, fast)]
    for a, b in zip(*arrays, strict=True):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)
    assert not jnp.any(fast.conv_out.weight) and not jnp.any(fast.conv_out.bias)
    assert jnp.all(fast.norm_out.weight == 1.0) and jnp.all(fast.norm_out.bias == 0.0)


def test_initialise_draws_each_layer_from_its_fan_in_uniform():
    # Equinox's rule: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); a KS test per layer at p > 1e-3.
    model = initialise(_unet, jax.random.key(3))
    layers = [model.conv_in, model.down_blocks[1][0].conv1, model.embedding.linear2]
    fan_ins = [1 * 9, 16 * 9, 64]
    for layer, fan_in in zip(layers, fan_ins, strict=True):
        lim = 1.0 / math.sqrt(fan_in)
        w = np.asarray(layer.weight).ravel()
        assert np.abs(w).max() <= lim
        assert stats.kstest(w, stats.uniform(-lim, 2 * lim).cdf).pvalue > 1e-3
    # different layers get different streams; the same key gives the same model
    assert not np.allclose(
        np.asarray(model.down_blocks[0][0].conv2.weight), np.asarray(model.up_blocks[1][0].conv2.weight)[:, :16]
    )
    again = initialise(_unet, jax.random.key(3))
    assert all(jnp.array_equal(a, b) for a, b in zip(jax.tree.leaves(model), jax.tree.leaves(again), strict=True))


def test_initialise_under_a_traced_key_is_the_constructor():
    fast = eqx.filter_eval_shape(lambda k: initialise(_unet, k), jax.random.key(0))
    eager = eqx.filter_eval_shape(_unet, jax.random.key(0))
    assert jax.tree.structure(fast) == jax.tree.structure(eager)


def test_initialise_refuses_arrays_without_a_rule():
    class Odd(eqx.Module):
        table: jax.Array

        def __init__(self, key):
            self.table = jax.random.normal(key, (3,))

    with pytest.raises(TypeError, match="no rule initialises them"):
        initialise(Odd, jax.random.key(0))
