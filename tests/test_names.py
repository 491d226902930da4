"""`eqx_impl.names`: each table equals the objects registered for its kind, the spelling rule
keeps every accepted name working, and the module loads neither JAX nor NumPy."""

import subprocess
import sys
from pathlib import Path

import pytest

import _checks
from eqx_impl import names

ROOT = Path(__file__).parent.parent


def test_weightings_schedules_and_models_match_the_training_registry():
    from eqx_impl.train import registry

    assert tuple(registry.WEIGHTINGS) == names.WEIGHTINGS
    assert tuple(registry.SCHEDULES) == names.SCHEDULES
    assert tuple(registry.NETWORKS) == names.MODELS


def test_metrics_match_the_metric_functions():
    from eqx_impl.train.evaluate import METRIC_FUNCTIONS

    assert tuple(METRIC_FUNCTIONS) == names.METRICS


def test_samplers_match_the_ones_generate_runs():
    from eqx_impl.evaluation.generate import SAMPLERS

    assert tuple(SAMPLERS) == names.SAMPLERS == _checks.SAMPLERS


def test_targets_match_the_shared_checks():
    import eqx_impl as ex

    assert names.TARGETS == _checks.TARGETS == ex.TARGETS


def test_data_sets_match_the_data_registry():
    from eqx_impl.data import registry

    assert tuple(registry._REGISTRY) == names.DATASETS
    assert registry.available() == tuple(sorted(names.DATASETS))


def test_precisions_match_what_resolve_precision_accepts():
    from eqx_impl.models.precision import PRECISIONS, resolve_precision

    assert PRECISIONS == names.PRECISIONS
    assert {resolve_precision(p, "cpu") for p in names.PRECISIONS} == {"float32", "tf32", "bfloat16"}


@pytest.mark.parametrize(
    "spelling, table, expected",
    [
        ("swiss-roll", names.DATASETS, "swiss_roll"),
        (" CIFAR10 ", names.DATASETS, "cifar10"),
        ("eps_cosine", names.WEIGHTINGS, "eps-cosine"),
        ("Min_SNR", names.WEIGHTINGS, "min-snr"),
        ("cosine_interpolated", names.SCHEDULES, "cosine-interpolated"),
        ("dpm-2", names.SAMPLERS, "dpm_2"),
        ("dpmpp_2m_sde", names.SAMPLERS, "dpmpp_2m_sde"),
        ("gmm-nll", names.METRICS, "gmm_nll"),
        ("f", names.TARGETS, "F"),
        ("BFloat16", names.PRECISIONS, "bfloat16"),
        ("UNet", names.MODELS, "unet"),
        ("cifar100", names.DATASETS, None),
        ("dpm2", names.SAMPLERS, None),
        ("fid", names.METRICS, None),
    ],
)
def test_the_spelling_rule(spelling, table, expected):
    assert names.canonical_name(spelling, table) == expected


def test_every_table_is_unambiguous_under_the_spelling_rule():
    tables = [names.WEIGHTINGS, names.SCHEDULES, names.METRICS, names.DATASETS, names.MODELS]
    for table in [*tables, names.PRECISIONS, names.SAMPLERS, names.TARGETS]:
        assert len({names.normalize_name(n) for n in table}) == len(table)


@pytest.mark.parametrize("weighting", names.WEIGHTINGS)
def test_weighting_base_accepts_what_the_registry_builds(weighting):
    """Every spelling `weighting_base` accepts builds in the registry, and the same name with a
    typo is refused by both."""
    from eqx_impl.train.config import ConfigError
    from eqx_impl.train.registry import build_weighting

    spelt = weighting.upper().replace("-", "_")
    for name in (weighting, spelt, f"{spelt}-monotonic", f"monotonic_{weighting}", f"shifted-{weighting}-monotonic"):
        assert names.weighting_base(name) == weighting
        args = {"shift": 1.0} if "shifted" in name else {}
        build_weighting(name, args, (-10.0, 10.0))
    assert names.weighting_base(weighting + "x") is None
    with pytest.raises(ConfigError, match="unknown weighting"):
        build_weighting(weighting + "x", {}, (-10.0, 10.0))


def test_loading_the_tables_loads_neither_jax_nor_numpy():
    script = "import sys, eqx_impl.names; print(sorted(m for m in ('jax', 'numpy') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
