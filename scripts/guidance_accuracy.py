"""Classifier-free guidance on digits: how often the project's digits classifier assigns a
sample asked for class c to class c, as a function of the guidance scale w.

Trains a class-conditional digits U-Net (`configs/digits.yaml` with `model.args.num_classes=10`,
`objective.label_dropout=0.1`, `--steps` steps), then draws `--per-class` samples of every
class with the Heun sampler at each scale in `--scales` (w = 0: the unconditional model, the
null label; w = 1: the conditional model) and classifies them with
`evaluation.load_classifier` (the classifier the FD metric uses). Writes
`docs/results/guidance_accuracy.png` and a JSON of the numbers next to it.

    .venv/bin/python scripts/guidance_accuracy.py            # about 8 minutes on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from eqx_impl import evaluation as ev
from eqx_impl.train import load_config, train
from eqx_impl.train.evaluate import draw_samples

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--sampling-steps", type=int, default=18)
    p.add_argument("--scales", default="0,1,2,4")
    p.add_argument("--run-dir", type=Path, default=Path("runs/guidance_digits"))
    p.add_argument("--out", type=Path, default=ROOT / "docs/results/guidance_accuracy.png")
    args = p.parse_args()
    scales = [float(w) for w in args.scales.split(",")]

    config = load_config(
        ROOT / "configs/digits.yaml",
        [
            "model.args.num_classes=10",
            "objective.label_dropout=0.1",
            f"train.steps={args.steps}",
            "optim.warmup_steps=100",
            "train.preflight=false",
            f"train.checkpoint_every={args.steps}",
        ],
    )
    t0 = time.perf_counter()
    result = train(config, run_dir=args.run_dir, progress=False, evaluate=False, echo=print)
    train_s = time.perf_counter() - t0
    final_loss = result.rows[-1]["loss"] if result.rows else float("nan")

    classifier = ev.load_classifier(ev.ClassifierConfig(dataset="digits", data_seed=0))
    labels = np.repeat(np.arange(10), args.per_class)
    accuracy, per_class = {}, {}
    for w in scales:
        samples = draw_samples(
            result.config,
            result.state.ema,
            (1, 8, 8),
            num=len(labels),
            steps=args.sampling_steps,
            seed=0,
            labels=labels,
            guidance=w,
        )
        predicted = np.asarray(jax.vmap(lambda x: classifier(x).argmax())(jax.numpy.asarray(samples)))
        hits = predicted == labels
        accuracy[w] = float(hits.mean())
        per_class[w] = [float(hits[labels == c].mean()) for c in range(10)]
        print(f"w = {w:g}: accuracy {accuracy[w]:.3f}  per class {np.round(per_class[w], 2).tolist()}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    stderr = [np.sqrt(a * (1 - a) / n) for a in accuracy.values()]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.errorbar(scales, list(accuracy.values()), yerr=stderr, marker="o", capsize=3)
    ax.axhline(0.1, color="gray", ls=":", lw=1, label="chance")
    ax.set_xlabel("guidance scale w")
    ax.set_ylabel("classifier agrees with the class asked")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"digits U-Net, {args.steps} steps, Heun {args.sampling_steps}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    summary = {
        "train_steps": args.steps,
        "train_s": train_s,
        "final_loss": final_loss,
        "sampler": "heun",
        "sampling_steps": args.sampling_steps,
        "samples_per_class": args.per_class,
        "accuracy": {str(w): a for w, a in accuracy.items()},
        "accuracy_stderr": {str(w): s for w, s in zip(scales, stderr, strict=True)},
        "per_class": {str(w): v for w, v in per_class.items()},
    }
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: summary[k] for k in ("train_s", "final_loss", "accuracy")}))


if __name__ == "__main__":
    main()
