"""Shared strategies and comparison helpers for the equivalence suite.

Tolerances: float32 has a unit roundoff of 6e-8; a handful of elementary operations on
log-SNRs of magnitude up to 30 loses a few units in the last place of values of that
size, hence an absolute 3e-5·max(1, |value|) on log-SNRs and a relative 2e-5 on
positive quantities. Under `jax_enable_x64` the two packages evaluate the same
formulas in float64, so they agree to 1e-10 relative.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

F32_RTOL = 2e-5
X64_RTOL = 1e-10

# Fixed-size draws: eager JAX compiles each primitive once per shape, so one shape keeps the
# suite fast; hypothesis still shrinks values and hits the ends of the ranges.
DRAW_SIZE = 8

logsnr_values = st.lists(
    st.floats(-30.0, 30.0, allow_nan=False, allow_infinity=False), min_size=DRAW_SIZE, max_size=DRAW_SIZE
).map(lambda v: np.asarray(v, dtype=np.float64))

unit_times = st.lists(st.floats(0.0, 1.0), min_size=DRAW_SIZE, max_size=DRAW_SIZE).map(
    lambda v: np.asarray(v, dtype=np.float64)
)


def representable(values, dtype):
    """Mask of values whose magnitude float32 (or x64) holds as a normal number, with margin.

    XLA on CPU flushes subnormals to zero, so relative comparisons are meaningful only here.
    """
    info = np.finfo(dtype)
    magnitude = np.abs(values)
    return (magnitude > info.tiny * 1e4) & (magnitude < info.max / 1e4)


@st.composite
def logsnr_ranges(draw, lo=-30.0, hi=30.0, min_width=1.0):
    a = draw(st.floats(lo, hi - min_width))
    b = draw(st.floats(a + min_width, hi))
    return a, b


@contextlib.contextmanager
def precision(x64: bool):
    """`(dtype, rtol)` for eqx inputs: float32 by default, float64 under `jax_enable_x64`."""
    with jax.enable_x64(x64):
        yield (jnp.float64 if x64 else jnp.float32), (X64_RTOL if x64 else F32_RTOL)


def rounded(x, dtype):
    """`x` rounded to `dtype` and back: the reference must see the inputs eqx actually gets."""
    return np.asarray(np.asarray(x).astype(dtype), dtype=np.float64)


def to_jax(x, dtype):
    return jnp.asarray(np.asarray(x), dtype=dtype)


def close(actual, expected, rtol, atol=0.0):
    """`|actual - expected| <= atol + rtol·|expected|` elementwise (atol may be an array)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    bad = ~(err <= bound)
    assert not np.any(bad), (
        f"{bad.sum()} of {bad.size} values differ: max excess {np.max(err - bound):.3g}; "
        f"actual {actual[bad][:4]}, expected {expected[bad][:4]}"
    )
