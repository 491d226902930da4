"""Runs of the tiny adaptive-schedule config for `test_parallel.py`, in a process started with
`XLA_FLAGS=--xla_force_host_platform_device_count=4` (the flag must be set before JAX starts,
so it cannot run inside the test process):

    python -m tests.parallel_worker OUT_DIR

Writes to `OUT_DIR`: `<run>.npz` (the final state's array leaves) for

    single            12 steps on one device (train.data_parallel=false)
    sharded           12 steps with the batch split over the 4 devices
    sharded_to_single 5 steps sharded, checkpoint, resumed on one device
    single_to_sharded 5 steps on one device, checkpoint, resumed sharded

and `facts.json`: the device count, facts about the compiled sharded step (all-reduce in
the HLO, per-device batch shape, the output state's sharding) and the error for a batch
size that does not split.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from eqx_impl.train import ConfigError, build, lower_steps, parallel, train
from tests.train_helpers import tiny_config

STEPS, HALF, BATCH = 12, 5, 48


def config(data_parallel: bool, **kwargs):
    # Two steps per dispatch: stopping at step 5 and resuming exercise the one-step and the
    # scanned dispatch.
    c = tiny_config(schedule="adaptive", steps=STEPS, batch_size=BATCH, steps_per_dispatch=2, **kwargs)
    return dataclasses.replace(c, train=dataclasses.replace(c.train, data_parallel=data_parallel))


def leaves(state) -> dict[str, np.ndarray]:
    return {str(i): np.asarray(x) for i, x in enumerate(jax.tree.leaves(eqx.filter(state, eqx.is_array)))}


def run(out: Path, name: str, first: bool, second: bool | None = None) -> None:
    run_dir = out / name
    kwargs = dict(run_dir=run_dir, progress=False, evaluate=False, echo=lambda _: None)
    if second is None:
        result = train(config(first), **kwargs)
    else:
        train(config(first), stop_after=HALF, **kwargs)
        result = train(config(second), **kwargs)  # resumes from the other's checkpoint
    np.savez(out / f"{name}.npz", **leaves(result.state))


def compiled_facts() -> dict:
    setup = build(config(True))
    mesh, n_bins = setup.trainer.mesh, setup.proposal.adaptive.n_bins
    data = parallel.replicate(setup.dataset.model_data("train"), mesh)
    state = parallel.replicate(setup.initial, mesh)
    indices = parallel.shard_indices(np.arange(2 * BATCH).reshape(2, BATCH), mesh)
    compiled = lower_steps(setup.trainer, state, data, indices).compile()
    hlo = compiled.compiled.as_text()  # the partitioned program that each device runs
    new_state, _ = compiled(setup.trainer, state, data, indices)
    arrays = jax.tree.leaves(eqx.filter(new_state, eqx.is_array))
    all_reduces = [line for line in hlo.splitlines() if " all-reduce(" in line]
    local = BATCH // len(jax.devices())
    return {
        "all_reduces": len(all_reduces),
        # the adaptive statistics: per-bin sums of w·ℓ and hit counts, summed over devices
        "bin_sums_reduced": any(f"f32[{n_bins}]" in line for line in all_reduces),
        "bin_hits_reduced": any(f"s32[{n_bins}]" in line for line in all_reduces),
        # each device gathers (B/n, 2) examples of the 2-D mixture, never the whole batch
        "local_batch": f"f32[{local},2]" in hlo,
        "global_batch": f"f32[{BATCH},2]" in hlo,
        "state_replicated": all(x.sharding.is_fully_replicated for x in arrays),
        "state_devices": min(len(x.sharding.device_set) for x in arrays),
    }


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    facts = {"devices": len(jax.devices())}
    run(out, "single", False)
    run(out, "sharded", True)
    run(out, "sharded_to_single", True, False)
    run(out, "single_to_sharded", False, True)
    facts.update(compiled_facts())
    try:
        c = tiny_config(batch_size=30)
        build(dataclasses.replace(c, train=dataclasses.replace(c.train, data_parallel=True)))
        facts["error"] = None
    except ConfigError as err:
        facts["error"] = str(err)
    (out / "facts.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
