"""The probe network (`ProbeNet`) is the same function in both packages.

Tolerances: a tanh MLP of width 32 on O(1) inputs sums a few dozen float32 products per
layer, so its outputs carry a few ulps of the layer sums' magnitude: `F32_RTOL` relative
plus `F32_RTOL` absolute. Under x64, `X64_RTOL` both ways.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eqx_impl as E
import reference as R
from tests.equivalence import close, precision, rounded, to_jax

X64 = pytest.mark.parametrize("x64", [False, True], ids=["f32", "x64"])
SHAPES = [(3,), (2, 1, 2), (1, 4, 4)]


def _layers(dim, depth, rng):
    sizes = [dim + 2, *[16] * depth, dim]
    return [
        (rng.normal(size=(m, n)) / math.sqrt(m), 0.1 * rng.normal(size=n))
        for m, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]


@X64
@given(
    shape=st.sampled_from(SHAPES),
    depth=st.integers(0, 2),
    seed=st.integers(0, 2**16),
    logsnr=st.floats(-30.0, 30.0, allow_nan=False),
)
def test_equivalence_ProbeNet(x64, shape, depth, seed, logsnr):
    rng = np.random.default_rng(seed)
    with precision(x64) as (dtype, rtol):
        layers = [(rounded(w, dtype), rounded(b, dtype)) for w, b in _layers(math.prod(shape), depth, rng)]
        z = rounded(rng.normal(size=shape), dtype)
        lam = float(rounded(logsnr, dtype))
        ours = E.ProbeNet([(to_jax(w, dtype), to_jax(b, dtype)) for w, b in layers])
        out = ours(to_jax(z, dtype), to_jax(lam, dtype))
        expected = R.ProbeNet(layers)(z, lam)
        assert out.dtype == dtype and out.shape == z.shape
        close(out, expected, rtol, atol=rtol)
