"""The analytic FLOP counter of `benchmarks/flops.py` against XLA's CPU cost analysis."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from benchmarks.flops import matmul_flops


def _xla_flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"])


def _conv(x, w, stride=1, padding=1):
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), [(padding, padding)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW")
    )


def test_matmul_flops_closed_form():
    a, b = jnp.ones((7, 5, 3)), jnp.ones((7, 3, 11))
    assert matmul_flops(lambda a, b: jnp.einsum("bij,bjk->bik", a, b), a, b) == 2 * 7 * 5 * 3 * 11
    x, w = jnp.ones((2, 4, 6, 6)), jnp.ones((8, 4, 3, 3))
    # 'VALID' 3x3 on 6x6: 4x4 outputs, every tap reads real input
    assert matmul_flops(lambda x, w: _conv(x, w, padding=0), x, w) == 2 * 2 * 8 * 4 * 16 * 9
    # scan bodies count once per iteration
    assert (
        matmul_flops(lambda a, b: jax.lax.scan(lambda c, _: (c, c @ b), a, None, length=4)[1], a[0], b[0])
        == 4 * 2 * 5 * 3 * 11
    )


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_forward_and_backward_match_xla(stride):
    # Only convolutions and matmuls: the count must equal XLA's within 1% (XLA adds the few
    # element-wise ops of the loss).
    x = jax.random.normal(jax.random.key(0), (4, 8, 16, 16))
    w1 = jax.random.normal(jax.random.key(1), (16, 8, 3, 3))
    w2 = jax.random.normal(jax.random.key(2), (16, 16, 3, 3))
    m = jax.random.normal(jax.random.key(3), (16, 10))

    def loss(params, x):
        w1, w2, m = params
        h = _conv(_conv(x, w1, stride), w2)
        return jnp.sum(jnp.einsum("nchw,cd->nd", h, m) ** 2)

    step = jax.grad(loss)
    ours, xla = matmul_flops(step, (w1, w2, m), x), _xla_flops(step, (w1, w2, m), x)
    assert ours == pytest.approx(xla, rel=0.01)


def test_unet_training_step_is_mostly_convolutions():
    # The digits U-Net's whole training step (forward, backward, AdamW, EMA): convolutions and
    # matmuls are at least 90% of XLA's count and never more than it.
    from benchmarks.unet_throughput import _xla_flops as compiled_flops
    from benchmarks.unet_throughput import step_flops
    from eqx_impl.train.config_io import load_config
    from eqx_impl.train.loop import build
    from eqx_impl.train.step import lower_steps

    setup = build(load_config("configs/digits.yaml", ["train.batch_size=8", "train.preflight=false"]))
    data = jnp.asarray(setup.dataset.model_data("train"))
    idx = jnp.zeros((1, 8), jnp.int32)
    xla = compiled_flops(lower_steps(setup.trainer, setup.initial, data, idx).compile().compiled)
    ours = step_flops(setup, setup.initial, data, idx)
    assert 0.9 * xla <= ours <= xla, (ours, xla)
