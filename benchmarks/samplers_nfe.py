r"""Sampler error against the number of denoiser evaluations (NFE), on a problem with the exact answer.

The data are the 2-D, 8-component Gaussian mixture of `eqx_vs_reference.py` and the model
is its Bayes-optimal denoiser (`GaussianMixture.eps`), so the only errors left are the
sampler's. Every sampler starts from the same $x_0 \sim \mathcal N(0, \sigma_{\max}^2 I)$ and
walks the same EDM noise levels ($\sigma_{\max} = 80$, $\sigma_{\min} = 0.002$, $\rho = 7$),
ending with the denoised $\hat x = D(x; \sigma_{\min})$:

- **Heun** (`heun_sampler`, $N$ steps, $2N - 1$ evaluations) and **Euler** (`euler_sampler`,
  $N$ evaluations) on `edm_sigmas(N)`;
- **DPM-Solver-2** (`dpm_2_sampler`, $2N - 1$ evaluations), **DPM-Solver++(2M)**
  (`dpmpp_2m_sampler`, $N$) and **DPM-Solver++(2M) SDE** (`dpmpp_2m_sde_sampler`, $\eta = 1$,
  $N$) on `edm_sigmas(N)`;
- **DDIM** and **ancestral** (`ddim_sampler`, `ancestral_sampler`) on the log-SNRs
  $\lambda_i = -2\ln\sigma_i$ of `edm_sigmas(N)[:-1]`, then $\hat x = D(z;\lambda_N)$ — the
  step to $\lambda = \infty$ — so $N$ evaluations, like Euler.

Two measures:

1. **ODE error** (Heun, Euler, DDIM, DPM-Solver-2, DPM-Solver++(2M)): the RMS distance $\sqrt{\mathbb E\|x - x^\star\|^2}$ of
   the endpoint to $x^\star$, the same probability-flow ODE from the same $x_0$ solved by the
   float64 reference Heun sampler with `fine_steps` steps (its own error, estimated from a
   solve with half the steps, is printed). Heun, DPM-Solver-2 and DPM-Solver++(2M) should fall
   as $\mathrm{NFE}^{-2}$, Euler and DDIM as $\mathrm{NFE}^{-1}$.
2. **Distribution error** (all seven): the sliced 2-Wasserstein distance of the samples to the
   mixture itself. Along each of `n_directions` fixed random directions $\theta$ the mixture
   projects to a 1-D mixture with a closed-form CDF, so
   $W_2^2 = \int_0^1 (F_{\mathrm{samples}}^{-1}(u) - F_\theta^{-1}(u))^2\,du$ is computed from
   the sorted projections and the exact quantiles; the directions are averaged in $W_2^2$.
   A finite sample of the mixture itself is this far away too: that noise floor (exact
   samples, same size) is printed with the table.

The ODE error uses the first `ode_batch` starting points (the float64 fine solve is the slow
part); the distribution error uses all `batch`.

    python -m benchmarks.samplers_nfe [--batch 16384 --plot docs/figures/benchmarks/samplers_nfe.png]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

import eqx_impl as E
import reference as R
from benchmarks.eqx_vs_reference import gmm_parameters
from eqx_impl import names

# Every sampler of `eqx_impl.names.SAMPLERS` but `stochastic` (EDM's Heun with churn, not
# measured here), the deterministic ones first: they also get the ODE-error column.
ODE_SAMPLERS = ("heun", "euler", "ddim", "dpm_2", "dpmpp_2m")
SAMPLERS = (*ODE_SAMPLERS, *(s for s in names.SAMPLERS if s not in (*ODE_SAMPLERS, "stochastic")))
DEFAULT_NFES = (4, 8, 16, 32, 64, 128)
ORDER = {"heun": 2, "euler": 1, "ddim": 1, "dpm_2": 2, "dpmpp_2m": 2}
TWO_CALLS = ("heun", "dpm_2")  # 2N - 1 evaluations for N steps ending at σ = 0


@dataclasses.dataclass
class NFEResult:
    """Errors per sampler at each requested NFE (`nfe[name][j]` is the evaluations actually used)."""

    nfe: dict[str, list[int]]
    ode_error: dict[str, list[float]]
    sliced_w2: dict[str, list[float]]
    sliced_w2_floor: float
    fine_error: float  # estimated error of the fine reference solution itself
    batch: int
    ode_batch: int
    fine_steps: int

    def order(self, name: str, min_nfe: int = 0) -> float:
        """Least-squares slope of $-\\log(\\text{ODE error})$ against $\\log \\mathrm{NFE}$ over NFE >= `min_nfe`."""
        nfe, err = np.asarray(self.nfe[name], float), np.asarray(self.ode_error[name], float)
        keep = nfe >= min_nfe
        return float(-np.polyfit(np.log(nfe[keep]), np.log(err[keep]), 1)[0])


def steps_for(name: str, nfe: int) -> int:
    """Steps $N$ giving at most `nfe` evaluations: $N = \\lfloor(\\mathrm{nfe}+1)/2\\rfloor$ for Heun and DPM-Solver-2, else `nfe`."""
    return (nfe + 1) // 2 if name in TWO_CALLS else nfe


def evaluations(name: str, steps: int) -> int:
    """Denoiser calls of `name` with `steps` steps ($2N-1$ for Heun and DPM-Solver-2, $N$ otherwise)."""
    return 2 * steps - 1 if name in TWO_CALLS else steps


def make_sampler(name: str, gmm: E.GaussianMixture, steps: int):
    """A jitted batch sampler `f(x0, keys) -> x̂`: `x0` `(B, 2)` noise scaled by $\\sigma_{\\max}$, `keys` `(B,)` (stochastic samplers only)."""
    sigmas = E.edm_sigmas(steps)
    denoiser = E.denoiser_from_eps(gmm.eps)
    logsnrs = E.sigma_to_logsnr(sigmas[:-1])  # σ_N = 0 is λ = ∞: done below as the final denoise
    alpha0 = 1.0 / jnp.hypot(1.0, sigmas[0])

    def one(x0, key):
        if name == "heun":
            return E.heun_sampler(denoiser, x0, sigmas)
        if name == "euler":
            return E.euler_sampler(denoiser, x0, sigmas)
        if name == "dpm_2":
            return E.dpm_2_sampler(denoiser, x0, sigmas)
        if name == "dpmpp_2m":
            return E.dpmpp_2m_sampler(denoiser, x0, sigmas)
        if name == "dpmpp_2m_sde":
            return E.dpmpp_2m_sde_sampler(denoiser, x0, sigmas, key=key)
        z0 = alpha0 * x0  # the VP point with the same λ as x_edm = x0
        if name == "ddim":
            z = E.ddim_sampler(gmm.eps, z0, logsnrs) if steps > 1 else z0
        else:
            z = E.ancestral_sampler(gmm.eps, z0, logsnrs, key=key) if steps > 1 else z0
        return gmm.denoise(z, logsnrs[-1])

    return eqx.filter_jit(lambda x0, keys: jax.vmap(one)(x0, keys))


def _exact_quantiles(weights, means, stds, directions: np.ndarray, n: int, grid: int = 20_001) -> np.ndarray:
    r"""Quantiles $F_\theta^{-1}((i + \frac12)/n)$ of the mixture projected on each direction, shape `(n, P)`.

    The projection is the 1-D mixture $\sum_k w_k\mathcal N(\mu_k\cdot\theta, s_k^2)$; its CDF is
    tabulated on a fine grid and inverted by interpolation.
    """
    u = (np.arange(n) + 0.5) / n
    out = np.empty((n, len(directions)))
    for p, theta in enumerate(directions):
        m = means @ theta
        y = np.linspace(np.min(m - 9 * stds), np.max(m + 9 * stds), grid)
        cdf = np.sum(weights * special.ndtr((y[:, None] - m) / stds), axis=1)
        out[:, p] = np.interp(u, cdf, y)
    return out


def sliced_w2(samples: np.ndarray, quantiles: np.ndarray, directions: np.ndarray) -> float:
    r"""$\big(\frac1P\sum_p W_2^2\big)^{1/2}$ of `samples` `(n, 2)` to the distribution with these exact projected `quantiles` `(n, P)`."""
    projected = np.sort(samples @ directions.T, axis=0)
    return float(np.sqrt(np.mean((projected - quantiles) ** 2)))


def measure(
    nfes=DEFAULT_NFES,
    *,
    samplers=SAMPLERS,
    batch: int = 16_384,
    ode_batch: int = 2048,
    fine_steps: int = 1024,
    n_directions: int = 64,
    seed: int = 0,
) -> NFEResult:
    """Run each of `samplers` at every NFE of `nfes` on `batch` starting points.

    **Returns:** an `NFEResult`.
    """
    rng = np.random.default_rng(seed)
    weights, means, stds = gmm_parameters()
    ref_gmm = R.GaussianMixture(weights, means, stds)
    gmm = E.GaussianMixture(*(jnp.asarray(a, jnp.float32) for a in (weights, means, stds)))
    sigma_max = float(R.edm_sigmas(2)[0])
    x0 = rng.standard_normal((batch, 2)) * sigma_max
    theta = rng.uniform(0.0, 2.0 * np.pi, n_directions)
    directions = np.stack([np.cos(theta), np.sin(theta)], 1)
    quantiles = _exact_quantiles(weights, means, stds, directions, batch)
    floor = sliced_w2(ref_gmm.sample(batch, rng=rng), quantiles, directions)

    ode_batch = min(ode_batch, batch)
    ref_denoiser = R.denoiser_from_eps(ref_gmm.eps)
    fine = R.heun_sampler(ref_denoiser, x0[:ode_batch], R.edm_sigmas(fine_steps))
    half = R.heun_sampler(ref_denoiser, x0[:ode_batch], R.edm_sigmas(fine_steps // 2))
    fine_error = float(np.sqrt(np.mean(np.sum((half - fine) ** 2, -1)))) / 3.0  # Richardson, order 2

    x32 = jnp.asarray(x0, jnp.float32)
    keys = jax.random.split(jax.random.key(seed), batch)
    result = NFEResult({}, {}, {}, floor, fine_error, batch, ode_batch, fine_steps)
    for name in samplers:
        result.nfe[name], result.ode_error[name], result.sliced_w2[name] = [], [], []
        for target in nfes:
            steps = steps_for(name, target)
            out = np.asarray(make_sampler(name, gmm, steps)(x32, keys), np.float64)
            result.nfe[name].append(evaluations(name, steps))
            if name in ODE_SAMPLERS:
                err = np.sqrt(np.mean(np.sum((out[:ode_batch] - fine) ** 2, -1)))
                result.ode_error[name].append(float(err))
            result.sliced_w2[name].append(sliced_w2(out, quantiles, directions))
    return result


def format_table(result: NFEResult) -> str:
    """The two measures side by side, one row per NFE target, and the fitted orders."""
    n = len(result.nfe["euler"])
    head = f"{'NFE':>5} | " + " ".join(f"{s + ' ODE':>13}" for s in ODE_SAMPLERS) + " | "
    head += " ".join(f"{s + ' SW2':>17}" for s in SAMPLERS)
    lines = [head, "-" * len(head)]
    for j in range(n):
        row = f"{result.nfe['euler'][j]:>5} | " + " ".join(f"{result.ode_error[s][j]:>13.2e}" for s in ODE_SAMPLERS)
        lines.append(row + " | " + " ".join(f"{result.sliced_w2[s][j]:>17.2e}" for s in SAMPLERS))
    lines.append(
        f"(Heun, DPM-2: 2N-1 = NFE-1 evaluations. ODE: RMS distance to the float64 reference Heun with "
        f"{result.fine_steps} steps (its error ~{result.fine_error:.0e}), {result.ode_batch} points. "
        f"SW2: sliced W2 to the exact mixture, {result.batch} samples; exact samples score "
        f"{result.sliced_w2_floor:.2e})"
    )
    orders = ", ".join(f"{s} {result.order(s, 16):.2f} (expected {ORDER[s]})" for s in ODE_SAMPLERS)
    lines.append(f"fitted order of the ODE error for NFE >= 16: {orders}")
    return "\n".join(lines)


def plot(result: NFEResult, path: str | Path) -> Path:
    """Log-log plot of both measures against NFE. **Returns:** the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    # DDIM is Euler's method in (x/α, σ) (Karras et al. 2022, §3): its curves lie on Euler's.
    styles = {
        "heun": "o-", "euler": "s-", "ddim": "x--", "dpm_2": "d-", "dpmpp_2m": "v-", "ancestral": "^-", "dpmpp_2m_sde": "P-",
    }  # fmt: skip
    for s in ODE_SAMPLERS:
        ax1.loglog(result.nfe[s], result.ode_error[s], styles[s], label=f"{s} (fit order {result.order(s, 16):.2f})")
    nfe = np.asarray(result.nfe["euler"], float)
    for order, style in ((1, ":"), (2, "--")):
        ref = result.ode_error["euler" if order == 1 else "heun"][-1] * (nfe[-1] / nfe) ** order
        ax1.loglog(nfe, ref, "k" + style, lw=0.8, label=f"slope -{order}")
    ax1.set(xlabel="NFE", ylabel="RMS distance to the exact ODE endpoint", title="ODE solver error")
    for s in SAMPLERS:
        ax2.loglog(result.nfe[s], result.sliced_w2[s], styles[s], label=s)
    ax2.axhline(result.sliced_w2_floor, color="gray", ls="--", lw=0.8, label=f"exact samples (floor, n={result.batch})")
    ax2.set(xlabel="NFE", ylabel="sliced $W_2$ to the exact mixture", title="Distance to the exact distribution")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Samplers on a 2-D Gaussian mixture with its Bayes-optimal denoiser (batch {result.batch})")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16_384)
    parser.add_argument("--ode-batch", type=int, default=2048)
    parser.add_argument("--fine-steps", type=int, default=1024)
    parser.add_argument("--nfes", type=int, nargs="+", default=list(DEFAULT_NFES))
    parser.add_argument("--plot", type=Path, default=None, help="write the log-log plot here (PNG)")
    args = parser.parse_args()
    result = measure(args.nfes, batch=args.batch, ode_batch=args.ode_batch, fine_steps=args.fine_steps)
    print(format_table(result))
    if args.plot is not None:
        print(f"plot: {plot(result, args.plot)}")


if __name__ == "__main__":
    main()
