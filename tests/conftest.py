"""Test configuration: run-time type checks, float64 reference, strict JAX dtype promotion,
hypothesis profiles.

Every function and dataclass in `eqx_impl` and `reference` is checked at run time by
jaxtyping with beartype (jaxtyping's import hook, installed here before any test imports the
packages): argument and return types, and jaxtyping's dtype and shape annotations with their
named axes held consistent within one call. Under `jax.jit` the checks run once, at trace
time. `_checks` is left out on purpose: the reference calls it on every evaluation, also
inside `scipy.integrate.quad` integrands, where it made up 96k of the 211k checked calls of
`test_equivalence_truncated_kl[x64]`; pyright checks it statically. Set
WEIGHTED_ELBO_TYPECHECK=0 to switch the checks off (e.g. to time the suite without them);
subprocesses that tests start (the CLI) run unchecked.

Profiles (select with HYPOTHESIS_PROFILE): `ci` (default; bounded, derandomised, no
deadline, so CI is reproducible), `thorough` (many more examples), `dev` (quick).
"""

import os

from jaxtyping import install_import_hook

if os.environ.get("WEIGHTED_ELBO_TYPECHECK", "1") != "0":
    # Must precede the first import of the packages; the hook is process-wide, so it stays
    # installed for the whole session (each xdist worker runs this file too). The string is
    # the decorator expression jaxtyping evaluates: beartype with the PEP 484 numeric tower,
    # so an int passes where `float` is annotated, as it does for pyright.
    install_import_hook(
        ["eqx_impl", "reference"],
        "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))",
    )

import jax  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Mixing float64 NumPy arrays into float32 JAX code must be explicit.
jax.config.update("jax_numpy_dtype_promotion", "strict")
# The float32 tolerances assume IEEE float32 products. On Ampere and later GPUs JAX's default
# matmul/convolution precision is TF32 (10-bit mantissa, ~1e-3 relative), so the suite asks
# for full float32 there; on the CPU this changes nothing. A JAX_DEFAULT_MATMUL_PRECISION
# in the environment wins.
if "JAX_DEFAULT_MATMUL_PRECISION" not in os.environ:
    jax.config.update("jax_default_matmul_precision", "highest")

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=25, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.register_profile("dev", max_examples=8, derandomize=True, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
