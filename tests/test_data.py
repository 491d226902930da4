"""Training data: level map, digits split, toy statistics, batching, MNIST/CIFAR formats.

Statistical checks use fixed seeds and bounds of 5 standard errors (a false alarm
probability below 1e-6 per check for a correct sampler).
"""

import gzip
import hashlib
import io
import itertools
import math
import tarfile
import warnings

import numpy as np
import pytest
from scipy import integrate, stats
from sklearn.datasets import load_digits

from eqx_impl import data
from eqx_impl.data import ChecksumError, Dataset

# ---------------------------------------------------------------------------------------
# levels <-> [-1, 1]


@pytest.mark.parametrize("num_levels", [2, 17, 256])
def test_levels_to_unit_exact_and_invertible(num_levels):
    levels = np.arange(num_levels)
    unit = data.levels_to_unit(levels, num_levels)
    exact = 2.0 * (levels + 0.5) / num_levels - 1.0  # float64 formula
    assert unit.dtype == np.float32
    np.testing.assert_array_equal(unit, exact.astype(np.float32))  # correctly rounded
    assert unit[0] == np.float32(1.0 / num_levels - 1.0)
    assert unit[-1] == np.float32(1.0 - 1.0 / num_levels)
    np.testing.assert_allclose(np.diff(unit.astype(np.float64)), 2.0 / num_levels, rtol=1e-6)
    np.testing.assert_array_equal(data.unit_to_levels(unit, num_levels), levels)
    # every point inside bin k (width 2/V around its centre) maps back to k
    rng = np.random.default_rng(0)
    offsets = rng.uniform(-0.499, 0.499, size=num_levels) * 2.0 / num_levels
    np.testing.assert_array_equal(data.unit_to_levels(exact + offsets, num_levels), levels)
    np.testing.assert_array_equal(data.unit_to_levels([-1.0, 1.0], num_levels), [0, num_levels - 1])


def test_levels_to_unit_matches_the_losses_modules():
    """The data map is the one the bits-per-dim evaluation uses (reference and eqx losses)."""
    import jax.numpy as jnp

    from eqx_impl import losses as eqx_losses
    from reference import losses as ref_losses

    levels = np.arange(256)
    ours = data.levels_to_unit(levels, 256)
    np.testing.assert_array_equal(ours, ref_losses.levels_to_unit(levels, 256).astype(np.float32))
    theirs = np.asarray(eqx_losses.levels_to_unit(jnp.asarray(levels, jnp.float32), 256))
    np.testing.assert_array_equal(ours, theirs)  # V = 256: every step is exact in float32


def test_levels_to_unit_rejects_non_levels():
    with pytest.raises(ValueError, match="integer levels in 0..16"):
        data.levels_to_unit(np.array([0.5]), 17)
    with pytest.raises(ValueError, match="integer levels in 0..16"):
        data.levels_to_unit(np.array([17.0]), 17)
    with pytest.raises(ValueError, match="num_levels"):
        data.levels_to_unit(np.array([0.0]), 1)


# ---------------------------------------------------------------------------------------
# digits


def _rows(images, labels):
    """Each example as one row (label first), sorted: a multiset fingerprint."""
    flat = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1)
    return flat[np.lexsort(flat.T[::-1])]


def test_digits_levels_split_and_labels():
    ds = data.load("digits", seed=0)
    assert (ds.name, ds.shape, ds.num_levels) == ("digits", (1, 8, 8), 17)
    assert (len(ds.train), len(ds.test)) == (1500, 297)
    both = np.concatenate([ds.train, ds.test])
    np.testing.assert_array_equal(both, np.round(both))
    np.testing.assert_array_equal(np.unique(both), np.arange(17))  # all 17 levels occur
    # train ∪ test is exactly sklearn's data set, each example used once, labels attached
    bunch = load_digits()
    expected = _rows(bunch.images.astype(np.int64), bunch.target.astype(np.int64))
    got = _rows(both[:, 0].astype(np.int64), np.concatenate([ds.train_labels, ds.test_labels]))
    np.testing.assert_array_equal(got, expected)
    # model space: the exact bin centres; sigma_data is their std in float64
    unit = ds.model_data("train")
    np.testing.assert_array_equal(unit, data.levels_to_unit(ds.train, 17))
    np.testing.assert_array_equal(data.unit_to_levels(unit, 17), ds.train)
    # exact from the level histogram vs float32-rounded centres (relative error <= 2^-24)
    assert ds.sigma_data == pytest.approx(np.std(unit.astype(np.float64)), rel=1e-7)


def test_digits_split_is_deterministic_and_disjoint():
    a, b, c = data.digits(seed=3), data.digits(seed=3), data.digits(seed=4)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)
    assert not np.array_equal(a.test, c.test)
    # disjoint: the split is a permutation of indices, recover it from sklearn's order
    images = load_digits().images.reshape(1797, -1)
    index = {row.tobytes(): i for i, row in enumerate(images)}  # duplicates collapse
    train = {index[r.tobytes()] for r in a.train.reshape(1500, -1).astype(np.float64)}
    test = {index[r.tobytes()] for r in a.test.reshape(297, -1).astype(np.float64)}
    duplicates = 1797 - len(index)
    assert len(train & test) <= duplicates
    small = data.digits(seed=0, num_test=100)
    assert (len(small.train), len(small.test)) == (1697, 100)
    with pytest.raises(ValueError, match="num_test"):
        data.digits(num_test=1797)
    with pytest.raises(ValueError, match="seed"):
        data.digits(seed=-1)


# ---------------------------------------------------------------------------------------
# 2-D toys


def _check_moments(x, mean, cov):
    """Sample mean and covariance within 5 standard errors of the exact values."""
    n = len(x)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) < 5 * se_mean), (x.mean(0), mean)
    centred = x - mean
    products = centred[:, :, None] * centred[:, None, :]
    se_cov = products.std(0) / np.sqrt(n)  # plug-in standard error of each entry
    assert np.all(np.abs(products.mean(0) - cov) < 5 * se_cov), (products.mean(0), cov)


def test_gmm_params_and_sample_moments():
    ds = data.load("gmm", num_train=100_000, num_test=10, seed=1)
    w, mu, s = (np.asarray(ds.params[k]) for k in ("weights", "means", "stds"))
    assert w.shape == (8,) and mu.shape == (8, 2) and s.shape == (8,)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    mean = w @ mu
    cov = np.einsum(
        "k,kij->ij", w, s[:, None, None] ** 2 * np.eye(2) + mu[:, :, None] * mu[:, None]
    )
    cov -= np.outer(mean, mean)
    np.testing.assert_allclose(mean, 0.0, atol=1e-15)
    np.testing.assert_allclose(cov, np.eye(2), atol=1e-14)  # standardised exactly
    np.testing.assert_allclose(np.linalg.norm(mu, axis=1), np.linalg.norm(mu[0]), rtol=1e-14)
    x = ds.train.astype(np.float64)
    _check_moments(x, mean, cov)
    # mode frequencies: nearest-mean assignment is uniform by symmetry (chi-square)
    nearest = np.argmin(((x[:, None] - mu) ** 2).sum(-1), axis=1)
    assert stats.chisquare(np.bincount(nearest, minlength=8)).pvalue > 1e-4
    # within a component the scaled residual is N(0, 1): radial part ~ chi2(2)
    radius2 = (((x - mu[nearest]) / s[nearest, None]) ** 2).sum(-1)
    core = radius2[radius2 < 4.0]  # far tails overlap neighbouring modes
    expected_fraction = stats.chi2(2).cdf(4.0)
    assert abs(len(core) / len(x) - expected_fraction) < 5 * math.sqrt(0.25 / len(x))


def test_gmm_matches_its_exact_density():
    """The samples follow the density the evaluation uses (`reference.analytic`)."""
    from reference.analytic import GaussianMixture

    ds = data.gmm(num_train=50_000, num_test=10, seed=5)
    w, mu, s = (np.asarray(ds.params[k]) for k in ("weights", "means", "stds"))
    x = ds.train.astype(np.float64)
    for axis in range(2):  # exact marginal CDF of each coordinate: a mixture of normals
        cdf = lambda a, axis=axis: stats.norm.cdf((np.asarray(a)[..., None] - mu[:, axis]) / s) @ w
        assert stats.kstest(x[:, axis], cdf).pvalue > 1e-4
    # average log-density of the data vs of the mixture's own samples (both ≈ −entropy)
    mixture = GaussianMixture(w, mu, s)
    ours = mixture.log_prob(x)
    exact = mixture.log_prob(mixture.sample(len(x), rng=np.random.default_rng(0)))
    se = math.sqrt((ours.var() + exact.var()) / len(x))
    assert abs(ours.mean() - exact.mean()) < 5 * se


def test_moons_on_curves_and_moments():
    clean = data.moons(num_train=20_000, num_test=10, seed=2, noise=0.0)
    raw = clean.train * clean.params["scale"] + clean.params["loc"]
    x, y = raw[:, 0].astype(np.float64), raw[:, 1].astype(np.float64)
    upper = np.abs(np.hypot(x, y) - 1.0) < 1e-5
    lower = np.abs(np.hypot(x - 1.0, y - 0.5) - 1.0) < 1e-5
    assert np.all(upper | lower)
    assert np.all(y[upper & ~lower] >= -1e-6) and np.all(y[lower & ~upper] <= 0.5 + 1e-6)
    assert abs(lower.mean() - 0.5) < 5 * math.sqrt(0.25 / len(x))
    assert x.min() >= -1 - 1e-6 and x.max() <= 2 + 1e-6 and y.min() >= -0.5 - 1e-6
    # standardised with the exact moments: mean 0, variance 1, closed-form correlation
    noise = 0.1
    ds = data.moons(num_train=100_000, num_test=10, seed=2, noise=noise)
    var_x, var_y = 0.75 + noise**2, 9 / 16 - 1 / math.pi + noise**2
    rho = (1 / 8 - 1 / math.pi) / math.sqrt(var_x * var_y)
    _check_moments(ds.train.astype(np.float64), np.zeros(2), np.array([[1, rho], [rho, 1]]))


def test_swiss_roll_on_spiral_and_moments():
    clean = data.swiss_roll(num_train=20_000, num_test=10, seed=3, noise=0.0)
    raw = (clean.train * clean.params["scale"] + clean.params["loc"]).astype(np.float64)
    t = np.hypot(raw[:, 0], raw[:, 1])
    assert t.min() >= 1.5 * math.pi - 1e-4 and t.max() <= 4.5 * math.pi + 1e-4
    np.testing.assert_allclose(raw[:, 0], t * np.cos(t), atol=1e-4)
    np.testing.assert_allclose(raw[:, 1], t * np.sin(t), atol=1e-4)
    # the standardisation constants agree with adaptive quadrature (scipy)
    a, b, noise = 1.5 * math.pi, 4.5 * math.pi, 0.5
    ds = data.swiss_roll(num_train=100_000, num_test=10, seed=3, noise=noise)
    mean = [integrate.quad(lambda u, c=c: u * c(u), a, b)[0] / (b - a) for c in (np.cos, np.sin)]
    second = [
        integrate.quad(lambda u, c=c: (u * c(u)) ** 2, a, b)[0] / (b - a) for c in (np.cos, np.sin)
    ]
    std = np.sqrt(np.array(second) - np.array(mean) ** 2 + noise**2)
    np.testing.assert_allclose(ds.params["loc"], mean, rtol=1e-10)
    np.testing.assert_allclose(ds.params["scale"], std, rtol=1e-10)
    x = ds.train.astype(np.float64)
    cross = integrate.quad(lambda u: u**2 * np.cos(u) * np.sin(u), a, b)[0] / (b - a)
    rho = (cross - mean[0] * mean[1]) / (std[0] * std[1])
    _check_moments(x, np.zeros(2), np.array([[1, rho], [rho, 1]]))


def test_checkerboard_cells_and_marginals():
    ds = data.checkerboard(num_train=40_000, num_test=10, seed=4)
    raw = (ds.train * ds.params["scale"]).astype(np.float64)
    assert raw.min() >= -2 - 1e-6 and raw.max() <= 2 + 1e-6
    cells = np.floor(raw).astype(int)
    assert np.all(cells.sum(1) % 2 == 0)
    cell_id = (cells[:, 0] + 2) * 4 + (cells[:, 1] + 2)
    counts = np.bincount(cell_id, minlength=16)
    assert np.count_nonzero(counts) == 8
    assert stats.chisquare(counts[counts > 0]).pvalue > 1e-4
    for axis in range(2):  # each coordinate is U(-2, 2)
        assert stats.kstest(raw[:, axis], stats.uniform(-2, 4).cdf).pvalue > 1e-4
    assert ds.sigma_data == pytest.approx(1.0, abs=5 * math.sqrt(0.8 / len(raw)))


@pytest.mark.parametrize("name", ["gmm", "moons", "swiss_roll", "checkerboard"])
def test_toys_deterministic_and_independent_splits(name):
    a = data.load(name, num_train=500, num_test=50, seed=7)
    b = data.load(name, num_train=500, num_test=50, seed=7)
    c = data.load(name, num_train=500, num_test=50, seed=8)
    d = data.load(name, num_train=500, num_test=300, seed=7)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_array_equal(a.train, d.train)  # train does not depend on num_test
    assert not np.array_equal(a.train, c.train)
    assert not np.array_equal(a.train[:50], a.test)
    assert a.train.dtype == np.float32 and a.num_levels is None and a.shape == (2,)
    assert a.sigma_data == pytest.approx(np.std(a.train.astype(np.float64)), rel=1e-12)
    np.testing.assert_array_equal(a.model_data("test"), a.test)


def test_load_errors():
    with pytest.raises(ValueError, match="available: checkerboard, cifar10, digits, gmm"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="num_train"):
        data.load("moons", num_train=0)
    with pytest.raises(ValueError, match="noise"):
        data.load("moons", noise=-0.1)
    with pytest.raises(ValueError, match="seed"):
        data.load("gmm", seed=-3)
    with pytest.raises(ValueError, match="unexpected keyword argument"):
        data.load("digits", num_train=5)
    with pytest.raises(ValueError, match="num_modes"):
        data.gmm_params(2)
    assert data.load("Swiss-Roll", num_train=10, num_test=10).name == "swiss_roll"


def test_dataset_validates_and_is_read_only():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="float32"):
        Dataset("a", x.astype(np.float64), x, None, 1.0)
    with pytest.raises(ValueError, match="integer levels"):
        Dataset("a", x + 0.5, x, 17, 1.0)
    with pytest.raises(ValueError, match="test examples have shape"):
        Dataset("a", x, np.zeros((4, 3), np.float32), None, 1.0)
    with pytest.raises(ValueError, match="split"):
        Dataset("a", x, x, None, 1.0).model_data("valid")
    ds = Dataset("a", x, x, None, 1.0, params={"loc": np.zeros(2)})
    with pytest.raises(ValueError, match="read-only"):
        ds.train[0, 0] = 1.0
    with pytest.raises(TypeError):
        ds.params["loc"] = np.ones(2)


# ---------------------------------------------------------------------------------------
# batching


def test_batch_k_is_a_pure_function_of_seed_and_k():
    n, b, seed = 23, 5, 11  # 4 batches per epoch, 3 examples dropped each epoch
    values = np.arange(n) * 10
    stream = list(itertools.islice(data.batches(values, b, seed=seed), 30))
    for k, batch in enumerate(stream):
        idx = data.batch_indices(n, b, seed=seed, step=k)
        np.testing.assert_array_equal(batch, values[idx])
    resumed = list(itertools.islice(data.batches(values, b, seed=seed, start_step=13), 17))
    for got, expected in zip(resumed, stream[13:], strict=True):
        np.testing.assert_array_equal(got, expected)
    # a far step directly, without replaying the stream
    far = next(data.batches(values, b, seed=seed, start_step=10_001))
    epoch, pos = divmod(10_001, 4)
    order = data.epoch_permutation(n, seed=seed, epoch=epoch)
    np.testing.assert_array_equal(far, values[order[pos * b : (pos + 1) * b]])
    other = list(itertools.islice(data.batches(values, b, seed=seed + 1), 30))
    assert any(not np.array_equal(p, q) for p, q in zip(stream, other, strict=True))


def test_each_epoch_is_a_permutation():
    n, b = 24, 6
    stream = list(itertools.islice(data.batches(np.arange(n), b, seed=0), 4 * 5))
    epochs = [np.concatenate(stream[4 * e : 4 * e + 4]) for e in range(5)]
    for e, epoch in enumerate(epochs):
        np.testing.assert_array_equal(np.sort(epoch), np.arange(n))
        np.testing.assert_array_equal(epoch, data.epoch_permutation(n, seed=0, epoch=e))
    assert len({e.tobytes() for e in epochs}) == 5  # reshuffled every epoch
    # with a remainder the dropped examples differ between epochs, and batches never repeat
    idx = [data.batch_indices(10, 3, seed=0, step=k) for k in range(30)]
    assert all(len(set(i)) == 3 for i in idx)
    seen = set(np.concatenate(idx).tolist())
    assert seen == set(range(10))


def test_batches_of_several_arrays_stay_aligned():
    images = np.arange(40).reshape(20, 2).astype(np.float32)
    labels = np.arange(20)
    for x, y in itertools.islice(data.batches((images, labels), 4, seed=5), 12):
        np.testing.assert_array_equal(x, images[y])
    with pytest.raises(ValueError, match="leading"):
        data.batches((images, labels[:5]), 4, seed=0)


def test_batching_errors():
    with pytest.raises(ValueError, match="exceeds"):
        data.batches(np.zeros(3), 4, seed=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        data.batch_indices(3, 0, seed=0, step=0)
    with pytest.raises(ValueError, match="start_step"):
        data.batches(np.zeros(8), 4, seed=0, start_step=-1)
    with pytest.raises(ValueError, match="seed"):
        data.batch_indices(8, 4, seed=-1, step=0)


# ---------------------------------------------------------------------------------------
# MNIST / CIFAR-10 formats, download and cache


def _idx_bytes(array):
    """idx format written independently of the parser: magic, big-endian sizes, bytes."""
    header = bytes([0, 0, 8, array.ndim])
    for size in array.shape:
        header += int(size).to_bytes(4, "big")
    return header + array.astype(np.uint8).tobytes()


def _sha256(path):
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mnist_mirror(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.array([3, 1, 4, 1, 5]),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.array([9, 2, 6]),
    }
    arrays["train-images-idx3-ubyte.gz"][0, 0, :2] = [0, 255]  # both extreme levels
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, array in arrays.items():
        (mirror / name).write_bytes(gzip.compress(_idx_bytes(array)))
    checksums = {name: _sha256(mirror / name) for name in arrays}
    return mirror, arrays, checksums


def test_mnist_round_trip_and_cache(mnist_mirror, tmp_path):
    mirror, arrays, checksums = mnist_mirror
    cache = tmp_path / "cache"
    ds = data.load("mnist", cache_dir=cache, base_url=mirror.as_uri(), checksums=checksums)
    assert (ds.name, ds.shape, ds.num_levels) == ("mnist", (1, 28, 28), 256)
    np.testing.assert_array_equal(ds.train[:, 0], arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(ds.test[:, 0], arrays["t10k-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(ds.train_labels, arrays["train-labels-idx1-ubyte.gz"])
    np.testing.assert_array_equal(ds.test_labels, arrays["t10k-labels-idx1-ubyte.gz"])
    unit = ds.model_data("train")
    np.testing.assert_array_equal(unit, ((2.0 * ds.train + 1.0) / 256 - 1.0).astype(np.float32))
    assert unit.min() == np.float32(-255 / 256) and unit.max() == np.float32(255 / 256)
    assert ds.sigma_data == pytest.approx(np.std(unit.astype(np.float64)), rel=1e-10)
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(arrays)
    # cached: a second load works with the mirror gone, and gives the same data
    for name in arrays:
        (mirror / name).unlink()
    again = data.mnist(cache_dir=cache, base_url=mirror.as_uri(), checksums=checksums)
    np.testing.assert_array_equal(again.train, ds.train)


def test_mnist_from_local_directory_and_env_cache(mnist_mirror, tmp_path, monkeypatch):
    mirror, arrays, checksums = mnist_mirror
    monkeypatch.setenv("WEIGHTED_ELBO_CACHE", str(tmp_path / "env-cache"))
    assert data.default_cache_dir() == tmp_path / "env-cache"
    ds = data.mnist(base_url=str(mirror), checksums=checksums)
    np.testing.assert_array_equal(ds.test_labels, arrays["t10k-labels-idx1-ubyte.gz"])
    assert (tmp_path / "env-cache" / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_mnist_official_checksums_reject_other_files(mnist_mirror, tmp_path):
    mirror, _, _ = mnist_mirror
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="md5 checksum mismatch.*f68b3c2dcbeaaa9f"):
        data.mnist(cache_dir=cache, base_url=str(mirror))
    assert list((cache / "mnist").iterdir()) == []  # bad download and temp file deleted


def test_corrupt_download_and_corrupt_cache(mnist_mirror, tmp_path):
    mirror, arrays, checksums = mnist_mirror
    cache = tmp_path / "cache"
    name = "train-labels-idx1-ubyte.gz"
    good = (mirror / name).read_bytes()
    (mirror / name).write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # flip one bit
    with pytest.raises(ChecksumError, match=f"sha256 checksum mismatch for .*{name}"):
        data.mnist(cache_dir=cache, base_url=str(mirror), checksums=checksums)
    assert not (cache / "mnist" / name).exists()
    assert not any(p.suffix == ".part" for p in (cache / "mnist").iterdir())
    # a cached file that went bad is deleted and fetched again
    (mirror / name).write_bytes(good)
    data.mnist(cache_dir=cache, base_url=str(mirror), checksums=checksums)
    (cache / "mnist" / name).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="wrong sha256 checksum"):
        ds = data.mnist(cache_dir=cache, base_url=str(mirror), checksums=checksums)
    np.testing.assert_array_equal(ds.train_labels, arrays[name])
    assert (cache / "mnist" / name).read_bytes() == good


def test_idx_parser_rejects_bad_files():
    good = _idx_bytes(np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(data.parse_idx(good), np.arange(6).reshape(2, 3))
    with pytest.raises(ValueError, match="magic"):
        data.parse_idx(gzip.compress(good))  # still compressed
    with pytest.raises(ValueError, match="truncated"):
        data.parse_idx(good[:-1])


def _cifar_records(images_hwc, labels):
    """CIFAR-10 binary records written from HWC images: label, then R, G, B planes."""
    out = b""
    for image, label in zip(images_hwc, labels, strict=True):
        out += bytes([int(label)])
        for channel in range(3):
            out += image[:, :, channel].astype(np.uint8).tobytes()
    return out


@pytest.fixture
def cifar_mirror(tmp_path):
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        count = 3 if name == "test_batch" else 2
        batches[name] = (rng.integers(0, 256, (count, 32, 32, 3)), rng.integers(0, 10, count))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "cifar-10-binary.tar.gz", "w:gz") as archive:
        members = {"batches.meta.txt": b"airplane\n"}
        members |= {f"{k}.bin": _cifar_records(*v) for k, v in batches.items()}
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return mirror, batches


def test_cifar10_round_trip_and_cache(cifar_mirror, tmp_path):
    mirror, batches = cifar_mirror
    archive = mirror / "cifar-10-binary.tar.gz"
    md5 = "md5:" + hashlib.md5(archive.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    checksums = {"cifar-10-binary.tar.gz": md5}
    ds = data.load("cifar10", cache_dir=cache, base_url=mirror.as_uri(), checksums=checksums)
    assert (ds.name, ds.shape, ds.num_levels) == ("cifar10", (3, 32, 32), 256)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    expected_train = np.concatenate([x for x, _ in train]).transpose(0, 3, 1, 2)  # HWC → CHW
    np.testing.assert_array_equal(ds.train, expected_train)
    np.testing.assert_array_equal(ds.train_labels, np.concatenate([y for _, y in train]))
    np.testing.assert_array_equal(ds.test, batches["test_batch"][0].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ds.test_labels, batches["test_batch"][1])
    archive.unlink()  # second load from the cache only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = data.cifar10(cache_dir=cache, base_url=mirror.as_uri(), checksums=checksums)
    np.testing.assert_array_equal(again.test, ds.test)


def test_cifar10_checksum_and_format_errors(cifar_mirror, tmp_path):
    mirror, _ = cifar_mirror
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="c32a1d4ab5d03f1284b67883e8d87530"):
        data.cifar10(cache_dir=cache, base_url=str(mirror))  # official MD5, other bytes
    assert list((cache / "cifar10").iterdir()) == []
    with pytest.raises(ValueError, match="not a multiple"):
        data.parse_cifar10_records(b"\x00" * 3072)
    with pytest.raises(ValueError, match="labels must be 0..9"):
        data.parse_cifar10_records(bytes([10]) + b"\x00" * 3072)
    with pytest.raises(ValueError, match="unknown files"):
        data.cifar10(cache_dir=cache, base_url=str(mirror), checksums={"x.bin": "0" * 64})


def test_fetch_errors(tmp_path):
    source = tmp_path / "file.bin"
    source.write_bytes(b"abc")
    digest = "sha256:" + hashlib.sha256(b"abc").hexdigest()
    path = data.fetch("file.bin", base_url=str(tmp_path), checksum=digest, cache_dir=tmp_path / "c")
    assert path.read_bytes() == b"abc"
    assert data.file_checksum(path) == hashlib.sha256(b"abc").hexdigest()
    assert data.file_checksum(path, "md5") == hashlib.md5(b"abc").hexdigest()
    bare_md5 = hashlib.md5(b"abc").hexdigest()  # bare hex: algorithm from its length
    data.fetch("file.bin", base_url=str(tmp_path), checksum=bare_md5, cache_dir=tmp_path / "d")
    empty = tmp_path / "empty"
    with pytest.raises(ValueError, match="Mirror directory .* does not exist"):
        data.fetch("file.bin", base_url=str(tmp_path / "nope"), checksum=digest, cache_dir=empty)
    with pytest.raises(OSError, match="Could not download"):
        data.fetch("missing.bin", base_url=tmp_path.as_uri(), checksum=digest, cache_dir=empty)
    assert list(empty.iterdir()) == []  # the partial download was removed
    with pytest.raises(ValueError, match="Malformed checksum"):
        data.fetch("file.bin", base_url=str(tmp_path), checksum="sha1:abc", cache_dir=empty)
    with pytest.raises(ValueError, match="bare file name"):
        data.fetch("../file.bin", base_url=str(tmp_path), checksum=digest, cache_dir=empty)
    with pytest.raises(ValueError, match="not a directory"):
        data.mnist(cache_dir=source, base_url=str(tmp_path))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not gzip at all", "Not a gzipped file"),
        (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x09abc", mtime=0), "truncated or corrupt"),  # idx cut off
        (gzip.compress(_idx_bytes(np.arange(6).reshape(2, 3)), mtime=0)[:-12], "Compressed file ended"),  # gzip cut off
    ],
    ids=["not gzip", "idx cut off", "gzip cut off"],  # stable ids: pytest-xdist workers must collect the same names
)
def test_malformed_data_files_name_the_file_and_the_fix(mnist_mirror, tmp_path, content, message):
    """A file whose checksum the user vouched for (`checksums=`) but that does not parse."""
    mirror, _, checksums = mnist_mirror
    name = "train-labels-idx1-ubyte.gz"
    (mirror / name).write_bytes(content)
    checksums = {**checksums, name: _sha256(mirror / name)}
    with pytest.raises(ValueError, match=message) as info:
        data.load("mnist", cache_dir=tmp_path / "cache", base_url=str(mirror), checksums=checksums)
    assert name in str(info.value) and "Delete it" in str(info.value)


def test_malformed_cifar_archive_names_the_file(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    archive = mirror / "cifar-10-binary.tar.gz"
    archive.write_bytes(gzip.compress(b"not a tar archive" * 40))
    checksums = {archive.name: "md5:" + hashlib.md5(archive.read_bytes()).hexdigest()}
    with pytest.raises(ValueError, match="Cannot read the CIFAR-10 archive .*cifar-10-binary.tar.gz.*Delete it"):
        data.cifar10(cache_dir=tmp_path / "cache", base_url=str(mirror), checksums=checksums)
