"""An open run directory: create or resume it, restore the state, save checkpoints.

With several processes (multi-host data parallelism) every process trains, but only
process 0 writes files and reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from eqx_impl.train import checkpoint as ckpt
from eqx_impl.train import parallel
from eqx_impl.train.config import Config, ConfigError
from eqx_impl.train.config_io import config_to_dict, dump_config
from eqx_impl.train.files import atomic_write_text
from eqx_impl.train.state import TrainState

__all__ = ["RESUMABLE_CHANGES", "Run", "open_run", "restore_state"]

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


@dataclass
class Run:
    """The run directory of `config` (`train.run_dir`) and this process's role in it."""

    config: Config
    directory: Path
    writer: bool  # process 0: writes files
    echo: Callable[[str], None]
    progress: bool
    had_checkpoints: bool  # when it was opened

    @property
    def checkpoints(self) -> Path:
        return self.directory / "checkpoints"

    def save(self, state: TrainState) -> Path:
        """Checkpoint `state` (process 0 writes; the state is the same everywhere).

        **Returns:** the checkpoint's path.
        """
        if self.writer:
            return ckpt.save_checkpoint(self.checkpoints, state, keep=self.config.train.keep_checkpoints)
        return ckpt.checkpoint_path(self.checkpoints, int(state.step))

    def write_text(self, name: str, text: str) -> None:
        if self.writer:
            atomic_write_text(self.directory / name, text)


def open_run(config: Config, *, resume: bool, echo: Callable[[str], None], progress: bool) -> Run:
    """Create `train.run_dir` (or check that a resumed one holds the same run) and write the
    resolved `config.yaml`. **Returns:** the `Run`."""
    directory = Path(config.train.run_dir)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"train.run_dir {str(directory)!r} exists and is not a directory.")
    directory.mkdir(parents=True, exist_ok=True)
    had_checkpoints = bool(ckpt.list_checkpoints(directory / "checkpoints"))
    saved_config = directory / "config.yaml"
    if resume and had_checkpoints and saved_config.is_file():
        _check_resumable(saved_config, config)
    writer = parallel.is_main_process()
    if writer:
        dump_config(config, saved_config)
    else:  # only process 0 reports
        echo, progress = (lambda _message: None), False
    return Run(config, directory, writer, echo, progress, had_checkpoints)


def restore_state(run: Run, initial: TrainState, *, resume: bool, mesh) -> TrainState:
    """The newest usable checkpoint when resuming (else `initial`, and old checkpoints are
    deleted), replicated over `mesh` if there is one.

    **Returns:** the state to train from.
    """
    state = initial
    if resume and run.had_checkpoints:
        state, path = ckpt.restore_latest(run.checkpoints, initial, report=run.echo)
        assert state is not None  # checkpoints exist, so restore_latest loads one or raises CheckpointError
        run.echo(f"resumed from {path} (step {int(state.step)})")
    elif run.had_checkpoints and run.writer:
        for _, old in ckpt.list_checkpoints(run.checkpoints):
            old.unlink()
    if mesh is not None:  # checkpoints load on one device; the run needs the state everywhere
        state = parallel.replicate(state, mesh)
    parallel.assert_same_in_every_process(
        int(state.step),
        f"the processes resumed from different steps; train.run_dir ({str(run.directory)!r}) must be "
        "one directory every host sees",
    )
    return state


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


def with_run_dir(config: Config, run_dir: str | Path | None) -> Config:
    """`config` with `train.run_dir` replaced (unless `run_dir` is None). **Returns:** a `Config`."""
    if run_dir is None:
        return config
    return dataclasses.replace(config, train=dataclasses.replace(config.train, run_dir=str(run_dir)))
