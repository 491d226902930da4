"""eqx schedules equal the reference ones (float32 and x64), drawn over the whole λ range."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import eqx_impl as E
import reference as R
from tests.equivalence import close, logsnr_ranges, logsnr_values, precision, representable, rounded, to_jax, unit_times

X64 = pytest.mark.parametrize("x64", [False, True], ids=["f32", "x64"])


def _check_schedule(eqx_schedule, ref_schedule, t, x64):
    """Compare logsnr, inverse, dlogsnr_dt and density at times t (and at λ(t))."""
    with precision(x64) as (dtype, rtol):
        t = rounded(t, dtype)
        lam = rounded(ref_schedule.logsnr(t), dtype)
        # λ is O(30): compare with an absolute error scaled to its magnitude.
        close(eqx_schedule.logsnr(to_jax(t, dtype)), lam, 0.0, atol=30 * rtol * np.maximum(1, np.abs(lam)))
        close(eqx_schedule.inverse(to_jax(lam, dtype)), t, 0.0, atol=5 * rtol)
        slope = ref_schedule.dlogsnr_dt(t)
        # EDMLogNormal's far tail has |dλ/dt| = 1/p(λ) beyond float32's 3e38: not representable.
        finite = representable(slope, dtype)
        close(np.asarray(eqx_schedule.dlogsnr_dt(to_jax(t, dtype)))[finite], slope[finite], 20 * rtol)
        dens = ref_schedule.density(lam)
        close(eqx_schedule.density(to_jax(lam, dtype)), dens, 20 * rtol, atol=1e-30)


@X64
@given(rng=logsnr_ranges(), t=unit_times)
def test_equivalence_LinearLogSNR(x64, rng, t):
    _check_schedule(E.LinearLogSNR(*rng), R.LinearLogSNR(*rng), t, x64)


@X64
@given(rng=logsnr_ranges(), shift=st.floats(-3, 3), t=unit_times)
def test_equivalence_Cosine(x64, rng, shift, t):
    _check_schedule(E.Cosine(*rng, shift=shift), R.Cosine(*rng, shift=shift), t, x64)


@X64
@settings(max_examples=6)  # bisection loops compile anew for each pair of static shifts
@given(rng=logsnr_ranges(-20, 20, min_width=10), shifts=st.tuples(st.floats(-1, 1), st.floats(-1, 1)), t=unit_times)
def test_equivalence_CosineInterpolated(x64, rng, shifts, t):
    _check_schedule(E.CosineInterpolated(*rng, *shifts), R.CosineInterpolated(*rng, *shifts), t, x64)


@X64
@given(beta_min=st.floats(0.01, 1.0), spread=st.floats(1.0, 30.0), t=unit_times)
def test_equivalence_DDPMLinear(x64, beta_min, spread, t):
    args = (beta_min, beta_min + spread, 1e-5)
    _check_schedule(E.DDPMLinear(*args), R.DDPMLinear(*args), t, x64)


@X64
@given(p_mean=st.floats(-2, 1), p_std=st.floats(0.5, 2.0), rng=logsnr_ranges(-30, 30, min_width=4), t=unit_times)
def test_equivalence_EDMLogNormal(x64, p_mean, p_std, rng, t):
    mu, s = -2 * p_mean, 2 * p_std
    # A range that keeps almost no mass is rejected by both (tested in test_schedules): draw again.
    assume(rng[0] < mu + 4 * s and rng[1] > mu - 4 * s)
    _check_schedule(E.EDMLogNormal(p_mean, p_std, *rng), R.EDMLogNormal(p_mean, p_std, *rng), t, x64)


@X64
@given(rng=logsnr_ranges(), t=unit_times)
def test_equivalence_FlowOT(x64, rng, t):
    _check_schedule(E.FlowOT(*rng), R.FlowOT(*rng), t, x64)


@X64
@given(lam=logsnr_values)
def test_equivalence_alpha_sigma(x64, lam):
    with precision(x64) as (dtype, rtol):
        alpha, sigma = E.alpha_sigma(to_jax(lam, dtype))
        ref_alpha, ref_sigma = R.alpha_sigma(lam)
        close(alpha, ref_alpha, rtol, atol=1e-37)
        close(sigma, ref_sigma, rtol, atol=1e-37)


@X64
@given(lam=logsnr_values)
def test_equivalence_logsnr_to_sigma(x64, lam):
    with precision(x64) as (dtype, rtol):
        close(E.logsnr_to_sigma(to_jax(lam, dtype)), R.logsnr_to_sigma(lam), rtol)


@X64
@given(lam=logsnr_values)
def test_equivalence_sigma_to_logsnr(x64, lam):
    sigma = R.logsnr_to_sigma(lam)
    with precision(x64) as (dtype, rtol):
        close(E.sigma_to_logsnr(to_jax(sigma, dtype)), R.sigma_to_logsnr(sigma), 0.0, atol=30 * rtol)


def test_equivalence_schedules_jit_vmap_grad():
    """Schedules are pytrees: they pass through jit, vmap over t, and differentiate."""
    schedule = E.Cosine(-15.0, 15.0)
    t = jnp.linspace(0.05, 0.95, 7)
    lam = jax.jit(lambda s, t: jax.vmap(s.logsnr)(t))(schedule, t)
    close(lam, R.Cosine(-15.0, 15.0).logsnr(np.asarray(t, np.float64)), 0.0, atol=1e-4)
    grad = jax.vmap(jax.grad(schedule.logsnr))(t)
    close(grad, R.Cosine(-15.0, 15.0).dlogsnr_dt(np.asarray(t, np.float64)), 1e-5)
