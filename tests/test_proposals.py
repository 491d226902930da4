"""`eqx_impl.proposals`: one interface for fixed, adaptive and learned proposals."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import eqx_impl as ex
from eqx_impl.proposals import AdaptiveProposal, FixedProposal, LearnedProposal

U = (jnp.arange(64, dtype=jnp.float32) + 0.5) / 64


def test_fixed_proposal_is_its_schedule():
    schedule = ex.Cosine(-10.0, 10.0)
    proposal = FixedProposal(schedule)
    state = proposal.init()
    logsnr, density = proposal.sample(state, U)
    np.testing.assert_allclose(logsnr, schedule.logsnr(U), rtol=1e-6)
    np.testing.assert_allclose(density, schedule.density(schedule.logsnr(U)), rtol=1e-6)
    assert proposal.update(state, logsnr, density, None) is state


def test_adaptive_proposal_follows_the_values():
    adaptive = ex.Adaptive(-10.0, 10.0, n_bins=16)
    proposal = AdaptiveProposal(adaptive)
    lam = jnp.linspace(-9.0, 9.0, 64)
    values = jnp.exp(-0.1 * lam**2)
    got = proposal.update(proposal.init(), lam, values, None)
    want = adaptive.update(adaptive.init(), lam, values)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)


def test_learned_proposal_takes_an_adam_step_on_the_gradient():
    learned = ex.Learned(-10.0, 10.0, key=jax.random.key(0), width=8)
    proposal = LearnedProposal(learned, lr=1e-2)
    state = proposal.init()

    def second_moment(state):
        logsnr, density = proposal.sample(state, U)
        return jnp.mean((jax.nn.sigmoid(2.0 - logsnr) / density) ** 2)

    grads = eqx.filter_grad(second_moment)(state)
    new = proposal.update(state, None, None, grads)
    # the same step by hand with optax
    params = eqx.filter(learned, eqx.is_inexact_array)
    opt = optax.adam(1e-2)
    with jax.numpy_dtype_promotion("standard"):
        updates, _ = opt.update(eqx.filter(grads.schedule, eqx.is_inexact_array), opt.init(params), params)
    want = eqx.apply_updates(learned, updates)
    for a, b in zip(jax.tree.leaves(new.schedule), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # a descent direction: <gradient, step> < 0
    g = jax.tree.leaves(eqx.filter(grads.schedule, eqx.is_inexact_array))
    step = [a - b for a, b in zip(jax.tree.leaves(new.schedule), jax.tree.leaves(learned), strict=True)]
    assert sum(float(jnp.sum(a * b)) for a, b in zip(g, step, strict=True)) < 0
