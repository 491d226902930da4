"""Configs (load, override, errors) and the `weighted-elbo` command line: `--help` for every
subcommand, a tiny end-to-end `train` run and the `sample`/`evaluate`/`plot` commands on it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from eqx_impl.cli import _step_summary, compilation_cache_dir, main, parser
from eqx_impl.train import ConfigError, build, config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[1]


# --- configs -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits", "gmm"])
def test_shipped_configs_load_and_resolve(name):
    path = ROOT / "configs" / f"{name}.yaml"
    config = load_config(path)
    raw = yaml.safe_load(path.read_text())
    assert config.data.name == raw["data"]["name"] == name
    assert config.objective.weighting == raw["objective"]["weighting"]
    assert config.objective.schedule == raw["objective"]["schedule"]
    assert config.train.steps == raw["train"]["steps"]
    resolved = build(config).config
    assert resolved.model.sigma_data > 0


def test_digits_config_is_the_main_job():
    config = load_config(ROOT / "configs" / "digits.yaml")
    assert (config.objective.weighting, config.objective.weighting_args) == ("sigmoid", {"bias": 2.0})
    assert config.objective.schedule == "adaptive"
    assert {"bpd", "fd"} <= set(config.eval.metrics)


def test_overrides_set_fields_and_arguments():
    config = load_config(
        ROOT / "configs" / "gmm.yaml",
        [
            "train.steps=2000",
            "objective.weighting=sigmoid",
            "objective.weighting_args.bias=3",
            "model.args.channels=[8, 16]",
            "optim.lr=1e-3",  # YAML 1.1 reads this as a string; the float field converts it
            "objective.logsnr_min=null",
            "eval.metrics=[bpd]",
            "train.preflight=false",
        ],
    )
    assert config.train.steps == 2000 and isinstance(config.train.steps, int)
    assert config.objective.weighting_args["bias"] == 3
    assert config.model.args["channels"] == [8, 16]
    assert config.optim.lr == 1e-3 and config.objective.logsnr_min is None
    assert config.eval.metrics == ["bpd"] and config.train.preflight is False


def test_json_configs_load(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train": {"steps": 7}, "objective": {"weighting": "elbo"}}))
    config = load_config(path)
    assert config.train.steps == 7 and config.objective.weighting == "elbo"


def test_names_follow_one_spelling_rule():
    """Case and `_`/`-` do not matter (`eqx_impl.names`); the names the code compares exactly
    (target, precision, sampler, metrics) are stored in their canonical spelling, the others
    as written (the registry and `data.load` read them with the same rule)."""
    config = load_config(
        None,
        [
            "objective.target=f",
            "train.precision=Float32",
            "eval.sampler=DPM-2",
            "eval.metrics=[gmm-nll, Bayes_Gap]",
            "objective.weighting=EPS_cosine_monotonic",
            "objective.schedule=cosine_interpolated",
            "data.name=Swiss-Roll",
            "model.name=MLP",
        ],
    )
    assert (config.objective.target, config.train.precision, config.eval.sampler) == ("F", "float32", "dpm_2")
    assert config.eval.metrics == ["gmm_nll", "bayes_gap"]
    assert (config.objective.weighting, config.data.name, config.model.name) == (
        "EPS_cosine_monotonic",
        "Swiss-Roll",
        "MLP",
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trian.steps=3"], "unknown section 'trian'; the sections are: data, model, objective"),
        (["train.stepz=3"], "unknown key train.stepz; the keys of train are: steps, batch_size"),
        (["train.steps=abc"], "train.steps must be an integer, got 'abc'"),
        (["train.steps=0"], "train.steps must be an integer >= 1, got 0"),
        (["optim.lr=-1"], "optim.lr must be a positive number"),
        (["optim.ema_decay=1.5"], r"optim.ema_decay must be in \[0, 1\)"),
        (["objective.target=z"], "objective.target must be one of eps, x, v, F"),
        (["eval.metrics=[fid]"], r"eval.metrics\[0\] must be one of bpd, fd"),
        (["objective.weighting=sigmoidd"], "unknown weighting 'sigmoidd'; known: edm, elbo, eps-cosine"),
        (["objective.weighting=edm-monotonicc"], "unknown weighting 'edm-monotonicc'"),
        (["objective.schedule=cosin"], "unknown schedule 'cosin'; known: adaptive, cosine"),
        (["model.name=resnet"], "model.name: unknown model 'resnet'; known: mlp, unet"),
        (["data.name=cifar100"], "data.name: unknown data set 'cifar100'; known: checkerboard, cifar10"),
        (["eval.sampler=dpm2"], "eval.sampler must be one of heun, euler"),
        (["objective.logsnr_min=5", "objective.logsnr_max=1"], "below objective.logsnr_max"),
        (["train.steps"], "must look like section.key=value"),
    ],
)
def test_config_errors_are_clear(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["objective.weighting_args.gamma=2"],
            "weighting 'sigmoid' takes no argument 'gamma'; its arguments are: bias",
        ),
        (["objective.weighting=eps-cosine-shifted"], "needs a 'shift'"),
        (["objective.schedule=adaptive", "objective.schedule_args.n_bins=0"], "n_bins must be >= 1"),
        (["objective.schedule=learned", "objective.schedule_args.width=0"], "width must be a positive integer"),
        (["objective.schedule=ddpm-linear"], "set objective.logsnr_min and objective.logsnr_max to null"),
        (["objective.schedule=learned", "objective.schedule_args.fixed_endpoints=false"], "keep fixed_endpoints: true"),
        (["eval.metrics=[fd]"], "'fd' needs a labelled data set"),
    ],
)
def test_bad_arguments_found_when_the_run_is_built(overrides, message):
    config = load_config(None, ["data.name=gmm", "data.args.num_train=64", "data.args.num_test=64", *overrides])
    with pytest.raises(ConfigError, match=message):
        build(config)


def test_ddpm_linear_takes_its_own_interval():
    config = load_config(
        None,
        [
            "objective.schedule=ddpm-linear",
            "objective.logsnr_min=null",
            "objective.logsnr_max=null",
            "data.args.num_train=64",
            "data.args.num_test=64",
        ],
    )
    resolved = build(config).config
    import reference as ref

    schedule = ref.DDPMLinear()
    assert resolved.objective.logsnr_min == pytest.approx(schedule.logsnr_min, rel=1e-12)
    assert resolved.objective.logsnr_max == pytest.approx(schedule.logsnr_max, rel=1e-12)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="Config file .*missing.yaml' not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [steps: 3\n")
    with pytest.raises(ConfigError, match="Cannot parse config file .*bad.yaml"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="must hold a mapping of sections"):
        load_config(scalar)


def test_resolved_config_round_trips(tmp_path):
    config = load_config(ROOT / "configs" / "gmm.yaml", ["data.args.num_train=64"])
    setup = build(config)
    from eqx_impl.train.config_io import dump_config

    dump_config(setup.config, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert config_to_dict(again) == config_to_dict(setup.config)
    assert again.model.sigma_data == pytest.approx(setup.dataset.sigma_data)


# --- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "sample", "evaluate", "plot"])
def test_help_for_each_subcommand(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: weighted-elbo {command}")
    assert "--run-dir" in out and "--verbose" in out


def test_module_entry_point_help():
    done = subprocess.run(
        [sys.executable, "-m", "eqx_impl", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    for command in ("train", "sample", "evaluate", "plot"):
        assert command in done.stdout


def test_errors_exit_with_a_message(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml' not found" in capsys.readouterr().err
    assert main(["train", "--set", "objective.weighting=foo", "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown weighting 'foo'" in capsys.readouterr().err
    assert main(["sample", "--run-dir", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err


TINY = [
    "data.args.num_train=256",
    "data.args.num_test=128",
    "model.args={width: 32, depth: 2, embed_dim: 16, num_features: 8}",
    "train.steps=20",
    "train.batch_size=32",
    "train.log_every=5",
    "train.checkpoint_every=10",
    "train.steps_per_dispatch=5",
    "eval.num_samples=64",
    "eval.sampling_steps=4",
    "eval.batch_size=64",
    "eval.bpd_examples=32",
    "eval.metrics=[bpd, gmm_nll, mmd]",
]


@pytest.fixture
def umask_022():
    """The usual umask while a test writes files (the expected mode is then 0644)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_end_to_end_train_sample_evaluate_plot(tmp_path, capsys, umask_022):
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--config",
            str(ROOT / "configs" / "gmm.yaml"),
            "--set",
            *TINY,
            "--run-dir",
            str(run),
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    for name in (
        "config.yaml",
        "preflight.txt",
        "metrics.jsonl",
        "loss_curve.png",
        "proposal.png",
        "samples.png",
        "eval.json",
    ):
        assert (run / name).is_file(), name
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["ckpt-00000010.eqx", "ckpt-00000020.eqx"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert all({"loss", "steps_per_sec", "grad_norm", "lr"} <= set(r) for r in rows)
    summary = json.loads((run / "eval.json").read_text())
    assert summary["step"] == 20 and summary["final_loss"] == rows[-1]["loss"]
    assert {"bpd", "gmm_nll_samples", "mmd2"} <= set(summary["evaluation"])
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["steps"] == 20 and saved["model"]["sigma_data"] > 0
    assert "pre-flight" in out and "bpd" in out and "samples:" in out
    assert "compiling the training step..." in out and "nan" not in out
    # --no-progress: one line per logged row, with the logged loss
    for r in rows:
        assert f"step {r['step']}/20: loss {r['loss']:.5g}, " in out, (r, out)
    rate = summary["timings"]["steps_per_sec"]
    assert f"step 20: loss {rows[-1]['loss']:.5g}; {rate:.1f} steps/s after compilation" in out
    assert (run / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Resuming a finished run does nothing new; a different config in the same directory is refused.
    assert (
        main(
            [
                "train",
                "--config",
                str(ROOT / "configs" / "gmm.yaml"),
                "--set",
                *TINY,
                "objective.weighting_args.bias=3",
                "--run-dir",
                str(run),
                "--no-progress",
                "--no-eval",
            ]
        )
        == 2
    )
    assert "different configuration" in capsys.readouterr().err

    # (the eval settings of the run: the compiled sampler is reused)
    assert (
        main(
            [
                "sample",
                "--run-dir",
                str(run),
                "--out",
                str(tmp_path / "s.png"),
                "--npy",
                str(tmp_path / "s.npy"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "s.png").is_file()
    import numpy as np

    assert np.load(tmp_path / "s.npy").shape == (64, 2)
    assert "compiling the sampler" in capsys.readouterr().err
    assert main(["evaluate", "--run-dir", str(run), "--metrics", "sliced_wasserstein", "--no-progress"]) == 0
    record = json.loads((run / "evaluation.json").read_text())
    assert record["step"] == 20 and record["sliced_wasserstein"] > 0
    (run / "loss_curve.png").unlink()
    assert main(["plot", "--run-dir", str(run)]) == 0
    assert (run / "loss_curve.png").is_file()
    capsys.readouterr()
    # Every file the commands wrote has the mode open() gives under umask 022 (not mkstemp's 0600).
    written = [p for p in [*run.rglob("*"), *tmp_path.glob("s.*")] if p.is_file()]
    assert {"config.yaml", "eval.json", "evaluation.json", "metrics.jsonl", "samples.png", "ckpt-00000020.eqx"} <= {
        p.name for p in written
    }
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {p.name: "0o644" for p in written}

    # A corrupt newest checkpoint: `sample` falls back to the previous one, naming the bad file.
    newest = run / "checkpoints" / "ckpt-00000020.eqx"
    newest.write_bytes(newest.read_bytes()[:-50])
    size = json.loads(newest.read_bytes().split(b"\n", 2)[1])["size"]  # what the header promises
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one plain line, no Python warning
        assert main(["sample", "--run-dir", str(run), "--out", str(tmp_path / "t.png"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "(step 10)" in captured.out
    notice = [line for line in captured.err.splitlines() if "ckpt-" in line]
    assert notice == [
        f"checkpoint ckpt-00000020.eqx is truncated ({size - 50} of {size} bytes; a crash or a full disk?); "
        "using ckpt-00000010.eqx (step 10) instead."
    ]
    assert main(["sample", "--run-dir", str(run), "--checkpoint", str(newest)]) == 2
    assert "ckpt-00000020.eqx' is truncated" in capsys.readouterr().err


# --- start-up, messages and settings -------------------------------------------------------


def test_help_and_config_errors_do_not_load_jax(tmp_path):
    """`--help` and the errors found in the config or the flags (unknown names included) come
    back before JAX (and the training modules) load: about 0.1-0.3 s instead of the 2-3 s
    (idle) to 20-30 s (busy 2-core machine) of importing JAX and the package."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train: {steps: 5}\n")
    script = f"""
import sys
from eqx_impl.cli import main
codes = [main(["train", "--set", "train.steps=0"]), main(["evaluate", "--run-dir", {str(run)!r}, "--set", "train.steps=1"]),
         main(["sample", "--run-dir", {str(tmp_path / "absent")!r}]), main(["plot", "--run-dir", {str(tmp_path)!r}]),
         main(["evaluate", "--run-dir", {str(run)!r}, "--metrics", "fid"]), main(["sample", "--run-dir", {str(run)!r}, "--steps", "1"]),
         main(["train", "--stop-after", "0"]), main(["train", "--set", "objective.weighting=sigmod"]),
         main(["train", "--set", "objective.schedule=cosin"]), main(["train", "--set", "data.name=digitz"]),
         main(["train", "--set", "model.name=resnet"]), main(["train", "--set", "eval.metrics=[fid]"]),
         main(["sample", "--run-dir", {str(run)!r}, "--sampler", "dpm2"])]
try:
    main(["train", "--help"])
except SystemExit as exit:
    codes.append(exit.code)
print(codes, sorted(m for m in ("jax", "equinox", "eqx_impl.train.loop") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "[2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0] []", done.stdout + done.stderr
    errors = done.stderr.splitlines()
    assert errors == [
        "weighted-elbo train: error: train.steps must be an integer >= 1, got 0.",
        "weighted-elbo evaluate: error: evaluate --set only changes eval.* settings, got 'train.steps=1'; other "
        "settings are the trained run's (train again to change them).",
        f"weighted-elbo sample: error: Run directory {str(tmp_path / 'absent')!r} does not exist; train first.",
        f"weighted-elbo plot: error: {str(tmp_path)!r} is not a run directory (no config.yaml); pass the --run-dir "
        "that `train` wrote.",
        errors[4],
        "weighted-elbo sample: error: --steps 1: must be an integer >= 2 (or left out for the run's eval.* value).",
        "weighted-elbo train: error: stop_after (--stop-after) must be an integer >= 1 or None, got 0.",
        "weighted-elbo train: error: objective.weighting: unknown weighting 'sigmod'; known: edm, elbo, eps-cosine, "
        "exponential, indi, min-snr, sigmoid (add the suffix '-monotonic' or '-shifted' to any of them).",
        "weighted-elbo train: error: objective.schedule: unknown schedule 'cosin'; known: adaptive, cosine, "
        "cosine-interpolated, ddpm-linear, edm-lognormal, flow-ot, learned, linear.",
        "weighted-elbo train: error: data.name: unknown data set 'digitz'; known: checkerboard, cifar10, digits, gmm, "
        "mnist, moons, swiss_roll.",
        "weighted-elbo train: error: model.name: unknown model 'resnet'; known: mlp, unet.",
        "weighted-elbo train: error: eval.metrics[0] must be one of bpd, fd, gmm_nll, bayes_gap, sliced_wasserstein, "
        "mmd, nll_ode, loss_profile, got 'fid'.",
        "weighted-elbo sample: error: --sampler 'dpm2': choose one of heun, euler, stochastic, dpm_2, dpmpp_2m, "
        "dpmpp_2m_sde, ancestral, ddim.",
    ]
    assert errors[4].startswith("weighted-elbo evaluate: error: --metrics: unknown metric 'fid'; known: bpd")


def test_the_evaluate_help_example_is_accepted():
    """The `--set` example in `evaluate --help` only changes eval.* settings (evaluate refuses
    anything else) and is a valid config override."""
    sub = next(a for a in parser()._actions if a.dest == "command").choices["evaluate"]
    text = next(a.help for a in sub._actions if a.dest == "overrides")
    example = text.split("e.g. ")[1].split()
    assert example and all(item.startswith("eval.") for item in example)
    config = load_config(None, example)
    assert (config.eval.num_samples, config.eval.sampling_steps) == (500, 64)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "HOME/.cache/weighted-elbo/jax"),
        ({"WEIGHTED_ELBO_CACHE": "CACHE"}, "CACHE/jax"),
        ({"WEIGHTED_ELBO_COMPILATION_CACHE": "ELSEWHERE"}, "ELSEWHERE"),
        ({"WEIGHTED_ELBO_CACHE": "CACHE", "WEIGHTED_ELBO_COMPILATION_CACHE": "off"}, None),
        ({"WEIGHTED_ELBO_COMPILATION_CACHE": "0"}, None),
    ],
)
def test_compilation_cache_dir(tmp_path, monkeypatch, env, expected):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("WEIGHTED_ELBO_CACHE", "WEIGHTED_ELBO_COMPILATION_CACHE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, str(tmp_path / value) if value not in {"off", "0"} else value)
    want = None if expected is None else str(tmp_path / expected.replace("HOME", "home"))
    assert compilation_cache_dir() == want


def _fresh_python(script: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "TF_CPP", "WEIGHTED_ELBO"))}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_cli_turns_on_the_compilation_cache_and_quiets_xla(tmp_path):
    """Before JAX loads, `prepare_jax_environment` points JAX's persistent compilation cache at
    the user cache and sets TF_CPP_MIN_LOG_LEVEL=3, unless the user set them or asked for
    --verbose; a compiled program then lands in the cache directory."""
    cache = tmp_path / "cache"
    script = """
import os
from eqx_impl.cli import prepare_jax_environment
prepare_jax_environment(verbose={verbose})
print(os.environ.get("TF_CPP_MIN_LOG_LEVEL"), os.environ.get("JAX_COMPILATION_CACHE_DIR"))
import jax, jax.numpy as jnp
jax.jit(lambda x: jnp.sin(x) * 2.0)(jnp.ones(3)).block_until_ready()
"""
    env = {"WEIGHTED_ELBO_CACHE": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    assert _fresh_python(script.format(verbose=False), env) == f"3 {cache / 'jax'}"
    assert any((cache / "jax").iterdir())  # the jitted function was written to the cache
    assert _fresh_python(script.format(verbose=True), {**env, "WEIGHTED_ELBO_COMPILATION_CACHE": "0"}) == "None None"
    mine = {**env, "TF_CPP_MIN_LOG_LEVEL": "1", "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "mine")}
    assert _fresh_python(script.format(verbose=False), mine) == f"1 {tmp_path / 'mine'}"


def test_step_summary_prints_only_what_was_measured():
    rows = [{"step": 50, "loss": 17.4251}]
    assert (
        _step_summary(50, 50, rows, {"steps_per_sec": 35.24}) == "step 50: loss 17.425; 35.2 steps/s after compilation"
    )
    # one dispatch in this session: no rate after compilation, and never "nan steps/s"
    assert _step_summary(50, 50, rows, {}) == "step 50: loss 17.425"
    assert _step_summary(20, 50, [], {}) == "step 20 (30 of train.steps=50 to go: run the same command to resume)"
