"""Shared machinery of the studies: train several seeds of one configuration in one vmapped
program, summarise over seeds, time the study against its CPU budget, write JSON.

The training step is the library's (`eqx_impl.train.step.Trainer.steps`, the same loss,
proposal update, optimiser and EMA as `python -m eqx_impl train`); only the driver differs:
no checkpoints, plots or run directories, `lax.scan` chunks of steps, and the seeds of one
configuration share one compiled step. (Vmapping the seeds was tried and ran slower on
this 2-core CPU than running them one after another.)
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eqx_impl import data as data_lib
from eqx_impl.train.config import config_from_dict
from eqx_impl.train.loop import Setup, build
from eqx_impl.train.step import run_steps

RESULTS = Path(__file__).resolve().parent / "results"

__all__ = ["RESULTS", "Budget", "SeedRuns", "mean_se", "train_seeds", "write_json"]


def mean_se(values: Sequence[float]) -> dict[str, float]:
    """Mean and standard error (sample std / sqrt(n); NaN for one value) over seeds.

    **Returns:** `{"mean", "se", "n", "values"}`.
    """
    v = np.asarray([float(x) for x in values], np.float64)
    se = float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
    return {"mean": float(np.mean(v)), "se": se, "n": int(len(v)), "values": v.tolist()}


@dataclass
class Budget:
    """A stated CPU budget (wall seconds on this box) and the measured wall time."""

    name: str
    seconds: float
    start: float = field(default_factory=time.perf_counter)

    def announce(self) -> None:
        print(
            f"[{self.name}] CPU budget {self.seconds / 60:.1f} min wall "
            f"({os.cpu_count()} CPU cores, JAX {jax.__version__}, backend {jax.default_backend()})",
            flush=True,
        )

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def report(self) -> dict[str, Any]:
        print(f"[{self.name}] measured wall time {self.elapsed / 60:.1f} min (budget {self.seconds / 60:.1f} min)")
        return {
            "budget_s": self.seconds,
            "wall_s": round(self.elapsed, 1),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        }


@dataclass
class SeedRuns:
    """The trained states of several seeds of one configuration, and their loss traces."""

    setups: list[Setup]
    states: list[Any]
    steps: list[int]  # step count at the end of each chunk
    loss: np.ndarray  # (S, chunks): mean weighted loss over each chunk
    loss_var: np.ndarray  # (S, chunks): mean over the chunk of the batch variance of L̂_i
    wall_s: float


def train_seeds(
    config: dict,
    seeds: Sequence[int],
    *,
    dataset: data_lib.Dataset | None = None,
    chunk: int = 100,
    callback: Callable[[int, Any, Setup], None] | None = None,
) -> SeedRuns:
    """Train `config` (nested dict, as a YAML config) once per seed.

    `callback(step, state, setup)` runs after every chunk of `chunk` steps (for
    evaluations during training).

    **Returns:** `SeedRuns`.
    """
    t0 = time.perf_counter()
    setups, states = [], []
    total, steps, losses, variances = 0, [], [], []
    for seed in seeds:
        values = json.loads(json.dumps(config))
        values.setdefault("train", {})["seed"] = int(seed)
        cfg = config_from_dict(values)
        if dataset is None:
            dataset = data_lib.load(cfg.data.name, **cfg.data.args)
        setups.append(build(cfg, dataset))
    data = jnp.asarray(dataset.model_data("train"))
    total = setups[0].config.train.steps
    for setup in setups:
        cfg, state = setup.config, setup.initial
        stream = data_lib.batches(np.arange(len(data)), cfg.train.batch_size, seed=cfg.train.seed, start_step=0)
        step, seed_steps, seed_loss, seed_var = 0, [], [], []
        while step < total:
            k = min(chunk, total - step)
            idx = jnp.asarray(np.stack([next(stream) for _ in range(k)]), jnp.int32)
            # Equal configs give equal trainers, so the seeds share one compiled step.
            state, metrics = run_steps(setup.trainer, state, data, idx)
            loss = np.asarray(metrics["loss"], np.float64)
            if not np.all(np.isfinite(loss)):
                raise FloatingPointError(f"{cfg.objective}: non-finite loss near step {step + k}")
            step += k
            seed_steps.append(step)
            seed_loss.append(loss.mean())
            seed_var.append(float((np.asarray(metrics["loss_std"], np.float64) ** 2).mean()))
            if callback is not None:
                callback(step, state, setup)
        states.append(state)
        steps, losses, variances = seed_steps, losses + [seed_loss], variances + [seed_var]
    return SeedRuns(setups, states, steps, np.asarray(losses), np.asarray(variances), time.perf_counter() - t0)


def write_json(path: Path, payload: dict) -> Path:
    """Write `payload` as indented JSON (atomically). **Returns:** the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_plain) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return path


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
