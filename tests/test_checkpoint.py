"""Checkpoints: Equinox serialisation round trip, atomic writes and pruning, clear errors for
truncated/corrupt files with fall-back on resume, and exact (bitwise) resume of training."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqx_impl.train import (
    CheckpointError,
    build,
    list_checkpoints,
    load_checkpoint,
    restore_latest,
    save_checkpoint,
    train,
)
from eqx_impl.train.checkpoint import CheckpointFallbackWarning, checkpoint_path
from eqx_impl.train.files import atomic_write_text, new_file_mode
from eqx_impl.train.step import run_steps
from tests.train_helpers import tiny_config


def _leaves_equal(a, b) -> bool:
    la = jax.tree.leaves(eqx.filter(a, eqx.is_array))
    lb = jax.tree.leaves(eqx.filter(b, eqx.is_array))
    assert len(la) == len(lb)
    return all(
        x.dtype == y.dtype and x.shape == y.shape and np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(la, lb, strict=True)
    )


@pytest.fixture(scope="module")
def trained_state():
    """A state after 3 real steps (nonzero optimiser moments, updated adaptive EMAs)."""
    setup = build(tiny_config(schedule="adaptive"))
    data = jnp.asarray(setup.dataset.model_data("train"))
    idx = jnp.asarray(np.arange(3 * 32).reshape(3, 32), jnp.int32)
    state, _ = run_steps(setup.trainer, setup.initial, data, idx)
    return setup, state


def test_round_trip_is_bitwise(tmp_path, trained_state):
    setup, state = trained_state
    path = save_checkpoint(tmp_path, state)
    assert path == checkpoint_path(tmp_path, 3) and path.name == "ckpt-00000003.eqx"
    restored = load_checkpoint(path, setup.initial)
    assert int(restored.step) == 3
    assert _leaves_equal(restored, state)
    # the restored adaptive state is the trained one, not the initial (uniform) one
    assert int(np.sum(restored.proposal_state.count)) > 0
    assert not _leaves_equal(restored.model, setup.initial.model)


def test_keeps_newest_and_leaves_no_temporary_files(tmp_path, trained_state):
    _, state = trained_state
    for step in (1, 2, 3, 4, 5):
        save_checkpoint(tmp_path, eqx.tree_at(lambda s: s.step, state, jnp.int32(step)), keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000004.eqx", "ckpt-00000005.eqx"]


def test_file_layout(tmp_path, trained_state):
    """Magic line, JSON header with the payload's size and SHA-256, then Equinox leaves."""
    setup, state = trained_state
    raw = save_checkpoint(tmp_path, state).read_bytes()
    magic, header, payload = raw.split(b"\n", 2)
    assert magic == b"WELBO-CKPT"
    header = json.loads(header)
    assert header["step"] == 3 and header["size"] == len(payload)
    assert header["sha256"] == hashlib.sha256(payload).hexdigest()
    restored = eqx.tree_deserialise_leaves(io.BytesIO(payload), setup.initial)
    assert _leaves_equal(restored, state)


def test_truncated_checkpoint_names_the_file(tmp_path, trained_state):
    setup, state = trained_state
    path = save_checkpoint(tmp_path, state)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_checkpoint(path, setup.initial)
    assert str(path) in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a checkpoint") as info:
        load_checkpoint(path, setup.initial)
    assert str(path) in str(info.value)


def test_corrupt_checkpoint_names_the_file(tmp_path, trained_state):
    setup, state = trained_state
    path = save_checkpoint(tmp_path, state)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF  # one flipped byte inside the last leaf
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt") as info:
        load_checkpoint(path, setup.initial)
    assert str(path) in str(info.value)


def test_mismatched_model_names_the_file(tmp_path, trained_state):
    _, state = trained_state
    path = save_checkpoint(tmp_path, state)
    other = build(tiny_config(schedule="adaptive", width=16))
    with pytest.raises(CheckpointError, match="does not fit") as info:
        load_checkpoint(path, other.initial)
    assert str(path) in str(info.value)


def test_resume_falls_back_to_previous_checkpoint(tmp_path, trained_state):
    setup, state = trained_state
    older = save_checkpoint(tmp_path, eqx.tree_at(lambda s: s.step, state, jnp.int32(2)))
    newest = save_checkpoint(tmp_path, state)
    size = json.loads(newest.read_bytes().split(b"\n", 2)[1])["size"]
    newest.write_bytes(newest.read_bytes()[:-100])
    line = (
        f"checkpoint ckpt-00000003.eqx is truncated ({size - 100} of {size} bytes; a crash or a full disk?); "
        "using ckpt-00000002.eqx (step 2) instead."
    )
    notices = []
    restored, path = restore_latest(tmp_path, setup.initial, report=notices.append)
    assert path == older and int(restored.step) == 2 and notices == [line]
    with pytest.warns(CheckpointFallbackWarning) as caught:  # without `report`: one warning
        restore_latest(tmp_path, setup.initial)
    assert [str(w.message) for w in caught] == [line]
    older.write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback notice when nothing loads: only the error
        with pytest.raises(CheckpointError, match="No usable checkpoint") as info:
            restore_latest(tmp_path, setup.initial, report=notices.append)
    assert notices == [line]
    message = str(info.value)
    assert message.count("ckpt-00000003.eqx") == 1 and message.count("ckpt-00000002.eqx") == 1
    empty = tmp_path / "empty"
    assert restore_latest(empty, setup.initial) == (None, None)


def test_missing_checkpoint(tmp_path, trained_state):
    setup, _ = trained_state
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "ckpt-00000009.eqx", setup.initial)


@pytest.mark.parametrize("steps_per_dispatch", [1, 5])
def test_exact_resume(tmp_path, steps_per_dispatch):
    """20 steps in one run equal 10 steps, a checkpoint, a restart and 10 more, bit for bit:
    model, EMA, optimiser moments, adaptive EMAs, step and key, and the logged losses."""
    config = tiny_config(schedule="adaptive", steps=20, steps_per_dispatch=steps_per_dispatch)
    kwargs = dict(preflight=False, progress=False, evaluate=False, echo=lambda _: None)
    full = train(config, run_dir=tmp_path / "full", **kwargs)
    first = train(config, run_dir=tmp_path / "split", stop_after=10, **kwargs)
    assert int(first.state.step) == 10
    resumed = train(config, run_dir=tmp_path / "split", **kwargs)
    assert int(resumed.state.step) == int(full.state.step) == 20
    assert _leaves_equal(resumed.state, full.state)
    assert [r["loss"] for r in resumed.rows] == [r["loss"] for r in full.rows]
    assert [r["step"] for r in resumed.rows] == [5, 10, 15, 20]


def test_garbage_and_corrupt_header_name_the_file(tmp_path, trained_state):
    setup, state = trained_state
    path = save_checkpoint(tmp_path, state)
    payload = path.read_bytes().split(b"\n", 2)[2]
    for raw, message in [
        (b"\x89PNG\r\n garbage", "not a checkpoint of this library"),
        (b"WELBO-CKPT\n{not json\n" + payload, "corrupt header"),
        (b"WELBO-CKPT\n" + json.dumps({"format": 99, "size": 1, "sha256": ""}).encode() + b"\nx", "format 99"),
        (b"WELBO-CKPT\n", "corrupt header"),  # cut off right after the magic line
    ]:
        path.write_bytes(raw)
        with pytest.raises(CheckpointError, match=message) as info:
            load_checkpoint(path, setup.initial)
        assert str(path) in str(info.value)


def test_a_later_write_removes_what_a_killed_write_left(tmp_path, trained_state):
    _, state = trained_state
    stale = tmp_path / ".ckpt-00000002.eqx.k3j4x.tmp"  # as files.atomic_write_bytes names them
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    assert [s for s, _ in list_checkpoints(tmp_path)] == []  # never mistaken for a checkpoint
    save_checkpoint(tmp_path, state)
    assert not stale.exists() and other.exists()


def test_training_resumes_from_the_previous_checkpoint_when_the_newest_is_cut_off(tmp_path):
    """A checkpoint truncated mid-file (a full disk; a crash cannot do it, the write is
    atomic): `train` says so in one line (which file, why, which one instead) and resumes
    from the one before."""
    config = tiny_config(schedule="adaptive", steps=20, checkpoint_every=5)
    messages = []
    kwargs = dict(preflight=False, progress=False, evaluate=False, echo=messages.append)
    train(config, run_dir=tmp_path / "run", stop_after=10, **kwargs)
    newest = checkpoint_path(tmp_path / "run" / "checkpoints", 10)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    messages.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointFallbackWarning)
        result = train(config, run_dir=tmp_path / "run", **kwargs)
    notices = [m for m in messages if "ckpt-00000010.eqx" in m]
    assert len(notices) == 1 and notices[0].startswith("checkpoint ckpt-00000010.eqx is truncated (")
    assert notices[0].endswith("; using ckpt-00000005.eqx (step 5) instead.")
    assert "resumed from" in messages[messages.index(notices[0]) + 1]
    assert int(result.state.step) == 20
    assert [r["step"] for r in result.rows] == [5, 10, 15, 20]


def test_stop_after_counts_steps_from_where_the_run_resumes(tmp_path):
    """`stop_after=n` trains n more steps (capped at train.steps), whatever step the run
    resumes at; a session of one dispatch still logs and checkpoints its last step."""
    config = tiny_config(schedule="adaptive", steps=20, checkpoint_every=5)
    kwargs = dict(preflight=False, progress=False, evaluate=False, echo=lambda _: None)
    run = tmp_path / "run"
    assert int(train(config, run_dir=run, stop_after=8, **kwargs).state.step) == 8
    assert int(train(config, run_dir=run, stop_after=8, **kwargs).state.step) == 16
    last = train(config, run_dir=run, stop_after=8, **kwargs)
    assert int(last.state.step) == 20
    assert [s for s, _ in list_checkpoints(run / "checkpoints")] == [15, 16, 20]  # the newest train.keep_checkpoints=3
    assert [r["step"] for r in last.rows] == [5, 8, 10, 15, 16, 20]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_get_the_mode_open_gives(tmp_path, trained_state, umask):
    """Checkpoints and atomically written text get `0o666 & ~umask` (0644 under umask 022),
    like a file made by `open()`, not the 0600 of a temporary file."""
    _, state = trained_state
    old = os.umask(umask)
    try:
        assert new_file_mode() == 0o666 & ~umask
        with open(tmp_path / "plain.txt", "w") as stream:
            stream.write("x")
        written = [atomic_write_text(tmp_path / "a.json", "{}"), save_checkpoint(tmp_path / "c", state)]
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "plain.txt", *written]}
    assert modes == {0o666 & ~umask}
