"""The loop over batches: dispatch steps, guard against non-finite steps, log, checkpoint.

`fit` runs `train.steps_per_dispatch` steps per call of the jitted `run_steps` until a
given step, writes a `metrics.jsonl` row every `train.log_every` steps and a checkpoint
every `train.checkpoint_every`, calls the callbacks after every dispatch, and applies the
`train.nonfinite` policy (see `TrainingDiverged`). Ctrl-C saves a checkpoint and re-raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from eqx_impl import data as data_lib
from eqx_impl.train import checkpoint as ckpt
from eqx_impl.train import parallel
from eqx_impl.train.optim import learning_rate
from eqx_impl.train.progress import MetricsLog, ProgressBar
from eqx_impl.train.run import Run
from eqx_impl.train.state import TrainState
from eqx_impl.train.step import run_steps

__all__ = ["MAX_CONSECUTIVE_SKIPS", "Fitted", "TrainingDiverged", "fit"]

# train.nonfinite=skip gives up (TrainingDiverged) after this many non-finite steps in a row.
MAX_CONSECUTIVE_SKIPS = 100

Callback = Callable[[int, TrainState], None]


class TrainingDiverged(RuntimeError):
    """A step's loss or gradient became NaN or infinite under `train.nonfinite: stop`, or every
    step of a long run under `skip`; the message names the step, the checkpoint of the last
    good state and what to do."""


@dataclass
class Fitted:
    """Where `fit` stopped: the state, its step, the newest checkpoint and timings."""

    state: TrainState
    step: int
    checkpoint: Path | None
    timings: dict[str, float] = field(default_factory=dict)


class _Window:
    """Per-step metrics since the last log row, and the rate of steps in that window."""

    NAMES = ("loss", "loss_std", "grad_norm", "nonfinite")

    def __init__(self):
        self.values = {name: [] for name in self.NAMES}
        self.start, self.steps = time.perf_counter(), 0

    def add(self, metrics: dict, k: int) -> float:
        """Record `k` steps' `metrics`. **Returns:** steps per second in this window."""
        for name in self.NAMES:
            self.values[name].extend(np.asarray(metrics[name], np.float64).tolist())
        self.steps += k
        return self.steps / max(time.perf_counter() - self.start, 1e-9)

    def row(self, step: int, lr: float, rate: float, elapsed: float) -> dict:
        v = self.values
        return {
            "step": step,
            "loss": _finite_mean(v["loss"]),
            "loss_std": _finite_mean(v["loss_std"]),
            "grad_norm": _finite_mean(v["grad_norm"]),
            "lr": lr,
            "steps_per_sec": rate,
            "elapsed_s": elapsed,
            "skipped": int(np.sum(v["nonfinite"])),  # steps with a NaN/inf loss or gradient
        }


def fit(run: Run, setup, state: TrainState, end: int, *, callbacks: Sequence[Callback] = ()) -> Fitted:
    """Train `state` (of `setup`, a `loop.Setup`) up to step `end`; see the module docstring.

    **Returns:** `Fitted`; `timings` has `train_s`, `first_dispatch_s` (compilation
    included) and `steps_per_sec` (after it) when measured.
    """
    t, mesh = run.config.train, setup.trainer.mesh
    start = step = int(state.step)
    raw = setup.dataset.model_data("train")
    num = len(raw)
    if setup.trainer.num_classes is not None:  # a conditional model trains on (x, labels)
        raw = (raw, np.asarray(setup.dataset.train_labels, np.int32))
    data = jax.tree.map(jnp.asarray, raw) if mesh is None else parallel.replicate(raw, mesh)
    stream = data_lib.batches(np.arange(num), t.batch_size, seed=t.seed, start_step=start)
    log = MetricsLog(run.directory / "metrics.jsonl", resume_step=start) if run.writer else None
    lr_at, bar, window = (
        learning_rate(run.config.optim, t.steps),
        ProgressBar(t.steps, start, enabled=run.progress),
        _Window(),
    )
    fitted, dispatch_times, skips = Fitted(state, step, None), [], _Skips()
    if step < end:
        run.echo("compiling the training step...")
    t0 = time.perf_counter()
    try:
        while fitted.step < end:
            before = fitted.step
            k = min(t.steps_per_dispatch - before % t.steps_per_dispatch, end - before)
            tick = time.perf_counter()
            new_state, metrics = run_steps(setup.trainer, fitted.state, data, _indices(stream, k, mesh))
            metrics = jax.device_get(metrics)
            dispatch_times.append((time.perf_counter() - tick, k))
            skips.check(run, new_state, metrics, before, t.nonfinite, bar)
            fitted.state, fitted.step = new_state, before + k
            rate = window.add(metrics, k)
            bar.update(k, _finite_mean(metrics["loss"]), rate, skipped=skips.total)
            if fitted.step // t.log_every > before // t.log_every or fitted.step == end:
                _log_row(
                    run,
                    log,
                    window.row(fitted.step, _lr(lr_at, fitted.step - 1), rate, time.perf_counter() - t0),
                    skips,
                )
                window = _Window()
            if fitted.step // t.checkpoint_every > before // t.checkpoint_every or fitted.step == end:
                fitted.checkpoint = run.save(fitted.state)
            skips.give_up_if_diverged(run, fitted, bar)
            for callback in callbacks:
                callback(fitted.step, fitted.state)
    except KeyboardInterrupt:
        bar.close()
        if fitted.step > start and (fitted.checkpoint is None or _step_of(fitted.checkpoint) != fitted.step):
            run.echo(f"interrupted: saved {run.save(fitted.state)}; run the same command again to resume.")
        raise
    bar.close()
    if fitted.checkpoint is None and fitted.step > start:
        fitted.checkpoint = run.save(fitted.state)
    fitted.timings = _timings(time.perf_counter() - t0, dispatch_times)
    return fitted


class _Skips:
    """The `train.nonfinite` policy: `stop` saves the last good state and raises at once;
    `skip` counts skipped steps and gives up after `MAX_CONSECUTIVE_SKIPS` in a row."""

    def __init__(self):
        self.total, self.in_a_row = 0, 0

    def check(self, run: Run, new_state: TrainState, metrics: dict, step: int, policy: str, bar) -> None:
        bad = np.asarray(metrics["nonfinite"]) > 0
        if bad.any() and policy == "stop":
            # The jitted step kept the state of the last good step (see Trainer.steps).
            first = int(np.argmax(bad))
            bar.close()
            path = _save_good_state(run, new_state)
            raise TrainingDiverged(
                f"The loss or its gradient became non-finite at step {step + first + 1} "
                f"(loss {np.asarray(metrics['loss'])[first]}); that step changed no parameter and training "
                f"stopped. The state before it (step {int(new_state.step)}) is saved in {path}. "
                "To go on, run the same command again (without --no-resume) with --set train.nonfinite=skip (steps "
                "with a NaN/inf loss or gradient are then skipped and counted); or start over "
                "(--no-resume or a new --run-dir) with a lower optim.lr or optim.grad_clip, "
                "and check the data and the weighting/schedule for NaN or inf."
            )
        self.total += int(bad.sum())
        for b in bad:
            self.in_a_row = self.in_a_row + 1 if b else 0

    def give_up_if_diverged(self, run: Run, fitted: Fitted, bar) -> None:
        if self.in_a_row < MAX_CONSECUTIVE_SKIPS:
            return
        bar.close()
        path = run.save(fitted.state)
        raise TrainingDiverged(
            f"Every step from {fitted.step - self.in_a_row + 1} to {fitted.step} had a non-finite loss or "
            f"gradient and was skipped (train.nonfinite=skip): training has diverged. "
            f"The last good parameters are saved in {path}. Start over (--no-resume or a new "
            "--run-dir) with a lower optim.lr or optim.grad_clip, and check the data and the "
            "weighting/schedule for NaN or inf."
        )


def _indices(stream, k: int, mesh):
    """The next `k` batches' indices, `(k, batch)`; with a mesh every process draws the global
    batch and supplies its devices' part."""
    indices = np.stack([next(stream) for _ in range(k)])
    return jnp.asarray(indices, jnp.int32) if mesh is None else parallel.shard_indices(indices, mesh)


def _log_row(run: Run, log: MetricsLog | None, row: dict, skips: _Skips) -> None:
    if row["skipped"]:
        run.echo(
            f"step {row['step']}: skipped {row['skipped']} step(s) with a non-finite loss or "
            f"gradient ({skips.total} in this session; train.nonfinite=skip)."
        )
    if log is not None:
        log.write(row)
    if not run.progress:  # a log file or CI still sees the run move
        run.echo(
            f"step {row['step']}/{run.config.train.steps}: loss {row['loss']:.5g}, {row['steps_per_sec']:.3g} steps/s"
        )


def _timings(train_s: float, dispatches: list[tuple[float, int]]) -> dict[str, float]:
    timings = {"train_s": train_s}
    if dispatches:
        timings["first_dispatch_s"] = dispatches[0][0]
    steady_s, steady_steps = sum(s for s, _ in dispatches[1:]), sum(k for _, k in dispatches[1:])
    if steady_steps:
        timings["steps_per_sec"] = steady_steps / steady_s
    return timings


def _finite_mean(values) -> float:
    """The mean of the finite values (NaN if none): skipped steps do not poison a log row."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def _save_good_state(run: Run, state: TrainState) -> Path:
    """A checkpoint of `state` (the last good one), unless one of its step already exists.

    **Returns:** its path.
    """
    existing = dict(ckpt.list_checkpoints(run.checkpoints))
    return existing.get(int(state.step)) or run.save(state)


def _lr(schedule, step: int) -> float:
    with jax.numpy_dtype_promotion("standard"):  # optax schedules mix ints and floats
        return float(schedule(step))


def _step_of(path: Path) -> int:
    return int(path.stem.split("-")[1])
