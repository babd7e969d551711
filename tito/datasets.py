"""Dataset loaders for the milestones: MNIST now, CIFAR-10 later.

Where the files come from, first match wins:
  1. the `data_dir` argument (the files sit directly in it),
  2. $TINYTORCH_DATA/mnist/   (tests and CI point this at a shared read-only copy),
  3. $TINYTORCH_CACHE/mnist/  (default ~/.cache/tinytorch/mnist/), downloading what is missing.
Only the cache is ever downloaded into: a directory the user named explicitly is theirs, and a
wrong path there should be reported, not papered over with a download somewhere else.
"""

import functools
import gzip
import hashlib
import http.client
import math
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

DATA_ENV, CACHE_ENV = "TINYTORCH_DATA", "TINYTORCH_CACHE"
TIMEOUT = 3  # seconds per socket operation; short so that being offline fails fast


class DatasetError(Exception):
    """The data is missing or broken; the message says which file and what to do about it."""


def cache_dir():
    """Where downloads go: $TINYTORCH_CACHE, else ~/.cache/tinytorch."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tinytorch").expanduser()


def download(filename, folder, mirrors, md5, timeout=TIMEOUT):
    """Fetch `filename` into `folder` from the first mirror that serves bytes with the given MD5.

    The bytes go to a temp file in `folder` (same filesystem, so os.replace is an atomic rename),
    are fsync'd and only then renamed into place: an interrupted or bad download never leaves a
    half-written file under the real name. A mirror that answers with an HTTP error or wrong bytes
    is skipped; a connection error means we are offline, so we stop at once rather than wait out
    every mirror. Raises DatasetError (with the reasons) if no mirror delivered. Returns the path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    problems = []
    for base in mirrors:
        url = base + filename
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                digest = hashlib.md5()
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as response:
                        while chunk := response.read(1 << 20):
                            digest.update(chunk)
                            f.write(chunk)
                except (urllib.error.HTTPError, http.client.HTTPException) as e:
                    problems.append(f"{url}: {e}")  # the server answered; another mirror may work
                    continue
                except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                    reason = getattr(e, "reason", e)
                    raise DatasetError(f"could not reach {url} ({reason}); are you offline?") from None
                f.flush()
                os.fsync(f.fileno())
            if digest.hexdigest() != md5:
                problems.append(f"{url}: MD5 {digest.hexdigest()}, expected {md5}")
                continue
            os.replace(tmp, folder / filename)
            return folder / filename
        finally:
            if os.path.exists(tmp):  # everything except a successful os.replace
                os.remove(tmp)
    raise DatasetError(f"no mirror delivered a good {filename}:\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------- MNIST

MNIST_URL = "http://yann.lecun.com/exdb/mnist/"  # the official page, named in error messages
MNIST_MIRRORS = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    MNIST_URL,
]
# file -> (MD5 of the official .gz, for downloads; MD5 of the uncompressed IDX, for local files).
# Local copies may be re-gzipped (the shared CI copy is), so they are checked by content.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
}


def load_mnist(data_dir=None, flatten=True):
    """Load MNIST as ((X_train, y_train), (X_test, y_test)).

    X is float32 in [0, 1] with shape (N, 784), or (N, 28, 28) if flatten=False; y is int64 in 0..9.
    N is 60,000 for train and 10,000 for test. The arrays are read-only because they are cached
    and shared between calls: copy them (X.copy()) if you want to modify them in place.
    """
    if data_dir is not None:
        folder, source = Path(data_dir).expanduser(), "the data_dir argument"
    elif os.environ.get(DATA_ENV):
        folder, source = Path(os.environ[DATA_ENV]).expanduser() / "mnist", f"${DATA_ENV}"
    else:
        folder, source = cache_dir() / "mnist", f"the download cache (${CACHE_ENV})"
        _download_missing_mnist(folder)
    missing = [name for name in MNIST_FILES if not (folder / name).is_file()]
    if missing:
        raise DatasetError(
            f"MNIST files missing in {folder} (from {source}): {', '.join(missing)}.\n"
            f"Put the four official files from {MNIST_URL} there, or set {DATA_ENV} to a directory "
            f"that has them under mnist/."
        )
    train, test = _read_mnist(str(folder.resolve()))
    if flatten:  # reshape of a read-only array is a read-only view: no copy, cache stays safe
        train, test = [(x.reshape(len(x), -1), y) for x, y in (train, test)]
    return train, test


def _download_missing_mnist(folder):
    missing = [name for name in MNIST_FILES if not (folder / name).is_file()]
    for name in missing:
        try:
            download(name, folder, MNIST_MIRRORS, MNIST_FILES[name][0])
        except DatasetError as e:
            still = [n for n in missing if not (folder / n).is_file()]
            raise DatasetError(
                f"MNIST is not in {folder} and could not be downloaded: {e}\n"
                f"Missing: {', '.join(still)}.\n"
                f"Fix: connect to the internet and retry, or copy the four files from {MNIST_URL} "
                f"into {folder}, or set {DATA_ENV} to a directory that has them under mnist/."
            ) from None


@functools.lru_cache(maxsize=2)  # an entry is ~220 MB; the milestone loads the same folder twice
def _read_mnist(folder):
    # Validate all four files before the big float conversion, so a broken file fails fast.
    x_train, y_train, x_test, y_test = [_read_idx(Path(folder) / name) for name in MNIST_FILES]
    # np.divide with dtype: one float32 pass, no float64 temporary.
    arrays = [
        np.divide(x_train, np.float32(255), dtype=np.float32),
        y_train.astype(np.int64),
        np.divide(x_test, np.float32(255), dtype=np.float32),
        y_test.astype(np.int64),
    ]
    for a in arrays:
        a.flags.writeable = False
    return tuple(arrays[:2]), tuple(arrays[2:])


def _read_idx(path):
    """Parse one gzipped MNIST IDX file into a uint8 array, checking everything about its content."""
    fix = f"Delete it and load again to re-download it (or replace it with a fresh copy from {MNIST_URL})."
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as e:  # not gzip, truncated, or bad CRC
        raise DatasetError(f"{path} is not a readable gzip file ({e}). {fix}") from None
    # IDX header: big-endian uint32s, the magic number, the item count and (images only) rows, cols.
    images = "images" in path.name
    want = [2051 if images else 2049, 60000 if path.name.startswith("train") else 10000] + [28, 28] * images
    header, size = 4 * len(want), math.prod(want[1:])
    got = list(struct.unpack_from(f">{len(want)}I", raw)) if len(raw) >= header else None
    if got is None:
        problem = f"only {len(raw)} bytes, too short for an IDX header"
    elif got[0] != want[0]:
        problem = f"magic number {got[0]}, expected {want[0]}"
    elif got[1:] != want[1:]:
        problem = f"header says shape {got[1:]}, expected {want[1:]}"
    elif len(raw) != header + size:
        problem = f"{len(raw) - header} data bytes, expected {size}"
    elif hashlib.md5(raw).hexdigest() != MNIST_FILES[path.name][1]:  # ~0.1 s for all four: worth it
        problem = "contents differ from the official MNIST file (MD5 mismatch)"
    else:
        return np.frombuffer(raw, np.uint8, offset=header).reshape(want[1:])
    raise DatasetError(f"{path} is not a valid MNIST file: {problem}. {fix}")
