"""MNIST (idx format) and CIFAR-10 (binary format) as 256-level image data sets.

Both are downloaded once into the cache (see `download.fetch`) and parsed from the raw
bytes; no pickle is involved. The expected checksums are the MD5 digests of the official
files: for CIFAR-10 the one the authors publish on https://www.cs.toronto.edu/~kriz/cifar.html,
for MNIST the ones every loader (e.g. torchvision) checks, since the MNIST page publishes
none. A mirror serving other bytes (or a test) passes `checksums={filename: "sha256:…"}`.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from collections.abc import Mapping

import numpy as np

from eqx_impl.data.dataset import Dataset, estimate_sigma_data
from eqx_impl.data.download import cache_directory, fetch

NUM_LEVELS = 256

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
}

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_FILES = {CIFAR10_ARCHIVE: "md5:c32a1d4ab5d03f1284b67883e8d87530"}
CIFAR10_TRAIN = tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = ("cifar-10-batches-bin/test_batch.bin",)
_CIFAR10_RECORD = 1 + 3 * 32 * 32  # label byte, then 1024 R, 1024 G, 1024 B, row-major


def parse_idx(data: bytes) -> np.ndarray:
    """Parse an (uncompressed) idx file of unsigned bytes: magic `0x00 0x00 0x08 ndim`,
    `ndim` big-endian int32 sizes, then the values in C order.

    **Returns:** a uint8 array of the stored shape.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(
            "Not an unsigned-byte idx file (magic must be 00 00 08 <ndim>); got "
            f"{data[:4].hex()!r}. Is the file gzip-compressed or truncated?"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"Truncated idx header: {len(data)} bytes for {ndim} dimensions.")
    shape = tuple(int(n) for n in np.frombuffer(data, ">i4", count=ndim, offset=4))
    if len(data) - header != int(np.prod(shape)):
        raise ValueError(
            f"idx file declares shape {shape} ({int(np.prod(shape))} bytes) but holds "
            f"{len(data) - header} bytes of data; the file is truncated or corrupt."
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape).copy()


def _read_idx_gz(path: str | os.PathLike[str]) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as stream:
            return parse_idx(stream.read())
    except (OSError, EOFError, ValueError) as err:  # not gzip, cut off, or not idx inside
        raise ValueError(
            f"Cannot read {str(path)!r} as a gzip-compressed idx file: {err}. Delete it so that "
            "it is downloaded again, or fix the mirror (base_url) that served it."
        ) from None


def _image_dataset(name, train, train_labels, test, test_labels) -> Dataset:
    train = train.astype(np.float32)
    return Dataset(
        name=name,
        train=train,
        test=test.astype(np.float32),
        num_levels=NUM_LEVELS,
        sigma_data=estimate_sigma_data(train, NUM_LEVELS),
        train_labels=train_labels.astype(np.int64),
        test_labels=test_labels.astype(np.int64),
    )


def _resolve_checksums(defaults: Mapping[str, str], checksums: Mapping[str, str] | None):
    checksums = dict(checksums or {})
    unknown = set(checksums) - set(defaults)
    if unknown:
        raise ValueError(
            f"checksums for unknown files {sorted(unknown)}; the files are {sorted(defaults)}."
        )
    return {**defaults, **checksums}


def mnist(
    *,
    cache_dir: str | os.PathLike | None = None,
    base_url: str = MNIST_URL,
    checksums: Mapping[str, str] | None = None,
) -> Dataset:
    """MNIST: 60000/10000 images `(1, 28, 28)` with levels 0..255, and labels.

    `base_url` is a URL or a local directory holding the four `*-ubyte.gz` files;
    `checksums` overrides the expected digests per file name.

    **Returns:** a discrete `Dataset` with `num_levels = 256`.
    """
    directory = cache_directory(cache_dir, "mnist")
    expected = _resolve_checksums(MNIST_FILES, checksums)
    arrays = {}
    for filename, checksum in expected.items():
        path = fetch(filename, base_url=base_url, checksum=checksum, cache_dir=directory)
        arrays[filename] = _read_idx_gz(path)
    parts = []
    for prefix in ("train", "t10k"):
        images = arrays[f"{prefix}-images-idx3-ubyte.gz"]
        labels = arrays[f"{prefix}-labels-idx1-ubyte.gz"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
            raise ValueError(
                f"MNIST {prefix} files have shapes {images.shape} and {labels.shape}; "
                "expected (N, 28, 28) images and (N,) labels."
            )
        if len(images) != len(labels):
            raise ValueError(f"MNIST {prefix}: {len(images)} images but {len(labels)} labels.")
        parts += [images[:, None], labels]
    return _image_dataset("mnist", *parts)


def parse_cifar10_records(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse CIFAR-10 binary records: 1 label byte + 3072 pixel bytes (R, G, B planes,
    each 32×32 row-major).

    **Returns:** `(images, labels)`: uint8 `(N, 3, 32, 32)` and uint8 `(N,)`.
    """
    if len(data) % _CIFAR10_RECORD:
        raise ValueError(
            f"CIFAR-10 binary batch has {len(data)} bytes, not a multiple of the "
            f"{_CIFAR10_RECORD}-byte record; the file is truncated or corrupt."
        )
    records = np.frombuffer(data, np.uint8).reshape(-1, _CIFAR10_RECORD)
    labels = records[:, 0].copy()
    if labels.size and labels.max() > 9:
        raise ValueError(f"CIFAR-10 labels must be 0..9, found {int(labels.max())}.")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def _read_members(archive: tarfile.TarFile, names: tuple[str, ...]):
    images, labels = [], []
    for name in names:
        try:
            member = archive.getmember(name)
        except KeyError:
            raise ValueError(f"{CIFAR10_ARCHIVE} has no member {name!r}.") from None
        if not member.isfile():
            raise ValueError(f"{CIFAR10_ARCHIVE} member {name!r} is not a regular file.")
        # Read the bytes in memory: nothing is extracted to disk, so no path traversal.
        x, y = parse_cifar10_records(archive.extractfile(member).read())  # pyright: ignore[reportOptionalMemberAccess]  # a regular file (checked above)
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def cifar10(
    *,
    cache_dir: str | os.PathLike | None = None,
    base_url: str = CIFAR10_URL,
    checksums: Mapping[str, str] | None = None,
) -> Dataset:
    """CIFAR-10 from the binary archive: 50000/10000 images `(3, 32, 32)` with levels
    0..255, and labels 0..9.

    `base_url` is a URL or a local directory holding `cifar-10-binary.tar.gz`;
    `checksums` overrides its expected digest.

    **Returns:** a discrete `Dataset` with `num_levels = 256`.
    """
    directory = cache_directory(cache_dir, "cifar10")
    expected = _resolve_checksums(CIFAR10_FILES, checksums)
    path = fetch(
        CIFAR10_ARCHIVE,
        base_url=base_url,
        checksum=expected[CIFAR10_ARCHIVE],
        cache_dir=directory,
    )
    try:
        with tarfile.open(path, "r:gz") as archive:
            train = _read_members(archive, CIFAR10_TRAIN)
            test = _read_members(archive, CIFAR10_TEST)
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        raise ValueError(
            f"Cannot read the CIFAR-10 archive {str(path)!r}: {err}. Delete it so that it is "
            "downloaded again, or fix the mirror (base_url) that served it."
        ) from None
    return _image_dataset("cifar10", *train, *test)
