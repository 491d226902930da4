"""`EpsModel` (a network of any target seen as an ε-model) is the same function in both packages.

Each side wraps its own `ProbeNet` with the same weights, so the two computations share
nothing but the numbers they start from. $\\hat\\epsilon = A z + B\\hat y$ with coefficients
$A, B$ of λ only (`eps_from_prediction` is linear), so float32 rounding is bounded by a few ulps
of the terms: the tolerance is `F32_RTOL` times $|A||z| + |B\\hat y| + |B|$, the last term
carrying the probe's own absolute error (`F32_RTOL`, see `test_equivalence_ProbeNet`); the
input scaling $z/\\sqrt D$ adds one rounding to $z_{\\rm in}$, which the probe passes on with
gain O(1). Under x64, `X64_RTOL` of the same scale.
"""

import math
from typing import cast

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eqx_impl as E
import reference as R
from tests.equivalence import close, precision, rounded, to_jax

X64 = pytest.mark.parametrize("x64", [False, True], ids=["f32", "x64"])
TARGET = pytest.mark.parametrize("target", R.TARGETS)
SHAPES = [(2,), (3,), (2, 1, 2)]


def _layers(dim, rng):
    sizes = [dim + 2, 16, dim]
    return [
        (rng.normal(size=(m, n)) / math.sqrt(m), 0.1 * rng.normal(size=n))
        for m, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]


@X64
@TARGET
@pytest.mark.parametrize("normalize_input", [None, False, True], ids=["default", "raw", "normalized"])
@given(
    shape=st.sampled_from(SHAPES),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([0.1, 1.0, 3.0]),
    logsnr=st.floats(-30.0, 30.0, allow_nan=False),
    sigma_data=st.sampled_from([0.1, 0.5, 1.0, 2.0]),
)
def test_equivalence_EpsModel(x64, target, normalize_input, shape, seed, scale, logsnr, sigma_data):
    rng = np.random.default_rng(seed)
    with precision(x64) as (dtype, rtol):
        layers = [(rounded(w, dtype), rounded(b, dtype)) for w, b in _layers(math.prod(shape), rng)]
        z = rounded(scale * rng.normal(size=shape), dtype)
        lam = float(rounded(logsnr, dtype))
        ours = E.EpsModel(
            E.ProbeNet([(to_jax(w, dtype), to_jax(b, dtype)) for w, b in layers]), target, sigma_data, normalize_input
        )
        theirs = R.EpsModel(R.ProbeNet(layers), target, sigma_data, normalize_input)
        assert (
            ours.normalize_input
            == theirs.normalize_input
            == (target == "F" if normalize_input is None else normalize_input)
        )
        out = ours(to_jax(z, dtype), to_jax(lam, dtype))
        expected = theirs(z, lam)
        assert out.dtype == dtype and out.shape == z.shape
        coef_z = R.eps_from_prediction(target, np.zeros(1), np.ones(1), lam, sigma_data)
        coef_y = R.eps_from_prediction(target, np.ones(1), np.zeros(1), lam, sigma_data)
        terms = np.abs(coef_z) * np.abs(z) + np.abs(expected - coef_z * z) + np.abs(coef_y)
        close(out, expected, 0.0, atol=cast(float, rtol * terms))  # `close` takes an array atol


def test_equivalence_EpsModel_rejects_alike():
    """Both packages refuse an unknown target, a non-positive σ_d and a network of the wrong shape."""
    layers = _layers(2, np.random.default_rng(0))
    for pkg, array in ((E, lambda v: to_jax(v, np.float32)), (R, np.asarray)):
        net = pkg.ProbeNet([(array(w), array(b)) for w, b in layers])
        with pytest.raises(ValueError, match="Unknown target 'epsilon'"):
            pkg.EpsModel(net, "epsilon")
        with pytest.raises(ValueError, match="sigma_data must be > 0"):
            pkg.EpsModel(net, "v", 0.0)
        bad = pkg.EpsModel(lambda z, logsnr: z[:1], "v")  # one value for two inputs
        with pytest.raises(ValueError, match=r"returned shape \(1,\) for an input of shape \(2,\)"):
            bad(array(np.ones(2)), 0.0)
