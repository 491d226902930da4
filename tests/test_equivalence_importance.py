"""Equivalence of `eqx_impl.importance` (float32) with `reference.importance` (float64).

Tolerances:
- Integrals: the reference uses adaptive quad (rel. 1e-12), eqx a fixed 32-panel 16-point
  Gauss–Legendre rule whose truncation error is < 1e-20 for these analytic integrands, so the
  float32 difference is rounding only: each integrand value carries a few ulps (~1e-6 rel.) and
  the sum of 512 positive terms as much, so `Var = S - L²` is off by ~1e-6·(S + L²) (measured
  ≤ 1e-6 over 40 random cases). We allow 2e-5·(S + L²): the scale of the two terms before they
  cancel. Under x64 both are converged quadratures: 1e-10 relative.
- Adaptive: the same EMA arithmetic in float32; after ≤ 8 updates the relative error is a few
  ulps (allow 1e-5); bin masses are computed directly (not as CDF differences), so they keep
  that relative accuracy however small. Samples are compared in probability: the float64 CDF at the float32 λ
  must equal u to 2e-6 (float32 CDF knots carry ≤ √n_bins·6e-8 plus one ulp of u). Under x64
  the arithmetic is the same operation for operation: 1e-10.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import special

import eqx_impl as E
import reference as R

# --- drawn problems: weighting × proposal × Gaussian loss moments --------------------------------

WEIGHTINGS = {
    "Sigmoid": lambda m, p: m.Sigmoid(p),
    "EpsCosine": lambda m, p: m.EpsCosine(),
    "MinSNR": lambda m, p: m.MinSNR(math.exp(p)),  # kink at ln γ = p: a quadrature break point
    "EDM": lambda m, p: m.EDM(),
    "ELBO": lambda m, p: m.ELBO(),
    "Exponential": lambda m, p: m.Exponential(0.25 + 0.1 * abs(p)),
}
SCHEDULES = {
    "Cosine": lambda m, lo, hi: m.Cosine(lo, hi),
    "LinearLogSNR": lambda m, lo, hi: m.LinearLogSNR(lo, hi),
    "EDMLogNormal": lambda m, lo, hi: m.EDMLogNormal(-1.2, 1.2, lo, hi),
    "FlowOT": lambda m, lo, hi: m.FlowOT(lo, hi),
}


def gaussian_moments(dim: int, log_var: float):
    """m₁ = d·v, m₂ = (d² + 2d)·v², v = sigmoid(λ + ln s²): NumPy and JAX versions."""
    k2 = float(dim * dim + 2 * dim)
    ref = (
        lambda x: dim * special.expit(x + log_var),
        lambda x: k2 * special.expit(x + log_var) ** 2,
    )
    eqx_ = (
        lambda x: dim * jax.nn.sigmoid(x + log_var),
        lambda x: k2 * jax.nn.sigmoid(x + log_var) ** 2,
    )
    return ref, eqx_


problems = st.fixed_dictionaries(
    dict(
        weighting=st.sampled_from(sorted(WEIGHTINGS)),
        param=st.floats(-3.0, 3.0),
        schedule=st.sampled_from(sorted(SCHEDULES)),
        lo=st.floats(-20.0, -2.0),
        hi=st.floats(2.0, 20.0),
        dim=st.integers(1, 64),
        log_var=st.floats(-3.0, 3.0),
    )
)


def build(problem, module):
    w = WEIGHTINGS[problem["weighting"]](module, problem["param"])
    p = SCHEDULES[problem["schedule"]](module, problem["lo"], problem["hi"])
    return w, p


def _scale(problem):
    """S + L², the two terms of Var before they cancel (reference values)."""
    w, p = build(problem, R)
    (m1, m2), _ = gaussian_moments(problem["dim"], problem["log_var"])
    lo, hi = problem["lo"], problem["hi"]
    mean = R.estimator_mean(w, m1, lo, hi)
    return R.estimator_variance(w, p.density, m1, m2, lo, hi) + 2.0 * mean**2


def _both(problem, fn_ref, fn_eqx):
    (rm1, rm2), (em1, em2) = gaussian_moments(problem["dim"], problem["log_var"])
    ref = fn_ref(*build(problem, R), rm1, rm2, problem["lo"], problem["hi"])
    out = fn_eqx(*build(problem, E), em1, em2, problem["lo"], problem["hi"])
    return ref, out


def _variance(mod):
    return lambda w, p, m1, m2, lo, hi: mod.estimator_variance(w, p.density, m1, m2, lo, hi)


@given(problems)
def test_equivalence_estimator_variance(problem):
    ref, out = _both(problem, _variance(R), _variance(E))
    assert out.dtype == jnp.float32
    assert abs(float(out) - ref) <= 2e-5 * _scale(problem)


@given(problems)
def test_equivalence_estimator_variance_x64(problem):
    with jax.enable_x64(True):
        ref, out = _both(problem, _variance(R), _variance(E))
        assert out.dtype == jnp.float64
    assert float(out) == pytest.approx(ref, rel=1e-10)


def test_equivalence_estimator_variance_jit():
    """Under `eqx.filter_jit` the callables are static and the result is unchanged."""
    problem = dict(weighting="Sigmoid", param=2.0, schedule="Cosine", lo=-10.0, hi=10.0)
    problem |= dict(dim=4, log_var=math.log(0.5))
    _, (m1, m2) = gaussian_moments(4, math.log(0.5))
    w, p = build(problem, E)
    eager = E.estimator_variance(w, p.density, m1, m2, -10.0, 10.0)
    jitted = eqx.filter_jit(lambda w, p: E.estimator_variance(w, p.density, m1, m2, -10.0, 10.0))
    # XLA fuses the jitted sum differently: float32 rounding only.
    assert float(jitted(w, p)) == pytest.approx(float(eager), rel=1e-6)
    assert round(float(eager), 2) == 15.78  # SPEC §5 example


def _mean(mod):
    return lambda w, p, m1, m2, lo, hi: mod.estimator_mean(w, m1, lo, hi)


@given(problems)
def test_equivalence_estimator_mean(problem):
    ref, out = _both(problem, _mean(R), _mean(E))
    assert float(out) == pytest.approx(ref, rel=1e-5)  # positive integrand: no cancellation


@given(problems)
def test_equivalence_estimator_mean_x64(problem):
    with jax.enable_x64(True):
        ref, out = _both(problem, _mean(R), _mean(E))
    assert float(out) == pytest.approx(ref, rel=1e-10)


def _optimal_variance(mod):
    return lambda w, p, m1, m2, lo, hi: mod.optimal_variance(w, m1, m2, lo, hi)


@given(problems)
def test_equivalence_optimal_variance(problem):
    ref, out = _both(problem, _optimal_variance(R), _optimal_variance(E))
    assert abs(float(out) - ref) <= 2e-5 * _scale(problem)


@given(problems)
def test_equivalence_optimal_variance_x64(problem):
    with jax.enable_x64(True):
        ref, out = _both(problem, _optimal_variance(R), _optimal_variance(E))
    assert float(out) == pytest.approx(ref, rel=1e-10)


def _proposal_values(mod):
    def fn(w, p, m1, m2, lo, hi):
        grid = np.linspace(lo - 1.0, hi + 1.0, 203)  # includes points outside the support
        x = grid if mod is R else jnp.asarray(grid, jnp.result_type(float))
        return np.asarray(mod.optimal_proposal(w, m2, lo, hi)(x), np.float64)

    return fn


@given(problems)
def test_equivalence_optimal_proposal(problem):
    """p*(λ) on a grid: float32 normaliser and evaluation each ~1e-6 rel.; allow 1e-5 of the peak."""
    ref, out = _both(problem, _proposal_values(R), _proposal_values(E))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * ref.max())
    assert np.all(out[ref == 0.0] == 0.0)


@given(problems)
def test_equivalence_optimal_proposal_x64(problem):
    with jax.enable_x64(True):
        ref, out = _both(problem, _proposal_values(R), _proposal_values(E))
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=0)


# --- the adaptive schedule ------------------------------------------------------------------------

# Hyperparameters are static (each distinct set compiles anew), so hypothesis draws from a fixed
# list spanning the edge cases -- one bin, no memory (decay 0), decay near 1, a pure uniform
# floor, a tiny floor, both targets -- and draws the data stream freely (fixed shape).
CONFIGS = [
    dict(logsnr_min=-10.0, logsnr_max=10.0, n_bins=64, decay=0.999, target="rms", uniform_weight=0.01),
    dict(logsnr_min=-20.0, logsnr_max=3.5, n_bins=37, decay=0.9, target="mean", uniform_weight=1e-3),
    dict(logsnr_min=-4.0, logsnr_max=17.0, n_bins=8, decay=0.0, target="rms", uniform_weight=0.3),
    dict(logsnr_min=-1.0, logsnr_max=1.0, n_bins=1, decay=0.5, target="mean", uniform_weight=0.01),
    dict(logsnr_min=-7.3, logsnr_max=12.1, n_bins=20, decay=0.99, target="mean", uniform_weight=1.0),
]
STEPS, BATCH = 6, 24
adaptive_configs = st.sampled_from(CONFIGS)
streams = st.fixed_dictionaries(dict(seed=st.integers(0, 2**32 - 1)))


def make_stream(config, stream):
    """(STEPS, BATCH) log-SNRs kept 2% of a bin away from bin edges (so float32 and float64 agree
    on the bin), on a random subset of bins (some bins stay empty), and values w·ℓ ≥ 0."""
    rng = np.random.default_rng(stream["seed"])
    n = config["n_bins"]
    width = (config["logsnr_max"] - config["logsnr_min"]) / n
    used = rng.choice(n, size=max(1, (n + 1) // 2), replace=False)
    shape = (STEPS, BATCH)
    bins = rng.choice(used, size=shape)
    logsnr = config["logsnr_min"] + width * (bins + rng.uniform(0.02, 0.98, size=shape))
    values = rng.exponential(size=shape) * np.exp(-0.2 * logsnr)
    return logsnr, values


def run_reference(config, logsnr, values):
    a = R.Adaptive(**config)
    state = a.init()
    for lam, val in zip(logsnr, values, strict=True):
        state = a.update(state, lam, val)
    return a, state


# One compiled function per (config, shape, dtype), shared across hypothesis examples.
@eqx.filter_jit
def _scan_updates(a, logsnr, values):
    def step(state, batch):
        return a.update(state, *batch), None

    return jax.lax.scan(step, a.init(), (logsnr, values))[0]


_jit_update = eqx.filter_jit(lambda a, state, logsnr, values: a.update(state, logsnr, values))
_jit_sample = eqx.filter_jit(lambda a, state, u: a.sample(state, u))
_jit_masses = eqx.filter_jit(lambda a, state: a.bin_masses(state))


def run_eqx_scan(config, logsnr, values, dtype):
    a = E.Adaptive(**config)
    return a, _scan_updates(a, jnp.asarray(logsnr, dtype), jnp.asarray(values, dtype))


def run_eqx_loop(config, logsnr, values, dtype):
    a = E.Adaptive(**config)
    state = a.init()
    for lam, val in zip(logsnr, values, strict=True):
        state = _jit_update(a, state, jnp.asarray(lam, dtype), jnp.asarray(val, dtype))
    return a, state


def reference_cdf(a, state, logsnr):
    return np.interp(logsnr, a.edges, a.cdf_knots(state))


U_GRID = np.concatenate([np.linspace(0.0, 1.0, 97, endpoint=False), [0.5 / 97, 1.0 - 1e-6]])


@pytest.mark.parametrize("runner", [run_eqx_scan, run_eqx_loop], ids=["scan", "jit_loop"])
@given(config=adaptive_configs, stream=streams)
def test_equivalence_Adaptive(runner, config, stream):
    logsnr, values = make_stream(config, stream)
    ref_a, ref_state = run_reference(config, logsnr, values)
    a, state = runner(config, logsnr, values, jnp.float32)
    assert state.ema.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(state.count), ref_state.count)
    np.testing.assert_allclose(state.ema, ref_state.ema, rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(_jit_masses(a, state), ref_a.bin_masses(ref_state), rtol=1e-5)
    lam, density = _jit_sample(a, state, jnp.asarray(U_GRID, jnp.float32))
    lam = np.asarray(lam, np.float64)
    np.testing.assert_allclose(reference_cdf(ref_a, ref_state, lam), U_GRID, rtol=0, atol=2e-6)
    ref_lam, ref_density = ref_a.sample(ref_state, U_GRID)
    # The density is piecewise constant: compare where both λ fall in the same bin.
    same_bin = ref_a.bin_index(lam) == ref_a.bin_index(ref_lam)
    assert same_bin.mean() > 0.9
    np.testing.assert_allclose(np.asarray(density)[same_bin], ref_density[same_bin], rtol=1e-5)


@given(config=adaptive_configs, stream=streams)
def test_equivalence_Adaptive_x64(config, stream):
    logsnr, values = make_stream(config, stream)
    ref_a, ref_state = run_reference(config, logsnr, values)
    with jax.enable_x64(True):
        a, state = run_eqx_scan(config, logsnr, values, jnp.float64)
        lam, density = _jit_sample(a, state, jnp.asarray(U_GRID, jnp.float64))
        assert state.ema.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(state.count), ref_state.count)
    np.testing.assert_allclose(state.ema, ref_state.ema, rtol=1e-10, atol=1e-300)
    ref_lam, ref_density = ref_a.sample(ref_state, U_GRID)
    np.testing.assert_allclose(lam, ref_lam, rtol=0, atol=1e-10 * ref_a.width)
    np.testing.assert_allclose(density, ref_density, rtol=1e-10)


@eqx.filter_jit
def _closed_loop(a, u0, noise):
    strata = jnp.arange(noise.shape[1], dtype=noise.dtype) / noise.shape[1]

    def step(state, inputs):
        u_start, eps = inputs
        lam, _ = a.sample(state, (u_start + strata) % 1.0)
        return a.update(state, lam, eps * jax.nn.sigmoid(2.0 - lam)), None

    return jax.lax.scan(step, a.init(), (u0, noise))[0]


@given(config=adaptive_configs, seed=st.integers(0, 2**32 - 1))
def test_equivalence_Adaptive_closed_loop_x64(config, seed):
    """Training-style loop: stratified u → sample → values from λ → update, inside lax.scan,
    against the same loop in the reference (x64, so the sampled λ agree to rounding)."""
    rng = np.random.default_rng(seed)
    u0 = rng.uniform(size=STEPS)
    noise = rng.exponential(size=(STEPS, BATCH))
    strata = np.arange(BATCH) / BATCH

    ref_a = R.Adaptive(**config)
    ref_state = ref_a.init()
    for k in range(STEPS):
        lam, _ = ref_a.sample(ref_state, (u0[k] + strata) % 1.0)
        ref_state = ref_a.update(ref_state, lam, noise[k] * special.expit(2.0 - lam))

    with jax.enable_x64(True):
        state = _closed_loop(E.Adaptive(**config), jnp.asarray(u0), jnp.asarray(noise))
        np.testing.assert_array_equal(np.asarray(state.count), ref_state.count)
        np.testing.assert_allclose(state.ema, ref_state.ema, rtol=1e-10, atol=1e-300)


_jit_cdf = eqx.filter_jit(lambda a, state: a.cdf_knots(state))


@given(config=adaptive_configs, stream=streams)
def test_equivalence_AdaptiveState_interchangeable(config, stream):
    """A reference state cast to an eqx `AdaptiveState` (float32/int32) gives the same proposal."""
    logsnr, values = make_stream(config, stream)
    ref_a, ref_state = run_reference(config, logsnr, values)
    state = E.AdaptiveState(jnp.asarray(ref_state.ema, jnp.float32), jnp.asarray(ref_state.count, jnp.int32))
    a = E.Adaptive(**config)
    assert E.AdaptiveState._fields == R.AdaptiveState._fields
    np.testing.assert_allclose(_jit_cdf(a, state), ref_a.cdf_knots(ref_state), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(a.init().count), ref_a.init().count)
    np.testing.assert_array_equal(np.asarray(a.init().ema), ref_a.init().ema)


BAD_ADAPTIVE = [
    dict(n_bins=0),
    dict(n_bins=2.5),
    dict(decay=1.0),
    dict(decay=-0.1),
    dict(decay=float("nan")),
    dict(uniform_weight=0.0),
    dict(uniform_weight=1.5),
    dict(target="median"),
    dict(logsnr_min=5.0, logsnr_max=-5.0),
]


@pytest.mark.parametrize("kwargs", BAD_ADAPTIVE, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_equivalence_Adaptive_validation(kwargs):
    """Both packages reject the same hyperparameters with the same message. A value of the
    wrong type (`n_bins=2.5` for an `int`) meets the tests' run-time type check first
    (tests/conftest.py): then both raise its `TypeError`, naming the parameter."""
    args = dict(logsnr_min=-10.0, logsnr_max=10.0) | kwargs
    with pytest.raises((ValueError, TypeError)) as ref_error:
        R.Adaptive(**args)
    with pytest.raises((ValueError, TypeError)) as eqx_error:
        E.Adaptive(**args)
    if isinstance(ref_error.value, ValueError) or isinstance(eqx_error.value, ValueError):
        assert str(eqx_error.value) == str(ref_error.value)
    else:
        assert all(f"parameter '{name}'" in str(err.value) for err in (ref_error, eqx_error) for name in kwargs)


def test_equivalence_Adaptive_rejects_negative_mean_values():
    """target='mean' needs w·ℓ ≥ 0: ValueError in the reference, a runtime error under eqx."""
    args = dict(logsnr_min=-10.0, logsnr_max=10.0, target="mean")
    with pytest.raises(ValueError, match=">= 0"):
        R.Adaptive(**args).update(R.Adaptive(**args).init(), [0.0, 1.0], [1.0, -1.0])
    a = E.Adaptive(**args)
    with pytest.raises(RuntimeError, match=">= 0"):
        a.update(a.init(), jnp.array([0.0, 1.0]), jnp.array([1.0, -1.0]))


def test_equivalence_Adaptive_convergence_scan():
    """The eqx schedule trained inside lax.scan (Gaussian data d=4, s²=0.5, ℓ = v·χ²₄ from
    jax.random) reaches a proposal whose variance, evaluated by the reference, is within 10% of
    the reference Var_min (SPEC §5)."""
    d, log_var, lo, hi, batch = 4, math.log(0.5), -10.0, 10.0, 128
    (m1, m2), _ = gaussian_moments(d, log_var)
    w_ref, w_eqx = R.Sigmoid(2.0), E.Sigmoid(2.0)
    a = E.Adaptive(lo, hi, n_bins=100, decay=0.995, target="rms")
    strata = jnp.arange(batch, dtype=jnp.float32) / batch

    def step(state, key):
        key_u, key_loss = jax.random.split(key)
        lam, _ = a.sample(state, (jax.random.uniform(key_u) + strata) % 1.0)
        loss = jax.nn.sigmoid(lam + log_var) * jax.random.chisquare(key_loss, d, (batch,))
        return a.update(state, lam, w_eqx(lam) * loss), None

    keys = jax.random.split(jax.random.key(0), 3000)
    state, _ = jax.jit(lambda: jax.lax.scan(step, a.init(), keys))()
    ref_a = R.Adaptive(lo, hi, n_bins=100, decay=0.995, target="rms")
    ref_state = R.AdaptiveState(np.asarray(state.ema, np.float64), np.asarray(state.count))
    var = R.estimator_variance(w_ref, lambda x: ref_a.density(ref_state, x), m1, m2, lo, hi, points=ref_a.edges)
    assert var < 1.10 * R.optimal_variance(w_ref, m1, m2, lo, hi)
