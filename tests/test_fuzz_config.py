"""Fuzzing of every way a user hands the trainer a configuration: mutated versions of the
shipped `configs/*.yaml` (wrong types, unknown keys, out-of-range numbers, bad names,
NaN/inf, negative sizes, missing or non-mapping sections) as dicts and as YAML files, raw
text as a config file, and `weighted-elbo` command lines. Each input must either load (and
resolve: names and arguments checked against the registry and the networks) or raise
`ConfigError` whose message names the offending key or value and says what is accepted;
never another exception, never a traceback from the command line.

Inputs fuzzed per run: `max_examples` of the hypothesis profile (`ci`: 25) per test below.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import math
from pathlib import Path

import equinox as eqx
import jax
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from eqx_impl import cli
from eqx_impl.train import ConfigError, config_from_dict, config_to_dict, load_config, train
from eqx_impl.train.resolve import resolve

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "configs").glob("*.yaml"))}
# Resolving a config loads its data: only the configs whose data ship with the package
# (digits, the Gaussian mixture) are mutated, so the tests need no download.
BASES = {name: values for name, values in SHIPPED.items() if values["data"]["name"] in ("digits", "gmm")}
# Smaller data sets, so that resolving a mutated config stays fast (the values stay legal).
BASES["gmm"]["data"]["args"].update(num_train=256, num_test=64)

# A message "says what to do" when it states what is accepted or how to fix the input.
HINTS = (
    "must",
    "one of",
    "known",
    "expected",
    "the keys of",
    "the sections are",
    "arguments are",
    "available",
    "needs",
    "set ",
    "use ",
    "pass ",
    "keep ",
    "choose",
    "remove",
)

BAD_VALUES = st.one_of(
    st.integers(-(10**9), 10**9),
    st.sampled_from([0, -1, 1, 2, 10**12, -(10**12)]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.5, -0.5, 1.0, 1e-30, 1e30]),
    st.text(max_size=6),
    st.sampled_from(["nan", "inf", "-inf", "-1", "1e-3", "", "sigmoid", "cosine", "mlp", "unet", "gmm"]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(-3, 64), max_size=3),
    st.dictionaries(st.sampled_from(["bias", "width", "x", "n_bins", "seed"]), st.integers(-2, 5), max_size=2),
)


def _paths(values: dict, prefix=()) -> list[tuple[str, ...]]:
    """Every key path of the nested config dict (sections, fields, and argument entries)."""
    found = []
    for key, value in values.items():
        path = (*prefix, key)
        found.append(path)
        if isinstance(value, dict):
            found += _paths(value, path)
    return found


@st.composite
def mutated_configs(draw):
    """A shipped config with 1–3 mutations. **Returns:** `(config dict, mutated key paths)`."""
    values = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    touched = []
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(values)
        kind = draw(st.sampled_from(["replace", "replace", "replace", "delete", "unknown", "section"]))
        if kind == "section":
            section = draw(st.sampled_from(["data", "model", "objective", "optim", "train", "eval", "trian"]))
            values[section] = draw(st.one_of(BAD_VALUES, st.just({})))
            touched.append((section,))
            continue
        path = draw(st.sampled_from(paths))
        parent = values
        for part in path[:-1]:
            parent = parent[part]
        if kind == "replace":
            parent[path[-1]] = draw(BAD_VALUES)
        elif kind == "delete":
            del parent[path[-1]]
        else:
            name = draw(st.sampled_from(["stepz", "lr_rate", "widht", "x", "1"]))
            parent[name] = draw(BAD_VALUES)
            path = (*path[:-1], name)
        touched.append(path)
    return values, touched


def _check_message(err: Exception, touched) -> None:
    message = str(err)
    assert "Traceback" not in message and message.strip(), message
    assert any(h in message for h in HINTS), f"no fix suggested: {message}"
    # The message names one of the mutated keys (dotted, or its last part) or the bad value.
    names = set()
    for path in touched:
        names |= {".".join(str(p) for p in path[:2]), str(path[-1])}
        names.add(str(path[0]))
    assert any(n in message for n in names), f"{message!r} names none of {sorted(names)}"


def _shapes_only(build):
    """`build(key)` traced abstractly (nothing drawn, a huge network costs nothing), with
    JAX's note on filtered tracebacks cut from a `ConfigError`. **Returns:** its shapes."""
    try:
        return eqx.filter_eval_shape(build, jax.random.key(0))
    except ConfigError as err:
        raise ConfigError(str(err).split("\n-----")[0]) from None


def _load_and_resolve(values):
    """Parse, then `loop.build`'s steps up to the network: data set, proposal (shapes only),
    resolution, weighting, and the network's shapes."""
    config = config_from_dict(values)
    dataset = config.data.build()
    proposal = _shapes_only(lambda k: config.objective.build_proposal(config.optim, key=k))
    resolved = resolve(config, dataset, proposal)
    resolved.objective.build_weighting()
    sizes = [v for v in resolved.model.args.values() if isinstance(v, int) and not isinstance(v, bool)]
    if any(abs(v) > 10**4 for v in sizes):
        return resolved  # a network of 10**9 layers is legal, just out of memory: not built here
    _shapes_only(lambda k: resolved.model.build(dataset.shape, resolved.objective.target, key=k))
    return resolved


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_config_parses(name):
    config = load_config(ROOT / "configs" / f"{name}.yaml")
    assert config_to_dict(config)["data"]["name"] == SHIPPED[name]["data"]["name"]


@given(mutated_configs())
def test_fuzzed_config_dicts_load_or_raise_a_clear_config_error(case):
    values, touched = case
    try:
        _load_and_resolve(values)
    except ConfigError as err:
        _check_message(err, touched)


@given(mutated_configs())
def test_fuzzed_config_files_load_or_raise_a_clear_config_error(tmp_path_factory, case):
    values, touched = case
    path = tmp_path_factory.mktemp("fuzz") / "config.yaml"
    path.write_text(yaml.safe_dump(values, allow_unicode=True))
    try:
        config = load_config(path)
    except ConfigError as err:
        _check_message(err, touched)
        return
    again = config_from_dict(yaml.safe_load(path.read_text()))
    assert yaml.safe_dump(config_to_dict(config)) == yaml.safe_dump(config_to_dict(again))  # NaN != NaN


@given(
    st.one_of(
        st.text(max_size=200),
        st.sampled_from(
            [
                "train: [1, 2",
                "train:\n  steps: 10\n   bad: indent",
                "- a\n- b",
                "42",
                "!!python/object:os.system {}",
                "? [1, 2]\n: 3",
                "train: {steps: .nan}",
                "optim: {lr: .inf}",
                "{",
            ]
        ),
    ),
    st.sampled_from([".yaml", ".json"]),
)
def test_fuzzed_config_text_loads_or_raises_a_clear_config_error(tmp_path_factory, text, suffix):
    path = tmp_path_factory.mktemp("text") / f"config{suffix}"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as err:
        message = str(err)
        assert message.strip() and any(h in message for h in HINTS + ("Cannot parse", "Unknown")), message
        assert "config" in message.lower() or "." in message, message


# --- the command line ----------------------------------------------------------------------

OVERRIDE_KEYS = sorted(".".join(p) for p in _paths(BASES["gmm"]) if len(p) >= 2)
OVERRIDE_VALUES = st.one_of(
    st.sampled_from(["1", "0", "-1", "nan", ".nan", ".inf", "-.inf", "1e-3", "abc", "[1, 2]", "{a: 1}", "null", ""]),
    st.sampled_from(["true", "[", "{", "'", "sigmoidd", "cosine", "edm-monotonic", "unet", "mlp", "1e400"]),
    st.text(max_size=6),
)


@st.composite
def train_argv(draw):
    """A `weighted-elbo train` command line with fuzzed `--set` overrides and flags."""
    argv = ["train", "--config", str(ROOT / "configs" / "gmm.yaml"), "--no-progress"]
    argv += ["--set", "data.args.num_train=256", "data.args.num_test=64"]
    overrides = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.one_of(st.sampled_from(OVERRIDE_KEYS), st.sampled_from(["trian.steps", "train", "=3", "a..b"])))
        overrides.append(f"{key}={draw(OVERRIDE_VALUES)}")
    argv += ["--set", *overrides]
    if draw(st.booleans()):
        argv += ["--stop-after", draw(st.sampled_from(["-5", "0", "3", "x", "1.5"]))]
    if draw(st.booleans()):
        argv += [draw(st.sampled_from(["--no-eval", "--bogus", "--no-preflight", "--run-dir"]))]
    return argv, overrides


class _Parsed(Exception):
    """Raised by the stand-in for `train`: the command line was accepted up to training."""


def _run_cli(argv):
    """`cli.main(argv)` in-process. **Returns:** `(status or 'parsed', stderr)`."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return cli.main(argv), err.getvalue()
        except SystemExit as exit:  # argparse: usage error
            return exit.code, err.getvalue()
        except _Parsed:
            return "parsed", err.getvalue()


@given(train_argv())
def test_fuzzed_train_command_lines_fail_cleanly(monkeypatch_session, case):
    argv, overrides = case
    status, stderr = _run_cli(argv)
    if status == "parsed":
        return
    assert status == 2, (argv, status, stderr)
    assert "Traceback" not in stderr and "error:" in stderr, stderr
    if stderr.startswith("weighted-elbo train: error:"):  # ours, not argparse's usage error
        message = stderr.split("error:", 1)[1]
        assert any(h in message for h in HINTS), f"no fix suggested: {message}"


@given(
    st.sampled_from(["sample", "evaluate", "plot"]),
    st.lists(
        st.sampled_from(
            ["--num", "--steps", "--seed", "--sampler", "--metrics", "--raw", "--checkpoint", "--out", "-1", "0", "x"]
        ),
        max_size=4,
    ),
    st.sampled_from(["missing-run", "empty-run", "not-a-dir"]),
)
def test_fuzzed_run_commands_fail_cleanly(tmp_path_factory, command, flags, run):
    base = tmp_path_factory.mktemp("runs")
    (base / "empty-run").mkdir()
    (base / "not-a-dir").write_text("x")
    status, stderr = _run_cli([command, "--run-dir", str(base / run), *flags])
    assert status == 2, (command, flags, status, stderr)
    assert "Traceback" not in stderr and "error:" in stderr, stderr


@pytest.fixture(scope="module")
def monkeypatch_session():
    """Replace `train` (the CLI imports it at call time) by a stand-in that resolves and
    shape-checks the config instead of training it."""
    mp = pytest.MonkeyPatch()

    def fake_train(config, **kwargs):
        _load_and_resolve(config_to_dict(config))
        raise _Parsed

    mp.setattr("eqx_impl.train.train", fake_train)
    yield mp
    mp.undo()


@pytest.mark.parametrize("stop_after", [0, -3, 2.5, "5", True])
def test_train_rejects_a_bad_stop_after(stop_after, tmp_path):
    # `inspect.unwrap`: the function as a caller outside the tests meets it, without the
    # tests' run-time type check (tests/conftest.py), which would reject 2.5 and "5" first.
    with pytest.raises(ConfigError, match=r"stop_after \(--stop-after\) must be an integer >= 1"):
        inspect.unwrap(train)(config_from_dict({}), run_dir=tmp_path / "run", stop_after=stop_after)
    assert not (tmp_path / "run").exists()
