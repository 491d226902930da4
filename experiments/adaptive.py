r"""Study 2: the adaptive noise schedule — estimator variance against $\mathrm{Var}_{\min}$
and sample quality against training steps, adaptive vs fixed schedules.

    python -m experiments.adaptive            # both parts, default seeds
    python -m experiments.adaptive --quick    # a smoke run

Part A (`gaussian`, exact): Gaussian data $x \sim \mathcal N(0, s^2 I_d)$ with the
Bayes-optimal denoiser, whose loss is $\ell = v\,\chi^2_d$, $v = \mathrm{sigmoid}(\lambda + \ln s^2)$,
so the moments $m_1, m_2$ and $\mathrm{Var}_{\min} = \tfrac14(\int w\sqrt{m_2})^2 - \mathcal L_w^2$
are known. `Adaptive` is fed batches of exact losses (no network) and the variance of the
estimator under its current proposal is integrated (`estimator_variance`) after each
number of updates; fixed schedules are constant lines.

Part B (`gmm`, trained): the 2-D mixture with an MLP trained with Sigmoid(2) under
several proposals. Every `eval_every` steps: the batch variance of
$\hat{\mathcal L}_i$ during training (what the schedule is meant to reduce), the exact
variance of the estimator under the current proposal from the model's own loss moments
$m_1(\lambda), m_2(\lambda)$ (Monte Carlo over test points on a grid of $\lambda$) and its
ratio to that model's $\mathrm{Var}_{\min}$, and the sliced Wasserstein distance of EMA samples.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from eqx_impl import evaluation as ev
from eqx_impl.analytic import GaussianData
from eqx_impl.data import load as load_data
from eqx_impl.importance import Adaptive, estimator_variance, optimal_variance
from eqx_impl.proposals import AdaptiveProposal
from eqx_impl.schedules import Cosine, EDMLogNormal, LinearLogSNR
from eqx_impl.train.evaluate import draw_samples
from eqx_impl.train.step import stratified_uniforms
from eqx_impl.weightings import EDM, ELBO, EpsCosine, Monotonic, Sigmoid
from experiments.common import RESULTS, Budget, mean_se, train_seeds, write_json
from experiments.weightings import OPTIM

__all__ = ["gaussian_part", "gmm_part", "loss_moments", "run_study"]


# --- part A: Gaussian data, exact moments ---------------------------------------------------


def _gaussian_weightings(var: float, lo: float, hi: float) -> dict[str, Any]:
    return {
        "Sigmoid(2)": Sigmoid(2.0),
        "EDM-monotonic": Monotonic(EDM(sigma_data=math.sqrt(var)), lo, hi),
        "ELBO": ELBO(),
        "EpsCosine": EpsCosine(),
    }


def _fixed_schedules(lo: float, hi: float) -> dict[str, Any]:
    return {
        "Cosine": Cosine(lo, hi),
        "EDMLogNormal": EDMLogNormal(logsnr_min=lo, logsnr_max=hi),
        "Linear (uniform)": LinearLogSNR(lo, hi),
    }


@eqx.filter_jit
def _simulate(adaptive: Adaptive, weighting, data: GaussianData, key, steps: int, batch: int):
    """`steps` updates of `adaptive` with exact Bayes-optimal losses; all states returned."""

    def body(state, k):
        k_u, k_chi = jax.random.split(k)
        logsnr, _ = adaptive.sample(state, stratified_uniforms(k_u, batch))
        v = jax.nn.sigmoid(logsnr + math.log(data.var))
        chi2 = jnp.sum(jax.random.normal(k_chi, (batch, data.dim)) ** 2, axis=-1)
        state = adaptive.update(state, logsnr, weighting(logsnr) * v * chi2)
        return state, state

    _, states = jax.lax.scan(body, adaptive.init(), jax.random.split(key, steps))
    return states


def gaussian_part(
    seeds=(0, 1, 2, 3, 4),
    *,
    dim: int = 4,
    var: float = 0.5,
    logsnr_range=(-10.0, 10.0),
    batch: int = 128,
    checkpoints=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
    settings=(("mean", 0.99), ("rms", 0.99), ("mean", 0.999)),
    only: tuple[str, ...] | None = None,
) -> dict:
    """Variance ratio $\\mathrm{Var}(p_k)/\\mathrm{Var}_{\\min}$ of the adaptive proposal after
    $k$ updates (each setting `(target, decay)`, each weighting or those named in `only`),
    and of fixed schedules.

    **Returns:** the part's JSON record.
    """
    lo, hi = logsnr_range
    data = GaussianData(var, dim)
    m1, m2 = data.loss_mean, data.loss_second_moment
    out: dict[str, Any] = {
        "dim": dim,
        "var": var,
        "logsnr_range": [lo, hi],
        "batch": batch,
        "checkpoints": list(checkpoints),
        "weightings": {},
    }
    for wname, w in _gaussian_weightings(var, lo, hi).items():
        if only is not None and wname not in only:
            continue
        vmin = float(optimal_variance(w, m1, m2, lo, hi))
        rec: dict[str, Any] = {"var_min": vmin, "fixed": {}, "adaptive": {}}
        for sname, sched in _fixed_schedules(lo, hi).items():
            rec["fixed"][sname] = float(estimator_variance(w, sched.density, m1, m2, lo, hi)) / vmin
        for target, decay in settings:
            ad = Adaptive(lo, hi, n_bins=100, decay=decay, target=target)
            ratios = []
            for seed in seeds:
                states = _simulate(ad, w, data, jax.random.key(seed), max(checkpoints), batch)
                row = []
                for k in checkpoints:
                    state = jax.tree.map(lambda x, k=k: x[k - 1], states)
                    var_k = estimator_variance(
                        w, lambda x, s=state, a=ad: a.density(s, x), m1, m2, lo, hi, points=ad.edges
                    )
                    row.append(float(var_k) / vmin)
                ratios.append(row)
            ratios = np.asarray(ratios)
            rec["adaptive"][f"{target}, decay {decay}"] = [mean_se(ratios[:, j]) for j in range(len(checkpoints))]
        out["weightings"][wname] = rec
        print(
            f"[gaussian] {wname}: Var_min {vmin:.4g}, final ratios "
            + ", ".join(f"{k} {v[-1]['mean']:.3f}" for k, v in rec["adaptive"].items())
            + ", fixed "
            + ", ".join(f"{k} {v:.2f}" for k, v in rec["fixed"].items()),
            flush=True,
        )
    return out


# --- part B: the GMM, trained -------------------------------------------------------------


@eqx.filter_jit
def _moments(model, x, logsnr_grid, key):
    """$m_1, m_2$ of $\\ell(\\lambda)$ for each grid point: one $\\epsilon$ per test point."""

    def at(logsnr, k):
        eps = jax.random.normal(k, x.shape, x.dtype)
        alpha, sigma = jnp.sqrt(jax.nn.sigmoid(logsnr)), jnp.sqrt(jax.nn.sigmoid(-logsnr))
        z = alpha * x + sigma * eps
        eps_hat = jax.vmap(lambda zi: model(zi, logsnr))(z)
        loss = jnp.sum((eps - eps_hat) ** 2, axis=-1)
        return jnp.mean(loss), jnp.mean(loss**2)

    return jax.vmap(at)(logsnr_grid, jax.random.split(key, logsnr_grid.shape[0]))


def loss_moments(model, x, logsnr_grid, *, key) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo $m_1(\\lambda) = \\mathbb E\\ell$ and $m_2(\\lambda) = \\mathbb E\\ell^2$ on a grid
    (over the rows of `x` and one noise draw each). `model` may be any `eps_model(z, λ)`.

    **Returns:** `(m1, m2)`, NumPy arrays like `logsnr_grid`.
    """
    x = jnp.asarray(x, jnp.float32)
    m1, m2 = _moments(model, x, jnp.asarray(logsnr_grid, jnp.float32), key)
    return np.asarray(m1, np.float64), np.asarray(m2, np.float64)


def _interp(grid, values):
    g, v = jnp.asarray(grid, jnp.float32), jnp.asarray(values, jnp.float32)
    return lambda lam: jnp.interp(lam, g, v)


GMM_PROPOSALS = (
    ("Adaptive (mean)", "adaptive", {"n_bins": 100, "decay": 0.99}),
    ("Adaptive (rms)", "adaptive", {"n_bins": 100, "decay": 0.99, "target": "rms"}),
    ("Cosine", "cosine", {}),
    ("EDMLogNormal", "edm-lognormal", {}),
)


def gmm_part(
    seeds=(0, 1, 2),
    *,
    steps: int = 2000,
    eval_every: int = 500,
    proposals=GMM_PROPOSALS,
    width: int = 128,
    num_samples: int = 1000,
    grid_points: int = 121,
    echo=print,
) -> dict:
    """Train Sigmoid(2) on the GMM under each proposal; evaluate every `eval_every` steps.

    **Returns:** the part's JSON record.
    """
    lo, hi = -15.0, 15.0
    dataset = load_data("gmm", num_train=10000, num_test=2000, seed=0)
    test = dataset.model_data("test")
    x_mom = test[:1000]
    mixture = ev.mixture_from_dataset(dataset)
    grid = np.linspace(lo, hi, grid_points)
    weighting = Sigmoid(2.0)
    # The floor: moments of the Bayes-optimal denoiser of the mixture.
    b1, b2 = loss_moments(mixture.eps, x_mom, grid, key=jax.random.key(123))
    bayes_vmin = float(optimal_variance(weighting, _interp(grid, b1), _interp(grid, b2), lo, hi, points=grid))
    out: dict[str, Any] = {
        "weighting": "Sigmoid(2)",
        "logsnr_range": [lo, hi],
        "steps": steps,
        "eval_every": eval_every,
        "bayes_var_min": bayes_vmin,
        "proposals": {},
    }
    for label, name, args in proposals:
        config = dict(
            data=dict(name="gmm", args={"num_train": 10000, "num_test": 2000, "seed": 0}),
            model=dict(name="mlp", args=dict(width=width, depth=3)),
            objective=dict(
                weighting="sigmoid",
                weighting_args={"bias": 2.0},
                schedule=name,
                schedule_args=args,
                logsnr_min=lo,
                logsnr_max=hi,
            ),
            optim=OPTIM,
            train=dict(steps=steps, batch_size=256),
            eval=dict(num_samples=num_samples, sampler="heun", sampling_steps=32, batch_size=1000),
        )
        evals: dict[int, list[dict]] = {}

        def callback(step, state, setup, evals=evals):
            if step % eval_every and step != steps:
                return
            key = jax.random.fold_in(jax.random.key(7), step)
            m1, m2 = loss_moments(state.model, x_mom, grid, key=key)
            f1, f2 = _interp(grid, m1), _interp(grid, m2)
            if isinstance(setup.proposal, AdaptiveProposal):
                points = np.concatenate([grid, setup.proposal.adaptive.edges])
            else:
                points = grid
            var_p = float(
                estimator_variance(
                    weighting,
                    lambda lam: setup.proposal.density(state.proposal_state, lam),
                    f1,
                    f2,
                    lo,
                    hi,
                    points=points,
                )
            )
            vmin = float(optimal_variance(weighting, f1, f2, lo, hi, points=grid))
            samples = draw_samples(setup.config, state.ema, dataset.shape)
            n = min(len(samples), len(test))
            sw = ev.sliced_wasserstein(samples[:n], test[:n], key=jax.random.key(1))
            evals.setdefault(step, []).append({"var": var_p, "var_min": vmin, "ratio": var_p / vmin, "sw": sw})

        runs = train_seeds(config, seeds, dataset=dataset, chunk=eval_every, callback=callback)
        steps_list = sorted(evals)
        rec = {
            "steps": steps_list,
            "batch_var": [mean_se(runs.loss_var[:, j]) for j in range(len(runs.steps))],
            "batch_var_steps": runs.steps,
        }
        for key_ in ("var", "var_min", "ratio", "sw"):
            rec[key_] = [mean_se([e[key_] for e in evals[s]]) for s in steps_list]
        rec["wall_s"] = round(runs.wall_s, 1)
        out["proposals"][label] = rec
        echo(
            f"[gmm] {label:<17} final: batch var {rec['batch_var'][-1]['mean']:.4g}, "
            f"Var/Var_min {rec['ratio'][-1]['mean']:.3f}±{rec['ratio'][-1]['se']:.2g}, "
            f"SW {rec['sw'][-1]['mean']:.4f}±{rec['sw'][-1]['se']:.2g}  ({runs.wall_s:.0f} s)"
        )
    return out


def run_study(parts=("gaussian", "gmm"), *, quick: bool = False, budget_min: float = 20.0, seeds: int = 3) -> dict:
    """Run the parts. **Returns:** the JSON payload."""
    budget = Budget("adaptive", budget_min * 60)
    budget.announce()
    payload: dict[str, Any] = {"study": "adaptive"}
    if "gaussian" in parts:
        if quick:
            payload["gaussian"] = gaussian_part((0,), checkpoints=(1, 10), settings=(("mean", 0.99),))
        else:
            payload["gaussian"] = gaussian_part(tuple(range(max(seeds, 5))))
    if "gmm" in parts:
        if quick:
            payload["gmm"] = gmm_part(
                (0,), steps=20, eval_every=10, proposals=GMM_PROPOSALS[:1], width=16, num_samples=50, grid_points=11
            )
        else:
            payload["gmm"] = gmm_part(tuple(range(seeds)))
    payload["timing"] = budget.report()
    return payload


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("gaussian", "gmm"), default=["gaussian", "gmm"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget-min", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    payload = run_study(args.parts, quick=args.quick, budget_min=args.budget_min, seeds=args.seeds)
    default = "adaptive_quick.json" if args.quick else "adaptive.json"
    write_json(Path(args.out) if args.out else RESULTS / default, payload)


if __name__ == "__main__":
    main()
