"""The names a config, the command line, evaluation and the benchmarks accept: one table per
kind and one spelling rule. Plain Python (not even NumPy), so that `--help` stays instant and a
misspelt name is reported before JAX loads; `tests/test_names.py` checks each table against
the objects registered for it (and `TARGETS` against `_checks.TARGETS`, which the NumPy
reference shares).

Spelling rule (`normalize_name`): case and surrounding blanks do not matter, and `_` reads as
`-`, so `swiss-roll` is `swiss_roll`, `EPS_COSINE` is `eps-cosine` and `dpm-2` is `dpm_2`.
Each table holds the canonical spelling, the one `canonical_name` returns.

| kind | table | where it is built or run |
|---|---|---|
| weightings (+ `-monotonic`, `-shifted`) | `WEIGHTINGS`, `WEIGHTING_MODIFIERS` | `train.registry.WEIGHTINGS` |
| schedules and proposals | `SCHEDULES` | `train.registry.SCHEDULES` |
| network targets | `TARGETS` | `eqx_impl.targets` |
| samplers | `SAMPLERS` | `evaluation.generate` |
| metrics | `METRICS` | `train.evaluate.METRIC_FUNCTIONS` |
| data sets | `DATASETS` | `data.registry` |
| models | `MODELS` | `train.registry.NETWORKS` |
| precisions | `PRECISIONS` | `models.precision` |
"""

from __future__ import annotations

__all__ = [
    "DATASETS",
    "METRICS",
    "MODELS",
    "PRECISIONS",
    "SAMPLERS",
    "SCHEDULES",
    "TARGETS",
    "WEIGHTINGS",
    "WEIGHTING_MODIFIERS",
    "canonical_name",
    "normalize_name",
    "weighting_base",
]

WEIGHTINGS = ("elbo", "sigmoid", "edm", "eps-cosine", "exponential", "indi", "min-snr")
WEIGHTING_MODIFIERS = ("shifted", "monotonic")  # `<w>-shifted` / `shifted-<w>`, likewise monotonic
SCHEDULES = (
    "linear",
    "cosine",
    "cosine-interpolated",
    "ddpm-linear",
    "edm-lognormal",
    "flow-ot",
    "adaptive",
    "learned",
)
METRICS = ("bpd", "fd", "gmm_nll", "bayes_gap", "sliced_wasserstein", "mmd", "nll_ode", "loss_profile")
DATASETS = ("checkerboard", "cifar10", "digits", "gmm", "mnist", "moons", "swiss_roll")
MODELS = ("mlp", "unet")
PRECISIONS = ("auto", "float32", "tf32", "bfloat16")
SAMPLERS = ("heun", "euler", "stochastic", "dpm_2", "dpmpp_2m", "dpmpp_2m_sde", "ancestral", "ddim")
TARGETS = ("eps", "x", "v", "F", "u")


def normalize_name(name: object) -> str:
    """The spelling rule: `" Swiss_Roll "` → `"swiss-roll"`. **Returns:** the normalised string."""
    return str(name).strip().lower().replace("_", "-")


def canonical_name(name: object, table: tuple[str, ...]) -> str | None:
    """The entry of `table` that `name` spells (`normalize_name` of both agree).

    **Returns:** the canonical spelling, or `None` when `name` is not in `table`.
    """
    key = normalize_name(name)
    return next((entry for entry in table if normalize_name(entry) == key), None)


def weighting_base(name: object) -> str | None:
    """The weighting under any `-shifted` / `-monotonic` modifiers (as prefix or suffix,
    nested in any order): `"shifted-edm_monotonic"` → `"edm"`.

    **Returns:** the canonical base name, or `None` when it is not a known weighting.
    """
    key = normalize_name(name)
    stripped = True
    while stripped:
        stripped = False
        for modifier in WEIGHTING_MODIFIERS:
            if key.startswith(modifier + "-"):
                key, stripped = key[len(modifier) + 1 :], True
            elif key.endswith("-" + modifier):
                key, stripped = key[: -len(modifier) - 1], True
    return canonical_name(key, WEIGHTINGS)
