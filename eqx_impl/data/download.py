"""Fetch a file into a cache directory: checksum-verified, written atomically.

Checksums are strings `"md5:<hex>"` or `"sha256:<hex>"` (a bare hex digest is read by its
length: 32 → MD5, 64 → SHA-256). MD5 is accepted because it is what the data set authors
publish for the official files (CIFAR-10); it guards against truncated or corrupted
downloads, not against a malicious mirror — pass a SHA-256 you trust for that.

A download streams into a temporary file in the cache directory while hashing, and is
renamed onto its final name only when the digest matches (`os.replace` is atomic), so an
interrupted or corrupt download never leaves a file under the cached name.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

CACHE_ENV = "WEIGHTED_ELBO_CACHE"
_CHUNK = 1 << 20
_HEX = re.compile(r"[0-9a-f]+")
_LENGTHS = {"md5": 32, "sha256": 64}


class ChecksumError(ValueError):
    """A downloaded (or cached) file does not have the expected digest."""


def default_cache_dir() -> Path:
    """`$WEIGHTED_ELBO_CACHE` if set, else `~/.cache/weighted-elbo`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "weighted-elbo"


def cache_directory(cache_dir: str | os.PathLike | None, subdir: str) -> Path:
    """`cache_dir / subdir` (default cache if `None`), created if missing."""
    root = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise ValueError(f"cache_dir {str(root)!r} exists but is not a directory.")
    path = root / subdir
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split `"md5:<hex>"` / `"sha256:<hex>"` / bare hex into `(algorithm, digest)`."""
    if not isinstance(checksum, str):
        raise ValueError(f"checksum must be a string like 'sha256:<hex>', got {checksum!r}.")
    text = checksum.strip().lower()
    if ":" in text:
        algorithm, digest = text.split(":", 1)
    else:
        algorithm = {32: "md5", 64: "sha256"}.get(len(text), "")
        digest = text
    if (
        algorithm not in _LENGTHS
        or len(digest) != _LENGTHS[algorithm]
        or not _HEX.fullmatch(digest)
    ):
        raise ValueError(
            f"Malformed checksum {checksum!r}: use 'sha256:<64 hex digits>' or "
            "'md5:<32 hex digits>'."
        )
    return algorithm, digest


def file_checksum(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    if algorithm not in _LENGTHS:
        raise ValueError(f"algorithm must be one of {sorted(_LENGTHS)}, got {algorithm!r}.")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def source_url(base_url: str, filename: str) -> str:
    """`base_url/filename`; `base_url` may be a URL (`https://`, `file://`) or a local
    directory, which must exist."""
    if not isinstance(base_url, str) or not base_url:
        raise ValueError(f"base_url must be a non-empty URL or directory, got {base_url!r}.")
    scheme = urllib.parse.urlparse(base_url).scheme
    if len(scheme) > 1:  # a one-letter "scheme" is a Windows drive
        return base_url.rstrip("/") + "/" + urllib.parse.quote(filename)
    directory = Path(base_url).expanduser().resolve()
    if not directory.is_dir():
        raise ValueError(
            f"Mirror directory {str(directory)!r} does not exist; pass base_url as a URL or "
            "an existing directory holding the files."
        )
    return (directory / filename).as_uri()


def fetch(
    filename: str,
    *,
    base_url: str,
    checksum: str,
    cache_dir: str | os.PathLike,
    timeout: float = 60.0,
) -> Path:
    """Return `cache_dir/filename`, downloading it from `base_url` if missing.

    A cached file is re-verified; if its digest is wrong it is deleted and downloaded
    again. A download with the wrong digest is deleted and raises `ChecksumError`.

    **Returns:** the path of the verified file.
    """
    if not filename or Path(filename).name != filename:
        raise ValueError(f"filename must be a bare file name, got {filename!r}.")
    algorithm, expected = parse_checksum(checksum)
    directory = Path(cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename
    if target.is_file():
        if file_checksum(target, algorithm) == expected:
            return target
        warnings.warn(
            f"Cached {target} has the wrong {algorithm} checksum; deleting and downloading "
            "it again.",
            stacklevel=2,
        )
        target.unlink()
    url = source_url(base_url, filename)
    digest = hashlib.new(algorithm)
    handle, temp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as err:
                raise OSError(
                    f"Could not download {url}: {err}. Check the connection, or pass base_url= "
                    f"a mirror (URL or local directory) holding {filename}."
                ) from err
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"{algorithm} checksum mismatch for {url}: expected {expected}, got {actual}. "
                "The file was deleted. Retry; if the mirror serves a different version on "
                "purpose, pass its checksum explicitly."
            )
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target
