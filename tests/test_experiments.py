"""The study's statistics against SciPy, the claims' verdicts on synthetic seeds, the page
rendered from JSON, and the study's pipeline on a tiny budget."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from scipy import stats as sps

from experiments import claims, render, scales, study
from experiments.stats import holm, t_interval, tost, welch


def test_t_interval_matches_scipy():
    x = [2.1, 2.7, 2.4, 3.0, 2.2]
    got = t_interval(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert (got["lo"], got["hi"]) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    assert got["sd"] == pytest.approx(np.std(x, ddof=1), rel=1e-12)


def test_welch_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 1.0, 5), rng.normal(1.0, 3.0, 7)
    got = welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert got["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert got["p"] == pytest.approx(ref.pvalue, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert (got["lo"], got["hi"]) == (pytest.approx(ci.low, rel=1e-10), pytest.approx(ci.high, rel=1e-10))


def test_tost_is_two_one_sided_scipy_welch_tests():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.0, 0.1, 6), rng.normal(0.05, 0.1, 6)
    m = 0.2
    got = tost(a, b, m)
    lower = sps.ttest_ind(a + m, b, equal_var=False, alternative="greater").pvalue
    upper = sps.ttest_ind(a - m, b, equal_var=False, alternative="less").pvalue
    assert got["p_lower"] == pytest.approx(lower, rel=1e-10)
    assert got["p_upper"] == pytest.approx(upper, rel=1e-10)
    assert got["p"] == pytest.approx(max(lower, upper), rel=1e-10)
    assert got["p"] < 0.05  # |diff| ~ 0.05 << margin: equivalent
    assert tost(a, b + 1.0, m)["p"] > 0.5  # 1.0 apart: not equivalent


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([1.0])
    with pytest.raises(ValueError, match="non-finite"):
        welch([1.0, math.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="margin must be positive"):
        tost([1.0, 2.0], [1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="zero variance"):
        welch([1.0, 1.0], [2.0, 2.0])
    with pytest.raises(ValueError, match="unknown scale"):
        scales.scale("huge")


def _payload(fd: dict[str, list[float]], scale: str = "cpu") -> dict:
    """A synthetic study: digits arms with the given FD values (both samplers), bpd 3.0."""
    arms = []
    for label, values in fd.items():
        per_seed = [
            {"seed": i, "bpd": 3.0 + 0.01 * i, "fd_ancestral": v, "fd_heun": v, "final_loss": 1.0 + 0.1 * i}
            for i, v in enumerate(values)
        ]
        arms.append({"label": label, "per_seed": per_seed})
    floors = {"fd_data": [5.0, 6.0, 5.5], "bpd_uniform": study.UNIFORM_BPD}
    digits = {"config": scales.SCALES[scale]["digits"], "arms": arms, "floors": floors}
    return {
        "scale": scale,
        "scale_note": "synthetic",
        "seeds": [0, 1, 2, 3, 4],
        "datasets": {"digits": digits},
        "timing": {"wall_s": 60.0, "cpu_count": 2, "backend": "cpu", "jax": "x"},
    }


def test_verdicts_on_synthetic_seeds():
    near = [10.0, 10.1, 9.9, 10.05, 9.95]
    payload = _payload(
        {
            "EpsCosine / cosine": [20.0, 21.0, 19.0, 20.5, 19.5],  # Sigmoid(2) clearly better
            "Sigmoid(2) / cosine": near,
            "Sigmoid(1) / cosine": [10.0, 14.0, 6.0, 12.0, 8.0],  # noisy: undecided
            "Sigmoid(3) / cosine": [5.0, 5.1, 4.9, 5.05, 4.95],  # b = 3 clearly better: contradicts
            "Sigmoid(2) / adaptive": [x * 1.01 for x in near],  # within 10%: equivalent
            "EDM-monotonic / adaptive": [x * 2 for x in near],  # a factor 2: not equivalent
        }
    )
    verdicts = {(r["claim"].text, r["claim"].b, r["claim"].metric): r["verdict"] for r in claims.decide(payload)}
    assert verdicts[("Sigmoid(2) beats ε-pred + cosine", "EpsCosine / cosine", "fd_heun")] == "reproduces"
    assert verdicts[("bias sweep: b = 2 beats b = 1", "Sigmoid(1) / cosine", "fd_ancestral")] == "inconclusive"
    assert verdicts[("bias sweep: b = 2 beats b = 3", "Sigmoid(3) / cosine", "fd_ancestral")] == "contradicted"
    assert verdicts[("bias sweep: b = 2 beats b = 4", "Sigmoid(4) / cosine", "fd_ancestral")] == "not run"
    key = ("adaptive ≈ cosine schedule (Sigmoid(2))", "Sigmoid(2) / cosine")
    assert verdicts[(*key, "fd_heun")] == verdicts[(*key, "fd_ancestral")] == "reproduces"
    edm = ("Sigmoid(2) ≈ EDM-monotonic (adaptive)", "EDM-monotonic / adaptive", "fd_heun")
    assert verdicts[edm] == "does not reproduce"


def test_page_states_scale_seeds_tests_and_smoke_caveat():
    fd = {"Sigmoid(2) / cosine": [10.0, 10.1, 9.9, 10.05, 9.95], "EpsCosine / cosine": [20.0, 21.0, 19.0, 20.5, 19.5]}
    page = render.render_page(_payload(fd, scale="smoke"))
    assert "Scale: `smoke`" in page and "5 per arm" in page and "Holm" in page and "TOST" in page
    assert "not evidence" in page and "make experiments" in page
    assert "smoke scale, not evidence (test alone: reproduces)" in page
    assert f"uniform: {study.UNIFORM_BPD:.2f}" in page and "| yes |" in page
    full = render.render_page(_payload(fd, scale="cpu"))
    assert "**reproduces**" in full and "not evidence" not in full


@pytest.mark.slow
def test_study_pipeline_tiny():
    """Two seeds of one GMM arm on a tiny budget: every metric finite, seeds differ
    (20-70 s with compilation, so marked slow; `--scale smoke` runs every arm)."""
    sc = copy.deepcopy(scales.SCALES["smoke"])
    sc["gmm"]["model"]["args"] = {"width": 8, "depth": 1}
    sc["gmm"]["train"]["steps"] = 4
    sc["gmm"]["data"]["args"] = {"num_train": 256, "num_test": 64}
    sc["gmm"]["eval"].update(num_samples=32, sampling_steps=3, bpd_num_t=2, ode_steps=2, batch_size=64)
    sc["floor_draws"] = 3
    payload = study.run_study("smoke", seeds=(0, 1), datasets=("gmm",), only=1, settings=sc, echo=lambda _: None)
    (arm,) = payload["datasets"]["gmm"]["arms"]
    assert arm["label"] == "EpsCosine / cosine" and len(arm["per_seed"]) == 2
    s0, s1 = arm["per_seed"]
    assert all(math.isfinite(v) for v in s0.values())
    assert s0["true_nll"] != s1["true_nll"]  # the seed varies the split, hence the test set
    assert s0["nelbo_excess"] == pytest.approx(s0["nelbo"] - s0["true_nll"])
    assert len(payload["datasets"]["gmm"]["floors"]["sw_data"]) == 3
