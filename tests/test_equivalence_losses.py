"""eqx losses equal the reference ones: float32 eqx vs float64 reference, and x64 vs float64.

Inputs are rounded to the eqx dtype before the reference sees them (`rounded`), so the
comparison measures the arithmetic only. The eqx functions are per example; they are
vmapped over `DRAW_SIZE` log-SNRs, times or steps at once (one compile per shape).

Tolerances (float32): an ε-loss $\\ell = \\sum (\\epsilon - \\hat\\epsilon)^2$ of $D$ terms of size
O(1) carries round-off of order $u\\,(\\ell + D)$ with $u$ a few float32 ulps, so the absolute
bound is `F32_RTOL·(ℓ + D)`; weightings carry up to 10× `F32_RTOL` (EDM's log-space exponent,
see test_equivalence_weightings); a schedule's float32 λ(t) is off by up to
`3e-5·max(1, |λ|)` (test_equivalence_schedules), which moves ℓ by |∂ℓ/∂λ| times that, with
∂ℓ/∂λ from a central difference of the reference. Under x64 both packages evaluate the
same formulas in float64: `X64_RTOL` = 1e-10 relative.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eqx_impl as E
import reference as R
from tests.equivalence import DRAW_SIZE, close, logsnr_values, precision, rounded, to_jax, unit_times
from tests.nets import init_params, jax_mlp_apply, numpy_mlp

X64 = pytest.mark.parametrize("x64", [False, True], ids=["f32", "x64"])
SHAPES = [(3,), (2, 1, 2)]
shapes = st.sampled_from(SHAPES)
seeds = st.integers(0, 2**16)

WEIGHTINGS = {
    "ELBO": (R.ELBO(), E.ELBO()),
    "EpsCosine": (R.EpsCosine(), E.EpsCosine()),
    "EDM": (R.EDM(), E.EDM()),
    "Exponential": (R.Exponential(0.5), E.Exponential(0.5)),
    "InDI": (R.InDI(), E.InDI()),
    "MinSNR": (R.MinSNR(5.0), E.MinSNR(5.0)),
    "Sigmoid": (R.Sigmoid(2.0), E.Sigmoid(2.0)),
}
SCHEDULES = {
    "Cosine": (R.Cosine(-12.0, 14.0), E.Cosine(-12.0, 14.0)),
    "LinearLogSNR": (R.LinearLogSNR(-30.0, 30.0), E.LinearLogSNR(-30.0, 30.0)),
    "DDPMLinear": (R.DDPMLinear(), E.DDPMLinear()),
    "EDMLogNormal": (
        R.EDMLogNormal(logsnr_min=-10.0, logsnr_max=12.0),
        E.EDMLogNormal(logsnr_min=-10.0, logsnr_max=12.0),
    ),
}


def _models(shape, seed, dtype):
    """The same random MLP for both packages: reference model, eqx parameters (a pytree)."""
    params = init_params(math.prod(shape), hidden=16, seed=seed)
    seen = [(rounded(w, dtype), rounded(b, dtype)) for w, b in params]
    return numpy_mlp(seen), [(to_jax(w, dtype), to_jax(b, dtype)) for w, b in params]


# The eqx side runs eagerly, vmapped over the draws: eager JAX compiles each primitive once
# per shape and dtype, whatever the static configuration (a jit would recompile for each).
def _eqx_eps_loss(params, x, lam, eps):
    return jax.vmap(lambda l, e: E.eps_loss(jax_mlp_apply(params), x, l, e))(lam, eps)


def _eqx_weighted_loss(params, x, lam, eps, weighting, density):
    return jax.vmap(lambda l, e, p: E.weighted_loss(jax_mlp_apply(params), x, l, e, weighting, p))(lam, eps, density)


def _eqx_vdm_continuous_loss(params, x, t, eps, schedule):
    return jax.vmap(lambda ti, e: E.vdm_continuous_loss(jax_mlp_apply(params), x, ti, e, schedule))(t, eps)


def _eqx_vdm_discrete_loss(params, x, steps, eps, schedule, num_steps):
    model = jax_mlp_apply(params)
    return jax.vmap(lambda i, e: E.vdm_discrete_loss(model, x, i, e, schedule, num_steps))(steps, eps)


def _eqx_prior_kl(x, lam):
    return jax.vmap(lambda l: E.prior_kl(x, l))(lam)


def _eqx_reconstruction_nll(levels, lam, eps, vocab_size):
    return jax.vmap(lambda l, e: E.reconstruction_nll(levels, l, e, vocab_size))(lam, eps)


def _draws(shape, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rounded(rng.normal(size=shape), dtype)
    eps = rounded(rng.standard_normal((DRAW_SIZE, *shape)), dtype)
    return x, eps


def _dloss_dlogsnr(model, x, lam, eps, h=1e-4):
    """Central difference of ℓ in λ (reference), for the λ-error part of float32 tolerances."""
    return (R.eps_loss(model, x, lam + h, eps) - R.eps_loss(model, x, lam - h, eps)) / (2 * h)


@X64
@given(lam=logsnr_values, shape=shapes, seed=seeds)
def test_equivalence_eps_loss(x64, lam, shape, seed):
    with precision(x64) as (dtype, rtol):
        ref_model, eqx_model = _models(shape, seed, dtype)
        x, eps = _draws(shape, seed, dtype)
        lam = rounded(lam, dtype)
        expected = np.array([R.eps_loss(ref_model, x, l, e) for l, e in zip(lam, eps, strict=True)])
        actual = _eqx_eps_loss(eqx_model, to_jax(x, dtype), to_jax(lam, dtype), to_jax(eps, dtype))
        assert actual.dtype == dtype
        close(actual, expected, rtol, atol=rtol * (expected + x.size))


@X64
@given(
    lam=logsnr_values,
    shape=shapes,
    seed=seeds,
    weighting=st.sampled_from(sorted(WEIGHTINGS)),
    proposal=st.sampled_from(["Cosine", "LinearLogSNR"]),
)
def test_equivalence_weighted_loss(x64, lam, shape, seed, weighting, proposal):
    ref_w, eqx_w = WEIGHTINGS[weighting]
    ref_s, eqx_s = SCHEDULES[proposal]
    with precision(x64) as (dtype, rtol):
        ref_model, eqx_model = _models(shape, seed, dtype)
        x, eps = _draws(shape, seed, dtype)
        lam = rounded(lam, dtype)
        density = rounded(ref_s.density(lam), dtype)
        expected = np.array(
            [R.weighted_loss(ref_model, x, l, e, ref_w, p) for l, e, p in zip(lam, eps, density, strict=True)]
        )
        loss = np.array([R.eps_loss(ref_model, x, l, e) for l, e in zip(lam, eps, strict=True)])
        factor = 0.5 * ref_w(lam) / density
        actual = _eqx_weighted_loss(
            eqx_model, to_jax(x, dtype), to_jax(lam, dtype), to_jax(eps, dtype), eqx_w, to_jax(density, dtype)
        )
        scale = 1 if x64 else 10  # float32 weightings: up to 10× F32_RTOL
        close(actual, expected, scale * rtol, atol=rtol * factor * (loss + x.size))


@X64
@given(t=unit_times, shape=shapes, seed=seeds, schedule=st.sampled_from(sorted(SCHEDULES)))
def test_equivalence_vdm_continuous_loss(x64, t, shape, seed, schedule):
    ref_s, eqx_s = SCHEDULES[schedule]
    with precision(x64) as (dtype, rtol):
        ref_model, eqx_model = _models(shape, seed, dtype)
        x, eps = _draws(shape, seed, dtype)
        t = rounded(t, dtype)
        expected = np.array([R.vdm_continuous_loss(ref_model, x, ti, e, ref_s) for ti, e in zip(t, eps, strict=True)])
        actual = _eqx_vdm_continuous_loss(eqx_model, to_jax(x, dtype), to_jax(t, dtype), to_jax(eps, dtype), eqx_s)
        lam = ref_s.logsnr(t)
        slope = np.abs(ref_s.dlogsnr_dt(t))
        loss = np.array([R.eps_loss(ref_model, x, l, e) for l, e in zip(lam, eps, strict=True)])
        atol = rtol * slope * (loss + x.size)
        if not x64:  # λ(t) off by 3e-5·max(1,|λ|); dλ/dt good to 20·F32_RTOL (schedules suite)
            dloss = np.array([_dloss_dlogsnr(ref_model, x, l, e) for l, e in zip(lam, eps, strict=True)])
            atol = atol + 0.5 * slope * np.abs(dloss) * 30 * rtol * np.maximum(1, np.abs(lam))
        close(actual, expected, rtol if x64 else 20 * rtol, atol=atol)


@X64
@given(
    data=st.data(),
    shape=shapes,
    seed=seeds,
    schedule=st.sampled_from(sorted(SCHEDULES)),
    num_steps=st.integers(1, 1000),
)
def test_equivalence_vdm_discrete_loss(x64, data, shape, seed, schedule, num_steps):
    ref_s, eqx_s = SCHEDULES[schedule]
    steps = np.array(data.draw(st.lists(st.integers(1, num_steps), min_size=DRAW_SIZE, max_size=DRAW_SIZE)))
    with precision(x64) as (dtype, rtol):
        ref_model, eqx_model = _models(shape, seed, dtype)
        x, eps = _draws(shape, seed, dtype)
        expected = np.array(
            [R.vdm_discrete_loss(ref_model, x, i, e, ref_s, num_steps) for i, e in zip(steps, eps, strict=True)]
        )
        actual = _eqx_vdm_discrete_loss(
            eqx_model, to_jax(x, dtype), jnp.asarray(steps, jnp.int32), to_jax(eps, dtype), eqx_s, num_steps
        )
        lam_t, lam_s = ref_s.logsnr(steps / num_steps), ref_s.logsnr((steps - 1) / num_steps)
        loss = np.array([R.eps_loss(ref_model, x, l, e) for l, e in zip(lam_t, eps, strict=True)])
        factor = 0.5 * num_steps * np.expm1(lam_s - lam_t)
        atol = rtol * factor * (loss + x.size)
        if not x64:
            # expm1(Δ) with Δ = λ_s − λ_t: each λ is off by 3e-5·max(1,|λ|), so expm1 moves by
            # e^Δ times the sum; ℓ(λ_t) moves by |∂ℓ/∂λ| times λ_t's error.
            err_t = 30 * rtol * np.maximum(1, np.abs(lam_t))
            err_s = 30 * rtol * np.maximum(1, np.abs(lam_s))
            dloss = np.array([_dloss_dlogsnr(ref_model, x, l, e) for l, e in zip(lam_t, eps, strict=True)])
            atol = atol + 0.5 * num_steps * (
                np.exp(lam_s - lam_t) * (err_t + err_s) * loss + factor * np.abs(dloss) * err_t
            )
        close(actual, expected, rtol, atol=atol)


@X64
@given(levels=st.lists(st.integers(0, 4095), min_size=DRAW_SIZE, max_size=DRAW_SIZE), vocab_bits=st.integers(1, 12))
def test_equivalence_levels_to_unit(x64, levels, vocab_bits):
    vocab_size = 2**vocab_bits
    levels = np.asarray(levels) % vocab_size
    with precision(x64) as (dtype, rtol):
        actual = E.levels_to_unit(jnp.asarray(levels), vocab_size)
        close(actual, R.levels_to_unit(levels, vocab_size), 0.0, atol=rtol)  # values in [-1, 1]


@X64
@given(lam=logsnr_values, shape=shapes, seed=seeds)
def test_equivalence_prior_kl(x64, lam, shape, seed):
    with precision(x64) as (dtype, rtol):
        x, _ = _draws(shape, seed, dtype)
        lam = rounded(lam, dtype)
        expected = np.array([R.prior_kl(x, l) for l in lam])
        actual = _eqx_prior_kl(to_jax(x, dtype), to_jax(lam, dtype))
        close(actual, expected, rtol, atol=1e-37)  # series keeps relative precision at λ ≪ 0


@X64
@given(lam=logsnr_values, shape=shapes, seed=seeds, vocab_size=st.sampled_from([2, 256]))
def test_equivalence_reconstruction_nll(x64, lam, shape, seed, vocab_size):
    with precision(x64) as (dtype, rtol):
        rng = np.random.default_rng(seed)
        levels = rng.integers(0, vocab_size, size=shape)
        _, eps = _draws(shape, seed, dtype)
        lam = rounded(lam, dtype)
        expected = np.array([R.reconstruction_nll(levels, l, e, vocab_size) for l, e in zip(lam, eps, strict=True)])
        actual = _eqx_reconstruction_nll(jnp.asarray(levels), to_jax(lam, dtype), to_jax(eps, dtype), vocab_size)
        # Per dimension the NLL is a log-softmax of logits up to ½(e^{λ/2}·2 + |ε|)²; float32
        # round-off of the largest contributing logit (≈ ½ε², the true bin) is ~1e-7·(1 + ε²).
        atol = rtol * np.sum(1 + eps**2, axis=tuple(range(1, eps.ndim)))
        close(actual, expected, rtol, atol=atol)


@X64
@given(terms=st.tuples(*[st.floats(0, 1e4)] * 3), num_dims=st.integers(1, 3 * 64 * 64))
def test_equivalence_bits_per_dim(x64, terms, num_dims):
    with precision(x64) as (dtype, rtol):
        terms = [rounded(v, dtype) for v in terms]
        actual = E.bits_per_dim(*[to_jax(v, dtype) for v in terms], num_dims)
        close(actual, R.bits_per_dim(*terms, num_dims), rtol, atol=1e-30)


@settings(max_examples=10)
@given(lam=st.floats(-30.0, 30.0), seed=seeds, weighting=st.sampled_from(sorted(WEIGHTINGS)))
def test_equivalence_weighted_loss_grad(lam, seed, weighting):
    """∂/∂θ of the weighted loss: jax.grad (x64) vs central differences of the reference.

    h = 1e-6 on parameters of size O(1): truncation h²·|f'''|/6 ~ 1e-12·f and round-off
    1e-16·f/h ~ 1e-10·f, so 1e-6 relative to the largest gradient entry is a safe bound.
    """
    ref_w, eqx_w = WEIGHTINGS[weighting]
    shape = (3,)
    params = init_params(3, hidden=8, seed=seed)
    x, eps = _draws(shape, seed, np.float64)
    eps = eps[0]
    density = 1.0 / 60.0

    def ref_loss(p):
        return R.weighted_loss(numpy_mlp(p), x, lam, eps, ref_w, density)

    with jax.enable_x64(True):
        jparams = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        grads = jax.grad(
            lambda p: E.weighted_loss(jax_mlp_apply(p), jnp.asarray(x), lam, jnp.asarray(eps), eqx_w, density)
        )(jparams)
    h = 1e-6
    rng = np.random.default_rng(seed)
    scale = max(float(np.max(np.abs(g))) for layer in grads for g in layer) + 1e-300
    for k, (w, b) in enumerate(params):
        for a, name in ((w, 0), (b, 1)):
            for index in [tuple(rng.integers(0, n) for n in a.shape) for _ in range(3)]:
                plus = [(w_.copy(), b_.copy()) for w_, b_ in params]
                minus = [(w_.copy(), b_.copy()) for w_, b_ in params]
                plus[k][name][index] += h
                minus[k][name][index] -= h
                fd = (ref_loss(plus) - ref_loss(minus)) / (2 * h)
                assert abs(float(grads[k][name][index]) - fd) <= 1e-6 * scale, (k, name, index)
