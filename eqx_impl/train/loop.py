"""The training loop: build everything from a config, pre-flight, (resume,) train, checkpoint,
log, plot, sample and evaluate. The run directory holds:

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

import dataclasses
import json
import math
import numbers
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import yaml

from eqx_impl import data as data_lib
from eqx_impl.models.precision import Precision
from eqx_impl.proposals import AbstractProposal, make_proposal
from eqx_impl.train import checkpoint as ckpt
from eqx_impl.train import parallel
from eqx_impl.train.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    dump_config,
)
from eqx_impl.train.evaluate import draw_samples, evaluate_model, save_samples
from eqx_impl.train.files import atomic_write_text
from eqx_impl.train.optim import learning_rate
from eqx_impl.train.plots import plot_loss_curve, plot_proposal
from eqx_impl.train.preflight import PreflightReport, check_or_raise, run_preflight
from eqx_impl.train.progress import MetricsLog, ProgressBar, read_metrics
from eqx_impl.train.registry import (
    build_dataset,
    build_model,
    build_schedule,
    build_weighting,
    normalize_name,
    resolve,
)
from eqx_impl.train.state import TrainState
from eqx_impl.train.step import Trainer, init_state, run_steps

__all__ = ["Setup", "TrainResult", "TrainingDiverged", "build", "train", "write_plots"]

# Keys that may change when a run is resumed; everything else must match the saved config.
RESUMABLE_CHANGES = {
    "train.steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.preflight",
    "train.run_dir",
    "train.steps_per_dispatch",
    "train.data_parallel",
    "train.nonfinite",  # the policy acts only on a step that changes nothing
    "train.precision",  # the master weights and optimiser state are float32 under every policy
}


# train.nonfinite=skip gives up (TrainingDiverged) after this many non-finite steps in a row.
MAX_CONSECUTIVE_SKIPS = 100


class TrainingDiverged(RuntimeError):
    """A step's loss or gradient became NaN or infinite under `train.nonfinite: stop`; the
    message names the step, the checkpoint of the last good state and what to do."""


def _frozen(config: Config, *sections: str) -> str:
    """Sections of the config as canonical JSON: a hashable, static argument for `jit`."""
    values = config_to_dict(config)
    return json.dumps({name: values[name] for name in sections}, sort_keys=True)


# A learned schedule's network is small; its initialiser runs under `jit` (one compilation).
@eqx.filter_jit
def _init_schedule(frozen_config: str, key):
    return build_schedule(config_from_dict(json.loads(frozen_config)), key=key)


@dataclass
class Setup:
    """Everything built from a config before the first step."""

    config: Config
    dataset: data_lib.Dataset
    weighting: Any
    proposal: AbstractProposal
    trainer: Trainer
    initial: TrainState


def build(config: Config, dataset: data_lib.Dataset | None = None) -> Setup:
    """Resolve `config` and build the data set, weighting, proposal, optimisers, trainer and
    initial state. Keys: `split(key(train.seed), 3)` for (model, schedule, training).

    **Returns:** a `Setup`.
    """
    dataset = build_dataset(config) if dataset is None else dataset
    config = resolve(config, dataset)
    o = config.objective
    key = jax.random.key(config.train.seed)
    k_model, k_schedule, k_train = jax.random.split(key, 3)
    model = build_model(config, tuple(dataset.shape), config.model.sigma_data, key=k_model)
    opt = config.optim
    schedule = _init_schedule(_frozen(config, "objective"), k_schedule)
    proposal = make_proposal(schedule, lr=opt.schedule_lr, b1=opt.b1, b2=opt.b2, eps=opt.eps)
    weighting = build_weighting(o.weighting, o.weighting_args, (o.logsnr_min, o.logsnr_max))
    dropout = float(config.model.args.get("dropout", 0.0)) > 0.0
    mesh = parallel.data_mesh(config.train.batch_size) if config.train.data_parallel else None
    trainer = Trainer.create(
        weighting,
        proposal,
        config.optim,
        config.train.steps,
        dropout,
        mesh,
        nonfinite=config.train.nonfinite,
        precision=Precision.create(config.train.precision),
    )
    state = init_state(trainer, model, k_train)
    return Setup(config, dataset, weighting, proposal, trainer, state)


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


def _flatten(values: dict) -> dict[str, Any]:
    """`{"train": {"steps": 1}}` → `{"train.steps": 1}` (argument mappings stay whole)."""
    return {f"{s}.{k}": v for s, section in values.items() for k, v in (section or {}).items()}


def _check_resumable(saved_path: Path, config: Config) -> None:
    saved = yaml.safe_load(saved_path.read_text()) or {}
    old, new = _flatten(saved), _flatten(config_to_dict(config))
    changed = sorted(
        k
        for k in set(old) | set(new)
        if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES and not k.startswith("eval.")
    )
    if changed:
        details = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:6])
        raise ConfigError(
            f"The run directory {str(saved_path.parent)!r} holds a run with a different "
            f"configuration ({details}). Resume with the same config, use a new --run-dir, or "
            "pass --no-resume to start over (its checkpoints are then replaced)."
        )


def write_plots(run_dir: Path, rows: list[dict], setup: Setup, proposal_state) -> list[Path]:
    """`loss_curve.png` and `proposal.png` in `run_dir`. **Returns:** the paths written."""
    written = []
    if any(r.get("loss") is not None for r in rows):
        o = setup.config.objective
        title = f"{setup.dataset.name}: {o.weighting}, {o.schedule} schedule"
        written.append(plot_loss_curve(rows, run_dir / "loss_curve.png", title=title))
    lo, hi = setup.config.objective.logsnr_min, setup.config.objective.logsnr_max
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

    **Returns:** a `TrainResult`.
    """
    t_start = time.perf_counter()
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, numbers.Integral) or stop_after < 1):
        raise ConfigError(f"stop_after (--stop-after) must be an integer >= 1 or None, got {stop_after!r}.")
    if run_dir is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, run_dir=str(run_dir)))
    setup = build(config)
    config = setup.config
    t = config.train
    if jax.process_count() > 1 and setup.trainer.mesh is None:
        raise ConfigError(
            f"This run has {jax.process_count()} processes (jax.distributed) but train.data_parallel "
            "is false, so every process would train the whole job alone; add --set train.data_parallel=true."
        )
    run_dir = Path(t.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"train.run_dir {str(run_dir)!r} exists and is not a directory.")
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoints"
    saved_config = run_dir / "config.yaml"
    has_checkpoints = bool(ckpt.list_checkpoints(ckpt_dir))
    if resume and has_checkpoints and saved_config.is_file():
        _check_resumable(saved_config, config)
    # With several processes (multi-host data parallelism) only process 0 writes files.
    writer = parallel.is_main_process()
    if writer:
        dump_config(config, saved_config)
    else:  # and only process 0 reports
        echo, progress = (lambda _message: None), False
    timings = {"setup_s": time.perf_counter() - t_start}

    if t.steps_per_dispatch > 1 and normalize_name(config.model.name) == "unet" and jax.default_backend() == "cpu":
        warnings.warn(
            "train.steps_per_dispatch > 1 runs the U-Net inside lax.scan, where XLA:CPU runs its "
            "convolutions many times slower (jax-ml/jax#12868); use train.steps_per_dispatch=1.",
            stacklevel=2,
        )
    report = None
    if t.preflight if preflight is None else preflight:
        t0 = time.perf_counter()
        report = run_preflight(config, setup.dataset, setup.weighting, setup.proposal, setup.initial.proposal_state)
        if writer:
            atomic_write_text(run_dir / "preflight.txt", str(report) + "\n")
        echo(str(report))
        check_or_raise(report)
        timings["preflight_s"] = time.perf_counter() - t0

    state = setup.initial
    if resume and has_checkpoints:
        state, path = ckpt.restore_latest(ckpt_dir, state, report=echo)
        echo(f"resumed from {path} (step {int(state.step)})")
    elif has_checkpoints and writer:
        for _, old in ckpt.list_checkpoints(ckpt_dir):
            old.unlink()
    mesh = setup.trainer.mesh
    if mesh is not None:  # checkpoints load on one device; the run needs the state everywhere
        state = parallel.replicate(state, mesh)
    start = int(state.step)
    parallel.assert_same_in_every_process(
        start, f"the processes resumed from different steps; train.run_dir ({str(run_dir)!r}) must be one directory every host sees"
    )
    end = t.steps if stop_after is None else min(t.steps, start + int(stop_after))
    log = MetricsLog(run_dir / "metrics.jsonl", resume_step=start) if writer else None

    def save(state) -> Path:
        if writer:  # the state is replicated: one process writes it
            return ckpt.save_checkpoint(ckpt_dir, state, keep=t.keep_checkpoints)
        return ckpt.checkpoint_path(ckpt_dir, int(state.step))

    lr_at = learning_rate(config.optim, t.steps)

    if mesh is None:
        train_data = jnp.asarray(setup.dataset.model_data("train"))
    else:
        train_data = parallel.replicate(setup.dataset.model_data("train"), mesh)
    stream = data_lib.batches(np.arange(len(train_data)), t.batch_size, seed=t.seed, start_step=start)
    bar = ProgressBar(t.steps, start, enabled=progress)
    window: dict[str, list] = {"loss": [], "loss_std": [], "grad_norm": [], "nonfinite": []}
    step, last_saved, skipped, run_of_skips = start, None, 0, 0
    window_start, window_steps = time.perf_counter(), 0
    first_dispatch_s, steady_time, steady_steps = None, 0.0, 0
    train_t0 = time.perf_counter()
    if step < end:
        echo("compiling the training step...")
    try:
        while step < end:
            k = min(t.steps_per_dispatch - step % t.steps_per_dispatch, end - step)
            indices = np.stack([next(stream) for _ in range(k)])
            if mesh is None:
                indices = jnp.asarray(indices, jnp.int32)
            else:  # every process draws the global batch and supplies its devices' part
                indices = parallel.shard_indices(indices, mesh)
            t0 = time.perf_counter()
            new_state, metrics = run_steps(setup.trainer, state, train_data, indices)
            metrics = jax.device_get(metrics)
            elapsed = time.perf_counter() - t0
            if first_dispatch_s is None:
                first_dispatch_s = elapsed
            else:
                steady_time += elapsed
                steady_steps += k
            losses = np.asarray(metrics["loss"], np.float64)
            bad_steps = np.asarray(metrics["nonfinite"]) > 0
            if bad_steps.any() and t.nonfinite == "stop":
                # The jitted step kept the state of the last good step (see Trainer.steps).
                first = int(np.argmax(bad_steps))
                state = new_state
                bar.close()
                path = _save_good_state(ckpt_dir, state, save)
                raise TrainingDiverged(
                    f"The loss or its gradient became non-finite at step {step + first + 1} "
                    f"(loss {losses[first]}); that step changed no parameter and training "
                    f"stopped. The state before it (step {int(state.step)}) is saved in {path}. "
                    "To go on, run the same command again (without --no-resume) with --set train.nonfinite=skip (steps "
                    "with a NaN/inf loss or gradient are then skipped and counted); or start over "
                    "(--no-resume or a new --run-dir) with a lower optim.lr or optim.grad_clip, "
                    "and check the data and the weighting/schedule for NaN or inf."
                )
            skipped += int(bad_steps.sum())
            for bad in bad_steps:
                run_of_skips = run_of_skips + 1 if bad else 0
            state, before, step = new_state, step, step + k
            for name in window:
                window[name].extend(np.asarray(metrics[name], np.float64).tolist())
            window_steps += k
            now = time.perf_counter()
            rate = window_steps / max(now - window_start, 1e-9)
            bar.update(k, _finite_mean(losses), rate, skipped=skipped)
            if step // t.log_every > before // t.log_every or step == end:
                row = {
                    "step": step,
                    "loss": _finite_mean(window["loss"]),
                    "loss_std": _finite_mean(window["loss_std"]),
                    "grad_norm": _finite_mean(window["grad_norm"]),
                    "lr": _lr(lr_at, step - 1),
                    "steps_per_sec": rate,
                    "elapsed_s": now - train_t0,
                    "skipped": int(np.sum(window["nonfinite"])),  # steps with a NaN/inf loss or gradient
                }
                if row["skipped"]:
                    echo(
                        f"step {step}: skipped {row['skipped']} step(s) with a non-finite loss or "
                        f"gradient ({skipped} in this session; train.nonfinite=skip)."
                    )
                if log is not None:
                    log.write(row)
                if not progress:  # a log file or CI still sees the run move
                    echo(f"step {step}/{t.steps}: loss {row['loss']:.5g}, {rate:.3g} steps/s")
                window = {name: [] for name in window}
                window_start, window_steps = now, 0
            if step // t.checkpoint_every > before // t.checkpoint_every or step == end:
                last_saved = save(state)
            if run_of_skips >= MAX_CONSECUTIVE_SKIPS:
                bar.close()
                path = save(state)
                raise TrainingDiverged(
                    f"Every step from {step - run_of_skips + 1} to {step} had a non-finite loss or "
                    f"gradient and was skipped (train.nonfinite=skip): training has diverged. "
                    f"The last good parameters are saved in {path}. Start over (--no-resume or a new "
                    "--run-dir) with a lower optim.lr or optim.grad_clip, and check the data and the "
                    "weighting/schedule for NaN or inf."
                )
    except KeyboardInterrupt:
        bar.close()
        if step > start and (last_saved is None or _step_of(last_saved) != step):
            path = save(state)
            echo(f"interrupted: saved {path}; run the same command again to resume.")
        raise
    bar.close()
    timings["train_s"] = time.perf_counter() - train_t0
    if first_dispatch_s is not None:
        timings["first_dispatch_s"] = first_dispatch_s
    if steady_steps:
        timings["steps_per_sec"] = steady_steps / steady_time
    if last_saved is None and step > start:
        last_saved = save(state)
    if mesh is not None:  # sampling and evaluation run on one device
        state = parallel.to_local(state)

    rows = read_metrics(run_dir / "metrics.jsonl") if writer else []
    result = TrainResult(run_dir, config, state, rows, report, timings=timings, checkpoint=last_saved)
    if step >= t.steps and writer:
        write_plots(run_dir, rows, setup, state.proposal_state)
    if evaluate and step >= t.steps and jax.process_count() > 1:
        # The other processes would exit (and time out the distributed service) meanwhile.
        echo(f"multi-host run: evaluate on one host with `python -m eqx_impl evaluate --run-dir {run_dir}`.")
    elif evaluate and step >= t.steps and writer:
        t0 = time.perf_counter()
        echo("compiling the sampler, then sampling and evaluating...")
        samples = draw_samples(config, state.ema, setup.dataset.shape, progress=progress)
        save_samples(samples, setup.dataset, run_dir / "samples.png")
        timings["sample_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result.evaluation = evaluate_model(
            config,
            setup.dataset,
            state.ema,
            setup.weighting,
            setup.proposal,
            state.proposal_state,
            samples=samples,
            progress=progress,
        )
        timings["eval_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    summary = {"step": step, "evaluation": result.evaluation, "timings": timings}
    if rows:
        summary["final_loss"] = rows[-1]["loss"]
        summary["skipped_steps"] = sum(int(r.get("skipped") or 0) for r in rows)
    if writer:
        atomic_write_text(run_dir / "eval.json", json.dumps(summary, indent=2, default=_jsonable) + "\n")
    return result


def _finite_mean(values) -> float:
    """The mean of the finite values (NaN if none): skipped steps do not poison a log row."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def _save_good_state(ckpt_dir: Path, state: TrainState, save) -> Path:
    """A checkpoint of `state` (the last good one), unless one of its step already exists.

    **Returns:** its path.
    """
    existing = dict(ckpt.list_checkpoints(ckpt_dir))
    return existing.get(int(state.step)) or save(state)


def _lr(schedule, step: int) -> float:
    with jax.numpy_dtype_promotion("standard"):  # optax schedules mix ints and floats
        return float(schedule(step))


def _step_of(path: Path) -> int:
    return int(path.stem.split("-")[1])


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
