r"""Study 1: Kingma & Gao's table at small scale — weightings × schedules on 8×8 digits
and the 2-D Gaussian mixture.

    python -m experiments.weightings                 # both data sets, 3 seeds
    python -m experiments.weightings --data gmm      # one data set
    python -m experiments.weightings --quick         # a smoke run (few steps, 1 seed)

Design (the full 10 weightings × 3 schedules × 2 data sets × 3 seeds grid does not fit a
2-core CPU): every weighting with the adaptive schedule, plus the fixed schedules `cosine`
and `edm-lognormal` crossed with `eps-cosine`, `sigmoid(2)` and `edm-monotonic`.
`eps-cosine` with the `cosine` schedule is the paper's baseline, ε-prediction with the
cosine schedule ($w/p$ constant: the plain ε-MSE). Our `Sigmoid(b)` is
$\mathrm{sigmoid}(b-\lambda)$, the paper's convention, so $b=2$ is the proposed weighting.

Metrics (the EMA model, Heun sampler): digits — classifier Fréchet distance of 400 samples
against the test set (`fd`, lower is better) and the VDM bound in bits/dim on the test set
(`bpd`); GMM — sliced Wasserstein distance of 2000 samples against the test set
(`sliced_wasserstein`), exact NLL of the samples under the true mixture (`gmm_nll_samples`)
and the ELBO gap $\tfrac12\int \mathbb E(\ell_{\text{model}} - \ell^*)\,d\lambda$ in nats,
the excess of the model's diffusion loss over the Bayes-optimal denoiser's (`elbo_gap`;
comparable across weightings because it is always measured with $w = 1$).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jax

from eqx_impl import evaluation as ev
from eqx_impl.data import Dataset
from eqx_impl.data import load as load_data
from eqx_impl.schedules import Cosine
from eqx_impl.train.evaluate import draw_samples, evaluate_model
from eqx_impl.weightings import ELBO
from experiments.common import RESULTS, Budget, mean_se, train_seeds, write_json

__all__ = ["BASE", "DATASETS", "grid", "noise_floor", "run_config", "run_study"]

OPTIM = dict(lr=2e-3, warmup_steps=100, lr_decay="cosine", final_lr_ratio=0.05, grad_clip=1.0, ema_decay=0.999)

BASE: dict[str, dict[str, Any]] = {
    "digits": dict(
        data=dict(name="digits", args={"seed": 0}),
        model=dict(name="mlp", args=dict(width=256, depth=3)),
        objective=dict(logsnr_min=-12.0, logsnr_max=8.0),
        optim=OPTIM,
        train=dict(steps=1500, batch_size=128),
        eval=dict(
            num_samples=400, sampler="heun", sampling_steps=24, metrics=["fd", "bpd"], bpd_num_t=16, batch_size=400
        ),
    ),
    "gmm": dict(
        data=dict(name="gmm", args={"num_train": 10000, "num_test": 2000, "seed": 0}),
        model=dict(name="mlp", args=dict(width=128, depth=3)),
        objective=dict(logsnr_min=-15.0, logsnr_max=15.0),
        optim=OPTIM,
        train=dict(steps=2000, batch_size=256),
        eval=dict(
            num_samples=2000,
            sampler="heun",
            sampling_steps=32,
            metrics=["sliced_wasserstein", "gmm_nll"],
            batch_size=1000,
        ),
    ),
}
DATASETS = tuple(BASE)
ADAPTIVE_ARGS = {"n_bins": 100, "decay": 0.99}

# What each metric means and which direction is better (for the tables).
METRICS = {
    "digits": {"fd": "FD ↓", "bpd": "bpd ↓"},
    "gmm": {
        "sliced_wasserstein": "SW ↓",
        "gmm_nll_samples": "NLL of samples (nats) ↓",
        "elbo_gap": "ELBO gap (nats) ↓",
    },
}


def _weightings(sigma_data: float) -> list[tuple[str, str, dict]]:
    """`(label, registry name, arguments)` for every weighting of the study."""
    out = [("EpsCosine", "eps-cosine", {})]
    out += [(f"Sigmoid({b})", "sigmoid", {"bias": float(b)}) for b in (1, 2, 3, 4, 5)]
    out += [
        ("EDM", "edm", {"sigma_data": sigma_data}),
        ("EDM-monotonic", "edm-monotonic", {"sigma_data": sigma_data}),
        ("Exponential(0.5)", "exponential", {"rate": 0.5}),
        ("ELBO", "elbo", {}),
    ]
    return out


def grid(sigma_data: float) -> list[dict]:
    """The study's configurations: every weighting with `adaptive`, and `cosine` and
    `edm-lognormal` crossed with EpsCosine, Sigmoid(2) and EDM-monotonic.

    **Returns:** a list of `{"weighting", "schedule", "name", "weighting_args", "schedule_args"}`.
    """
    runs = []
    ws = _weightings(sigma_data)
    for label, name, args in ws:
        runs.append(
            dict(weighting=label, schedule="Adaptive", name=name, weighting_args=args, schedule_name="adaptive")
        )
    for label, name, args in ws:
        if label not in ("EpsCosine", "Sigmoid(2)", "EDM-monotonic"):
            continue
        for sched_label, sched in (("Cosine", "cosine"), ("EDMLogNormal", "edm-lognormal")):
            runs.append(
                dict(weighting=label, schedule=sched_label, name=name, weighting_args=args, schedule_name=sched)
            )
    return runs


def _config(base: dict, run: dict, steps: int | None) -> dict:
    cfg = {k: dict(v) for k, v in base.items()}
    cfg["objective"] = dict(
        base["objective"],
        weighting=run["name"],
        weighting_args=run["weighting_args"],
        schedule=run["schedule_name"],
        schedule_args=ADAPTIVE_ARGS if run["schedule_name"] == "adaptive" else {},
    )
    if steps is not None:
        cfg["train"] = dict(base["train"], steps=int(steps))
    return cfg


def noise_floor(dataset: Dataset, base: dict) -> dict[str, float]:
    """The metrics of held-out *data* (training examples in place of samples): the value a
    perfect sampler would get with this many samples.

    **Returns:** `{metric: value}`.
    """
    e = base["eval"]
    test = dataset.model_data("test")
    train = dataset.model_data("train")
    out: dict[str, float] = {}
    if dataset.name == "digits":
        clf = ev.load_classifier(ev.ClassifierConfig(dataset="digits", data_seed=int(base["data"]["args"]["seed"])))
        out["fd"] = ev.frechet_classifier_distance(clf, train[: e["num_samples"]], test)
    else:
        n = min(e["num_samples"], len(test))
        out["sliced_wasserstein"] = ev.sliced_wasserstein(
            train[:n].reshape(n, -1),
            test[:n].reshape(n, -1),
            key=jax.random.fold_in(jax.random.key(e.get("seed", 0)), 1),
        )
        out["gmm_nll_samples"] = ev.exact_nll(ev.mixture_from_dataset(dataset), train[:n]).mean
        out["elbo_gap"] = 0.0
    return out


def _evaluate(dataset: Dataset, setup, state) -> dict[str, float]:
    cfg = setup.config
    samples = draw_samples(cfg, state.ema, dataset.shape)
    res = evaluate_model(
        cfg, dataset, state.ema, setup.weighting, setup.proposal, state.proposal_state, samples=samples
    )
    out = {k: float(res[k]) for k in ("fd", "bpd", "sliced_wasserstein", "gmm_nll_samples") if k in res}
    if dataset.name == "gmm":
        o = cfg.objective
        gap = ev.bayes_gap(
            state.ema,
            ev.mixture_from_dataset(dataset),
            dataset.model_data("test"),
            key=jax.random.key(1),
            weighting=ELBO(),
            schedule=Cosine(o.logsnr_min, o.logsnr_max),
            num_t=8,
            batch_size=cfg.eval.batch_size,
        )
        out["elbo_gap"] = float(gap.gap.mean)
    return out


def run_config(dataset: Dataset, base: dict, run: dict, seeds, steps: int | None = None) -> dict:
    """Train and evaluate one configuration for every seed.

    **Returns:** the run's record: its description, `metrics` as `{name: mean_se}`, the
    final training loss and wall time; a run whose loss diverged gets `"failed"`.
    """
    t0 = time.perf_counter()
    record = {k: run[k] for k in ("weighting", "schedule", "weighting_args")}
    record["schedule_name"] = run["schedule_name"]
    try:
        runs = train_seeds(_config(base, run, steps), seeds, dataset=dataset)
    except FloatingPointError as err:
        record["failed"] = str(err)
        record["wall_s"] = round(time.perf_counter() - t0, 1)
        return record
    per_seed = [_evaluate(dataset, setup, state) for setup, state in zip(runs.setups, runs.states, strict=True)]
    record["metrics"] = {k: mean_se([m[k] for m in per_seed]) for k in per_seed[0]}
    record["final_loss"] = mean_se(runs.loss[:, -1])
    record["loss_var"] = mean_se(runs.loss_var[:, -1])
    record["wall_s"] = round(time.perf_counter() - t0, 1)
    return record


def run_study(
    datasets=DATASETS,
    seeds=(0, 1, 2),
    *,
    steps: int | None = None,
    budget_min: float = 40.0,
    only: int | None = None,
    overrides: dict | None = None,
    echo=print,
) -> dict:
    """Run the grid on each data set. `only` keeps the first `only` configurations,
    `overrides` replaces base-config sections (e.g. a smaller network for tests).

    **Returns:** the JSON payload.
    """
    budget = Budget("weightings", budget_min * 60)
    budget.announce()
    payload: dict[str, Any] = {"study": "weightings", "seeds": list(seeds), "datasets": {}}
    for name in datasets:
        base = {k: dict(v) for k, v in BASE[name].items()}
        for section, values in (overrides or {}).items():
            base[section] = dict(base[section], **values)
        dataset = load_data(base["data"]["name"], **base["data"]["args"])
        sigma_data = float(dataset.sigma_data)
        runs = grid(sigma_data)[: only if only else None]
        records = []
        for i, run in enumerate(runs):
            rec = run_config(dataset, base, run, seeds, steps)
            records.append(rec)
            summary = (
                "FAILED"
                if "failed" in rec
                else ", ".join(f"{k} {v['mean']:.4g}±{v['se']:.2g}" for k, v in rec["metrics"].items())
            )
            echo(
                f"[{name} {i + 1}/{len(runs)}] {rec['weighting']:>16} / {rec['schedule']:<12} {summary}  ({rec['wall_s']:.0f} s)"
            )
        payload["datasets"][name] = {
            "config": {**base, "train": dict(base["train"], steps=steps or base["train"]["steps"])},
            "sigma_data": sigma_data,
            "metrics": METRICS[name],
            "floor": noise_floor(dataset, base),
            "runs": records,
        }
    payload["timing"] = budget.report()
    return payload


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the base config's)")
    parser.add_argument("--budget-min", type=float, default=None, help="stated CPU budget (minutes)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 steps, 1 seed, 2 configurations")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        payload = run_study(args.data, (0,), steps=50, budget_min=2.0, only=2)
    else:
        budget = args.budget_min if args.budget_min is not None else 20.0 * len(args.data)
        payload = run_study(args.data, tuple(range(args.seeds)), steps=args.steps, budget_min=budget)
    default = "weightings_quick.json" if args.quick else f"weightings_{'_'.join(args.data)}.json"
    write_json(Path(args.out) if args.out else RESULTS / default, payload)


if __name__ == "__main__":
    main()
