"""eqx proposals and VDM's learned schedule equal the float64 reference ones.

The reference twin of each eqx object is built by the pre-flight's `twin` (same class name,
same fields, the eqx weights copied as float64), so each test compares the two packages'
arithmetic on the same parameters.

Tolerances (float32, `F32_RTOL` = 2e-5 from tests/equivalence.py, as for the fixed schedules
in test_equivalence_schedules): λ absolute `30·rtol·max(1, |λ|)` (the network sums `width`
terms of size up to |λ| before renormalising); the inverse `5·rtol` in t; dλ/dt and the
density `20·rtol` relative (forward-mode autodiff in eqx vs the analytic derivative here).
Adam (`LearnedProposal.update`) divides by $\\sqrt{\\hat v}$: its float32 step carries a few
ulps of relative error, so the weights after three steps agree to `rtol` relative plus
`rtol·lr` absolute. Under x64 the same formulas run in float64: `X64_RTOL` = 1e-10.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eqx_impl as E
import reference as R
from eqx_impl.train.preflight import twin
from reference.learned import PARAMETERS
from tests.equivalence import close, precision, rounded, to_jax, unit_times

X64 = pytest.mark.parametrize("x64", [False, True], ids=["f32", "x64"])
seeds = st.integers(0, 2**16)
widths = st.sampled_from([1, 8, 64])
# l3 scaled up pushes the network away from the linear schedule it starts as.
curvatures = st.sampled_from([1.0, 100.0, 3000.0])
# The interval is static in the eqx module (one compilation each): a few typical ones.
RANGES = [(-20.0, 20.0), (-10.0, 12.0), (-3.5, 15.0)]


def _learned(lo_hi, seed, width, curvature, fixed_endpoints=True):
    lo, hi = lo_hi
    schedule = E.Learned(lo, hi, key=jax.random.key(seed), width=width, fixed_endpoints=fixed_endpoints)
    return eqx.tree_at(lambda s: s.l3_weight, schedule, schedule.l3_weight * curvature)


# One compiled function per (width, dtype, endpoints), shared across hypothesis examples: the
# inverse's bisection loop run eagerly would dispatch hundreds of operations per example.
@eqx.filter_jit
def _evaluate(schedule, t, lam):
    return schedule.logsnr(t), schedule.inverse(lam), schedule.dlogsnr_dt(t), schedule.density(lam)


def _check_schedule(eqx_schedule, ref_schedule, t, dtype, rtol):
    """λ(t), t(λ), dλ/dt and p(λ) of the two schedules at times `t`."""
    t = rounded(t, dtype)
    lam = rounded(ref_schedule.logsnr(t), dtype)
    logsnr, inverse, slope, density = _evaluate(eqx_schedule, to_jax(t, dtype), to_jax(lam, dtype))
    close(logsnr, lam, 0.0, atol=30 * rtol * np.maximum(1, np.abs(lam)))
    close(inverse, t, 0.0, atol=5 * rtol)
    close(slope, ref_schedule.dlogsnr_dt(t), 20 * rtol)
    close(density, ref_schedule.density(lam), 20 * rtol)


@X64
@given(lo_hi=st.sampled_from(RANGES), seed=seeds, width=widths, curvature=curvatures, t=unit_times)
def test_equivalence_Learned(x64, lo_hi, seed, width, curvature, t):
    with precision(x64) as (dtype, rtol):
        schedule = _learned(lo_hi, seed, width, curvature)
        reference = twin(schedule)
        assert isinstance(reference, R.Learned)
        _check_schedule(schedule, reference, t, dtype, rtol)
        assert (reference.logsnr_min, reference.logsnr_max) == (schedule.logsnr_min, schedule.logsnr_max)


@X64
@given(seed=seeds, width=widths, t=unit_times)
def test_equivalence_Learned_learned_endpoints(x64, seed, width, t):
    with precision(x64) as (dtype, rtol):
        schedule = _learned((-10.0, 10.0), seed, width, 100.0, fixed_endpoints=False)
        reference = twin(schedule)
        close(
            schedule.gamma_unnormalised(to_jax(rounded(t, dtype), dtype)),
            reference.gamma_unnormalised(rounded(t, dtype)),
            rtol,
            atol=rtol,
        )
        _check_schedule(schedule, reference, t, dtype, rtol)
        close(schedule.logsnr_min, reference.logsnr_min, rtol, atol=rtol)
        close(schedule.logsnr_max, reference.logsnr_max, rtol, atol=rtol)


def test_equivalence_Learned_checks_arguments_alike():
    rng = np.random.default_rng(0)
    cases: list[dict] = [{"logsnr_min": 5.0, "logsnr_max": 1.0}, {"width": 0}]
    for kwargs in cases:
        with pytest.raises(ValueError) as ref_err:
            R.Learned(**kwargs, rng=rng)
        with pytest.raises(ValueError) as eqx_err:
            E.Learned(**kwargs, key=jax.random.key(0))
        assert str(ref_err.value) == str(eqx_err.value)


def test_equivalence_Learned_draws_weights_alike():
    """The reference draws its initial weights from the same laws as the eqx `key`: the
    linear schedule exactly, then N(0, 1) and 1e-2 N(0, 1)/width (moments over 4096 units)."""
    ref = R.Learned(-8.0, 12.0, rng=np.random.default_rng(0), width=4096)
    ours = E.Learned(-8.0, 12.0, key=jax.random.key(0), width=4096)
    np.testing.assert_allclose(ref.l1_weight, float(ours.l1_weight))
    np.testing.assert_allclose(ref.l1_bias, float(ours.l1_bias))
    for name, scale in (("l2_weight", 1.0), ("l2_bias", 1.0), ("l3_weight", 1e-2 / 4096)):
        for values in (getattr(ref, name), np.asarray(getattr(ours, name))):
            assert abs(values.mean()) < 4 * scale / 64 and abs(values.std() / scale - 1.0) < 0.05


# --- proposals: the same interface on both sides ----------------------------------------------


def _batch(rng, lo, hi, dtype):
    """A synthetic batch: log-SNRs in the range, positive w·ℓ values, as both sides see them."""
    lam = rounded(lo + (hi - lo) * rng.random(16), dtype)
    values = rounded(np.exp(-0.1 * lam) * (1.0 + rng.random(16)), dtype)
    return lam, values


def _grads_like(state, rng, dtype):
    """A state-shaped gradient: standard normals in every inexact array of `state`."""

    def draw(leaf):
        return jnp.asarray(rng.standard_normal(leaf.shape), dtype) if eqx.is_inexact_array(leaf) else leaf

    return jax.tree.map(draw, state)


def _run_both(proposal, dtype, seed, steps=3):
    """`steps` identical updates of the eqx proposal and its twin. **Returns:** both states."""
    rng = np.random.default_rng(seed)
    reference = twin(proposal)
    state, ref_state = proposal.init(), reference.init()
    lo, hi = proposal.logsnr_range
    assert reference.logsnr_range == pytest.approx((lo, hi))
    for _ in range(steps):
        lam, values = _batch(rng, lo, hi, dtype)
        grads = _grads_like(state, rng, dtype)
        ref_state = reference.update(ref_state, lam, values, twin(grads))
        state = proposal.update(state, to_jax(lam, dtype), to_jax(values, dtype), grads)
    return reference, state, ref_state


def _check_sample(proposal, state, reference, ref_state, u, dtype, rtol, density_rtol):
    u = rounded(np.minimum(u, 1.0 - 1e-6), dtype)
    logsnr, density = proposal.sample(state, to_jax(u, dtype))
    ref_logsnr, ref_density = reference.sample(ref_state, u)
    close(logsnr, ref_logsnr, 0.0, atol=30 * rtol * np.maximum(1, np.abs(ref_logsnr)))
    close(density, ref_density, density_rtol)
    return np.asarray(logsnr, np.float64)


FIXED = {
    "Cosine": lambda m: m.Cosine(-12.0, 14.0),
    "LinearLogSNR": lambda m: m.LinearLogSNR(-20.0, 20.0),
    "EDMLogNormal": lambda m: m.EDMLogNormal(logsnr_min=-10.0, logsnr_max=12.0),
    "DDPMLinear": lambda m: m.DDPMLinear(),
}


@X64
@given(schedule=st.sampled_from(sorted(FIXED)), seed=seeds, u=unit_times)
def test_equivalence_FixedProposal(x64, schedule, seed, u):
    with precision(x64) as (dtype, rtol):
        proposal = E.FixedProposal(FIXED[schedule](E))
        reference, state, ref_state = _run_both(proposal, dtype, seed)
        assert isinstance(reference, R.FixedProposal) and state is None and ref_state is None
        logsnr = _check_sample(proposal, state, reference, ref_state, u, dtype, rtol, 20 * rtol)
        close(proposal.density(state, to_jax(logsnr, dtype)), reference.density(ref_state, logsnr), 20 * rtol)


@X64
@given(target=st.sampled_from(["mean", "rms"]), seed=seeds, u=unit_times)
def test_equivalence_AdaptiveProposal(x64, target, seed, u):
    with precision(x64) as (dtype, rtol):
        proposal = E.AdaptiveProposal(E.Adaptive(-10.0, 12.0, n_bins=20, decay=0.5, target=target))
        reference, state, ref_state = _run_both(proposal, dtype, seed)
        close(state.ema, ref_state.ema, rtol)
        np.testing.assert_array_equal(np.asarray(state.count), ref_state.count)
        # λ at a bin edge may fall on either side in float32: compare p by sample, not at λ.
        logsnr = _check_sample(proposal, state, reference, ref_state, u, dtype, rtol, rtol)
        inner = np.abs(np.modf((logsnr + 10.0) / 1.1)[0] - 0.5) < 0.49
        dens = np.asarray(proposal.density(state, to_jax(logsnr, dtype)))
        close(dens[inner], reference.density(ref_state, logsnr)[inner], rtol)


@X64
@given(lr=st.sampled_from([1e-3, 1e-2]), seed=seeds, width=widths, u=unit_times)
def test_equivalence_LearnedProposal(x64, lr, seed, width, u):
    with precision(x64) as (dtype, rtol):
        proposal = E.LearnedProposal(_learned((-10.0, 12.0), seed, width, 100.0), lr)
        reference, state, ref_state = _run_both(proposal, dtype, seed)
        moved = 0.0
        for name in PARAMETERS:
            ours, ref_value = getattr(state.schedule, name), getattr(ref_state.schedule, name)
            close(ours, ref_value, rtol, atol=rtol * lr)
            moved = max(moved, float(np.max(np.abs(np.asarray(ours) - getattr(proposal.initial, name)))))
        assert moved > 0.5 * lr  # each Adam step moves each weight by up to lr: the states did change
        _check_sample(proposal, state, reference, ref_state, u, dtype, rtol, 20 * rtol)


@given(seed=seeds, width=widths)
def test_equivalence_LearnedState(seed, width):
    """The eqx state (optax's Adam layout) and the reference's hold the same numbers, at
    initialisation and after updates (float32: weights move by lr = 1e-2 per step, to a few
    ulps of it, hence the absolute 1e-6)."""
    proposal = E.LearnedProposal(_learned((-10.0, 12.0), seed, width, 1.0), 1e-2)
    reference = twin(proposal)
    for state, ref_state in [(proposal.init(), reference.init()), _run_both(proposal, jnp.float32, seed)[1:]]:
        ours = twin(state)
        assert isinstance(ours, R.LearnedState)
        (count, mu, nu), rest = ours.opt_state
        (ref_count, ref_mu, ref_nu), ref_rest = ref_state.opt_state
        assert int(count) == int(ref_count) and rest == ref_rest == ()
        for name in PARAMETERS:
            for a, b in ((ours.schedule, ref_state.schedule), (mu, ref_mu), (nu, ref_nu)):
                close(getattr(a, name), getattr(b, name), 2e-5, atol=1e-6)
