"""Write a synthetic `cifar-10-binary.tar.gz` in the real CIFAR-10 binary format.

For machines that cannot download the data set (the GPU check): records of 1 label byte
and 3072 pixel bytes (3 x 32 x 32, channel-major), five training batches and a test batch
under `cifar-10-batches-bin/`, exactly the layout the real loader reads. The pixels are
smooth random colour blobs, not noise, so a model has something to learn. Prints the
archive's sha256, to pass as `data.args.checksums`.

    python -m benchmarks.synthetic_cifar10 /tmp/cifar --per-batch 2000
"""

from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

import numpy as np

from eqx_impl.data.download import file_checksum
from eqx_impl.data.images import CIFAR10_ARCHIVE, CIFAR10_TEST, CIFAR10_TRAIN


def _records(count: int, rng: np.random.Generator) -> bytes:
    labels = rng.integers(0, 10, count, dtype=np.uint8)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    centre = rng.uniform(0.2, 0.8, (count, 2, 1, 1))
    width = rng.uniform(0.1, 0.4, (count, 1, 1))
    blob = np.exp(-((yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2) / (2 * width**2))
    colour = rng.uniform(0, 1, (count, 3, 1, 1)) * (0.5 + labels[:, None, None, None] / 20)
    images = np.clip(255 * (0.1 + 0.8 * colour * blob[:, None]), 0, 255).astype(np.uint8)
    return np.concatenate([labels[:, None], images.reshape(count, -1)], axis=1).tobytes()


def write_archive(folder: str | Path, per_batch: int = 2000, seed: int = 0) -> Path:
    """**Returns:** the path of the archive written in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    path = folder / CIFAR10_ARCHIVE
    with tarfile.open(path, "w:gz") as archive:
        for name in (*CIFAR10_TRAIN, *CIFAR10_TEST):
            data = _records(per_batch, rng)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--per-batch", type=int, default=2000)
    args = parser.parse_args()
    path = write_archive(args.folder, args.per_batch)
    print(f"sha256:{file_checksum(path)}")


if __name__ == "__main__":
    main()
