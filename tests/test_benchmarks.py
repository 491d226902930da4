"""The benchmark suite's measurements, at a tiny size.

The sampler benchmark measures what it claims: on a Gaussian mixture with its exact
denoiser, the distance of each endpoint to a float64 fine solution of the same
probability-flow ODE falls with the sampler's order: 2 for Heun, 1 for Euler. The slope
between NFE 32 and 128 on 64 starting points is 2.25 (Heun) and 1.02–1.03 (Euler) over three
seeds, still slightly above the asymptotic orders; the tolerances are ±0.4 and ±0.15.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from benchmarks import samplers_nfe, suite, unet_throughput


@pytest.fixture(scope="module")
def tiny_nfe():
    return samplers_nfe.measure(
        (32, 128),
        samplers=("heun", "euler", "ddim"),
        batch=64,
        ode_batch=64,
        fine_steps=512,
        n_directions=8,
    )


def test_heun_and_euler_orders(tiny_nfe):
    assert tiny_nfe.nfe["heun"] == [31, 127]  # 2N - 1 evaluations
    assert tiny_nfe.nfe["euler"] == [32, 128]
    assert abs(tiny_nfe.order("heun") - 2.0) < 0.4
    assert abs(tiny_nfe.order("euler") - 1.0) < 0.15
    # the fine solution is far more accurate than the best sampler measured against it
    assert tiny_nfe.fine_error < 0.1 * min(tiny_nfe.ode_error["heun"])


def test_ddim_is_euler_in_edm_coordinates(tiny_nfe):
    # DDIM is Euler's method for x/α in σ (Karras et al. 2022, §3): same errors up to float32 rounding.
    np.testing.assert_allclose(tiny_nfe.ode_error["ddim"], tiny_nfe.ode_error["euler"], rtol=1e-3)


def test_sliced_w2_of_exact_quantiles_is_zero():
    rng = np.random.default_rng(0)
    weights, means, stds = samplers_nfe.gmm_parameters()
    theta = rng.uniform(0, 2 * np.pi, 4)
    directions = np.stack([np.cos(theta), np.sin(theta)], 1)
    quantiles = samplers_nfe._exact_quantiles(weights, means, stds, directions, 1000)
    # The exact quantiles of a 1-D projection, checked against a large sample's quantiles.
    x = means[rng.choice(len(weights), 200_000, p=weights)] + stds[0] * rng.standard_normal((200_000, 2))
    empirical = np.quantile(x @ directions.T, (np.arange(1000) + 0.5) / 1000, axis=0)
    np.testing.assert_allclose(empirical[100:-100], quantiles[100:-100], atol=0.03)


def test_peak_table():
    assert unet_throughput.peak_tflops("NVIDIA H100 80GB HBM3") == 494.7  # SXM, TF32 dense
    assert unet_throughput.peak_tflops("NVIDIA H100 PCIe") == 378.0
    assert unet_throughput.peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert unet_throughput.peak_tflops("cpu") is None


def test_suite_pieces_import_and_markdown(tmp_path):
    for name in (
        "eqx_vs_reference",
        "train_overhead",
        "samplers_nfe",
        "unet_throughput",
        "sampler_compile",
        "evaluate_compile",
    ):
        module = importlib.import_module(f"benchmarks.{name}")
        assert callable(module.main)
    assert callable(importlib.import_module("benchmarks.train_overhead").measure)
    assert "backend" in suite.machine()
    rows = [suite.Row("b", "m", "1.0x", "n")]
    page = tmp_path / "page.md"
    page.write_text("before\n<!-- benchmarks:cpu -->\nold\n<!-- /benchmarks:cpu -->\nafter\n")
    suite.write_markdown(page, suite.markdown_table(rows, "here", "cmd"), "cpu")
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("after\n")
    assert "old" not in text and "| b | m | 1.0x | n |" in text
