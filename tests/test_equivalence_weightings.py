"""eqx weightings equal the reference ones, values and derivatives, float32 and x64."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eqx_impl as E
import reference as R
from tests.equivalence import close, logsnr_values, precision, representable, to_jax

X64 = pytest.mark.parametrize("x64", [False, True], ids=["f32", "x64"])


def _check_weighting(eqx_w, ref_w, lam, x64, rtol_factor=1.0):
    """Values and autodiff derivatives against the reference (analytic or 4th-order FD).

    The reference's finite-difference derivatives (Implied) carry ~1e-10 relative error,
    EDM's log-space exponent is up to ~90 in magnitude, so float32 loses ~90·6e-8: rtol_factor.
    """
    with precision(x64) as (dtype, rtol):
        rtol = rtol * rtol_factor
        ref = ref_w(lam)
        close(eqx_w(to_jax(lam, dtype)), ref, rtol, atol=1e-35)
        scale = np.abs(ref) + 1e-300
        deriv = np.asarray(eqx_w.derivative(to_jax(lam, dtype)), dtype=np.float64)
        keep = representable(ref, dtype)
        for kink in ref_w.kinks:
            keep &= np.abs(lam - kink) > 1e-6
        close((deriv / scale)[keep], (ref_w.derivative(lam) / scale)[keep], 0.0, atol=10 * rtol)


@X64
@given(lam=logsnr_values)
def test_equivalence_ELBO(x64, lam):
    _check_weighting(E.ELBO(), R.ELBO(), lam, x64)


@X64
@given(lam=logsnr_values)
def test_equivalence_EpsCosine(x64, lam):
    _check_weighting(E.EpsCosine(), R.EpsCosine(), lam, x64)


@X64
@given(lam=logsnr_values, p_mean=st.floats(-2, 1), p_std=st.floats(0.5, 2), sigma_data=st.floats(0.1, 2))
def test_equivalence_EDM(x64, lam, p_mean, p_std, sigma_data):
    _check_weighting(E.EDM(p_mean, p_std, sigma_data), R.EDM(p_mean, p_std, sigma_data), lam, x64, 10.0)


@X64
@given(lam=logsnr_values, rate=st.floats(-1, 1))
def test_equivalence_Exponential(x64, lam, rate):
    _check_weighting(E.Exponential(rate), R.Exponential(rate), lam, x64)


@X64
@given(lam=logsnr_values)
def test_equivalence_InDI(x64, lam):
    _check_weighting(E.InDI(), R.InDI(), lam, x64, 3.0)


@X64
@given(lam=logsnr_values, gamma=st.floats(0.1, 20))
def test_equivalence_MinSNR(x64, lam, gamma):
    _check_weighting(E.MinSNR(gamma), R.MinSNR(gamma), lam, x64)


@X64
@given(lam=logsnr_values, bias=st.floats(-5, 5))
def test_equivalence_Sigmoid(x64, lam, bias):
    _check_weighting(E.Sigmoid(bias), R.Sigmoid(bias), lam, x64)


@X64
@given(lam=logsnr_values, bias=st.floats(-5, 5), shift=st.floats(-3, 3))
def test_equivalence_Shifted(x64, lam, bias, shift):
    _check_weighting(E.Shifted(E.Sigmoid(bias), shift), R.Shifted(R.Sigmoid(bias), shift), lam, x64)


@X64
@settings(max_examples=8)  # each construction locates the peak eagerly (~1 s)
@given(lam=logsnr_values, p_mean=st.floats(-2, 1))
def test_equivalence_Monotonic(x64, lam, p_mean):
    with precision(x64):
        eqx_w = E.Monotonic(E.EDM(p_mean), -30.0, 30.0)
    # the flat part is the peak value; float32 places the peak to ~1e-4, costing ~1e-8 relative
    _check_weighting(eqx_w, R.Monotonic(R.EDM(p_mean), -30.0, 30.0), lam, x64, 10.0)


@X64
@given(lam=logsnr_values, target=st.sampled_from(["eps", "x", "v", "F", "u"]))
def test_equivalence_Implied(x64, lam, target):
    # Reference derivatives of Implied are 4th-order finite differences (~1e-9 relative).
    _check_weighting(E.Implied(E.Cosine(), target), R.Implied(R.Cosine(), target), lam, x64, 10.0 if not x64 else 1e2)


@X64
@given(lam=logsnr_values, target=st.sampled_from(["eps", "x", "v", "F", "u"]), sigma_data=st.floats(0.1, 2))
def test_equivalence_target_factor_weightings(x64, lam, target, sigma_data):
    with precision(x64) as (dtype, rtol):
        close(E.target_factor(target, to_jax(lam, dtype), sigma_data), R.target_factor(target, lam, sigma_data), rtol)


@pytest.mark.parametrize(
    "eqx_w, ref_w",
    [
        (E.ELBO(), R.ELBO()),
        (E.EpsCosine(), R.EpsCosine()),
        (E.EDM(), R.EDM()),
        (E.Exponential(0.5), R.Exponential(0.5)),
        (E.InDI(), R.InDI()),
        (E.MinSNR(5.0), R.MinSNR(5.0)),
        (E.Sigmoid(2.0), R.Sigmoid(2.0)),
        (E.Monotonic(E.EDM()), R.Monotonic(R.EDM())),
    ],
    ids=lambda w: type(w).__name__,
)
def test_equivalence_is_monotonic(eqx_w, ref_w):
    assert E.is_monotonic(eqx_w, -30.0, 30.0) == R.is_monotonic(ref_w, -30.0, 30.0)


def test_equivalence_weightings_finite_gradients_float32():
    lam = np.linspace(-30, 30, 241).astype(np.float32)
    for w in [
        E.ELBO(),
        E.EpsCosine(),
        E.EDM(),
        E.Exponential(),
        E.InDI(),
        E.MinSNR(),
        E.Sigmoid(),
        E.Monotonic(E.EDM()),
    ]:
        values = jax.jit(jax.vmap(w))(lam)
        grads = jax.jit(jax.vmap(jax.grad(w)))(lam)
        assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads)), type(w).__name__
