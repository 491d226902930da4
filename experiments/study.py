r"""The study of Kingma & Gao's claims: every arm trained with several seeds, scored with
both of the paper's samplers, written as JSON for `python -m experiments.render`.

    python -m experiments.study --scale cpu      # the study (2 CPU cores, < 90 min)
    python -m experiments.study --scale gpu      # the main job's U-Net and step count
    python -m experiments.study --scale smoke    # a pipeline check (minutes)

Seed $s$ sets everything random in a run: the training seed (`train.seed`: network
initialisation, noise levels, $\epsilon$, batch order), the train/test split
(`data.args.seed`: a fresh permutation of the 1797 digits, or fresh draws of the mixture),
hence the test set every metric is computed on, and the sampler noise (`eval.seed`:
initial noise, ancestral noise, the ELBO's $t$ and $\epsilon$). The arms of one seed share
its split, so arms are compared on the same data.

Arms (digits, U-Net): ε-prediction with the cosine schedule (`EpsCosine / cosine`, the
paper's baseline); $\mathrm{sigmoid}(b - \lambda)$ for $b = 1..5$ with the cosine
schedule (the bias sweep); Sigmoid(2) and EDM-monotonic with the adaptive schedule. GMM
(2-D mixture of 8 Gaussians, MLP): the baseline, Sigmoid(2) with cosine and adaptive,
EDM-monotonic with adaptive.

Metrics: digits — the VDM bound in bits/dim on the test set (`bpd`; the uniform
distribution over the 17 levels scores $\log_2 17 = 4.09$) and the classifier Fréchet
distance of samples against the test set with the ancestral (DDPM) sampler and with EDM's
Heun sampler at equal network evaluations (`fd_ancestral`, `fd_heun`). GMM — the model's
negative ELBO and its probability-flow ODE NLL against the true NLL of the test set
(nats), the exact NLL of samples under the true mixture, and the sliced Wasserstein
distance, whose floor is measured over fresh draws of the true mixture.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eqx_impl import data as data_lib
from eqx_impl import evaluation as ev
from eqx_impl.train.config_io import config_from_dict
from eqx_impl.train.evaluate import draw_samples, evaluate_model
from eqx_impl.train.loop import build
from eqx_impl.train.step import run_steps
from experiments.common import RESULTS, Budget, write_json
from experiments.scales import SCALES, scale

__all__ = ["SAMPLERS", "UNIFORM_BPD", "arms", "run_arm", "run_study"]

SAMPLERS = ("ancestral", "heun")
UNIFORM_BPD = math.log2(17)  # the uniform distribution over the 17 grey levels of digits


def arms(name: str, sigma_data: float) -> list[dict[str, Any]]:
    """The arms of data set `name` (`digits` or `gmm`).

    **Returns:** a list of `{"label", "weighting", "weighting_args", "schedule"}`.
    """

    def arm(label, weighting, args, schedule):
        return {"label": label, "weighting": weighting, "weighting_args": args, "schedule": schedule}

    base = [arm("EpsCosine / cosine", "eps-cosine", {}, "cosine")]
    edm = arm("EDM-monotonic / adaptive", "edm-monotonic", {"sigma_data": sigma_data}, "adaptive")
    sig2_adaptive = arm("Sigmoid(2) / adaptive", "sigmoid", {"bias": 2.0}, "adaptive")
    if name == "digits":
        sweep = [arm(f"Sigmoid({b}) / cosine", "sigmoid", {"bias": float(b)}, "cosine") for b in range(1, 6)]
        return base + sweep + [sig2_adaptive, edm]
    if name == "gmm":
        return base + [arm("Sigmoid(2) / cosine", "sigmoid", {"bias": 2.0}, "cosine"), sig2_adaptive, edm]
    raise ValueError(f"unknown data set {name!r}; the study has 'digits' and 'gmm'.")


def _config(base: dict, arm: dict, seed: int, sigma_data: float) -> dict:
    cfg = json.loads(json.dumps(base))
    cfg.pop("ode_examples", None)  # a study setting, not a config section
    cfg["data"]["args"]["seed"] = seed
    cfg["model"]["sigma_data"] = sigma_data  # one value for all seeds: the seeds share one compiled step
    cfg["objective"].update(
        weighting=arm["weighting"],
        weighting_args=arm["weighting_args"],
        schedule=arm["schedule"],
        schedule_args={"n_bins": 100, "decay": 0.99} if arm["schedule"] == "adaptive" else {},
    )
    cfg["train"]["seed"] = seed
    cfg["eval"]["seed"] = seed
    return cfg


def _train(cfg_dict: dict, dataset, chunk: int):
    setup = build(config_from_dict(cfg_dict), dataset)
    cfg, state = setup.config, setup.initial
    data = jnp.asarray(dataset.model_data("train"))
    stream = data_lib.batches(np.arange(len(data)), cfg.train.batch_size, seed=cfg.train.seed, start_step=0)
    step, loss = 0, math.nan
    while step < cfg.train.steps:
        k = min(chunk, cfg.train.steps - step)
        idx = jnp.asarray(np.stack([next(stream) for _ in range(k)]), jnp.int32)
        state, metrics = run_steps(setup.trainer, state, data, idx)
        step += k
        loss = float(np.mean(np.asarray(metrics["loss"], np.float64)))
        if not math.isfinite(loss):
            raise FloatingPointError(f"{cfg.objective.weighting}: non-finite loss near step {step}")
    return setup, state, loss


def _score(name: str, setup, state, dataset, ode_examples: int | None = None) -> dict[str, float]:
    cfg, model = setup.config, state.ema
    ev_args = (cfg, dataset, model, setup.weighting)
    out: dict[str, float] = {}
    if name == "digits":
        out["bpd"] = float(evaluate_model(*ev_args, metrics=["bpd"])["bpd"])
        ode_cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, bpd_examples=ode_examples))
        out["bpd_ode"] = float(evaluate_model(ode_cfg, *ev_args[1:], metrics=["nll_ode"])["nll_ode_bpd"])
    else:
        res = evaluate_model(*ev_args, metrics=["bpd", "nll_ode"])
        true = float(ev.exact_nll(ev.mixture_from_dataset(dataset), dataset.model_data("test")).mean)
        out.update(nelbo=float(res["nats"]), nll_ode=float(res["nll_ode_nats"]), true_nll=true)
        out["nelbo_excess"] = out["nelbo"] - true
        out["nll_ode_excess"] = out["nll_ode"] - true
    for sampler in SAMPLERS:
        steps = cfg.eval.sampling_steps * (2 if sampler == "ancestral" else 1)  # equal network evaluations
        samples = draw_samples(cfg, model, dataset.shape, sampler=sampler, steps=steps)
        metrics = ["fd"] if name == "digits" else ["gmm_nll", "sliced_wasserstein"]
        res = evaluate_model(*ev_args, samples=samples, metrics=metrics)
        if name == "digits":
            out[f"fd_{sampler}"] = float(res["fd"])
        else:
            out[f"sample_nll_{sampler}"] = float(res["gmm_nll_samples"])
            out[f"sw_{sampler}"] = float(res["sliced_wasserstein"])
    return out


def run_arm(name: str, base: dict, arm: dict, seeds, sigma_data: float, chunk: int, datasets: dict) -> dict:
    """Train and score one arm for every seed (data sets cached per split seed in `datasets`).

    **Returns:** `{**arm, "per_seed": [{"seed", metrics..., "final_loss"}], "wall_s"}`, or
    with `"failed"` when a seed's loss diverged.
    """
    t0 = time.perf_counter()
    record: dict[str, Any] = dict(arm, per_seed=[])
    for seed in seeds:
        cfg = _config(base, arm, int(seed), sigma_data)
        if seed not in datasets:
            datasets[seed] = data_lib.load(cfg["data"]["name"], **cfg["data"]["args"])
        t_seed = time.perf_counter()
        try:
            setup, state, loss = _train(cfg, datasets[seed], chunk)
        except FloatingPointError as err:
            record["failed"] = f"seed {seed}: {err}"
            break
        t_train = time.perf_counter() - t_seed
        scores = _score(name, setup, state, datasets[seed], base.get("ode_examples"))
        timing = {"train_s": round(t_train, 1), "score_s": round(time.perf_counter() - t_seed - t_train, 1)}
        record["per_seed"].append({"seed": int(seed), **scores, "final_loss": loss, **timing})
    record["wall_s"] = round(time.perf_counter() - t0, 1)
    return record


def _floors(name: str, base: dict, seeds, draws: int) -> dict[str, Any]:
    """What real data scores: digits — FD of held-out training images (as many as the
    samples) against the test set, per seed; GMM — SW and sample NLL of `draws` fresh draws
    of the true mixture (split of seed 0).

    **Returns:** `{metric: [values]}`.
    """
    n = base["eval"]["num_samples"]
    if name == "digits":
        fds = []
        for seed in seeds:
            ds = data_lib.load("digits", seed=int(seed))
            clf = ev.load_classifier(ev.ClassifierConfig(dataset="digits", data_seed=int(seed)))
            fds.append(float(ev.frechet_classifier_distance(clf, ds.model_data("train")[:n], ds.model_data("test"))))
        return {"fd_data": fds, "bpd_uniform": UNIFORM_BPD}
    ds = data_lib.load("gmm", **dict(base["data"]["args"], seed=0))
    mixture = ev.mixture_from_dataset(ds)
    test = np.asarray(ds.model_data("test"))
    m = min(n, len(test))
    sw, nll = [], []
    for i in range(draws):
        x = np.asarray(mixture.sample(m, key=jax.random.key(1000 + i)))
        sw.append(float(ev.sliced_wasserstein(x, test[:m], key=jax.random.key(i))))
        nll.append(float(ev.exact_nll(mixture, x).mean))
    return {"sw_data": sw, "sample_nll_data": nll, "true_nll_test": float(ev.exact_nll(mixture, test).mean)}


def run_study(
    scale_name: str,
    *,
    seeds=None,
    datasets=("digits", "gmm"),
    only: int | None = None,
    settings: dict | None = None,
    echo=print,
) -> dict:
    """Run every arm of `datasets` at scale `scale_name` (`only`: the first `only` arms each;
    `settings`: a scale dict used in place of `SCALES[scale_name]`, e.g. for tests).

    **Returns:** the JSON payload.
    """
    sc = scale(scale_name) if settings is None else settings
    seeds = tuple(range(sc["seeds"])) if seeds is None else tuple(seeds)
    budget = Budget(f"study --scale {scale_name}", {"smoke": 20, "cpu": 90, "gpu": 30}[scale_name] * 60)
    budget.announce()
    payload: dict[str, Any] = {
        "study": "claims",
        "scale": scale_name,
        "scale_note": sc["note"],
        "seeds": list(seeds),
        "datasets": {},
    }
    for name in datasets:
        base = sc[name]
        sigma_data = float(data_lib.load(name, **dict(base["data"]["args"], seed=0)).sigma_data)
        chunk = sc["chunk_digits"] if name == "digits" else 100
        cache: dict[int, Any] = {}
        records = []
        for i, arm in enumerate(arms(name, sigma_data)[: only or None]):
            rec = run_arm(name, base, arm, seeds, sigma_data, chunk, cache)
            records.append(rec)
            keys = [
                k
                for k in (rec["per_seed"][0] if rec["per_seed"] else {})
                if k not in ("seed", "final_loss", "train_s", "score_s")
            ]
            summary = (
                "FAILED " + rec["failed"]
                if "failed" in rec
                else ", ".join(f"{k} {np.mean([s[k] for s in rec['per_seed']]):.4g}" for k in keys)
            )
            echo(f"[{name} {i + 1}] {arm['label']:<26} {summary}  ({rec['wall_s']:.0f} s)")
        payload["datasets"][name] = {
            "config": base,
            "sigma_data": sigma_data,
            "floors": _floors(name, base, seeds, sc["floor_draws"]),
            "arms": records,
        }
    payload["timing"] = budget.report()
    return payload


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu", help="study size (default: cpu)")
    parser.add_argument("--data", nargs="+", choices=("digits", "gmm"), default=["digits", "gmm"])
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the scale's, 5)")
    parser.add_argument("--out", default=None, help="JSON path (default: experiments/results/study.json)")
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 2:
        parser.error("--seeds must be at least 2 (intervals and tests need two values per arm).")
    seeds = None if args.seeds is None else range(args.seeds)
    payload = run_study(args.scale, seeds=seeds, datasets=tuple(args.data))
    write_json(Path(args.out) if args.out else RESULTS / "study.json", payload)


if __name__ == "__main__":
    main()
