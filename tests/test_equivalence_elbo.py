"""eqx ELBO quadrature equals the reference's adaptive quad: float32 and x64.

The eqx side uses composite Gauss–Legendre (16 nodes × 32 panels, break points at kinks);
the reference uses `scipy.integrate.quad` at epsrel 1e-12. Measured agreement in float64 is
≤ 1e-14 relative, so the x64 tolerance `X64_RTOL` = 1e-10 bounds the GL rule's error with a
wide margin; `Implied`'s reference derivative is a 4th-order finite difference with step
1e-3·max(1,|λ|), good to ~1e-9 relative at |λ| = 30, so `ibp_rhs` with it gets 1e-8.

float32: the GL sums of ~10⁴ terms carry round-off of a few float32 ulps (measured ≤ 1.1e-6
relative); weightings are good to 10× `F32_RTOL` (test_equivalence_weightings); a float32
λ(t) is off by up to 3e-5·max(1,|λ|) (test_equivalence_schedules), which moves an integral
ending at λ(t) by its integrand there times that error.

Reference quadrature costs ~0.5 s per ibp_rhs, hence fewer examples for the full integrals.
"""

import math

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eqx_impl as E
import reference as R
from tests.equivalence import DRAW_SIZE, F32_RTOL, close, logsnr_ranges, precision, rounded, to_jax, unit_times
from tests.nets import init_params, jax_mlp_apply, numpy_mlp

X64 = pytest.mark.parametrize("x64", [False, True], ids=["f32", "x64"])
# One example shape throughout: eager JAX compiles each primitive once per shape, so a shared
# shape lets the functions share that warm-up (shapes are varied in the losses suite).
SHAPE = (2, 1, 2)
seeds = st.integers(0, 2**16)
FEW = settings(max_examples=10)


def _weighting(name, lo, hi):
    """`(reference, eqx)` twins; Monotonic is taken over the schedule's range."""
    if name == "Monotonic(EDM)":
        return R.Monotonic(R.EDM(), lo, hi), E.Monotonic(E.EDM(), lo, hi)
    if name == "Implied(Cosine,v)":
        return R.Implied(R.Cosine(), "v"), E.Implied(E.Cosine(), "v")
    if name == "Shifted(Sigmoid(2),1)":
        return R.Shifted(R.Sigmoid(2.0), 1.0), E.Shifted(E.Sigmoid(2.0), 1.0)
    args = {"Exponential": (0.5,), "MinSNR": (5.0,), "Sigmoid": (2.0,)}.get(name, ())
    return getattr(R, name)(*args), getattr(E, name)(*args)


MONOTONE = ["ELBO", "Exponential", "InDI", "Sigmoid", "Shifted(Sigmoid(2),1)", "Monotonic(EDM)", "Implied(Cosine,v)"]
ALL = sorted([*MONOTONE, "EpsCosine", "EDM", "MinSNR"])
FD_DERIVATIVE = {"Implied(Cosine,v)"}  # reference derivative by finite differences


def _schedule(kind, lo, hi):
    return getattr(R, kind)(lo, hi), getattr(E, kind)(lo, hi)


schedule_kinds = st.sampled_from(["LinearLogSNR", "Cosine"])


def _setup(shape, seed, dtype, n=2):
    """x, fixed noise draws and the same MLP in both packages (inputs rounded to dtype)."""
    rng = np.random.default_rng(seed)
    x = rounded(rng.normal(size=shape), dtype)
    eps = rounded(rng.standard_normal((n, *shape)), dtype)
    params = init_params(math.prod(shape), hidden=16, seed=seed)
    ref_model = numpy_mlp([(rounded(w, dtype), rounded(b, dtype)) for w, b in params])
    eqx_model = jax_mlp_apply([(to_jax(w, dtype), to_jax(b, dtype)) for w, b in params])
    return x, eps, ref_model, eqx_model


def _mean_loss(model, x, lam, eps):
    return np.mean([R.eps_loss(model, x, lam, e) for e in eps])


def _lam_error(lam, x64):
    """Bound on an eqx schedule's λ(t) error: 30·F32_RTOL·max(1, |λ|) in float32 (schedules
    suite); 16 float64 ulps of max(1, |λ|) under x64."""
    return (16 * np.finfo(np.float64).eps if x64 else 30 * F32_RTOL) * np.maximum(1.0, np.abs(lam))


@X64
@given(t=unit_times, rng=logsnr_ranges(), kind=schedule_kinds, seed=seeds)
def test_equivalence_truncated_kl(x64, t, rng, kind, seed):
    ref_s, eqx_s = _schedule(kind, *rng)
    with precision(x64) as (dtype, rtol):
        x, eps, ref_model, eqx_model = _setup(SHAPE, seed, dtype)
        t = rounded(t, dtype)
        expected = np.array([R.truncated_kl(ref_model, x, ti, ref_s, eps) for ti in t])
        xj, ej = to_jax(x, dtype), to_jax(eps, dtype)
        actual = jax.vmap(lambda ti: E.truncated_kl(eqx_model, xj, ti, eqx_s, ej))(to_jax(t, dtype))
        # The upper limit λ(t) is off by _lam_error; the integrand there is ½ℓ̄.
        lam = ref_s.logsnr(t)
        atol = np.array([0.5 * _mean_loss(ref_model, x, l, eps) for l in lam]) * _lam_error(lam, x64)
        close(actual, expected, rtol, atol=atol)


@X64
@FEW
@given(rng=logsnr_ranges(), weighting=st.sampled_from(ALL), seed=seeds)
def test_equivalence_weighted_loss_integral(x64, rng, weighting, seed):
    ref_w, eqx_w = _weighting(weighting, *rng)
    ref_s, eqx_s = _schedule("LinearLogSNR", *rng)
    with precision(x64) as (dtype, rtol):
        x, eps, ref_model, eqx_model = _setup(SHAPE, seed, dtype)
        expected = R.weighted_loss_integral(ref_model, x, ref_w, ref_s, eps)
        actual = E.weighted_loss_integral(eqx_model, to_jax(x, dtype), eqx_w, eqx_s, to_jax(eps, dtype))
        close(actual, expected, rtol if x64 else 10 * rtol)  # positive integrand: relative


@X64
@FEW
@given(rng=logsnr_ranges(), weighting=st.sampled_from(ALL), kind=schedule_kinds, seed=seeds)
def test_equivalence_ibp_rhs(x64, rng, weighting, kind, seed):
    ref_w, eqx_w = _weighting(weighting, *rng)
    ref_s, eqx_s = _schedule(kind, *rng)
    with precision(x64) as (dtype, rtol):
        x, eps, ref_model, eqx_model = _setup(SHAPE, seed, dtype)
        expected = R.ibp_rhs(ref_model, x, ref_w, ref_s, eps)
        actual = E.ibp_rhs(eqx_model, to_jax(x, dtype), eqx_w, eqx_s, to_jax(eps, dtype))
        if x64:
            close(actual, expected, 1e-8 if weighting in FD_DERIVATIVE else rtol)
        else:
            # −∫w'L + w_max L(0) − w_min KL cancels: bound the round-off by the terms' size,
            # (w_min + w_max + total variation of w) · L(0;x), with weightings at 10× F32_RTOL.
            grid = ref_w(np.linspace(*rng, 2001))
            size = (grid[0] + grid[-1] + np.sum(np.abs(np.diff(grid)))) * R.truncated_kl(ref_model, x, 0.0, ref_s, eps)
            close(actual, expected, 0.0, atol=10 * rtol * size)


@X64
@given(rng=logsnr_ranges(), weighting=st.sampled_from(MONOTONE), kind=schedule_kinds, t=unit_times)
def test_equivalence_augmentation_distribution(x64, rng, weighting, kind, t):
    """normalizer, point mass, density and CDF; both reject non-monotone weightings alike."""
    ref_w, eqx_w = _weighting(weighting, *rng)
    ref_s, eqx_s = _schedule(kind, *rng)
    ref_d, eqx_d = R.augmentation_distribution(ref_w, ref_s), E.augmentation_distribution(eqx_w, eqx_s)
    with precision(x64) as (dtype, rtol):
        close(eqx_d.normalizer, ref_d.normalizer, 10 * rtol)
        close(eqx_d.point_mass, ref_d.point_mass, 20 * rtol, atol=1e-37)
        t = rounded(t, dtype)
        lam, slope = ref_s.logsnr(t), ref_s.dlogsnr_dt(t)
        deriv = ref_w.derivative(lam)
        # CDF w(λ_t)/Z moves by |w'|/Z times λ's error; density w'(λ_t)λ'(t)/Z by |w''λ'|/Z
        # times it (w'' by central difference), on top of 20× rtol for w' and λ' each.
        h = 1e-4
        second = (ref_w.derivative(lam + h) - ref_w.derivative(lam - h)) / (2 * h)
        lam_err = _lam_error(lam, x64)
        close(eqx_d.cdf(to_jax(t, dtype)), ref_d.cdf(t), 10 * rtol, atol=np.abs(deriv) * lam_err / ref_d.normalizer)
        close(
            eqx_d.density(to_jax(t, dtype)),
            ref_d.density(t),
            40 * rtol,
            atol=np.abs(second * slope) * lam_err / ref_d.normalizer + 1e-30,
        )
    for name in ("EDM", "EpsCosine", "MinSNR"):
        ref_bad, eqx_bad = _weighting(name, -10.0, 10.0)
        for pkg, bad, sched in ((R, ref_bad, R.Cosine(-10.0, 10.0)), (E, eqx_bad, E.Cosine(-10.0, 10.0))):
            with pytest.raises(ValueError, match="Monotonic"):
                pkg.augmentation_distribution(bad, sched)


@X64
@FEW
@given(
    rng=logsnr_ranges(),
    weighting=st.sampled_from(MONOTONE),
    kind=schedule_kinds,
    u=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=DRAW_SIZE, max_size=DRAW_SIZE),
    seed=seeds,
)
def test_equivalence_AugmentationDistribution_sample_and_loss(x64, rng, weighting, kind, u, seed):
    """sample(u) is the generalised inverse of the reference CDF; augmented_loss agrees.

    The eqx sample is checked through the reference: t = 0 exactly below the point mass,
    else F_ref(t) = u up to the CDF's sensitivity to the float32 λ and t (|w'|/Z · δλ and
    p_w(t) · δt, δt = 5·rtol as in the schedules suite). The loss Z·½∫_{λ_min}^{λ(t)} ℓ̄ then
    moves by Z·½ℓ̄(λ) times the gap between the two samples' λ.
    """
    ref_w, eqx_w = _weighting(weighting, *rng)
    ref_s, eqx_s = _schedule(kind, *rng)
    ref_d, eqx_d = R.augmentation_distribution(ref_w, ref_s), E.augmentation_distribution(eqx_w, eqx_s)
    with precision(x64) as (dtype, rtol):
        x, eps, ref_model, eqx_model = _setup(SHAPE, seed, dtype)
        u = rounded(u, dtype)
        t = np.asarray(eqx_d.sample(to_jax(u, dtype)), dtype=np.float64)
        assert np.all((t >= 0) & (t <= 1))
        atom = u < ref_d.point_mass
        near_atom = np.abs(u - ref_d.point_mass) <= 20 * rtol * ref_d.point_mass
        assert np.all(t[atom & ~near_atom] == 0)
        lam = ref_s.logsnr(t)
        slack = (
            np.abs(ref_w.derivative(lam)) * _lam_error(lam, x64)
            + np.abs(ref_d.density(t)) * 5 * rtol * ref_d.normalizer
        ) / ref_d.normalizer
        inside = ~atom & ~near_atom
        close(ref_d.cdf(t)[inside], u[inside], 0.0, atol=slack[inside] + 10 * rtol)

        expected = np.array([ref_d.augmented_loss(ref_model, x, ui, eps) for ui in u])
        xj, ej = to_jax(x, dtype), to_jax(eps, dtype)
        actual = jax.vmap(lambda ui: eqx_d.augmented_loss(eqx_model, xj, ui, ej))(to_jax(u, dtype))
        gap = np.abs(ref_s.logsnr(ref_d.sample(u)) - lam) + _lam_error(lam, x64)
        edge = np.array([0.5 * _mean_loss(ref_model, x, l, eps) for l in lam]) * ref_d.normalizer
        close(actual, expected, rtol if x64 else 10 * rtol, atol=edge * gap + 1e-30)
