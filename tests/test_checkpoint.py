"""Checkpoints: Equinox serialisation round trip, atomic writes and pruning, clear errors for
truncated/corrupt files with fall-back on resume, and exact (bitwise) resume of training."""

from __future__ import annotations

import hashlib
import io
import json
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
from eqx_impl.train.checkpoint import checkpoint_path
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
    newest.write_bytes(newest.read_bytes()[:-100])
    with pytest.warns(UserWarning, match="ckpt-00000003.eqx.*truncated"):
        restored, path = restore_latest(tmp_path, setup.initial)
    assert path == older and int(restored.step) == 2
    older.write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match="No usable checkpoint"):
            restore_latest(tmp_path, setup.initial)
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
    atomic): `train` warns, naming it, and resumes from the one before."""
    config = tiny_config(schedule="adaptive", steps=20, checkpoint_every=5)
    messages = []
    kwargs = dict(preflight=False, progress=False, evaluate=False, echo=messages.append)
    train(config, run_dir=tmp_path / "run", stop_after=10, **kwargs)
    newest = checkpoint_path(tmp_path / "run" / "checkpoints", 10)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match=r"ckpt-00000010\.eqx.*truncated.*Falling back"):
        result = train(config, run_dir=tmp_path / "run", **kwargs)
    assert any("ckpt-00000005.eqx (step 5)" in m for m in messages), messages
    assert int(result.state.step) == 20
    assert [r["step"] for r in result.rows] == [5, 10, 15, 20]
