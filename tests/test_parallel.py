"""Data-parallel training (`train.data_parallel`, `eqx_impl.train.parallel`): the sharded step
computes what the single-device step computes, the compiler sums the adaptive statistics
over devices, and checkpoints load whatever the device count.

The four-device runs need `XLA_FLAGS=--xla_force_host_platform_device_count=4` before JAX
starts, so they run once per session in a subprocess (`tests/parallel_worker.py`); the
tests here read what it wrote.

Tolerance of the sharded-vs-single comparisons: the two runs draw the same random numbers
(partitionable threefry) and differ only in the order of float32 additions in the batch
reductions (4 partial sums plus an all-reduce instead of one sum). Each step perturbs the
state by a few ulps (float32 eps = 1.2e-7), Adam's division by $\\sqrt{v}$ passes the
gradient's relative error on, and 12 steps accumulate it: measured at most 4.3e-6 of a
leaf's largest magnitude. We allow 1e-5 of it per leaf (~80 ulps); integer leaves (step
counter, key, the adaptive proposal's per-bin hit counts) must be equal, so every example
fell in the same log-SNR bin in both runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

from eqx_impl.train import ConfigError, parallel, train
from tests.train_helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]
DEVICES = 4
REL_TOL = 1e-5  # of each leaf's largest magnitude; see the module docstring


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("parallel")
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={DEVICES}"
    env = {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.parallel_worker", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, json.loads((out / "facts.json").read_text())


def _assert_close_states(expected: dict, actual: dict) -> None:
    assert expected.keys() == actual.keys()
    for name in expected:
        a, b = expected[name], actual[name]
        assert a.shape == b.shape and a.dtype == b.dtype, name
        if a.dtype.kind == "f":
            scale = float(np.max(np.abs(a))) if a.size else 0.0
            np.testing.assert_allclose(b, a, rtol=0, atol=REL_TOL * scale, err_msg=f"leaf {name}")
        else:
            np.testing.assert_array_equal(b, a, err_msg=f"leaf {name}")


def _load(out: Path, name: str) -> dict:
    with np.load(out / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


def test_sharded_training_matches_one_device(four_devices):
    out, facts = four_devices
    assert facts["devices"] == DEVICES
    _assert_close_states(_load(out, "single"), _load(out, "sharded"))


@pytest.mark.parametrize("name", ["sharded_to_single", "single_to_sharded"])
def test_checkpoints_load_across_device_counts(four_devices, name):
    """Half the run on one side, its checkpoint resumed on the other, ends where the
    uninterrupted single-device run ends."""
    out, _ = four_devices
    _assert_close_states(_load(out, "single"), _load(out, name))


def test_compiler_reduces_the_batch_statistics_across_devices(four_devices):
    """The partitioned program: each device gathers B/4 examples; the gradient, the loss and
    the adaptive proposal's per-bin sums and hit counts are all-reduced; the new state is
    replicated on all four devices."""
    _, facts = four_devices
    assert facts["local_batch"] and not facts["global_batch"]
    assert facts["all_reduces"] >= 3
    assert facts["bin_sums_reduced"] and facts["bin_hits_reduced"]
    assert facts["state_replicated"] and facts["state_devices"] == DEVICES


def test_batch_size_must_split_over_the_devices(four_devices):
    _, facts = four_devices
    assert "train.batch_size = 30" in facts["error"]
    assert "train.batch_size=32 or 28" in facts["error"]


def _leaves(state) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(state, eqx.is_array))]


def test_one_device_runs_the_same_code_path(tmp_path, monkeypatch):
    """With one device the flag builds a one-device mesh and runs the sharded path (placement,
    constraints, gathering back for sampling); it gives the default path's result, bit for
    bit (the constraints are no-ops on one device). On a machine with several devices the
    mesh is limited to the first, so the test means the same thing everywhere."""
    build_mesh, meshes = parallel.data_mesh, []

    def first_device_mesh(batch_size, devices=None):
        meshes.append(build_mesh(batch_size, jax.devices()[:1]))
        return meshes[-1]

    monkeypatch.setattr(parallel, "data_mesh", first_device_mesh)
    config = tiny_config(schedule="adaptive", steps=4, steps_per_dispatch=2)
    on = dataclasses.replace(config, train=dataclasses.replace(config.train, data_parallel=True))
    kwargs = dict(progress=False, echo=lambda _: None)
    default = train(config, run_dir=tmp_path / "default", evaluate=False, **kwargs)
    sharded = train(on, run_dir=tmp_path / "sharded", **kwargs)
    assert [m.devices.tolist() for m in meshes] == [jax.devices()[:1]]  # the flag took the mesh path
    assert (tmp_path / "sharded" / "samples.png").is_file()
    for a, b in zip(_leaves(default.state), _leaves(sharded.state), strict=True):
        np.testing.assert_array_equal(b, a)


def test_data_mesh_checks_the_batch_size():
    devices = jax.devices()[:1] * 3  # the check only counts devices: 3 whatever the machine has
    with pytest.raises(ConfigError, match=r"train.batch_size=9 or 6 \(a multiple of 3\)"):
        parallel.data_mesh(8, devices)


def test_cli_multi_host_flags_go_together(capsys):
    from eqx_impl.cli import main

    assert main(["train", "--coordinator", "localhost:12355", "--process-id", "0"]) == 2
    assert "--coordinator, --num-processes and --process-id go together" in capsys.readouterr().err
