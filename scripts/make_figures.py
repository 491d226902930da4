"""Draw the documentation figures from the float64 reference package.

    .venv/bin/python scripts/make_figures.py            # writes docs/figures/*.png
    .venv/bin/python scripts/make_figures.py --out DIR

Every curve is computed by `reference` (the same code the tests check), so the figures
show what the library implements. Runs in well under a minute on one CPU core and prints
the numbers that the documentation quotes (estimator variances, point masses).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import special  # noqa: E402

import reference as R  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"
LO, HI = -10.0, 10.0  # the plotted log-SNR range (and the range of the variance example)
PNG = dict(dpi=130, bbox_inches="tight", metadata={"Software": None})


def _save(fig, out: Path, name: str) -> Path:
    path = out / name
    fig.savefig(path, **PNG)
    plt.close(fig)
    return path


# --- schedules: λ(t) and p(λ) ---------------------------------------------------------------


def schedules():
    return {
        "LinearLogSNR(-10, 10)": R.LinearLogSNR(LO, HI),
        "Cosine(-10, 10)": R.Cosine(LO, HI),
        "Cosine shifted by 2 ln(1/2)": R.Cosine(LO, HI, shift=2.0 * math.log(0.5)),
        "CosineInterpolated(1 → -1)": R.CosineInterpolated(LO, HI, shift_start=1.0, shift_end=-1.0),
        "DDPMLinear(0.1, 20)": R.DDPMLinear(),
        "EDMLogNormal(-1.2, 1.2)": R.EDMLogNormal(logsnr_min=LO, logsnr_max=HI),
        "FlowOT(-10, 10)": R.FlowOT(LO, HI),
    }


def figure_schedules(out: Path) -> Path:
    fig, (ax_t, ax_p) = plt.subplots(1, 2, figsize=(11, 4))
    t = np.linspace(0.0, 1.0, 801)
    for name, s in schedules().items():
        ax_t.plot(t, s.logsnr(t), label=name)
        lam = np.linspace(s.logsnr_min, s.logsnr_max, 801)
        ax_p.plot(lam, s.density(lam), label=name)
    ax_t.set(xlabel="t", ylabel="log-SNR λ(t)", title="Schedules t ↦ λ(t)")
    ax_p.set(xlabel="log-SNR λ", ylabel="p(λ) = -dt/dλ", title="Implied density of λ when t ~ U(0, 1)")
    for ax in (ax_t, ax_p):
        ax.grid(alpha=0.3)
    ax_t.legend(fontsize=8)
    return _save(fig, out, "schedules.png")


# --- weightings w(λ) ------------------------------------------------------------------------


def weightings():
    return {
        "ELBO": R.ELBO(),
        "EpsCosine (ε + cosine)": R.EpsCosine(),
        "EDM": R.EDM(),
        "EDM-monotonic": R.Monotonic(R.EDM(), LO, HI),
        "Exponential(0.5) (v + cosine, flow)": R.Exponential(0.5),
        "InDI (x + flow)": R.InDI(),
        "MinSNR(5)": R.MinSNR(5.0),
        "Sigmoid(2) (proposed)": R.Sigmoid(2.0),
    }


def figure_weightings(out: Path) -> Path:
    lam = np.linspace(LO, HI, 1001)
    fig, (ax_lin, ax_log) = plt.subplots(1, 2, figsize=(11, 4))
    for name, w in weightings().items():
        values = w(lam)
        scaled = values / values.max()  # each curve scaled to maximum 1 on [-10, 10]
        style = "--" if "monotonic" in name else "-"
        ax_lin.plot(lam, scaled, style, label=name)
        ax_log.semilogy(lam, scaled, style, label=name)
    ax_lin.set(xlabel="log-SNR λ", ylabel="w(λ) / max w", title="Weightings, each scaled to max 1 on [-10, 10]")
    ax_log.set(xlabel="log-SNR λ", ylabel="w(λ) / max w (log scale)", title="Same, log scale", ylim=(1e-5, 2))
    for ax in (ax_lin, ax_log):
        ax.grid(alpha=0.3)
    ax_lin.legend(fontsize=8)
    return _save(fig, out, "weightings.png")


# --- augmentation distributions p_w(t) -------------------------------------------------------


def figure_augmentation(out: Path) -> tuple[Path, dict[str, float]]:
    schedule = R.Cosine(LO, HI)
    cases = {
        "Sigmoid(2)": R.Sigmoid(2.0),
        "EDM-monotonic": R.Monotonic(R.EDM(), LO, HI),
        "Exponential(0.5)": R.Exponential(0.5),
    }
    t = np.linspace(1e-4, 1.0, 2000)
    lam = np.linspace(LO, HI, 2000)
    fig, (ax_lam, ax_pdf, ax_cdf) = plt.subplots(1, 3, figsize=(15, 4), gridspec_kw={"wspace": 0.3})
    masses = {}
    for k, (name, w) in enumerate(cases.items()):
        color = f"C{k}"
        aug = R.augmentation_distribution(w, schedule)
        masses[name] = aug.point_mass
        ax_lam.plot(lam, -w.derivative(lam) / aug.normalizer, color=color, label=name)
        ax_pdf.semilogy(t, aug.density(t), color=color, label=name)
        ax_cdf.semilogy(t, aug.cdf(t), color=color, label=f"{name}: P(t=0) = {aug.point_mass:.2e}")
        ax_cdf.plot([0.0], [aug.point_mass], "o", color=color)
    ax_lam.set(xlabel="log-SNR λ", ylabel="-w'(λ) / w(λ_min)", title="Noise-level density in λ (schedule-free part)")
    ax_pdf.set(
        xlabel="t (Cosine(-10, 10))",
        ylabel="p_w(t) on (0, 1] (log scale)",
        title="Augmentation density p_w(t)",
        ylim=(1e-3, 1e3),
    )
    ax_cdf.set(
        xlabel="t (Cosine(-10, 10))",
        ylabel="F(t) = w(λ_t) / w(λ_min)",
        title="CDF; the dot at t = 0 is the point mass",
    )
    for ax in (ax_lam, ax_pdf, ax_cdf):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out, "augmentation.png"), masses


# --- estimator variance by proposal -----------------------------------------------------------


def variance_example(adaptive_steps: int = 3000, batch: int = 128):
    """SPEC §5 example: d = 4, s² = 0.5, Sigmoid(2), λ ∈ [-10, 10], Bayes-optimal model."""
    d, s2 = 4, 0.5
    data, w = R.GaussianData(s2, d), R.Sigmoid(2.0)
    m1, m2 = data.loss_mean, data.loss_second_moment
    proposals = {
        "LinearLogSNR": (R.LinearLogSNR(LO, HI).density, ()),
        "Cosine": (R.Cosine(LO, HI).density, ()),
        "EDMLogNormal": (R.EDMLogNormal(logsnr_min=LO, logsnr_max=HI).density, ()),
    }
    # The adaptive schedule ("rms" target) trained on exact losses ℓ = v χ²_d, v = sigmoid(λ + ln s²).
    rng = np.random.default_rng(0)
    adaptive = R.Adaptive(LO, HI, decay=0.995, target="rms")
    state = adaptive.init()
    for _ in range(adaptive_steps):
        u = (rng.uniform() + np.arange(batch) / batch) % 1.0
        lam, _ = adaptive.sample(state, u)
        loss = special.expit(lam + math.log(s2)) * rng.chisquare(d, batch)
        state = adaptive.update(state, lam, w(lam) * loss)
    final = state
    proposals[f"Adaptive ({adaptive_steps} steps)"] = (lambda x: adaptive.density(final, x), adaptive.edges)
    variances = {
        name: R.estimator_variance(w, density, m1, m2, LO, HI, points=points)
        for name, (density, points) in proposals.items()
    }
    optimal = R.optimal_proposal(w, m2, LO, HI)
    variances["optimal p*"] = R.optimal_variance(w, m1, m2, LO, HI)
    proposals["optimal p*"] = (optimal, ())
    return variances, proposals


def figure_variance(out: Path) -> tuple[Path, dict[str, float]]:
    variances, proposals = variance_example()
    fig, (ax_bar, ax_p) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.2]})
    names = list(variances)
    bars = ax_bar.bar(range(len(names)), [variances[n] for n in names], color=[f"C{k}" for k in range(len(names))])
    ax_bar.bar_label(bars, fmt="%.2f")
    ax_bar.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=8)
    ax_bar.set(ylabel="Var of ½ w ℓ / p", title="Estimator variance by proposal (Sigmoid(2), d=4, s²=0.5)")
    lam = np.linspace(LO, HI, 2001)
    for k, (name, (density, _)) in enumerate(proposals.items()):
        ax_p.plot(lam, density(lam), color=f"C{k}", label=name, lw=2.5 if name.startswith("optimal") else 1.2)
    ax_p.set(xlabel="log-SNR λ", ylabel="proposal density p(λ)", title="The proposals; p* ∝ w √m₂")
    ax_p.legend(fontsize=8)
    for ax in (ax_bar, ax_p):
        ax.grid(alpha=0.3)
    return _save(fig, out, "variance.png"), variances


# --- EDM sampling steps -----------------------------------------------------------------------


def figure_edm_sigmas(out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for rho in (1.0, 3.0, 7.0, 20.0):
        sig = R.edm_sigmas(18, rho=rho)[:-1]
        ax.semilogy(np.arange(sig.size), sig, "o-", ms=3, label=f"ρ = {rho:g}")
    ax.set(xlabel="step i", ylabel="σ_i", title="edm_sigmas(18): σ_i, before the final σ_N = 0")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out, "edm_sigmas.png")


def figure_ode_likelihood(out: Path) -> tuple[Path, dict[str, float]]:
    """Error of the probability-flow ODE likelihood against the exact mixture density, by steps."""
    from reference.ode_likelihood import ode_likelihood_solve_ivp

    sigma_min, sigma_max = 0.002, 80.0
    mix = R.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.3]], [0.4, 0.7])

    def smoothed(sigma):
        return R.GaussianMixture(mix.weights, mix.means, np.sqrt(mix.stds**2 + sigma**2))

    denoiser = R.denoiser_from_x(mix.denoise)
    points = mix.sample(5, rng=np.random.default_rng(0))
    exact = smoothed(sigma_min).log_prob(points)

    def flow_error(result, i):  # the solver's error alone: exact density at the end of the path
        return abs(result.delta_log_prob + smoothed(sigma_max).log_prob(result.x_end) - exact[i])

    steps = np.array([4, 8, 16, 32, 64, 128, 256])
    fig, ax = plt.subplots(figsize=(6, 4))
    numbers = {}
    for solver, stages, order in (("heun", 2, 2), ("rk4", 4, 4)):
        err = np.array(
            [
                np.mean(
                    [
                        flow_error(
                            R.ode_likelihood(
                                denoiser, x, sigma_min=sigma_min, sigma_max=sigma_max, num_steps=int(n), solver=solver
                            ),
                            i,
                        )
                        for i, x in enumerate(points)
                    ]
                )
                for n in steps
            ]
        )
        ax.loglog(stages * steps, err, "o-", label=f"{solver} (order {order})")
        ref = err[-2] * (steps / steps[-2]) ** -order
        ax.loglog(stages * steps, ref, ":", color=ax.lines[-1].get_color(), lw=1)
        numbers[f"{solver} order (last doubling)"] = math.log2(err[-2] / err[-1])
        numbers[f"{solver} error at {stages * 32} evaluations"] = float(err[steps == 32][0])
    oracle = np.mean(
        [
            flow_error(ode_likelihood_solve_ivp(denoiser, x, sigma_min=sigma_min, sigma_max=sigma_max), i)
            for i, x in enumerate(points)
        ]
    )
    ax.axhline(oracle, color="gray", lw=1, label="solve_ivp RK45, rtol 1e-11")
    numbers["solve_ivp error"] = float(oracle)
    ax.set(
        xlabel="denoiser evaluations per example",
        ylabel="|ln p_ODE − ln p_exact| (nats)",
        title="ODE likelihood, 2-D mixture, σ ∈ [0.002, 80]",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, out, "ode_likelihood.png"), numbers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(figure_schedules(args.out))
    print(figure_weightings(args.out))
    path, masses = figure_augmentation(args.out)
    print(path)
    for name, mass in masses.items():
        print(f"  point mass at t = 0, {name}: {mass:.4e}")
    path, variances = figure_variance(args.out)
    print(path)
    for name, var in variances.items():
        print(f"  Var[{name}] = {var:.4f}")
    print(figure_edm_sigmas(args.out))
    path, errors = figure_ode_likelihood(args.out)
    print(path)
    for name, value in errors.items():
        print(f"  ODE likelihood, {name}: {value:.3g}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
