"""Robust numerics in float32 over the whole λ ∈ [−30, 30] (the ends always included), where
the equivalence suite leaves gaps: gradients of every schedule function, derivatives of the
composite weightings (`Implied`, `Shifted`, `Monotonic`), the float32 gradient of the weighted
loss with respect to the network's parameters, one step of each sampler and its gradient,
and the training step on degenerate but legal inputs (zero data, one example, batches of 1
and 2). Everything must be finite, and accurate against the float64 reference (or, for
gradients the reference does not have, against the same eqx function in float64, which the
equivalence suite ties to the reference).

Draws are fixed-size arrays (`DRAW` values plus the ends), so each jitted function compiles
once per dtype and hypothesis varies only the values.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eqx_impl as E
import reference as R
from eqx_impl.train import build, run_steps
from tests.equivalence import close, representable
from tests.nets import init_params, jax_mlp_apply, numpy_mlp
from tests.train_helpers import tiny_config

DRAW = 8
ENDS = np.array([-30.0, 30.0, 0.0])
logsnrs = st.lists(st.floats(-30.0, 30.0), min_size=DRAW, max_size=DRAW).map(
    lambda v: np.concatenate([ENDS, np.asarray(v, np.float64)])
)


def _finite(*trees):
    for tree in trees:
        for leaf in jax.tree.leaves(tree):
            assert np.all(np.isfinite(np.asarray(leaf))), leaf


# --- schedules: gradients of logsnr, inverse and density ------------------------------------

SCHEDULES = {
    "linear": (E.LinearLogSNR(-30.0, 30.0), R.LinearLogSNR(-30.0, 30.0)),
    "cosine": (E.Cosine(-30.0, 30.0), R.Cosine(-30.0, 30.0)),
    "cosine-shifted": (E.Cosine(-30.0, 30.0, shift=2.0), R.Cosine(-30.0, 30.0, shift=2.0)),
    "cosine-interpolated": (E.CosineInterpolated(-30.0, 30.0, -1.0, 1.0), R.CosineInterpolated(-30.0, 30.0, -1.0, 1.0)),
    "ddpm-linear": (E.DDPMLinear(), R.DDPMLinear()),
    "edm-lognormal": (E.EDMLogNormal(logsnr_min=-30.0, logsnr_max=30.0), R.EDMLogNormal(logsnr_min=-30.0, logsnr_max=30.0)),
    "flow-ot": (E.FlowOT(-30.0, 30.0), R.FlowOT(-30.0, 30.0)),
}


@eqx.filter_jit
def _schedule_grads(schedule, t, lam):
    """Values and autodiff derivatives of the three schedule functions, float32."""
    return (
        jax.vmap(schedule.logsnr)(t),
        jax.vmap(jax.grad(schedule.logsnr))(t),
        jax.vmap(schedule.inverse)(lam),
        jax.vmap(jax.grad(schedule.inverse))(lam),
        jax.vmap(schedule.density)(lam),
        jax.vmap(jax.grad(schedule.density))(lam),
    )


@settings(max_examples=10)
@pytest.mark.parametrize("name", sorted(SCHEDULES))
@given(lam=logsnrs)
def test_schedule_gradients_finite_and_accurate(name, lam):
    r"""`grad(logsnr)` against the reference $d\lambda/dt$, `grad(inverse)` against
    $-p(\lambda)$ and `grad(density)` against a central difference of the reference density
    (float64, h = 1e-4: error ~h²·p''' ≲ 1e-8·max|p'|).

    Tolerances: the derivatives are a few float32 operations on λ up to 30, so 4e-4 relative
    (20 ulp of a value computed from inputs of size 30, as in the equivalence suite), and
    1e-5·max|p'| absolute for the density's derivative, which crosses zero at the mode."""
    eqx_s, ref_s = SCHEDULES[name]
    lo, hi = float(ref_s.logsnr_min), float(ref_s.logsnr_max)
    lam = np.clip(lam, lo, hi)
    lam32 = np.asarray(lam.astype(np.float32), np.float64)
    t = np.asarray(ref_s.inverse(lam32).astype(np.float32), np.float64)
    out = _schedule_grads(eqx_s, jnp.asarray(t, jnp.float32), jnp.asarray(lam32, jnp.float32))
    values, slope, inverse, dinverse, density, ddensity = (np.asarray(o, np.float64) for o in out)
    ref_slope = ref_s.dlogsnr_dt(t)
    # Far in EDMLogNormal's tails |dλ/dt| = 1/p(λ) exceeds float32's range (inf is then right).
    ok = representable(ref_slope, np.float32)
    _finite(values, inverse, dinverse, density, ddensity, slope[ok])
    close(slope[ok], ref_slope[ok], 4e-4)
    # The interpolated cosine's inverse goes through t, which float32 holds only to
    # δt = 2^-24 near 1 (and relative 2^-24 near 0); its derivative 1/|dλ/dt| ∝ min(t, 1−t)
    # in the tails then has relative error ~δt/min(t, 1−t) (4.5% measured at λ = −26).
    rtol = 4e-4
    if name == "cosine-interpolated":
        rtol = rtol + 4 * 2**-24 / np.maximum(np.minimum(t, 1.0 - t), 2**-24)
    close(dinverse, -ref_s.density(lam32), rtol, atol=1e-30)
    h = 1e-4
    inner = (lam32 - h > lo) & (lam32 + h < hi)
    fd = (ref_s.density(lam32[inner] + h) - ref_s.density(lam32[inner] - h)) / (2 * h)
    scale = np.max(np.abs(ref_s.density(np.linspace(lo, hi, 2001))))  # ≥ max|p'|·(bandwidth)
    close(ddensity[inner], fd, 4e-4, atol=1e-5 * scale)


# --- composite weightings: values and derivatives --------------------------------------------

WEIGHTINGS = {
    "implied-cosine-eps": (E.Implied(E.Cosine(-30.0, 30.0), "eps"), R.Implied(R.Cosine(-30.0, 30.0), "eps")),
    "implied-flow-v": (E.Implied(E.FlowOT(-30.0, 30.0), "v"), R.Implied(R.FlowOT(-30.0, 30.0), "v")),
    "shifted-sigmoid": (E.Shifted(E.Sigmoid(2.0), 3.0), R.Shifted(R.Sigmoid(2.0), 3.0)),
    "monotonic-edm": (E.Monotonic(E.EDM(), -30.0, 30.0), R.Monotonic(R.EDM(), -30.0, 30.0)),
    "min-snr": (E.MinSNR(5.0), R.MinSNR(5.0)),
}


@eqx.filter_jit
def _weighting_and_grad(w, lam):
    return jax.vmap(w)(lam), jax.vmap(jax.grad(w))(lam)


@settings(max_examples=10)
@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
@given(lam=logsnrs)
def test_weighting_values_and_gradients_finite_and_accurate(name, lam):
    """Values to 1e-4 relative (a density, a target factor and a weight: ~10 float32 ops on
    λ up to 30, ~1e-5 measured) and `jax.grad` against the reference derivative to 1e-4 of
    the largest |w'| on the interval (it crosses zero; `Implied`'s reference derivative is a
    4th-order finite difference accurate to ~1e-10)."""
    eqx_w, ref_w = WEIGHTINGS[name]
    lam = np.asarray(lam.astype(np.float32), np.float64)
    values, grads = (np.asarray(o, np.float64) for o in _weighting_and_grad(eqx_w, jnp.asarray(lam, jnp.float32)))
    _finite(values, grads)
    ok = representable(ref_w(lam), np.float32)
    close(values[ok], ref_w(lam)[ok], 1e-4, atol=1e-30)
    scale = np.max(np.abs(ref_w.derivative(np.linspace(-30.0, 30.0, 601)))) + 1e-30
    close(grads, ref_w.derivative(lam), 1e-4, atol=1e-4 * scale)


# --- the weighted loss and its parameter gradient --------------------------------------------

LOSS_WEIGHTINGS = {
    "elbo": E.ELBO(),
    "sigmoid": E.Sigmoid(2.0),
    "edm": E.EDM(),
    "eps-cosine": E.EpsCosine(),
    "exponential": E.Exponential(0.5),
    "indi": E.InDI(),
    "min-snr": E.MinSNR(5.0),
}
REF_LOSS_WEIGHTINGS = {
    "elbo": R.ELBO(),
    "sigmoid": R.Sigmoid(2.0),
    "edm": R.EDM(),
    "eps-cosine": R.EpsCosine(),
    "exponential": R.Exponential(0.5),
    "indi": R.InDI(),
    "min-snr": R.MinSNR(5.0),
}
PARAMS = init_params(3, hidden=8, seed=0)
COSINE = (E.Cosine(-30.0, 30.0), R.Cosine(-30.0, 30.0))


def _loss_and_grad(params, weighting, x, lam, eps, density):
    def total(p):
        one = lambda x_i, lam_i, eps_i, d_i: E.weighted_loss(jax_mlp_apply(p), x_i, lam_i, eps_i, weighting, d_i)
        return jax.vmap(one)(x, lam, eps, density)

    losses, vjp = jax.vjp(total, params)
    # One gradient per example (rows of a Jacobian), so each is compared at its own scale.
    grads = jax.vmap(lambda e: vjp(e)[0])(jnp.eye(losses.shape[0], dtype=losses.dtype))
    return losses, grads


_loss_and_grad_jit = eqx.filter_jit(_loss_and_grad)


@settings(max_examples=10)
@pytest.mark.parametrize("weighting", sorted(LOSS_WEIGHTINGS))
@given(lam=logsnrs, seed=st.integers(0, 2**31 - 1), zero_data=st.booleans())
def test_weighted_loss_and_parameter_gradient_finite_in_float32(weighting, lam, seed, zero_data):
    """Per example: the float32 loss against the float64 reference to 1e-4 relative (an MLP
    of width 8 and the weight: ~1e-6 measured), and its parameter gradient against the same
    computation in float64 to 1e-3 of that example's largest entry (the backward pass through
    two tanh layers; ~1e-5 measured). With the cosine density the factor w/p reaches e^{15}
    at the ends of the interval."""
    rng = np.random.default_rng(seed)
    n = lam.shape[0]
    x = np.zeros((n, 3)) if zero_data else rng.standard_normal((n, 3))
    eps = rng.standard_normal((n, 3))
    eqx_s, ref_s = COSINE
    lam = np.asarray(lam.astype(np.float32), np.float64)
    density = ref_s.density(lam)
    w = LOSS_WEIGHTINGS[weighting]
    params32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), PARAMS)
    args32 = [jnp.asarray(a, jnp.float32) for a in (x, lam, eps, density)]
    losses, grads = _loss_and_grad_jit(params32, w, *args32)
    _finite(losses, grads)
    model = numpy_mlp(PARAMS)
    expected = np.array(
        [R.weighted_loss(model, x[i], lam[i], eps[i], REF_LOSS_WEIGHTINGS[weighting], density[i]) for i in range(n)]
    )
    close(losses, expected, 1e-4, atol=1e-30)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), PARAMS)
        _, grads64 = _loss_and_grad(params64, w, *[jnp.asarray(a, jnp.float64) for a in (x, lam, eps, density)])
        grads64 = jax.tree.map(np.asarray, grads64)
    g32 = np.concatenate([np.asarray(g, np.float64).reshape(n, -1) for g in jax.tree.leaves(grads)], axis=1)
    g64 = np.concatenate([g.reshape(n, -1) for g in jax.tree.leaves(grads64)], axis=1)
    scale = np.max(np.abs(g64), axis=1, keepdims=True) + 1e-30
    close(g32 / scale, g64 / scale, 0.0, atol=1e-3)


# --- one step of each sampler, and its gradient ---------------------------------------------

MIXTURE = dict(weights=[0.3, 0.7], means=[[-1.0, 0.5], [0.8, -0.2]], stds=[0.4, 0.5])
EQX_GMM = E.GaussianMixture(*(jnp.asarray(v, jnp.float32) for v in MIXTURE.values()))
REF_GMM = R.GaussianMixture(*(np.asarray(v, np.float64) for v in MIXTURE.values()))


def _edm_denoiser(mixture, xp):
    """D(x, σ) = E[x₀ | x₀ + σε = x] from the VP Bayes denoiser at λ = −2 ln σ, z = αx."""

    def denoiser(x, sigma):
        lam = -2.0 * xp.log(sigma)
        alpha = xp.sqrt(1.0 / (1.0 + xp.exp(-lam)))
        return mixture.denoise(alpha * x, lam)

    return denoiser


def _one_steps(package, mixture, x, sigmas, logsnrs, noise):
    """**Returns:** one Heun, Euler, ancestral and DDIM step from the same start."""
    xp = jnp if package is E else np
    denoiser = _edm_denoiser(mixture, xp)
    z = x / xp.sqrt(1.0 + xp.exp(-logsnrs[0]))  # the VP point of the same noisy example
    return (
        package.heun_sampler(denoiser, x, sigmas),
        package.euler_sampler(denoiser, x, sigmas),
        package.ancestral_sampler(mixture.eps, z, logsnrs, noise=noise),
        package.ddim_sampler(mixture.eps, z, logsnrs),
    )


@eqx.filter_jit
def _steps_and_grads(mixture, x, sigmas, logsnrs, noise):
    outs = _one_steps(E, mixture, x, sigmas, logsnrs, noise)
    grads = [
        jax.grad(lambda x, k=k: jnp.sum(_one_steps(E, mixture, x, sigmas, logsnrs, noise)[k]))(x) for k in range(4)
    ]
    return outs, grads


@settings(max_examples=15)
@given(
    lam_t=st.floats(-30.0, 29.0),
    gap=st.floats(0.05, 6.0),
    seed=st.integers(0, 2**31 - 1),
    end=st.sampled_from([None, "low", "high"]),
)
def test_one_sampler_step_and_its_gradient_finite_and_accurate(lam_t, gap, seed, end):
    """One step from λ_t to λ_s = min(λ_t + gap, 30) of each sampler with the 2-D mixture's
    Bayes denoiser. Values against the reference to 2e-4·(1 + |output|) (the VP samplers
    scale by α_s/α_t up to e^{15}, so errors are relative to the output's size, as in the
    equivalence suite), gradients with respect to the start against the x64 eqx gradient to
    1e-3·(1 + max|∇|); Heun's correction adds its cancellation term (below)."""
    if end == "low":
        lam_t = -30.0
    lam_s = 30.0 if end == "high" else min(lam_t + gap, 30.0)
    lam_t = min(lam_t, lam_s - 0.05)
    logsnrs = np.asarray(np.array([lam_t, lam_s]).astype(np.float32), np.float64)
    sigmas = np.asarray(np.exp(-0.5 * logsnrs).astype(np.float32), np.float64)
    rng = np.random.default_rng(seed)
    x = np.asarray((sigmas[0] * rng.standard_normal(2) + rng.standard_normal(2)).astype(np.float32), np.float64)
    noise = np.asarray(rng.standard_normal((1, 2)).astype(np.float32), np.float64)
    f32 = [jnp.asarray(a, jnp.float32) for a in (x, sigmas, logsnrs, noise)]
    outs, grads = _steps_and_grads(EQX_GMM, *f32)
    _finite(outs, grads)
    expected = _one_steps(R, REF_GMM, x, sigmas, logsnrs, noise)
    with jax.enable_x64(True):
        gmm64 = E.GaussianMixture(*(jnp.asarray(v, jnp.float64) for v in MIXTURE.values()))
        _, grads64 = _steps_and_grads(gmm64, *[jnp.asarray(a, jnp.float64) for a in (x, sigmas, logsnrs, noise)])
        grads64 = [np.asarray(g) for g in grads64]
    # Heun's correction evaluates (x' − D(x', σ_s))/σ_s, a difference of nearly equal numbers
    # when σ_s is small: float32 rounding of |x| is amplified by a = (σ_t − σ_s)/σ_s (the
    # equivalence suite's model; coefficient up to 2.4 measured here, 8 allowed; a reaches
    # 1e13 for a step from λ = −30 to 30, which no sampler schedule takes in one step).
    amplified = 8 * 2**-24 * max(1.0, np.max(np.abs(x))) * (sigmas[0] - sigmas[1]) / sigmas[1]
    # DDIM and ancestral form x̂ = (z − σ_t ε̂)/α_t: float32 rounding of ε̂ is amplified by
    # σ_t/α_t = e^{−λ_t/2} (2e4 at λ_t = −20), on outputs of size ~1 + |z| (ε̂ of the
    # mixture carries several ulp: coefficient up to 7 measured, 16 allowed).
    vp_amplified = 16 * 2**-24 * math.exp(-0.5 * logsnrs[0])
    names = ("heun", "euler", "ancestral", "ddim")
    for name, got, want, g, g64 in zip(names, outs, expected, grads, grads64, strict=True):
        want = np.asarray(want, np.float64)
        # Heun and Euler work on x of size up to σ_t ~ e^{15}: a few ulp of max|x| (as in the
        # equivalence suite's 1e-5·max|x₀|), however small the output.
        edm = 4 * 2**-24 * np.max(np.abs(x))
        extra = {"heun": edm + amplified, "euler": edm}.get(name, vp_amplified * (1.0 + np.max(np.abs(want))))
        try:
            close(got, want, 0.0, atol=2e-4 * (1.0 + np.max(np.abs(want))) + extra)
            close(g, g64, 0.0, atol=1e-3 * (1.0 + np.max(np.abs(g64))) + extra)
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from None


# --- the training step on degenerate inputs --------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 2])
def test_training_step_on_degenerate_batches(batch_size):
    """Zero data and real data in batches of 1 (a single example) and 2: two jitted steps give
    finite losses and finite parameters, flag nothing as non-finite, and do train."""
    setup = build(tiny_config())  # the step does not depend on train.batch_size
    real = np.asarray(setup.dataset.model_data("train"))
    # One data shape, so that each batch size compiles once; batch size 1 is a single example.
    cases = {"zero data": np.zeros((2, 2), np.float32), "real data": real[:2]}
    for name, data in cases.items():
        indices = jnp.arange(batch_size, dtype=jnp.int32)[None]
        state, metrics = run_steps(setup.trainer, setup.initial, jnp.asarray(data), indices)
        state, metrics2 = run_steps(setup.trainer, state, jnp.asarray(data), indices)
        assert int(state.step) == 2, name
        assert int(metrics["nonfinite"][0]) == 0 and int(metrics2["nonfinite"][0]) == 0, name
        assert math.isfinite(float(metrics["loss"][0])) and math.isfinite(float(metrics2["loss"][0])), name
        _finite(eqx.filter(state, eqx.is_inexact_array))
        # the step did train: the parameters moved
        before = jax.tree.leaves(eqx.filter(setup.initial.model, eqx.is_inexact_array))
        after = jax.tree.leaves(eqx.filter(state.model, eqx.is_inexact_array))
        assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True)), name
