r"""Checkpoints of the full `TrainState` with Equinox serialisation (no pickle).

File layout (`ckpt-<step:08d>.eqx`):

    WELBO-CKPT\n
    {"format": 1, "step": ..., "size": ..., "sha256": "..."}\n
    <eqx.tree_serialise_leaves bytes>

The header records the payload's length and SHA-256, so a truncated or corrupted file is
recognised before any leaf is read, and the error names the file. Files are written
atomically (temporary file + `os.replace`); the newest `keep` are kept, and temporary files
left by a write that was killed are removed by the next successful one. Resuming takes the
newest checkpoint that loads and falls back to older ones, with one line for each bad file
(which file, why, which one is used instead).

Test hook: the environment variable `EQX_IMPL_CHECKPOINT_WRITE_DELAY` (seconds) makes every
checkpoint write sleep between writing its temporary file and renaming it, so that a test
can kill the process inside a write (`tests/test_crash_safety.py`). Unset, it costs nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import equinox as eqx

from eqx_impl.train.files import atomic_write_bytes

__all__ = [
    "CheckpointError",
    "CheckpointFallbackWarning",
    "checkpoint_path",
    "list_checkpoints",
    "load_checkpoint",
    "restore_latest",
    "save_checkpoint",
]

MAGIC = b"WELBO-CKPT\n"
FORMAT = 1
_NAME = re.compile(r"^ckpt-(\d{8,})\.eqx$")
_TEMPORARY = re.compile(r"^\.ckpt-\d{8,}\.eqx\..*\.tmp$")  # see files.atomic_write_bytes
WRITE_DELAY_ENV = "EQX_IMPL_CHECKPOINT_WRITE_DELAY"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the reason. `reason`
    is the short reason alone (`truncated: ...`), for the one-line fallback notice."""

    def __init__(self, message: str, *, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class CheckpointFallbackWarning(UserWarning):
    """`restore_latest` skipped an unusable checkpoint for an older one (when no `report`
    callback is given)."""


def checkpoint_path(directory: str | Path, step: int) -> Path:
    """**Returns:** `directory / f"ckpt-{step:08d}.eqx"`."""
    return Path(directory) / f"ckpt-{int(step):08d}.eqx"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """Checkpoint files in `directory`, oldest first (temporary files are ignored).

    **Returns:** a list of `(step, path)`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(directory: str | Path, state, *, keep: int = 3) -> Path:
    """Serialise `state` (a `TrainState`) to `ckpt-<step>.eqx` atomically, then delete all but
    the newest `keep` checkpoints.

    **Returns:** the path written.
    """
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, state)
    payload = buffer.getvalue()
    step = int(state.step)
    header = {
        "format": FORMAT,
        "step": step,
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    path = checkpoint_path(directory, step)
    atomic_write_bytes(path, MAGIC + json.dumps(header).encode() + b"\n" + payload, before_replace=_write_delay)
    for _, old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    for stale in Path(directory).iterdir():  # left by a process killed inside a write
        if _TEMPORARY.match(stale.name):
            stale.unlink(missing_ok=True)
    return path


def _write_delay(_temporary: Path) -> None:
    """The test hook: sleep `$EQX_IMPL_CHECKPOINT_WRITE_DELAY` seconds before the rename."""
    delay = os.environ.get(WRITE_DELAY_ENV)
    if delay:
        time.sleep(float(delay))


def _payload(path: Path) -> tuple[dict, bytes]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"Cannot read checkpoint {str(path)!r}: {err}", reason=f"unreadable ({err})") from None
    if not raw.startswith(MAGIC):
        raise CheckpointError(
            f"{str(path)!r} is not a checkpoint of this library (bad magic bytes); "
            "it may be truncated to nothing or another kind of file.",
            reason="not a checkpoint (bad magic bytes)",
        )
    head_end = raw.find(b"\n", len(MAGIC))
    try:
        header = json.loads(raw[len(MAGIC) : head_end])
        size, digest = int(header["size"]), str(header["sha256"])
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"Checkpoint {str(path)!r} has a corrupt header.", reason="corrupt header") from None
    if head_end < 0 or header.get("format") != FORMAT:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} has format {header.get('format')!r}; expected {FORMAT}.",
            reason=f"format {header.get('format')!r}, expected {FORMAT}",
        )
    payload = raw[head_end + 1 :]
    if len(payload) != size:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is truncated: its header promises {size} bytes of state, "
            f"the file holds {len(payload)}. It was probably cut off by a crash or a full disk; "
            "delete it to resume from the previous checkpoint.",
            reason=f"truncated ({len(payload)} of {size} bytes; a crash or a full disk?)",
        )
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupt: its SHA-256 does not match the header. "
            "Delete it to resume from the previous checkpoint.",
            reason="corrupt (its SHA-256 does not match the header)",
        )
    return header, payload


def load_checkpoint(path: str | Path, like):
    """Read a checkpoint into the structure of `like` (a `TrainState` built from the same
    config). Raises `CheckpointError` naming the file when it is missing, truncated,
    corrupt, or holds a different model.

    **Returns:** the restored `TrainState`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist.")
    _, payload = _payload(path)
    try:
        return eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except Exception as err:  # shape/dtype mismatch, short leaf data
        raise CheckpointError(
            f"Checkpoint {str(path)!r} does not fit this configuration ({type(err).__name__}: "
            f"{err}). Was it written with a different model, optimiser or schedule? Use the "
            "run's own config.yaml, or a new run directory.",
            reason=f"written for a different model or optimiser ({type(err).__name__})",
        ) from None


def restore_latest(directory: str | Path, like, *, report: Callable[[str], None] | None = None):
    """Load the newest usable checkpoint in `directory`, falling back to older ones. Once one
    loads, each newer unusable file gets one line, passed to `report` (default: a
    `CheckpointFallbackWarning`):

        checkpoint ckpt-00002000.eqx is truncated (...); using ckpt-00001500.eqx (step 1500) instead.

    Raises `CheckpointError` (listing every file and why, once) if checkpoints exist but none
    loads.

    **Returns:** `(state, path)`, or `(None, None)` when there is no checkpoint.
    """
    found = list_checkpoints(directory)
    errors: list[tuple[Path, CheckpointError]] = []
    for step, path in reversed(found):
        try:
            state = load_checkpoint(path, like)
        except CheckpointError as err:
            errors.append((path, err))
            continue
        for bad, err in errors:
            line = f"checkpoint {bad.name} is {err.reason}; using {path.name} (step {step}) instead."
            if report is None:
                warnings.warn(line, CheckpointFallbackWarning, stacklevel=2)
            else:
                report(line)
        return state, path
    if errors:
        listing = "\n  ".join(str(err) for _, err in errors)
        raise CheckpointError(f"No usable checkpoint in {str(directory)!r}:\n  {listing}")
    return None, None
