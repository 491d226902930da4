"""Crash safety: a training process killed with SIGKILL at seeded-random moments (one of them
inside a checkpoint write, before its atomic rename) and restarted with the same command each
time resumes from its last complete checkpoint and ends bit-identical to a run that was never
interrupted.

The processes are real `python -m eqx_impl train` runs of a tiny MLP on the 2-D mixture,
the uninterrupted one included. Environment variables keep the test fast and deterministic:
`EQX_IMPL_CHECKPOINT_WRITE_DELAY` (the test hook of `checkpoint.py`) holds each checkpoint
write open for a moment between its temporary file and the rename, so a kill can be aimed
inside it; JAX's persistent compilation cache lets the restarts skip compilation, which needs
`EQX_ON_ERROR=nan` (JAX does not cache executables with host callbacks, which is how
`eqx.error_if` raises by default; the checks pass here, so nothing else changes).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
import yaml

from eqx_impl.train import build, config_from_dict, list_checkpoints, load_checkpoint, restore_latest
from eqx_impl.train.checkpoint import WRITE_DELAY_ENV
from eqx_impl.train.progress import read_metrics

ROOT = Path(__file__).resolve().parents[1]

STEPS, CHECKPOINT_EVERY = 120, 10
CONFIG = {
    "data": {"name": "gmm", "args": {"num_train": 512, "num_test": 256, "seed": 0}},
    "model": {"name": "mlp", "args": {"width": 32, "depth": 2, "embed_dim": 16, "num_features": 8}},
    "objective": {
        "weighting": "sigmoid",
        "weighting_args": {"bias": 2.0},
        "schedule": "adaptive",
        "schedule_args": {"n_bins": 20},
        "target": "eps",
        "logsnr_min": -10.0,
        "logsnr_max": 10.0,
    },
    "optim": {"lr": 3e-3, "warmup_steps": 5, "ema_decay": 0.99},
    "train": {
        "steps": STEPS,
        "batch_size": 32,
        "seed": 0,
        "steps_per_dispatch": 1,
        "log_every": 5,  # divides checkpoint_every, so resumed log windows line up
        "checkpoint_every": CHECKPOINT_EVERY,
        "keep_checkpoints": 3,
        "preflight": False,
    },
    "eval": {"num_samples": 64, "sampling_steps": 4, "metrics": [], "batch_size": 64},
}

# What each kill waits for: "write" a checkpoint's temporary file (the kill lands inside the
# write), "progress" a new complete checkpoint and then a random pause (the kill lands in a
# training step, a log write, a checkpoint write or pruning), "startup" a random pause after
# the start (imports, compilation or training).
KILLS = ("write", "progress", "startup", "write", "progress")
WRITE_DELAY_S = 0.2
POLL_S = 0.005
WAIT_LIMIT_S = 120.0


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def _assert_bitwise_equal(a, b, what):
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb), what
    for i, (x, y) in enumerate(zip(la, lb, strict=True)):
        assert x.dtype == y.dtype and x.shape == y.shape, f"{what}: leaf {i}"
        assert np.array_equal(x, y), f"{what}: leaf {i} differs"


def _temporaries(ckpt_dir: Path) -> list[Path]:
    return sorted(ckpt_dir.glob(".ckpt-*.tmp")) if ckpt_dir.is_dir() else []


def _complete_steps(ckpt_dir: Path) -> list[int]:
    return [step for step, _ in list_checkpoints(ckpt_dir)]


def _wait_for(condition, process, what):
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the training process exited (status {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path):
    rng = np.random.default_rng(20240607)
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    run_dir = tmp_path / "killed"
    ckpt_dir = run_dir / "checkpoints"
    command = [sys.executable, "-m", "eqx_impl", "train", "--config", str(config_path)]
    command += ["--no-eval", "--no-progress", "--no-preflight"]
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        JAX_PLATFORMS="cpu",
        PYTHONUNBUFFERED="1",  # the resume message must reach the file before a SIGKILL
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        EQX_ON_ERROR="nan",
        **{WRITE_DELAY_ENV: str(WRITE_DELAY_S)},
    )

    def launch(i, run_dir=run_dir):
        out = (tmp_path / f"stdout-{i}.txt").open("w")
        argv = [*command, "--run-dir", str(run_dir)]
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT), out

    # The reference: the same command, never interrupted (it also fills the compilation cache).
    process, out = launch("full", tmp_path / "full")
    assert process.wait(timeout=300) == 0, (tmp_path / "stdout-full.txt").read_text()
    out.close()
    like = build(config_from_dict(CONFIG)).initial
    full_path = list_checkpoints(tmp_path / "full" / "checkpoints")[-1][1]
    full = load_checkpoint(full_path, like)
    assert int(full.step) == STEPS

    expected_resume, survived, inside_write = None, 0, 0
    for i, kind in enumerate(KILLS):
        before = _complete_steps(ckpt_dir)
        process, out = launch(i)
        stale = set(_temporaries(ckpt_dir))  # left by an earlier kill inside a write
        if kind == "write":
            _wait_for(lambda s=stale: set(_temporaries(ckpt_dir)) - s, process, "a checkpoint write")
        elif kind == "progress":
            newest = before[-1] if before else 0
            _wait_for(lambda n=newest: _complete_steps(ckpt_dir)[-1:] > [n], process, "a new checkpoint")
            time.sleep(rng.uniform(0.0, 3 * WRITE_DELAY_S))
        else:
            time.sleep(rng.uniform(0.5, 4.0))
        assert process.poll() is None, f"kill {i} ({kind}): the run finished before it was killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        out.close()
        assert process.returncode == -signal.SIGKILL
        survived += 1
        log = (tmp_path / f"stdout-{i}.txt").read_text()
        if expected_resume is not None and kind != "startup":  # resumed from the newest complete one
            assert f"(step {expected_resume})" in log, log
        if kind == "write":
            # Killed before the rename: the temporary file is left, its final name is not taken.
            temporary = sorted(set(_temporaries(ckpt_dir)) - stale)
            assert temporary, f"kill {i} missed the checkpoint write"
            pending = int(re.match(r"\.ckpt-(\d+)\.eqx\.", temporary[0].name).group(1))
            assert pending not in _complete_steps(ckpt_dir)
            inside_write += 1
        # Every file under a final name is a complete checkpoint (size and SHA-256 checked).
        steps = _complete_steps(ckpt_dir)
        for _, path in list_checkpoints(ckpt_dir):
            assert int(load_checkpoint(path, like).step) == int(path.stem.split("-")[1])
        if steps:
            state, path = restore_latest(ckpt_dir, like)
            assert int(state.step) == steps[-1]
        expected_resume = steps[-1] if steps else None

    # The last restart runs to the end.
    process, out = launch(len(KILLS))
    assert process.wait(timeout=300) == 0, (tmp_path / f"stdout-{len(KILLS)}.txt").read_text()
    out.close()
    if expected_resume is not None:
        assert f"(step {expected_resume})" in (tmp_path / f"stdout-{len(KILLS)}.txt").read_text()
    assert survived == len(KILLS) and inside_write >= 1
    final_path = list_checkpoints(ckpt_dir)[-1][1]
    final = load_checkpoint(final_path, like)
    assert int(final.step) == STEPS
    for name in ("model", "ema", "opt_state", "proposal_state", "step", "key"):
        _assert_bitwise_equal(getattr(final, name), getattr(full, name), name)
    assert final_path.read_bytes() == full_path.read_bytes()  # the whole file, header included
    assert not _temporaries(ckpt_dir), "a later write removes what a killed write left"
    # The log was cut back to each resumed checkpoint: the same losses as the uninterrupted run.
    rows, full_rows = read_metrics(run_dir / "metrics.jsonl"), read_metrics(tmp_path / "full" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [r["step"] for r in full_rows]
    assert [r["loss"] for r in rows] == [r["loss"] for r in full_rows]
    print(f"crash safety: {survived} SIGKILLs survived ({inside_write} inside a checkpoint write)")
