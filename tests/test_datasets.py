"""Tests for tito.datasets: real MNIST from $TINYTORCH_DATA, plus broken, missing and downloaded files."""

import gzip
import hashlib
import io
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tito import datasets
from tito.datasets import DatasetError, load_mnist

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # well-known histograms
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def real_dir():
    """The shared copy of the four official files: $TINYTORCH_DATA/mnist."""
    root = os.environ.get("TINYTORCH_DATA")
    if not root:
        pytest.skip("TINYTORCH_DATA is not set: point it at the directory holding mnist/ to run this")
    return Path(root) / "mnist"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No $TINYTORCH_DATA, an empty cache in tmp_path, and a network that refuses every request."""

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.delenv("TINYTORCH_DATA", raising=False)
    monkeypatch.setenv("TINYTORCH_CACHE", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return tmp_path / "mnist"


def test_real_data(real_dir):
    (x_train, y_train), (x_test, y_test) = load_mnist(real_dir)
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0 and 0.1 < x_train.mean() < 0.15
    assert np.bincount(y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == TEST_COUNTS
    assert load_mnist(real_dir, flatten=False)[0][0].shape == (60000, 28, 28)


def test_second_load_is_cached_and_read_only(real_dir):
    first = load_mnist(real_dir)[0][0]
    start = time.perf_counter()
    second = load_mnist(real_dir, flatten=False)[0][0]
    assert time.perf_counter() - start < 0.05 and np.shares_memory(first, second)
    with pytest.raises(ValueError, match="read-only"):
        second[0, 0, 0] = 1.0  # a caller must not be able to corrupt the cached copy


def _regzip(path, edit):
    """The gzip of `edit(uncompressed bytes of path)`."""
    return gzip.compress(edit(bytearray(gzip.decompress(path.read_bytes()))), compresslevel=1)


def _flip_last_label(raw):
    raw[-1] = (raw[-1] + 1) % 10
    return raw


BROKEN = {  # case -> (file to break, its new bytes given the real file, expected words in the error)
    "truncated gzip": ("train-labels-idx1-ubyte.gz", lambda p: p.read_bytes()[:-100], "not a readable gzip"),
    "not gzip": ("train-images-idx3-ubyte.gz", lambda p: b"<html>404</html>", "not a readable gzip"),
    "wrong magic": (
        "t10k-labels-idx1-ubyte.gz",
        lambda p: _regzip(p, lambda r: b"\0\0\x08\x03" + r[4:]),
        "magic number 2051",
    ),
    "extra bytes": (
        "t10k-labels-idx1-ubyte.gz",
        lambda p: _regzip(p, lambda r: r + b"\0"),
        "10001 data bytes, expected 10000",
    ),
    "wrong content": ("t10k-labels-idx1-ubyte.gz", lambda p: _regzip(p, _flip_last_label), "MD5 mismatch"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_file_names_the_file(case, real_dir, tmp_path):
    bad, make, words = BROKEN[case]
    for name in datasets.MNIST_FILES:  # the good files are symlinks, only the broken one is written
        (tmp_path / name).symlink_to(real_dir / name)
    (tmp_path / bad).unlink()
    (tmp_path / bad).write_bytes(make(real_dir / bad))
    with pytest.raises(DatasetError, match=words) as info:
        load_mnist(tmp_path)
    assert str(tmp_path / bad) in str(info.value) and "Delete it" in str(info.value)


def test_missing_files_in_named_dir_are_reported_not_downloaded(offline, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match="from the data_dir argument") as info:
        load_mnist(tmp_path / "mine")  # a download attempt would hit `offline` and say so instead
    message = str(info.value)
    assert "TINYTORCH_DATA" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "train-images-idx3-ubyte.gz" not in message  # present (if broken): not listed as missing


def test_offline_without_data_is_one_clear_error(offline):
    start = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        load_mnist()
    message = str(info.value)
    assert time.perf_counter() - start < 5
    for words in ["TINYTORCH_DATA", str(offline), datasets.MNIST_URL, *datasets.MNIST_FILES]:
        assert words in message
    assert info.value.__suppress_context__  # no urllib traceback chained under ours
    assert os.listdir(offline) == []  # no partial downloads left behind


def test_download_skips_bad_mirror_and_writes_atomically(real_dir, offline, monkeypatch):
    # The shared .gz files were re-compressed, so we serve them as "official" by patching their MD5s in.
    served = {name: (real_dir / name).read_bytes() for name in datasets.MNIST_FILES}
    monkeypatch.setattr(
        datasets,
        "MNIST_FILES",
        {
            name: (hashlib.md5(data).hexdigest(), md5s[1])
            for (name, md5s), data in zip(datasets.MNIST_FILES.items(), served.values())
        },
    )
    requests, listings = [], []

    def serve(url, timeout):
        name = url.rsplit("/", 1)[1]
        requests.append(url)
        listings.append((name, os.listdir(offline)))
        data = served[name]
        if url.startswith(datasets.MNIST_MIRRORS[0]):  # the first mirror serves corrupted bytes
            data = data[:1000] + b"X" + data[1001:]
        return io.BytesIO(data)

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    (x_train, y_train), (x_test, y_test) = load_mnist()
    assert x_train.shape == (60000, 784) and np.bincount(y_test).tolist() == TEST_COUNTS
    assert [url.split("/mnist/")[0] for url in requests] == [
        mirror.split("/mnist/")[0] for mirror in datasets.MNIST_MIRRORS[:2]
    ] * 4
    for name, listing in listings:  # while downloading, only a temp file in the target folder
        assert name not in listing and any(f.endswith(".part") for f in listing)
    assert sorted(os.listdir(offline)) == sorted(datasets.MNIST_FILES)


def test_download_rejects_bad_bytes_from_every_mirror(monkeypatch, tmp_path):
    def serve(url, timeout):
        if "mirror-a" in url:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return io.BytesIO(b"not the file you wanted")

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    with pytest.raises(DatasetError, match="(?s)mirror-a.*404.*mirror-b.*MD5") as info:
        datasets.download("f.gz", tmp_path, ["http://mirror-a/", "http://mirror-b/"], md5="0" * 32)
    assert "f.gz" in str(info.value) and os.listdir(tmp_path) == []
