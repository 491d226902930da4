r"""Fréchet distance in the feature space of a small classifier trained on the data set.

The Fréchet (2-Wasserstein) distance between Gaussians fitted to two feature sets is

$$\mathrm{FD} = \|\mu_1 - \mu_2\|^2 + \mathrm{Tr}\big(\Sigma_1 + \Sigma_2 - 2(\Sigma_1\Sigma_2)^{1/2}\big),$$

the quantity FID computes with Inception features (Heusel et al. 2017). Here the features
are the last hidden layer of an MLP classifier trained on the data set itself (8×8 digits
by default), deterministically: fixed seed, fixed number of AdamW steps, minibatches drawn
with `jax.random.fold_in(key, step)`. The trained weights are cached with Equinox
serialisation under `<cache_dir>/classifiers/<dataset>-<hash of the config>.eqx`
(written atomically), next to a JSON file with the configuration and test accuracy.

$\mathrm{Tr}(\Sigma_1\Sigma_2)^{1/2}$ is computed from the symmetric form
$\mathrm{Tr}(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2})^{1/2} = \sum_i \sqrt{\max(\nu_i, 0)}$ with
$\nu_i$ its eigenvalues (`eigh`, float64), which is stable for singular covariances.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import optax
from tqdm.auto import tqdm

from eqx_impl._typing import Array, Float, PRNGKeyArray
from eqx_impl.data.download import default_cache_dir
from eqx_impl.data.registry import load
from eqx_impl.evaluation.estimate import map_batches

__all__ = [
    "Classifier",
    "ClassifierConfig",
    "classifier_accuracy",
    "classifier_path",
    "feature_statistics",
    "frechet_classifier_distance",
    "frechet_distance",
    "load_classifier",
    "train_classifier",
]

# Bump when the architecture or training procedure changes: old cache files are then ignored.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that determines the classifier's weights (its hash names the cache file).

    - `dataset`, `data_seed`: `eqx_impl.data.load(dataset, seed=data_seed)`; the classifier
      trains on `model_data("train")` with `train_labels`;
    - `hidden`: widths of the hidden layers; the last one is the feature dimension;
    - `seed`, `steps`, `batch_size`, `learning_rate`, `weight_decay`: AdamW training.
    """

    dataset: str = "digits"
    data_seed: int = 0
    hidden: tuple[int, ...] = (256, 64)
    seed: int = 0
    steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden}.")
        for name in ("steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not self.learning_rate > 0 or not self.weight_decay >= 0:
            raise ValueError("learning_rate must be > 0 and weight_decay >= 0.")

    def digest(self) -> str:
        """First 16 hex digits of the SHA-256 of the configuration and `FORMAT_VERSION`."""
        payload = json.dumps({"format": FORMAT_VERSION, **dataclasses.asdict(self)}, sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


class Classifier(eqx.Module):
    r"""MLP classifier for one example of shape `input_shape`:
    $h_{k+1} = \mathrm{SiLU}(W_k h_k + b_k)$ from the flattened input, logits $= W h_L + b$.
    `features(x)` is $h_L$, the representation the Fréchet distance compares."""

    layers: tuple[eqx.nn.Linear, ...]
    head: eqx.nn.Linear
    input_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden: tuple[int, ...] = (256, 64),
        *,
        key: PRNGKeyArray,
    ):
        self.input_shape = tuple(int(s) for s in input_shape)
        sizes = [math.prod(self.input_shape), *hidden]
        keys = jax.random.split(key, len(hidden) + 1)
        self.layers = tuple(
            eqx.nn.Linear(m, n, key=k) for m, n, k in zip(sizes[:-1], sizes[1:], keys[:-1], strict=True)
        )
        self.head = eqx.nn.Linear(sizes[-1], int(num_classes), key=keys[-1])

    def features(self, x: Float[Array, "*input_shape"]) -> Float[Array, " feature_dim"]:
        """**Returns:** the last hidden layer's activations for one example."""
        if x.shape != self.input_shape:
            raise ValueError(
                f"Classifier expects one example of shape {self.input_shape}, got {x.shape}; "
                "batch with jax.vmap(classifier.features)."
            )
        h = x.reshape(-1)
        for layer in self.layers:
            h = jax.nn.silu(layer(h))
        return h

    def __call__(self, x: Float[Array, "*input_shape"]) -> Float[Array, " num_classes"]:
        """**Returns:** class logits for one example."""
        return self.head(self.features(x))


def _labelled_data(config: ClassifierConfig):
    dataset = load(config.dataset, seed=config.data_seed)
    if dataset.train_labels is None or dataset.test_labels is None:
        raise ValueError(f"data set {config.dataset!r} has no labels; a classifier needs them.")
    return (
        dataset.model_data("train"),
        dataset.train_labels,
        dataset.model_data("test"),
        dataset.test_labels,
    )


@eqx.filter_jit
def _train_chunk(
    model: Classifier, opt_state, x, labels, key, first_step, num_steps, batch_size, learning_rate, weight_decay
) -> tuple[Classifier, optax.OptState, Array]:
    optimizer = _optimizer(learning_rate, weight_decay)

    def loss_fn(model, xb, yb):
        logits = jax.vmap(model)(xb)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, yb))

    params, static = eqx.partition(model, eqx.is_array)

    def step(carry, i):
        params, opt_state = carry
        index = jax.random.permutation(jax.random.fold_in(key, i), x.shape[0])[:batch_size]
        loss, grads = jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static), x[index], labels[index]))(params)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes its int32 step count with floats
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    steps = first_step + jnp.arange(num_steps)
    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), steps)
    return cast(Classifier, eqx.combine(params, static)), opt_state, losses  # combine's stub returns a PyTree


def _optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    return optax.adamw(learning_rate, weight_decay=weight_decay)


@eqx.filter_jit
def _init(seed, input_shape, num_classes, hidden, learning_rate, weight_decay):
    """Model, optimiser state and minibatch key, in one compiled call (eager init is slow)."""
    key_init, key_batches = jax.random.split(jax.random.key(seed))
    model = Classifier(input_shape, num_classes, hidden, key=key_init)
    opt_state = _optimizer(learning_rate, weight_decay).init(eqx.filter(model, eqx.is_array))
    return model, opt_state, key_batches


def train_classifier(config: ClassifierConfig = ClassifierConfig(), *, progress: bool = False) -> Classifier:
    """Train the feature classifier from scratch (no cache): `config.steps` AdamW steps on
    minibatches of `config.batch_size` drawn without replacement from the training split
    (step $s$ uses `fold_in(key, s)`). Deterministic: the same config gives the same weights.

    **Returns:** the trained `Classifier`.
    """
    x_train, y_train, _, _ = _labelled_data(config)
    num_classes = int(y_train.max()) + 1
    hyper = (float(config.learning_rate), float(config.weight_decay))
    model, opt_state, key_batches = _init(config.seed, tuple(x_train.shape[1:]), num_classes, config.hidden, *hyper)
    x, y = jnp.asarray(x_train), jnp.asarray(y_train, jnp.int32)
    batch_size = min(config.batch_size, len(x_train))
    chunk = min(config.steps, 500)  # one compiled scan of `chunk` steps, run repeatedly
    bar = tqdm(total=config.steps, desc="classifier", disable=not progress, leave=False)
    for first in range(0, config.steps, chunk):
        n = min(chunk, config.steps - first)
        model, opt_state, losses = _train_chunk(
            model, opt_state, x, y, key_batches, jnp.asarray(first, jnp.int32), n, batch_size, *hyper
        )
        bar.update(n)
        if progress:
            bar.set_postfix(loss=float(losses[-1]))
    bar.close()
    return model


def classifier_path(config: ClassifierConfig = ClassifierConfig(), cache_dir=None) -> Path:
    """Where `load_classifier` caches the weights for `config`: `<cache_dir>/classifiers/
    <dataset>-<config.digest()>.eqx` (`cache_dir` default: `default_cache_dir()`, i.e.
    `$WEIGHTED_ELBO_CACHE` or `~/.cache/weighted-elbo`)."""
    root = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    return root / "classifiers" / f"{config.dataset}-{config.digest()}.eqx"


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_classifier(
    config: ClassifierConfig = ClassifierConfig(),
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Classifier:
    """The classifier for `config`, from the cache if present, else trained and cached.

    A cache file that cannot be read (e.g. truncated) is reported with a warning and
    replaced by a freshly trained classifier.

    **Returns:** the `Classifier`.
    """
    path = classifier_path(config, cache_dir)
    meta_path = path.with_suffix(".json")
    if path.exists():
        try:
            if meta_path.exists():
                metadata = json.loads(meta_path.read_text())
                input_shape, num_classes = tuple(metadata["input_shape"]), int(metadata["num_classes"])
            else:
                x_train, y_train, _, _ = _labelled_data(config)
                input_shape, num_classes = tuple(x_train.shape[1:]), int(y_train.max()) + 1
            skeleton = eqx.filter_eval_shape(Classifier, input_shape, num_classes, config.hidden, key=jax.random.key(0))
            return eqx.tree_deserialise_leaves(path, skeleton)
        except Exception as err:  # noqa: BLE001 - any unreadable cache is replaced
            warnings.warn(f"ignoring unreadable classifier cache {path}: {err}", stacklevel=2)
    model = train_classifier(config, progress=progress)
    _, _, x_test, y_test = _labelled_data(config)
    metadata = {
        "config": dataclasses.asdict(config),
        "format": FORMAT_VERSION,
        "input_shape": list(model.input_shape),
        "num_classes": int(model.head.out_features),
        "test_accuracy": classifier_accuracy(model, x_test, y_test),
    }
    _atomic_write(meta_path, lambda f: f.write(json.dumps(metadata, indent=2).encode()))
    _atomic_write(path, lambda f: eqx.tree_serialise_leaves(f, model))
    return model


@eqx.filter_jit
def _logits(classifier, x):
    return jax.vmap(classifier)(x)


@eqx.filter_jit
def _features(classifier, x):
    return jax.vmap(classifier.features)(x)


def _inputs(classifier: Classifier, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.shape[1:] != classifier.input_shape:
        raise ValueError(f"expected examples of shape {classifier.input_shape}, got data of shape {x.shape}.")
    return x


def classifier_accuracy(
    classifier: Classifier, x: npt.ArrayLike, labels: npt.ArrayLike, *, batch_size: int = 1024
) -> float:
    """Fraction of examples `x` `(N, *input_shape)` whose arg-max logit equals the label.

    **Returns:** a Python float in [0, 1].
    """
    x = _inputs(classifier, x)
    logits = map_batches(lambda x, _: _logits(classifier, x), (x,), batch_size=batch_size)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def feature_statistics(
    classifier: Classifier, x: npt.ArrayLike, *, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (`ddof=1`, float64) of the classifier features of `x`.

    **Returns:** `(mu, cov)` with shapes `(F,)` and `(F, F)`.
    """
    x = _inputs(classifier, x)
    if len(x) < 2:
        raise ValueError("feature_statistics needs at least 2 examples for a covariance.")
    feats = map_batches(lambda x, _: _features(classifier, x), (x,), batch_size=batch_size)
    feats = np.asarray(feats, np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _symmetric_sqrt(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: npt.ArrayLike, cov1: npt.ArrayLike, mu2: npt.ArrayLike, cov2: npt.ArrayLike) -> float:
    r"""$\|\mu_1 - \mu_2\|^2 + \mathrm{Tr}(\Sigma_1 + \Sigma_2) - 2\,\mathrm{Tr}(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2})^{1/2}$
    in float64, for symmetric positive semi-definite covariances (rounding-level negative
    eigenvalues count as 0).

    **Returns:** the Fréchet distance (squared 2-Wasserstein distance) as a Python float.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(
            f"need mu1, mu2 of shape (d,) and cov1, cov2 of shape (d, d); got {mu1.shape}, "
            f"{cov1.shape}, {mu2.shape}, {cov2.shape}."
        )
    root1 = _symmetric_sqrt(0.5 * (cov1 + cov1.T))
    middle = root1 @ cov2 @ root1
    eigenvalues = np.linalg.eigvalsh(0.5 * (middle + middle.T))
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)


def frechet_classifier_distance(
    classifier: Classifier, x: npt.ArrayLike, y: npt.ArrayLike, *, batch_size: int = 1024
) -> float:
    """Fréchet distance between the classifier features of samples `x` and `y` (both
    `(N, *input_shape)`, in model space, e.g. `generate` output and `model_data("test")`).
    To compare many sample sets with one reference, compute `feature_statistics` of the
    reference once and call `frechet_distance`.

    **Returns:** a Python float.
    """
    return frechet_distance(
        *feature_statistics(classifier, x, batch_size=batch_size),
        *feature_statistics(classifier, y, batch_size=batch_size),
    )
