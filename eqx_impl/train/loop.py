"""Training: build everything from a config (`build`), then `train`: open or resume the run
directory (`run.py`), pre-flight, restore, the loop over batches (`fit.py`), and finish
(plots, samples, evaluation). The run directory holds:

    config.yaml        the resolved configuration (sigma_data and log-SNR interval filled in)
    preflight.txt      the eqx-vs-reference report
    metrics.jsonl      step, loss, loss_std, grad_norm, lr, steps_per_sec, elapsed_s, skipped
                       (steps with a non-finite loss or gradient, see train.nonfinite) per log
    checkpoints/       ckpt-<step>.eqx, the newest `train.keep_checkpoints`
    loss_curve.png     loss (and steps/s) against step
    proposal.png       the weighting against the proposal density at the end
    samples.png        samples of the EMA model (image grid, or scatter plot for 2-D data)
    eval.json          evaluation metrics and timings
"""

from __future__ import annotations

import json
import math
import numbers
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eqx_impl import data as data_lib
from eqx_impl.models.precision import Precision
from eqx_impl.names import normalize_name
from eqx_impl.proposals import AbstractProposal
from eqx_impl.train import parallel
from eqx_impl.train.config import Config, ConfigError
from eqx_impl.train.evaluate import draw_samples, evaluate_model, save_samples
from eqx_impl.train.fit import fit
from eqx_impl.train.plots import plot_loss_curve, plot_proposal
from eqx_impl.train.preflight import PreflightReport, check_or_raise, run_preflight
from eqx_impl.train.progress import read_metrics
from eqx_impl.train.resolve import resolve
from eqx_impl.train.run import Run, open_run, restore_state, with_run_dir
from eqx_impl.train.state import TrainState
from eqx_impl.train.step import Trainer, init_state
from eqx_impl.weightings import AbstractWeighting

__all__ = ["Setup", "TrainResult", "build", "train", "write_plots"]


@dataclass
class Setup:
    """Everything built from a config before the first step."""

    config: Config
    dataset: data_lib.Dataset
    weighting: AbstractWeighting
    proposal: AbstractProposal
    trainer: Trainer
    initial: TrainState


def build(config: Config, dataset: data_lib.Dataset | None = None) -> Setup:
    """Build each object of `config` once: the data set, the proposal (whose interval, with
    the data's `sigma_data`, resolves the config: `resolve.resolve`), the weighting, the
    network, the trainer and the initial state. Keys: `split(key(train.seed), 3)` for
    (model, schedule, training).

    **Returns:** a `Setup`.
    """
    dataset = config.data.build() if dataset is None else dataset
    k_model, k_schedule, k_train = jax.random.split(jax.random.key(config.train.seed), 3)
    proposal = config.objective.build_proposal(config.optim, key=k_schedule)
    config = resolve(config, dataset, proposal)
    weighting = config.objective.build_weighting()
    model = config.model.build(dataset.shape, config.objective.target, key=k_model)
    t = config.train
    trainer = Trainer.create(
        weighting,
        proposal,
        config.optim,
        t.steps,
        dropout=float(config.model.args.get("dropout", 0.0)) > 0.0,
        mesh=parallel.data_mesh(t.batch_size) if t.data_parallel else None,
        nonfinite=t.nonfinite,
        precision=Precision.create(t.precision),
        num_classes=config.model.args.get("num_classes"),
        label_dropout=config.objective.label_dropout,
    )
    return Setup(config, dataset, weighting, proposal, trainer, init_state(trainer, model, k_train))


@dataclass
class TrainResult:
    run_dir: Path
    config: Config
    state: TrainState
    rows: list[dict] = field(default_factory=list)
    preflight: PreflightReport | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    step: int = 0  # the step training stopped at


def write_plots(run_dir: Path, rows: list[dict], setup: Setup, proposal_state) -> list[Path]:
    """`loss_curve.png` and `proposal.png` in `run_dir`. **Returns:** the paths written."""
    written = []
    if any(r.get("loss") is not None for r in rows):
        o = setup.config.objective
        title = f"{setup.dataset.name}: {o.weighting}, {o.schedule} schedule"
        written.append(plot_loss_curve(rows, run_dir / "loss_curve.png", title=title))
    lo, hi = setup.config.objective.interval
    grid = np.linspace(lo, hi, 601)
    g = jnp.asarray(grid, jnp.float32)
    w = np.asarray(setup.weighting(g))
    p = np.asarray(setup.proposal.density(proposal_state, g))
    written.append(plot_proposal(grid, w, p, run_dir / "proposal.png", title=setup.config.objective.schedule))
    return written


def train(
    config: Config,
    *,
    run_dir: str | Path | None = None,
    resume: bool = True,
    preflight: bool | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    evaluate: bool = True,
    echo: Callable[[str], None] = print,
    callbacks: Sequence[Callable[[int, TrainState], None]] = (),
) -> TrainResult:
    """Train as configured and write the run directory (see the module docstring).

    - `run_dir` overrides `train.run_dir`; `preflight` overrides `train.preflight`.
    - `resume`: continue from the newest usable checkpoint of the run directory (the
      config must match); `False` starts from step 0 and replaces old checkpoints.
    - `stop_after`: train at most this many more steps (counted from the step the run
      resumes at), then stop with a checkpoint as if interrupted; the learning-rate schedule
      still follows `train.steps`.
    - `progress`: a progress bar; without it, `echo` gets a line every `train.log_every` steps.
    - `evaluate`: after the last step, draw samples, write `samples.png` and compute
      `eval.metrics` with the EMA model.
    - `callbacks`: called as `callback(step, state)` after every dispatch of steps.

    **Returns:** a `TrainResult`.
    """
    t_start = time.perf_counter()
    if stop_after is not None and (
        isinstance(stop_after, bool) or not isinstance(stop_after, numbers.Integral) or stop_after < 1
    ):
        raise ConfigError(f"stop_after (--stop-after) must be an integer >= 1 or None, got {stop_after!r}.")
    setup = build(with_run_dir(config, run_dir))
    if jax.process_count() > 1 and setup.trainer.mesh is None:
        raise ConfigError(
            f"This run has {jax.process_count()} processes (jax.distributed) but train.data_parallel "
            "is false, so every process would train the whole job alone; add --set train.data_parallel=true."
        )
    run = open_run(setup.config, resume=resume, echo=echo, progress=progress)
    timings = {"setup_s": time.perf_counter() - t_start}
    report = _preflight(run, setup, setup.config.train.preflight if preflight is None else preflight, timings)
    state = restore_state(run, setup.initial, resume=resume, mesh=setup.trainer.mesh)
    end = (
        setup.config.train.steps
        if stop_after is None
        else min(setup.config.train.steps, int(state.step) + int(stop_after))
    )
    fitted = fit(run, setup, state, end, callbacks=callbacks)
    timings.update(fitted.timings)
    result = _finish(run, setup, fitted, report, evaluate, timings)
    timings["total_s"] = time.perf_counter() - t_start
    _write_summary(run, result)
    return result


def _preflight(run: Run, setup: Setup, enabled: bool, timings: dict) -> PreflightReport | None:
    """The pre-flight check (if `enabled`): report written and printed, `PreflightError` on a
    failure. **Returns:** the report, or None."""
    t = setup.config.train
    if (
        t.steps_per_dispatch > 1
        and normalize_name(setup.config.model.name) == "unet"
        and jax.default_backend() == "cpu"
    ):
        warnings.warn(
            "train.steps_per_dispatch > 1 runs the U-Net inside lax.scan, where XLA:CPU runs its "
            "convolutions many times slower (jax-ml/jax#12868); use train.steps_per_dispatch=1.",
            stacklevel=3,
        )
    if not enabled:
        return None
    t0 = time.perf_counter()
    report = run_preflight(setup.config, setup.dataset, setup.weighting, setup.proposal, setup.initial.proposal_state)
    run.write_text("preflight.txt", str(report) + "\n")
    run.echo(str(report))
    check_or_raise(report)
    timings["preflight_s"] = time.perf_counter() - t0
    return report


def _finish(run: Run, setup: Setup, fitted, report, evaluate: bool, timings: dict) -> TrainResult:
    """After the last step: plots, samples and metrics of the EMA model (one device, process 0).

    **Returns:** the `TrainResult`.
    """
    config, state = setup.config, fitted.state
    if setup.trainer.mesh is not None:  # sampling and evaluation run on one device
        state = parallel.to_local(state)
    rows = read_metrics(run.directory / "metrics.jsonl") if run.writer else []
    result = TrainResult(run.directory, config, state, rows, report, timings=timings, checkpoint=fitted.checkpoint)
    result.step = fitted.step
    done = fitted.step >= config.train.steps
    if done and run.writer:
        write_plots(run.directory, rows, setup, state.proposal_state)
    if evaluate and done and jax.process_count() > 1:
        # The other processes would exit (and time out the distributed service) meanwhile.
        run.echo(f"multi-host run: evaluate on one host with `python -m eqx_impl evaluate --run-dir {run.directory}`.")
    elif evaluate and done and run.writer:
        t0 = time.perf_counter()
        run.echo("compiling the sampler, then sampling and evaluating...")
        samples = draw_samples(config, state.ema, setup.dataset.shape, progress=run.progress)
        save_samples(samples, setup.dataset, run.directory / "samples.png")
        timings["sample_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result.evaluation = evaluate_model(
            config,
            setup.dataset,
            state.ema,
            setup.weighting,
            samples=samples,
            progress=run.progress,
        )
        timings["eval_s"] = time.perf_counter() - t0
    return result


def _write_summary(run: Run, result: TrainResult) -> None:
    """`eval.json`: the step, the evaluation, the timings and the final loss."""
    summary = {"step": result.step, "evaluation": result.evaluation, "timings": result.timings}
    if result.rows:
        summary["final_loss"] = result.rows[-1]["loss"]
        summary["skipped_steps"] = sum(int(r.get("skipped") or 0) for r in result.rows)
    run.write_text("eval.json", json.dumps(summary, indent=2, default=_jsonable) + "\n")


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
