"""eqx samplers equal the reference ones with the same inputs and noise (float32 and x64).

EDM samplers run a two-component Gaussian-mixture Bayes denoiser written here in NumPy and
in jnp (elementwise, so any shape works); VP samplers run the random MLP ε-model of
`tests/nets.py`. Inputs are rounded to the eqx dtype and the reference gets the same
rounded values in float64, so only arithmetic differs.

Tolerances. Heun/Euler work on values up to max|x₀| ≈ 3σ_max and make 2N−1 = 17 denoiser
steps, each adding a few float32 ulp of that magnitude: 17·4·6e-8 ≈ 4e-6·max|x₀|, bounded
by 1e-5·max|x₀| absolute plus 1e-4 relative (measured worst: 2e-7·max|x₀|). The VP
samplers over λ ∈ [−30, 30] multiply by α_s/α_t up to e^{15}, so errors are relative to
the output's own size: 2e-4 of (1 + |z|) (measured worst over λ ∈ [−30, 30]: 4e-5).
Under x64 both evaluate the same formulas in float64: 1e-10 for everything.

The eqx samplers are called through `eqx.filter_jit` with fixed shapes and the
hyperparameters as arrays, so the whole suite compiles a handful of times.
"""

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
from tests.equivalence import close, precision, to_jax
from tests.nets import init_params, jax_mlp, numpy_mlp

X64 = pytest.mark.parametrize("x64", [False, True], ids=["f32", "x64"])
N_STEPS = 9
SHAPE = (2, 3)
W, M, S = np.array([0.3, 0.7]), np.array([-1.0, 0.8]), np.array([0.4, 0.5])


def gmm_np(x, sigma):
    x = np.asarray(x)[..., None]
    v = S**2 + sigma**2
    r = special.softmax(np.log(W) - 0.5 * np.log(v) - 0.5 * (x - M) ** 2 / v, axis=-1)
    return np.sum(r * (M + S**2 / v * (x - M)), axis=-1)


def gmm_jnp(x, sigma):
    w, m, s = (jnp.asarray(a, x.dtype) for a in (W, M, S))
    x = x[..., None]
    v = s**2 + sigma**2
    r = jax.nn.softmax(jnp.log(w) - 0.5 * jnp.log(v) - 0.5 * (x - m) ** 2 / v, axis=-1)
    return jnp.sum(r * (m + s**2 / v * (x - m)), axis=-1)


heun_jit = eqx.filter_jit(E.heun_sampler)
euler_jit = eqx.filter_jit(E.euler_sampler)
ancestral_jit = eqx.filter_jit(E.ancestral_sampler)
ddim_jit = eqx.filter_jit(E.ddim_sampler)
dpm_2_jit = eqx.filter_jit(E.dpm_2_sampler)
dpmpp_2m_jit = eqx.filter_jit(E.dpmpp_2m_sampler)
dpmpp_2m_sde_jit = eqx.filter_jit(E.dpmpp_2m_sde_sampler)

PARAMS = init_params(math.prod(SHAPE), seed=4)
_EPS_MODELS = {}


def eps_models(dtype):
    """(NumPy, jnp) MLP ε-models; the jnp one cached per dtype so jit reuses its compile."""
    if dtype not in _EPS_MODELS:
        _EPS_MODELS[dtype] = jax_mlp(PARAMS, dtype)
    return numpy_mlp(PARAMS), _EPS_MODELS[dtype]


def same(values, dtype):
    """`(jax array, float64 NumPy array)` holding the same `dtype`-rounded values."""
    j = to_jax(values, dtype)
    return j, np.asarray(j, dtype=np.float64)


@st.composite
def edm_problems(draw):
    """Sigmas (N_STEPS + 1 values, ending at 0 or at σ_min), x ~ σ_max·N(0, I), noise."""
    sigma_max = math.exp(draw(st.floats(math.log(0.5), math.log(100.0))))
    sigma_min = sigma_max * math.exp(-draw(st.floats(1.0, 12.0)))
    rho = draw(st.floats(1.0, 10.0))
    if draw(st.booleans()):
        sigmas = R.edm_sigmas(N_STEPS, sigma_min, sigma_max, rho)
    else:
        sigmas = R.edm_sigmas(N_STEPS + 1, sigma_min, sigma_max, rho)[:-1]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = sigma_max * rng.standard_normal(SHAPE)
    return sigmas, x, rng.standard_normal((N_STEPS, *SHAPE))


churn_settings = st.fixed_dictionaries(
    {
        "S_churn": st.one_of(st.just(0.0), st.floats(0.0, 100.0)),
        "S_min": st.floats(0.0, 1.0),
        "S_max": st.one_of(st.just(math.inf), st.floats(1.0, 100.0)),
        "S_noise": st.floats(1.0, 1.01),
    }
)


def _edm_tolerance(x, sigmas, rtol):
    """`(rtol, atol)` for EDM samplers. A Heun correction divides x − D(x, σ_{i+1}), a difference
    of nearly equal numbers when σ_{i+1} is small, by σ_{i+1} and multiplies by the step, so
    a step amplifies rounding of |x| by a_i = (σ̂_i − σ_{i+1})/σ_{i+1} (σ̂_i ≤ √2 σ_i); the
    error is about u·max|x|·Σ a_i (measured coefficient ≈ 1; rtol is ~300 u)."""
    s, s_next = sigmas[:-1], sigmas[1:]
    amp = np.sum(np.where(s_next > 0, (math.sqrt(2) * s - s_next) / np.where(s_next > 0, s_next, 1), 0))
    return 5 * rtol, rtol * max(1.0, float(np.max(np.abs(x)))) * (1.0 + amp / 100)


@X64
@given(problem=edm_problems())
def test_equivalence_heun_sampler(x64, problem):
    sigmas, x, _ = problem
    with precision(x64) as (dtype, rtol):
        (s_j, s_r), (x_j, x_r) = same(sigmas, dtype), same(x, dtype)
        tol, atol = _edm_tolerance(x_r, s_r, rtol)
        close(heun_jit(gmm_jnp, x_j, s_j), R.heun_sampler(gmm_np, x_r, s_r), tol, atol=atol)


@X64
@given(problem=edm_problems(), settings=churn_settings)
def test_equivalence_heun_sampler_churn(x64, problem, settings):
    """Explicit noise and churn; the S_* go in as (traced) arrays on the eqx side."""
    sigmas, x, noise = problem
    with precision(x64) as (dtype, rtol):
        (s_j, s_r), (x_j, x_r), (n_j, n_r) = (same(v, dtype) for v in (sigmas, x, noise))
        rounded = {k: float(same(v, dtype)[1]) for k, v in settings.items()}
        traced = {k: jnp.asarray(v, dtype) for k, v in rounded.items()}
        out_e = heun_jit(gmm_jnp, x_j, s_j, noise=n_j, **traced)
        out_r = R.heun_sampler(gmm_np, x_r, s_r, noise=n_r, **rounded)
        tol, atol = _edm_tolerance(x_r, s_r, rtol)
        close(out_e, out_r, tol, atol=atol)


@given(problem=edm_problems(), seed=st.integers(0, 2**31 - 1))
def test_equivalence_heun_sampler_key(problem, seed):
    """`key=k` draws exactly `jax.random.normal(k, (N, *x.shape))` (float32 only: the key
    path does not depend on the precision, and each precision costs a compile)."""
    sigmas, x, _ = problem
    with precision(False) as (dtype, rtol):
        (s_j, s_r), (x_j, x_r) = same(sigmas, dtype), same(x, dtype)
        key = jax.random.key(seed)
        noise = np.asarray(jax.random.normal(key, (N_STEPS, *SHAPE), dtype), dtype=np.float64)
        churn = jnp.asarray(30.0, dtype)
        out_e = heun_jit(gmm_jnp, x_j, s_j, S_churn=churn, key=key)
        out_r = R.heun_sampler(gmm_np, x_r, s_r, S_churn=30.0, noise=noise)
        tol, atol = _edm_tolerance(x_r, s_r, rtol)
        close(out_e, out_r, tol, atol=atol)


@X64
def test_equivalence_heun_sampler_vmap_jit(x64):
    """jit(vmap(per-example sampler)) on a batch equals the shape-agnostic reference."""
    rng = np.random.default_rng(7)
    batch = 5
    sigmas = R.edm_sigmas(N_STEPS)
    x = 80.0 * rng.standard_normal((batch, *SHAPE))
    noise = rng.standard_normal((batch, N_STEPS, *SHAPE))
    with precision(x64) as (dtype, rtol):
        (s_j, s_r), (x_j, x_r), (n_j, n_r) = (same(v, dtype) for v in (sigmas, x, noise))

        @jax.jit
        def sample(xs, noises):
            return jax.vmap(lambda x, xi: E.heun_sampler(gmm_jnp, x, s_j, S_churn=40.0, noise=xi))(xs, noises)

        out_r = R.heun_sampler(gmm_np, x_r, s_r, S_churn=40.0, noise=np.moveaxis(n_r, 0, 1))
        tol, atol = _edm_tolerance(x_r, s_r, rtol)
        close(sample(x_j, n_j), out_r, tol, atol=atol)


@X64
@given(problem=edm_problems())
def test_equivalence_euler_sampler(x64, problem):
    sigmas, x, _ = problem
    with precision(x64) as (dtype, rtol):
        (s_j, s_r), (x_j, x_r) = same(sigmas, dtype), same(x, dtype)
        tol, atol = _edm_tolerance(x_r, s_r, rtol)
        close(euler_jit(gmm_jnp, x_j, s_j), R.euler_sampler(gmm_np, x_r, s_r), tol, atol=atol)


# --- DPM-Solver family: the same problems and tolerances as Heun ---------------------------------
#
# DPM-Solver-2 makes the same 2N − 1 calls as Heun, with the midpoint σ_mid = √(σ_i σ_{i+1})
# between σ_i and σ_{i+1}: the amplification bound of `_edm_tolerance` covers it. The 2M
# samplers make N calls; their x-coefficient σ_{i+1}/σ_i (times e^{−ηh} ≤ 1) never amplifies.


@X64
@given(problem=edm_problems())
def test_equivalence_dpm_2_sampler(x64, problem):
    sigmas, x, _ = problem
    with precision(x64) as (dtype, rtol):
        (s_j, s_r), (x_j, x_r) = same(sigmas, dtype), same(x, dtype)
        tol, atol = _edm_tolerance(x_r, s_r, rtol)
        close(dpm_2_jit(gmm_jnp, x_j, s_j), R.dpm_2_sampler(gmm_np, x_r, s_r), tol, atol=atol)


@X64
@given(problem=edm_problems())
def test_equivalence_dpmpp_2m_sampler(x64, problem):
    sigmas, x, _ = problem
    with precision(x64) as (dtype, rtol):
        (s_j, s_r), (x_j, x_r) = same(sigmas, dtype), same(x, dtype)
        tol, atol = _edm_tolerance(x_r, s_r, rtol)
        close(dpmpp_2m_jit(gmm_jnp, x_j, s_j), R.dpmpp_2m_sampler(gmm_np, x_r, s_r), tol, atol=atol)


@X64
@given(problem=edm_problems(), eta=st.floats(0.1, 2.0), s_noise=st.floats(0.0, 1.1))
def test_equivalence_dpmpp_2m_sde_sampler(x64, problem, eta, s_noise):
    """Explicit noise; η and S_noise go in as (traced) arrays on the eqx side."""
    sigmas, x, noise = problem
    with precision(x64) as (dtype, rtol):
        (s_j, s_r), (x_j, x_r), (n_j, n_r) = (same(v, dtype) for v in (sigmas, x, noise))
        (e_j, e_r), (sn_j, sn_r) = same(eta, dtype), same(s_noise, dtype)
        out_e = dpmpp_2m_sde_jit(gmm_jnp, x_j, s_j, eta=e_j, S_noise=sn_j, noise=n_j)
        out_r = R.dpmpp_2m_sde_sampler(gmm_np, x_r, s_r, eta=float(e_r), S_noise=float(sn_r), noise=n_r)
        tol, atol = _edm_tolerance(x_r, s_r, rtol)
        close(out_e, out_r, tol, atol=atol)


@given(problem=edm_problems(), seed=st.integers(0, 2**31 - 1))
def test_equivalence_dpmpp_2m_sde_sampler_key(problem, seed):
    """`key=k` draws exactly `jax.random.normal(k, (N, *x.shape))` (float32 only, as for Heun)."""
    sigmas, x, _ = problem
    with precision(False) as (dtype, rtol):
        (s_j, s_r), (x_j, x_r) = same(sigmas, dtype), same(x, dtype)
        key = jax.random.key(seed)
        noise = np.asarray(jax.random.normal(key, (N_STEPS, *SHAPE), dtype), dtype=np.float64)
        out_e = dpmpp_2m_sde_jit(gmm_jnp, x_j, s_j, eta=jnp.asarray(1.0, dtype), key=key)
        tol, atol = _edm_tolerance(x_r, s_r, rtol)
        close(out_e, R.dpmpp_2m_sde_sampler(gmm_np, x_r, s_r, noise=noise), tol, atol=atol)


@X64
def test_equivalence_dpm_samplers_traced_sigmas(x64):
    """With traced σ (one jit for any levels) the last step is chosen by `lax.cond`: same values."""
    rng = np.random.default_rng(3)
    x = 80.0 * rng.standard_normal(SHAPE)
    with precision(x64) as (dtype, rtol):
        for sigmas in (R.edm_sigmas(N_STEPS), R.edm_sigmas(N_STEPS + 1)[:-1]):
            (s_j, s_r), (x_j, x_r) = same(sigmas, dtype), same(x, dtype)
            tol, atol = _edm_tolerance(x_r, s_r, rtol)
            for eqx_fn, ref_fn in ((E.dpm_2_sampler, R.dpm_2_sampler), (E.dpmpp_2m_sampler, R.dpmpp_2m_sampler)):
                out_e = jax.jit(lambda x, s, f=eqx_fn: f(gmm_jnp, x, s))(x_j, s_j)
                close(out_e, ref_fn(gmm_np, x_r, s_r), tol, atol=atol)


# --- VP samplers -----------------------------------------------------------------------------


@st.composite
def vp_problems(draw):
    """Increasing log-SNRs (N_STEPS + 1, anywhere in [−30, 30]), z ~ N(0, I), noise."""
    lo = draw(st.floats(-30.0, 29.0))
    hi = draw(st.floats(lo + 1.0, 30.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = rng.uniform(0.1, 1.0, N_STEPS)
    logsnrs = lo + (hi - lo) * np.concatenate([[0.0], np.cumsum(steps) / np.sum(steps)])
    return logsnrs, rng.standard_normal(SHAPE), rng.standard_normal((N_STEPS, *SHAPE))


def _vp_close(out_e, out_r, rtol):
    tol = 10 * rtol  # 2e-4 in float32, 1e-9 → use the x64 bound below
    tol = min(tol, 1e-10) if rtol < 1e-8 else tol
    close(out_e, out_r, tol, atol=tol)


@X64
@given(problem=vp_problems())
def test_equivalence_ancestral_sampler(x64, problem):
    logsnrs, z, noise = problem
    with precision(x64) as (dtype, rtol):
        (l_j, l_r), (z_j, z_r), (n_j, n_r) = (same(v, dtype) for v in (logsnrs, z, noise))
        model_r, model_e = eps_models(dtype)
        out_e = ancestral_jit(model_e, z_j, l_j, noise=n_j)
        _vp_close(out_e, R.ancestral_sampler(model_r, z_r, l_r, noise=n_r), rtol)


@X64
@given(problem=vp_problems())
def test_equivalence_ddim_sampler(x64, problem):
    logsnrs, z, _ = problem
    with precision(x64) as (dtype, rtol):
        (l_j, l_r), (z_j, z_r) = same(logsnrs, dtype), same(z, dtype)
        model_r, model_e = eps_models(dtype)
        _vp_close(ddim_jit(model_e, z_j, l_j), R.ddim_sampler(model_r, z_r, l_r), rtol)
