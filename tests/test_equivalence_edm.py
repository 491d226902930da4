"""eqx EDM preconditioning, time steps and adapters equal the reference (float32 and x64).

Both packages get the same inputs: values are rounded to the eqx dtype first and the
reference receives those rounded values in float64, so only arithmetic differs.
Tolerances (`tests/equivalence.py`): relative 2e-5 in float32 (unit roundoff 6e-8, a
handful of operations), 1e-10 under x64. `c_noise = ¼ ln σ` crosses zero, so it is
compared with the same number as an absolute tolerance. Adapters run the random MLP of
`tests/nets.py` (float32 matmuls of width 32: relative error ~1e-6 on its output), and
their outputs are differences of terms of size |x_edm| and σ|model|, so the absolute
tolerance scales with those terms.
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
from tests.equivalence import close, precision, to_jax
from tests.nets import init_params, jax_mlp, numpy_mlp

X64 = pytest.mark.parametrize("x64", [False, True], ids=["f32", "x64"])

# σ from 1e-3 to 1e3 (λ = -2 ln σ in [-14, 14]). A fixed length: each new shape costs an
# XLA compile per eager op, which would dominate the run time.
sigma_values = st.lists(st.floats(-7.0, 7.0), min_size=8, max_size=8).map(
    lambda v: np.exp(np.asarray(v, dtype=np.float64))
)
sigma_datas = st.floats(0.05, 3.0)


def same(values, dtype):
    """`(jax array, float64 NumPy array)` holding the same `dtype`-rounded values."""
    j = to_jax(values, dtype)
    return j, np.asarray(j, dtype=np.float64)


def _check_coefficients(eqx_out, ref_out, rtol):
    assert len(eqx_out) == len(ref_out) == 4
    for a, b in zip(eqx_out[:3], ref_out[:3], strict=True):
        close(a, b, rtol)
    close(eqx_out[3], ref_out[3], rtol, atol=rtol)  # c_noise ~ ln σ passes through 0


@X64
@given(sigma=sigma_values, sigma_data=sigma_datas)
def test_equivalence_edm_precond(x64, sigma, sigma_data):
    with precision(x64) as (dtype, rtol):
        s_j, s_r = same(sigma, dtype)
        _check_coefficients(E.edm_precond(s_j, sigma_data), R.edm_precond(s_r, sigma_data), rtol)


@X64
@given(sigma=sigma_values, beta_d=st.floats(1.0, 40.0), beta_min=st.floats(0.01, 1.0))
def test_equivalence_vp_precond(x64, sigma, beta_d, beta_min):
    with precision(x64) as (dtype, rtol):
        s_j, s_r = same(sigma, dtype)
        out_e, out_r = E.vp_precond(s_j, beta_d, beta_min), R.vp_precond(s_r, beta_d, beta_min)
        _check_coefficients(out_e, out_r, 4 * rtol)  # log1p, sqrt and a quotient: a few more ulp


@X64
@given(sigma=sigma_values)
def test_equivalence_ve_precond(x64, sigma):
    with precision(x64) as (dtype, rtol):
        s_j, s_r = same(sigma, dtype)
        _check_coefficients(E.ve_precond(s_j), R.ve_precond(s_r), rtol)


@X64
@given(sigma=sigma_values, sigma_data=sigma_datas)
def test_equivalence_edm_loss_weight(x64, sigma, sigma_data):
    with precision(x64) as (dtype, rtol):
        s_j, s_r = same(sigma, dtype)
        close(E.edm_loss_weight(s_j, sigma_data), R.edm_loss_weight(s_r, sigma_data), rtol)


@X64
@given(
    n=st.integers(2, 80),
    log_sigma_min=st.floats(-9.0, 0.0),
    log_ratio=st.floats(0.5, 12.0),
    rho=st.floats(0.5, 12.0),
)
def test_equivalence_edm_sigmas(x64, n, log_sigma_min, log_ratio, rho):
    sigma_min, sigma_max = np.exp(log_sigma_min), np.exp(log_sigma_min + log_ratio)
    with precision(x64) as (dtype, rtol):
        out = E.edm_sigmas(n, sigma_min, sigma_max, rho)
        assert out.dtype == dtype
        close(out, R.edm_sigmas(n, sigma_min, sigma_max, rho), rtol)


# --- adapters --------------------------------------------------------------------------------

SHAPES = st.sampled_from([(6,), (2, 3)])
PARAMS = init_params(6, seed=3)


def _check_adapter(name, x64, sigma, shape, seed, **kwargs):
    with precision(x64) as (dtype, rtol):
        model_r, model_e = numpy_mlp(PARAMS), jax_mlp(PARAMS, dtype)
        x_edm = np.random.default_rng(seed).normal(size=shape) * np.sqrt(1.0 + sigma**2)
        x_j, x_r = same(x_edm, dtype)
        s_j, s_r = same(sigma, dtype)
        d_e = getattr(E, name)(model_e, **kwargs)(x_j, s_j)
        d_r = getattr(R, name)(model_r, **kwargs)(x_r, float(s_r))
        # Outputs are sums of terms of size ≤ |x_edm| + σ·|model| (|model| ≲ 3 for this MLP).
        scale = np.abs(x_r) + 3.0 * s_r + 1.0
        close(d_e, d_r, 4 * rtol, atol=4 * rtol * scale)


adapter_cases = dict(sigma=st.floats(-7.0, 5.0).map(np.exp), shape=SHAPES, seed=st.integers(0, 2**16))


@X64
@given(**adapter_cases)
def test_equivalence_denoiser_from_eps(x64, sigma, shape, seed):
    _check_adapter("denoiser_from_eps", x64, sigma, shape, seed)


@X64
@given(**adapter_cases)
def test_equivalence_denoiser_from_x(x64, sigma, shape, seed):
    _check_adapter("denoiser_from_x", x64, sigma, shape, seed)


@X64
@given(**adapter_cases)
def test_equivalence_denoiser_from_v(x64, sigma, shape, seed):
    _check_adapter("denoiser_from_v", x64, sigma, shape, seed)


@X64
@given(**adapter_cases, sigma_data=sigma_datas)
def test_equivalence_denoiser_from_F(x64, sigma, shape, seed, sigma_data):
    _check_adapter("denoiser_from_F", x64, sigma, shape, seed, sigma_data=sigma_data)


class _Scale(eqx.Module):
    """$F(u, c) = w \\odot u$: a model whose one array leaf is the weight $w$."""

    w: jax.Array

    def __call__(self, inp, c_noise):
        return self.w * inp


@X64
@given(sigma=st.floats(-5.0, 5.0).map(np.exp), sigma_data=sigma_datas, seed=st.integers(0, 2**16))
def test_equivalence_denoiser_from_F_is_a_pytree_module(x64, sigma, sigma_data, seed):
    """The eqx adapter is a Module holding the model's arrays as leaves, so `eqx.filter_grad`
    reaches them: for $F = w \\odot u$, $\\partial \\sum D/\\partial w = c_{out} c_{in} x$ with the
    reference's coefficients."""
    with precision(x64) as (dtype, rtol):
        rng = np.random.default_rng(seed)
        x_j, x_r = same(rng.normal(size=4), dtype)
        w_j, w_r = same(rng.normal(size=4), dtype)
        s_j, s_r = same(sigma, dtype)
        D = E.denoiser_from_F(_Scale(w_j), sigma_data=sigma_data)
        (leaf,) = jax.tree_util.tree_leaves(eqx.filter(D, eqx.is_array))
        assert leaf is D.F_model.w
        grad = eqx.filter_grad(lambda d: jnp.sum(d(x_j, s_j)))(D).F_model.w
        c_skip, c_out, c_in, _ = R.edm_precond(float(s_r), sigma_data)
        close(grad, c_out * c_in * x_r, 4 * rtol)
        close(D(x_j, s_j), c_skip * x_r + c_out * w_r * c_in * x_r, 4 * rtol, atol=4 * rtol * (np.abs(x_r) + 1.0))


def test_equivalence_denoiser_from_F_rejects_bad_sigma_data():
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        E.denoiser_from_F(lambda inp, c: inp, sigma_data=-1.0)
