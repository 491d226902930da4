"""The studies of `experiments/` on a tiny budget (so the code cannot rot), and the
JSON → markdown rendering that puts their numbers into `docs/experiments.md`."""

from __future__ import annotations

import math

import pytest

from experiments import adaptive, render, weightings
from experiments.common import mean_se


def test_mean_se_matches_numpy_formula():
    stat = mean_se([1.0, 2.0, 6.0])
    assert stat["mean"] == pytest.approx(3.0)
    # sample std = sqrt(((−2)² + (−1)² + 3²)/2) = sqrt(7); s.e. = sqrt(7/3)
    assert stat["se"] == pytest.approx(math.sqrt(7.0 / 3.0))
    assert math.isnan(mean_se([1.0])["se"])


def test_weightings_study_tiny():
    payload = weightings.run_study(
        ["gmm"],
        (0,),
        steps=4,
        budget_min=1.0,
        only=1,
        overrides={
            "model": {"args": {"width": 8, "depth": 1}},
            "eval": {"num_samples": 32, "sampling_steps": 4, "batch_size": 32},
        },
        echo=lambda _: None,
    )
    block = payload["datasets"]["gmm"]
    (run,) = block["runs"]
    assert (run["weighting"], run["schedule"]) == ("EpsCosine", "Adaptive")
    assert set(run["metrics"]) == {"sliced_wasserstein", "gmm_nll_samples", "elbo_gap"}
    assert all(math.isfinite(v["mean"]) for v in run["metrics"].values())
    assert payload["timing"]["wall_s"] > 0


def test_weightings_grid_design():
    runs = weightings.grid(0.5)
    pairs = {(r["weighting"], r["schedule"]) for r in runs}
    assert len(runs) == len(pairs) == 16
    assert {(f"Sigmoid({b})", "Adaptive") for b in range(1, 6)} <= pairs
    assert ("EpsCosine", "Cosine") in pairs and ("EDM-monotonic", "EDMLogNormal") in pairs


def test_adaptive_gaussian_tiny():
    part = adaptive.gaussian_part((0,), checkpoints=(1, 5), settings=(("mean", 0.99),), only=("Sigmoid(2)",))
    rec = part["weightings"]["Sigmoid(2)"]
    # SPEC §5's example: d = 4, s² = 0.5, Sigmoid(2), Cosine(−10, 10): Var = 15.78, Var_min = 6.42.
    assert rec["var_min"] == pytest.approx(6.42, abs=0.01)
    assert rec["fixed"]["Cosine"] * rec["var_min"] == pytest.approx(15.78, abs=0.02)
    # No proposal beats Var_min (up to quadrature error).
    assert all(s["mean"] >= 0.999 for s in rec["adaptive"]["mean, decay 0.99"])


@pytest.mark.slow  # compiles a training step, a sampler and the moment estimator (~10 s CPU)
def test_adaptive_gmm_tiny():
    gmm = adaptive.gmm_part(
        (0,),
        steps=4,
        eval_every=2,
        proposals=adaptive.GMM_PROPOSALS[:1],
        width=8,
        num_samples=16,
        grid_points=11,
        echo=lambda _: None,
    )
    (rec,) = gmm["proposals"].values()
    assert rec["steps"] == [2, 4]
    assert all(r["mean"] >= 0.999 for r in rec["ratio"])


def _stat(mean, se):
    return {"mean": mean, "se": se, "n": 3, "values": []}


def test_render_tables_and_verdicts(tmp_path):
    def run(w, s, fd):
        return {
            "weighting": w,
            "schedule": s,
            "metrics": {"fd": fd},
            "final_loss": _stat(1.0, 0.1),
            "loss_var": _stat(2.0, 0.2),
        }

    runs = [
        run("EpsCosine", "Cosine", _stat(2.0, 0.1)),
        run("Sigmoid(2)", "Cosine", _stat(1.5, 0.1)),  # 0.5 ± 0.14 better: reproduces
        run("Sigmoid(2)", "Adaptive", _stat(1.45, 0.1)),  # vs cosine: not significant
        run("EDM-monotonic", "Adaptive", _stat(1.4, 0.1)),  # ≈ Sigmoid(2): reproduces
        *(run(f"Sigmoid({b})", "Adaptive", _stat(1.45 + 0.1 * (b - 2) ** 2, 0.01)) for b in (1, 3, 4, 5)),
    ]
    payload = {
        "seeds": [0, 1, 2],
        "datasets": {"digits": {"metrics": {"fd": "FD ↓"}, "floor": {"fd": 1.0}, "runs": runs}},
        "timing": {"budget_s": 60, "wall_s": 30, "cpu_count": 2, "jax": "x"},
    }
    written = render.render_weightings(payload, tmp_path, tmp_path)
    table = (tmp_path / "weightings_digits.md").read_text()
    assert "| Sigmoid(2) | Cosine | 1.50 ± 0.10 |" in table
    claims = (tmp_path / "claims.md").read_text().splitlines()[2:]
    assert "better: **reproduces**" in claims[0] and "+-0.5" not in claims[0] and "-0.50 ± 0.14" in claims[0]
    assert "no significant difference: **does not reproduce**" in claims[1]
    assert "no significant difference: **reproduces**" in claims[2]
    assert "interior minimum; b = 2 is best: **reproduces**" in claims[3]
    assert (tmp_path / "bias_sweep.png").stat().st_size > 0 and len(written) == 5
    assert render.fmt(_stat(1234.5, 12.3)) in ("1234 ± 12", "1235 ± 12")  # round-half-even either way
    assert render.fmt(_stat(0.04444, 0.0055)) == "0.0444 ± 0.0055"
