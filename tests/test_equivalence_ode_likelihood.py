"""eqx probability-flow likelihood equals the reference with the same fixed-step scheme.

Denoisers: the Bayes-optimal denoiser of a drawn two-component mixture in 2-D (each
package's own `GaussianMixture`), and the random MLP ε-model of `tests/nets.py` through
`denoiser_from_eps`. Inputs are rounded to the eqx dtype first, so only arithmetic
differs; the reference takes its JVPs by sixth-order central differences (about 1e-12
relative), eqx by autodiff.

Tolerances. The result is a sum of two terms of size up to about d·ln(σ_max/σ_min) ≈ 21
nats (the prior at x(σ_max) ~ σ_max and the divergence integral); errors are stated
relative to `scale = 1 + |prior_log_prob| + |delta_log_prob|`. In float32 each of the 2N = 16
(Heun) or 4N = 32 (RK4) stages adds a few ulp of that scale: 2e-5·scale bounds them
(measured worst over 100 random draws: 4e-7·scale); `x_end` (size up to 3σ_max) within
2e-5·(1 + max|x_end|) (measured 2e-6). Under x64 the two differ by the finite-difference
error only: 1e-10·scale (measured worst 2e-13).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eqx_impl as E
import reference as R
from tests.equivalence import close, precision, rounded, to_jax
from tests.nets import init_params, jax_mlp, numpy_mlp

X64 = pytest.mark.parametrize("x64", [False, True], ids=["f32", "x64"])
SOLVERS = pytest.mark.parametrize("solver", ["heun", "rk4"])
SIGMA_MIN, SIGMA_MAX, N_STEPS = 0.002, 80.0, 8
F32_TOL, X64_TOL = 2e-5, 1e-10


@eqx.filter_jit
def _eqx_mixture(weights, means, stds, x, probes, solver):
    mixture = E.GaussianMixture(weights, means, stds)
    return E.ode_likelihood(
        E.denoiser_from_x(mixture.denoise),
        x,
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
        num_steps=N_STEPS,
        solver=solver,
        probes=probes,
    )


mixtures = st.tuples(
    st.floats(0.1, 0.9),
    st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4),
    st.lists(st.floats(0.2, 1.5), min_size=4, max_size=4),
    st.lists(st.floats(-3.0, 3.0), min_size=2, max_size=2),
    st.lists(st.sampled_from([-1.0, 1.0]), min_size=6, max_size=6),
)


def _compare(actual, expected, tol):
    scale = 1.0 + abs(expected.prior_log_prob) + abs(expected.delta_log_prob)
    for field in ("log_prob", "prior_log_prob", "delta_log_prob"):
        close(getattr(actual, field), getattr(expected, field), 0.0, tol * scale)
    close(actual.x_end, expected.x_end, 0.0, tol * (1.0 + np.max(np.abs(expected.x_end))))


def _check_mixture(draw, solver, hutchinson, x64):
    w0, means, stds, x, signs = draw
    with precision(x64) as (dtype, _):
        weights = rounded(np.array([w0, 1.0 - w0]), dtype)
        weights = weights / weights.sum()  # the reference checks the sum in float64
        means, stds, x = (
            rounded(np.reshape(a, shape), dtype) for a, shape in ((means, (2, 2)), (stds, (2, 2)), (x, (2,)))
        )
        probes = np.reshape(signs, (3, 2)) if hutchinson else None
        ref = R.ode_likelihood(
            R.denoiser_from_x(R.GaussianMixture(weights, means, stds).denoise),
            x,
            sigma_min=SIGMA_MIN,
            sigma_max=SIGMA_MAX,
            num_steps=N_STEPS,
            solver=solver,
            probes=probes,
        )
        out = _eqx_mixture(
            *(to_jax(a, dtype) for a in (weights, means, stds, x)),
            None if probes is None else to_jax(probes, dtype),
            solver,
        )
        _compare(out, ref, X64_TOL if x64 else F32_TOL)


@X64
@SOLVERS
@given(draw=mixtures)
def test_equivalence_ode_likelihood_exact_trace(draw, solver, x64):
    _check_mixture(draw, solver, False, x64)


@X64
@SOLVERS
@given(draw=mixtures)
def test_equivalence_ode_likelihood_hutchinson(draw, solver, x64):
    _check_mixture(draw, solver, True, x64)


PARAMS = init_params(4, seed=5)


def _batched(eps_model):
    """The reference likelihood passes a batch of points; the MLP takes one example."""
    return lambda z, logsnr: np.stack([eps_model(zi, logsnr) for zi in z])


@X64
@SOLVERS
@pytest.mark.parametrize("hutchinson", [False, True], ids=["exact", "hutchinson"])
def test_equivalence_ode_likelihood_mlp(solver, hutchinson, x64):
    """A random network (not a Bayes denoiser) in (2, 2)-shaped examples, three data points."""
    rng = np.random.default_rng(11)
    with precision(x64) as (dtype, _):
        xs = rounded(rng.uniform(-1.0, 1.0, (3, 2, 2)), dtype)
        probes = rng.standard_normal((2, 2, 2)) if hutchinson else None
        probes = None if probes is None else rounded(probes, dtype)
        ref_denoiser = R.denoiser_from_eps(_batched(numpy_mlp(PARAMS)))
        eqx_denoiser = E.denoiser_from_eps(jax_mlp(PARAMS, dtype))
        kw = dict(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, num_steps=N_STEPS, solver=solver)
        run = jax.jit(
            jax.vmap(
                lambda x: E.ode_likelihood(
                    eqx_denoiser, x, probes=None if probes is None else to_jax(probes, dtype), **kw
                )
            )
        )
        out = run(to_jax(xs, dtype))
        for i, x in enumerate(xs):
            ref = R.ode_likelihood(ref_denoiser, x, probes=probes, **kw)
            _compare(jax.tree.map(lambda a, i=i: a[i], out), ref, X64_TOL if x64 else F32_TOL)


@X64
@given(
    levels=st.lists(st.integers(0, 255), min_size=8, max_size=8),
    u=st.lists(st.floats(0.0, 0.999), min_size=8, max_size=8),
    num_levels=st.sampled_from([2, 17, 256]),
)
def test_equivalence_dequantize(levels, u, num_levels, x64):
    levels = np.minimum(np.asarray(levels), num_levels - 1)
    with precision(x64) as (dtype, rtol):
        u = rounded(u, dtype)
        out = E.dequantize(jnp.asarray(levels), to_jax(u, dtype), num_levels)
        assert out.dtype == dtype
        close(out, R.dequantize(levels, u, num_levels), 0.0, 2 * rtol)


@X64
@given(
    log_prob=st.lists(st.floats(-1e4, 1e2), min_size=8, max_size=8),
    num_dims=st.integers(1, 3072),
    num_levels=st.sampled_from([None, 2, 17, 256]),
)
def test_equivalence_ode_bits_per_dim(log_prob, num_dims, num_levels, x64):
    with precision(x64) as (dtype, rtol):
        log_prob = rounded(log_prob, dtype)
        out = E.ode_bits_per_dim(to_jax(log_prob, dtype), num_dims, num_levels)
        expected = R.ode_bits_per_dim(log_prob, num_dims, num_levels)
        # −(ln p + d ln(2/V)) cancels when ln p ≈ −d ln(2/V): absolute error of the terms' size
        scale = (np.abs(log_prob) + (0.0 if num_levels is None else num_dims * np.log(num_levels / 2.0))) / num_dims
        close(out, expected, 0.0, 4 * rtol * (1.0 + scale))
