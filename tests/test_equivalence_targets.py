"""eqx targets and conversions equal the reference ones, float32 and x64.

All conversions are linear in their two array arguments, `out = A·first + B·second` with
coefficients that depend on λ only, so the rounding error of either package is bounded by a
few ulps of the *terms*, `|A·first| + |B·second|`; that is the scale the tolerances are
relative to (for `"x"` at λ = 30 the terms are ~e^15 larger than the result can be).
float32: rtol 2e-5 of that scale (the shared F32_RTOL; a handful of roundings, each 6e-8);
x64: 1e-10 (both evaluate the same formulas in float64). Inputs are rounded to the eqx
dtype first and the reference evaluates those rounded values.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import eqx_impl as E
import eqx_impl.targets as eqx_targets
import reference as R
import reference.targets as ref_targets
from tests.equivalence import close, logsnr_values, precision, to_jax

X64 = pytest.mark.parametrize("x64", [False, True], ids=["f32", "x64"])
TARGET = pytest.mark.parametrize("target", R.TARGETS)

# A few shapes, not arbitrary ones: the functions are elementwise, and every new shape costs
# a recompilation of each eager JAX op.
shapes = st.sampled_from([(1,), (5,), (2, 3), (2, 2, 3)])
sigma_datas = st.floats(0.1, 2.0)


@st.composite
def pair(draw):
    """Two arrays of one drawn shape (values in [-5, 5]) and one log-SNR in [-30, 30]."""
    shape = draw(shapes)
    values = st.floats(-5.0, 5.0, allow_nan=False, width=32)
    a = draw(hnp.arrays(np.float64, shape, elements=values))
    b = draw(hnp.arrays(np.float64, shape, elements=values))
    return a, b, draw(st.floats(-30.0, 30.0))


def _rounded(x, dtype):
    return np.asarray(to_jax(x, dtype), dtype=np.float64)


def _check_linear(eqx_fn, ref_fn, target, a, b, lam, sigma_data, x64):
    """Compare `eqx_fn(target, a, b, λ, σ_d)` with the reference; tolerance relative to the terms."""
    with precision(x64) as (dtype, rtol):
        a, b, lam = _rounded(a, dtype), _rounded(b, dtype), float(_rounded(lam, dtype))
        sigma_data = float(_rounded(sigma_data, dtype))
        expected = ref_fn(target, a, b, lam, sigma_data)
        coef_a = ref_fn(target, np.ones(1), np.zeros(1), lam, sigma_data)
        coef_b = ref_fn(target, np.zeros(1), np.ones(1), lam, sigma_data)
        scale = np.abs(coef_a) * np.abs(a) + np.abs(coef_b) * np.abs(b)
        actual = eqx_fn(target, to_jax(a, dtype), to_jax(b, dtype), to_jax(lam, dtype), sigma_data)
        assert actual.dtype == dtype
        close(actual, expected, 0.0, atol=rtol * scale + 1e-30)


def test_equivalence_TARGETS():
    """One name table, one target class per name in each package, and both packages'
    conversions reject a name outside it alike."""
    assert E.TARGETS == R.TARGETS == ("eps", "x", "v", "F", "u")
    assert tuple(eqx_targets._TARGETS) == tuple(ref_targets._TARGETS) == R.TARGETS
    for pkg in (eqx_targets, ref_targets):
        assert [type(t).__name__ for t in pkg._TARGETS.values()] == ["_Eps", "_X", "_V", "_F", "_U"]
    message = r"Unknown target 'epsilon'; choose one of \('eps', 'x', 'v', 'F', 'u'\)"
    one = to_jax(np.ones(1), np.float32)  # an array, as the eqx annotation (checked in tests) asks
    for pkg in (E, R):
        with pytest.raises(ValueError, match=message):
            pkg.target_factor("epsilon", 0.0)
        with pytest.raises(ValueError, match=message):
            pkg.target_value("epsilon", one, one, 0.0)


@X64
@TARGET
@given(lam=logsnr_values, sigma_data=sigma_datas)
def test_equivalence_target_factor(x64, target, lam, sigma_data):
    with precision(x64) as (dtype, rtol):
        lam, sigma_data = _rounded(lam, dtype), float(_rounded(sigma_data, dtype))
        actual = E.target_factor(target, to_jax(lam, dtype), sigma_data)
        assert actual.dtype == dtype
        close(actual, R.target_factor(target, lam, sigma_data), rtol)


@X64
@TARGET
@given(arrays=pair(), sigma_data=sigma_datas)
def test_equivalence_eps_from_prediction(x64, target, arrays, sigma_data):
    prediction, z, lam = arrays
    _check_linear(E.eps_from_prediction, R.eps_from_prediction, target, prediction, z, lam, sigma_data, x64)


@X64
@TARGET
@given(arrays=pair(), sigma_data=sigma_datas)
def test_equivalence_prediction_from_eps(x64, target, arrays, sigma_data):
    eps_hat, z, lam = arrays
    _check_linear(E.prediction_from_eps, R.prediction_from_eps, target, eps_hat, z, lam, sigma_data, x64)


@X64
@TARGET
@given(arrays=pair(), sigma_data=sigma_datas)
def test_equivalence_target_value(x64, target, arrays, sigma_data):
    x, eps, lam = arrays
    _check_linear(E.target_value, R.target_value, target, x, eps, lam, sigma_data, x64)
