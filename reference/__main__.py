"""`python -m reference`: a verification report of the theory, each identity with its measured error.

Every line recomputes an identity of SPEC §1–§5, §7 with the float64 reference against an
independent computation (closed form, quadrature, explicit sum) and prints the error
next to its tolerance. Exit status 1 if any identity fails.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy import integrate, special

import reference as R

SCHEDULES = {
    "Cosine(-10,10)": R.Cosine(-10.0, 10.0),
    "LinearLogSNR(-8,12)": R.LinearLogSNR(-8.0, 12.0),
    "EDMLogNormal(-10,12)": R.EDMLogNormal(logsnr_min=-10.0, logsnr_max=12.0),
    "CosineInterpolated": R.CosineInterpolated(-15.0, 15.0, 1.0, -1.0),
    "DDPMLinear": R.DDPMLinear(),
    "FlowOT": R.FlowOT(-20.0, 20.0),
}
WEIGHTINGS = {
    "ELBO": R.ELBO(),
    "EpsCosine": R.EpsCosine(),
    "EDM": R.EDM(),
    "Exponential(0.5)": R.Exponential(0.5),
    "InDI": R.InDI(),
    "MinSNR(5)": R.MinSNR(5.0),
    "Sigmoid(2)": R.Sigmoid(2.0),
    "Shifted(Sigmoid(2),1)": R.Shifted(R.Sigmoid(2.0), 1.0),
    "Monotonic(EDM)": R.Monotonic(R.EDM()),
    "Implied(Cosine,v)": R.Implied(R.Cosine(), "v"),
}


def _mlp(dim, seed=0, hidden=16):
    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(size=(dim + 1, hidden)) / np.sqrt(dim + 1), rng.normal(size=hidden) * 0.1
    w2 = rng.normal(size=(hidden, dim)) / np.sqrt(hidden)

    def eps_model(z, logsnr):
        feats = np.concatenate([np.reshape(z, (-1, dim)), np.full((np.size(z) // dim, 1), np.tanh(logsnr / 10))], 1)
        return (np.tanh(feats @ w1 + b1) @ w2).reshape(np.shape(z))

    return eps_model


def check_schedules():
    t = np.linspace(0, 1, 1001)
    inv = max(np.max(np.abs(s.inverse(s.logsnr(t)) - t)) for s in SCHEDULES.values())
    mass = max(
        abs(integrate.quad(s.density, s.logsnr_min, s.logsnr_max, epsabs=1e-13, limit=200)[0] - 1)
        for s in SCHEDULES.values()
    )
    yield "schedules: |t(λ(t)) - t| (6 schedules)", inv, 1e-12
    yield "schedules: |∫p(λ)dλ - 1|", mass, 1e-9


def check_implied():
    lam = np.linspace(-19, 19, 401)

    def spread(a, b):
        r = a(lam) / b(lam)
        return np.ptp(r) / np.mean(r), np.mean(r)

    def edm_weight(l):
        return (np.exp(-l) + 0.25) / (np.exp(-l) * 0.25)

    cases = {
        "Implied(Cosine, eps) ∝ EpsCosine": (R.Implied(R.Cosine(), "eps"), R.EpsCosine()),
        "Implied(Cosine, v) ∝ Exponential(0.5)": (R.Implied(R.Cosine(), "v"), R.Exponential(0.5)),
        "Implied(FlowOT, u) ∝ Exponential(0.5)": (R.Implied(R.FlowOT(), "u"), R.Exponential(0.5)),
        "Implied(FlowOT, x) ∝ InDI": (R.Implied(R.FlowOT(), "x"), R.InDI()),
        "Implied(Cosine, eps, minSNR) ∝ MinSNR": (
            R.Implied(R.Cosine(), "eps", lambda l: np.minimum(np.exp(l), 5.0) / np.exp(l)),
            R.MinSNR(5.0),
        ),
    }
    for name, (a, b) in cases.items():
        yield f"weightings: {name} (ratio spread)", spread(a, b)[0], 1e-9
    _, ratio = spread(R.Implied(R.EDMLogNormal(), "x", edm_weight), R.EDM())
    yield "weightings: Implied(EDMLogNormal, x, λ_EDM) / EDM - 2", abs(ratio - 2), 1e-9
    edm, mono = R.EDM(), R.Monotonic(R.EDM())
    yield (
        "weightings: Monotonic(EDM) - EDM(max(λ, λ*))",
        np.max(np.abs(mono(lam) - edm(np.maximum(lam, mono.peaks[0]))) / edm(mono.peaks[0])),
        1e-6,
    )


def check_ibp():
    rng = np.random.default_rng(0)
    data = R.GaussianData(0.5, 2)
    x = data.sample(1, rng=rng)[0]
    eps = rng.standard_normal((2, 2))
    worst = 0.0
    for den in (data.eps, _mlp(2)):
        for sname in ("Cosine(-10,10)", "LinearLogSNR(-8,12)", "EDMLogNormal(-10,12)"):
            for w in WEIGHTINGS.values():
                lhs = R.weighted_loss_integral(den, x, w, SCHEDULES[sname], eps)
                rhs = R.ibp_rhs(den, x, w, SCHEDULES[sname], eps)
                worst = max(worst, abs(lhs - rhs) / abs(lhs))
    yield "ELBO: integration by parts, 10 weightings × 3 schedules × 2 denoisers (rel.)", worst, 1e-8


def check_augmentation():
    rng = np.random.default_rng(1)
    data = R.GaussianData(0.5, 2)
    x, eps = data.sample(1, rng=rng)[0], rng.standard_normal((2, 2))
    schedule, w = SCHEDULES["Cosine(-10,10)"], R.Sigmoid(2.0)
    aug = R.augmentation_distribution(w, schedule)
    mass = aug.point_mass + integrate.quad(aug.density, 0, 1, epsabs=1e-13, limit=200)[0]
    yield "augmentation: point mass + ∫p_w(t)dt - 1", abs(mass - 1), 1e-9
    # L_w = Z E_{p_w}[L(t;x)] - Z KL_prior, the expectation by quadrature in u (inverse CDF)
    expect = integrate.quad(lambda u: aug.augmented_loss(data.eps, x, u, eps), 0, 1, limit=200, epsrel=1e-10)[0]
    lw = R.weighted_loss_integral(data.eps, x, w, schedule, eps)
    yield "augmentation: Z·E_{t~p_w}[L(t;x)] - const vs L_w (rel.)", abs(expect - lw) / lw, 1e-6
    try:
        R.augmentation_distribution(R.EDM(), schedule)
        refused = 1.0
    except ValueError:
        refused = 0.0
    yield "augmentation: non-monotone EDM refused", refused, 0.0


def check_perturbed_elbo():
    d, s2, lo = 3, 0.5, -10.0
    data = R.GaussianData(s2, d)
    alpha2, sigma2 = special.expit(lo), special.expit(-lo)
    e_prior = 0.5 * d * (alpha2 * s2 + sigma2 - np.log(sigma2) - 1)  # E_x KL(q(z1|x) || N)
    worst = 0.0
    for lam_t in (-5.0, 0.0, 4.0, 12.0):
        lhs = 0.5 * integrate.quad(data.loss_mean, lo, lam_t, epsabs=1e-13)[0] + e_prior
        rhs = data.mutual_information(lam_t) + data.marginal_prior_kl(lo)
        worst = max(worst, abs(lhs - rhs) / rhs)
    yield "perturbed-data ELBO: E_x L(t;x) = I(x;z_t) + KL(q(z_1)||N) (Gaussian, rel.)", worst, 1e-10


def check_vdm():
    rng = np.random.default_rng(2)
    schedule, model, x = R.Cosine(-10.0, 10.0), _mlp(3), rng.uniform(-1, 1, 3)
    eps = rng.standard_normal(3)
    worst, gaps = 0.0, []
    cont = None
    for T in (10, 100, 1000, 10000):
        total = sum(R.vdm_discrete_loss(model, x, i, eps, schedule, T) for i in range(1, T + 1)) / T
        if cont is None:
            cont = 0.5 * integrate.quad(lambda l: R.eps_loss(model, x, l, eps), -10, 10, epsabs=1e-12, limit=200)[0]
        gaps.append(abs(total - cont))
        if T > 1000:
            break
        kls = 0.0
        for i in range(1, T + 1):  # KL(q(z_s|z_t,x) || p(z_s|z_t)) between the two Gaussians
            lt, ls = schedule.logsnr(i / T), schedule.logsnr((i - 1) / T)
            (at, st), (as_, ss) = R.alpha_sigma(lt), R.alpha_sigma(ls)
            zt = at * x + st * eps
            x_hat = (zt - st * model(zt, lt)) / at
            ats, var_ts = at / as_, st**2 - (at / as_) ** 2 * ss**2  # z_t | z_s
            mean_coef = ats * ss**2 / st**2, as_ * var_ts / st**2
            var = var_ts * ss**2 / st**2
            mu_q, mu_p = mean_coef[0] * zt + mean_coef[1] * x, mean_coef[0] * zt + mean_coef[1] * x_hat
            kls += 0.5 * np.sum((mu_q - mu_p) ** 2) / var
        worst = max(worst, abs(total - kls) / kls)
    yield "VDM: E_i[discrete term] = Σ of the T Gaussian KLs, T ∈ {10,100,1000} (rel.)", worst, 1e-10
    rate = np.log10(gaps[1] / gaps[3]) / 2  # asymptotic: T = 100 → 10000
    yield (
        f"VDM: |L_T - L_∞| = {gaps[1]:.1e}, {gaps[2]:.1e}, {gaps[3]:.1e} at T=1e2,1e3,1e4: order {rate:.2f} (1 ± 0.2)",
        abs(rate - 1),
        0.2,
    )


def check_importance():
    d, s2, lo, hi = 4, 0.5, -10.0, 10.0
    data, w = R.GaussianData(s2, d), R.Sigmoid(2.0)
    m1, m2 = data.loss_mean, data.loss_second_moment
    var = R.estimator_variance(w, R.Cosine(lo, hi).density, m1, m2, lo, hi)
    var_min = R.optimal_variance(w, m1, m2, lo, hi)
    yield f"importance: Var[Cosine] = {var:.4f} vs worked example 15.78", abs(var - 15.78), 5e-3
    yield f"importance: Var_min = {var_min:.4f} vs worked example 6.42", abs(var_min - 6.42), 5e-3
    closed = 0.5 * d * integrate.quad(lambda l: w(l) * special.expit(l + np.log(s2)), lo, hi, epsabs=1e-13)[0] ** 2
    yield "importance: Var_min = ½d(∫wv dλ)² (rel.)", abs(var_min - closed) / closed, 1e-9
    others = {
        "Linear": R.LinearLogSNR(lo, hi),
        "EDMLogNormal": R.EDMLogNormal(logsnr_min=lo, logsnr_max=hi),
        "Cosine": R.Cosine(lo, hi),
    }
    best_other = min(R.estimator_variance(w, s.density, m1, m2, lo, hi) for s in others.values())
    yield f"importance: Var_min / best fixed proposal ({best_other:.2f}) < 1", var_min / best_other, 1.0
    # adaptive schedule on the exact Gaussian losses ℓ = v χ²_d
    rng = np.random.default_rng(0)
    adaptive = R.Adaptive(lo, hi, decay=0.995, target="rms")
    state = adaptive.init()
    for _ in range(3000):
        u = (rng.uniform() + np.arange(128) / 128) % 1.0
        lam, _ = adaptive.sample(state, u)
        loss = special.expit(lam + np.log(s2)) * rng.chisquare(d, 128)
        state = adaptive.update(state, lam, w(lam) * loss)
    var_ad = R.estimator_variance(w, lambda l: adaptive.density(state, l), m1, m2, lo, hi, points=adaptive.edges)
    yield f"importance: adaptive (3000 steps) Var / Var_min = {var_ad / var_min:.3f}", var_ad / var_min - 1, 0.10


def check_edm():
    expected = np.array([80, 17.5278, 2.5152, 0.1698, 0.002, 0])
    yield (
        "EDM: edm_sigmas(5) vs 80, 17.5278, 2.5152, 0.1698, 0.002, 0",
        np.max(np.abs(R.edm_sigmas(5) - expected)),
        5e-5,
    )
    s2 = 0.5
    errors = []
    for n in (8, 16, 32, 64):
        sig = R.edm_sigmas(n)
        x0 = np.array([80.0])
        out = R.heun_sampler(lambda x, s: s2 * x / (s2 + s**2), x0, sig)
        exact = x0 * np.sqrt(s2) / np.sqrt(s2 + 80.0**2)  # probability-flow ODE, Gaussian data
        errors.append(abs(out - exact)[0])
    order = np.polyfit(np.log([8, 16, 32, 64]), np.log(errors), 1)[0]
    yield f"EDM: Heun empirical order {-order:.2f} (expect 2 ± 0.4)", abs(-order - 2), 0.4


def main() -> int:
    print("Verification report: diffusion objectives as weighted ELBOs (float64 reference)\n")
    print(f"{'identity':<92} {'error':>10} {'tol':>8}")
    failed = 0
    start = time.perf_counter()
    for group in (check_schedules, check_implied, check_ibp, check_augmentation, check_perturbed_elbo, check_vdm):
        for name, error, tol in group():
            ok = error <= tol
            failed += not ok
            print(f"{name:<92} {error:>10.2e} {tol:>8.0e}  {'ok' if ok else 'FAIL'}", flush=True)
    for group in (check_importance, check_edm):
        for name, error, tol in group():
            ok = error <= tol if tol else error == 0
            failed += not ok
            print(f"{name:<92} {error:>10.2e} {tol:>8.0e}  {'ok' if ok else 'FAIL'}", flush=True)
    print(f"\n{'all identities hold' if not failed else f'{failed} FAILED'} ({time.perf_counter() - start:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
