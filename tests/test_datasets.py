"""Tests for tito.datasets: real MNIST and CIFAR-10 from $TINYTORCH_DATA, broken and hostile files, and
downloads through pooch from a real HTTP server on 127.0.0.1 (the internet is switched off)."""

import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from tito import datasets
from tito.datasets import CIFAR10_BINARY, CIFAR10_PYTHON, DatasetError, load_cifar10, load_mnist, to_float

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # well-known histograms
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _shared(name):
    root = os.environ.get("TINYTORCH_DATA")
    if not root:
        pytest.skip(f"TINYTORCH_DATA is not set: point it at the directory holding {name}/ to run this")
    return Path(root) / name


@pytest.fixture
def real_dir():
    """The shared copy of the four official files: $TINYTORCH_DATA/mnist."""
    return _shared("mnist")


@pytest.fixture
def real_cifar_dir():
    """The shared copy of cifar-10-binary.tar.gz: $TINYTORCH_DATA/cifar10."""
    return _shared("cifar10")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No $TINYTORCH_DATA, an empty cache in tmp_path, and no internet: name lookups fail, as on an offline
    laptop, for every host but 127.0.0.1 (where `server` runs). Returns the cache's mnist folder."""
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host in ("127.0.0.1", b"127.0.0.1"):
            return real_getaddrinfo(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution (no network in tests)")

    monkeypatch.delenv("TINYTORCH_DATA", raising=False)
    monkeypatch.setenv("TINYTORCH_CACHE", str(tmp_path))
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "mnist"


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1, in a thread. Serves `files` (path -> bytes, or a callable giving
    the handler a chance to misbehave), 404 for anything else; logs the requested paths in `requests`."""
    state = types.SimpleNamespace(files={}, requests=[], on_request=None)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append(self.path)
            if state.on_request:
                state.on_request(self.path)
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404)
            elif callable(data):
                data(self)
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _cut_off(data):
    """A handler that promises all of `data` but hangs up halfway through."""

    def send(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])
        handler.wfile.flush()
        handler.close_connection = True

    return send


# ----------------------------------------------------------------------------- MNIST


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
        load_mnist()  # the real mirrors, through pooch and requests, with name lookups failing
    message = str(info.value)
    assert time.perf_counter() - start < 5
    for words in ["TINYTORCH_DATA", str(offline), datasets.MNIST_URL, *datasets.MNIST_FILES, "offline"]:
        assert words in message
    assert datasets.MNIST_MIRRORS[0] in message  # the URL that could not be reached
    assert info.value.__suppress_context__  # no requests/urllib3 traceback chained under ours
    assert os.listdir(offline) == []  # no partial downloads left behind


def test_download_skips_bad_mirror_and_writes_atomically(real_dir, offline, server, monkeypatch):
    # The shared .gz files were re-compressed, so we serve them as "official" by patching their MD5s in.
    served = {name: (real_dir / name).read_bytes() for name in datasets.MNIST_FILES}
    monkeypatch.setattr(
        datasets,
        "MNIST_FILES",
        {name: (hashlib.md5(served[name]).hexdigest(), md5s[1]) for name, md5s in datasets.MNIST_FILES.items()},
    )
    monkeypatch.setattr(
        datasets, "MNIST_MIRRORS", [f"{server.url}/bad/mnist/", f"{server.url}/good/mnist/", datasets.MNIST_URL]
    )
    for name, data in served.items():
        server.files[f"/bad/mnist/{name}"] = data[:1000] + b"X" + data[1001:]  # corrupted bytes
        server.files[f"/good/mnist/{name}"] = data
    listings = []
    server.on_request = lambda path: listings.append((path.rsplit("/", 1)[1], os.listdir(offline)))

    (x_train, y_train), (x_test, y_test) = load_mnist()
    assert x_train.shape == (60000, 784) and np.bincount(y_test).tolist() == TEST_COUNTS
    assert server.requests == [f"/{m}/mnist/{name}" for name in served for m in ("bad", "good")]
    for name, listing in listings:  # while a file downloads: a temp file, never the real name
        unfinished = [f for f in listing if f not in served]
        assert name not in listing and len(unfinished) == 1
    assert sorted(os.listdir(offline)) == sorted(served)  # the bad bytes left nothing behind
    assert all((offline / name).read_bytes() == data for name, data in served.items())


def test_download_rejects_bad_bytes_from_every_mirror(offline, server, tmp_path):
    server.files["/a/f.gz"] = _cut_off(b"the file you wanted" * 1000)
    server.files["/c/f.gz"] = b"not the file you wanted"  # and /b/ answers 404
    mirrors = [f"{server.url}/{m}/" for m in "abc"]
    folder = tmp_path / "dl"
    with pytest.raises(DatasetError, match="(?s)/a/f.gz.*/b/f.gz.*404.*/c/f.gz.*MD5") as info:
        datasets.download("f.gz", folder, mirrors, md5=hashlib.md5(b"the file you wanted" * 1000).hexdigest())
    assert "no mirror delivered a good f.gz" in str(info.value) and os.listdir(folder) == []


def test_download_replaces_a_corrupt_cached_file_and_keeps_a_good_one(offline, server, tmp_path):
    data = b"good bytes" * 100
    server.files["/m/f.gz"] = data
    (tmp_path / "f.gz").write_bytes(b"half a download")
    assert datasets.download("f.gz", tmp_path, [f"{server.url}/m/"], hashlib.md5(data).hexdigest()).read_bytes() == data
    datasets.download("f.gz", tmp_path, [f"{server.url}/m/"], hashlib.md5(data).hexdigest())
    assert server.requests == ["/m/f.gz"]  # the second call found the right MD5 and did not download
    assert os.listdir(tmp_path) == ["f.gz"]


# ----------------------------------------------------------------------------- CIFAR-10

CIFAR_MEANS = (125.3, 123.0, 113.9)  # well-known per-channel means of the training images (R, G, B)
SMALL = 6  # images per batch file in the synthetic archives (the real ones have 10,000)


@pytest.fixture
def small_cifar(monkeypatch):
    """Synthetic CIFAR-10: known NHWC images and labels, SMALL per batch file, and writers for both layouts."""
    monkeypatch.setattr(datasets, "CIFAR10_PER_FILE", SMALL)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6 * SMALL, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 6 * SMALL).astype(np.int64)
    return types.SimpleNamespace(
        x=x, y=y, train=(x[: 5 * SMALL], y[: 5 * SMALL]), test=(x[5 * SMALL :], y[5 * SMALL :])
    )


def _batches(small):
    """(name, images, labels) of the six batch files, images still NHWC."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return [
        (name, small.x[i * SMALL : (i + 1) * SMALL], small.y[i * SMALL : (i + 1) * SMALL])
        for i, name in enumerate(names)
    ]


def _chw(images):
    """Images as the archives store them: per image 1024 red, 1024 green, 1024 blue bytes."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def _binary_members(small, record_extra=b""):
    members = {}
    for name, images, labels in _batches(small):
        records = np.concatenate([labels.astype(np.uint8)[:, None], _chw(images)], axis=1)
        members[f"cifar-10-batches-bin/{name}.bin"] = b"".join(r.tobytes() + record_extra for r in records)
    members["cifar-10-batches-bin/batches.meta.txt"] = "\n".join(datasets.CIFAR10_CLASSES).encode()
    return members


def _python_members(small, edit=lambda batch: batch):
    members = {}
    for name, images, labels in _batches(small):
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels.tolist(),
            b"data": _chw(images),
            b"filenames": [b"x.png"] * SMALL,
        }
        members[f"cifar-10-batches-py/{name}"] = pickle.dumps(edit(batch), protocol=2)  # as the official ones
    return members


def _tar_gz(path, members, extra=()):
    """Write a .tar.gz holding `members` (name -> bytes) plus `extra` TarInfo entries without data."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def test_cifar10_real_data(real_cifar_dir):
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = load_cifar10(real_cifar_dir)
    print(f"CIFAR-10 loaded in {time.perf_counter() - start:.1f} s")
    assert x_train.shape == (50000, 32, 32, 3) and x_test.shape == (10000, 32, 32, 3)
    assert x_train.dtype == x_test.dtype == np.uint8 and y_train.dtype == y_test.dtype == np.int64
    assert np.bincount(y_train).tolist() == [5000] * 10 and np.bincount(y_test).tolist() == [1000] * 10
    assert x_train.min() == 0 and x_train.max() == 255
    # Channels in RGB order and last: a CHW/HWC mix-up would blur these three means together.
    assert np.allclose(x_train.reshape(-1, 3).mean(axis=0), CIFAR_MEANS, atol=1.5)
    batch = to_float(x_test[:100])
    assert batch.dtype == np.float32 and batch.shape == (100, 32, 32, 3) and batch.min() == 0.0 and batch.max() <= 1.0
    assert np.array_equal(batch * np.float32(255), x_test[:100])  # exact: k/255*255 rounds back to k

    start = time.perf_counter()
    again = load_cifar10(real_cifar_dir)[0][0]
    assert time.perf_counter() - start < 0.05 and np.shares_memory(again, x_train)
    for a in (x_train, y_train, x_test, y_test):
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 0


@pytest.mark.parametrize("archive", [CIFAR10_BINARY, CIFAR10_PYTHON])
def test_cifar10_both_layouts_decode_to_the_same_images(archive, small_cifar, tmp_path):
    members = _binary_members(small_cifar) if archive == CIFAR10_BINARY else _python_members(small_cifar)
    _tar_gz(tmp_path / archive, members)
    (x_train, y_train), (x_test, y_test) = load_cifar10(tmp_path)
    for got, want in [(x_train, small_cifar.train[0]), (y_train, small_cifar.train[1])]:
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert np.array_equal(x_test, small_cifar.test[0]) and np.array_equal(y_test, small_cifar.test[1])
    assert not x_train.flags.writeable


class _Pwn:
    """Unpickling this would create a folder: the classic 'a pickle runs code' payload, made harmless."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_cifar10_python_archive_runs_no_code(small_cifar, tmp_path):
    target = tmp_path / "pwned"
    _tar_gz(tmp_path / "data" / CIFAR10_PYTHON, _python_members(small_cifar, lambda b: {**b, b"x": _Pwn(target)}))
    with pytest.raises(DatasetError, match="refusing to load posix.mkdir") as info:
        load_cifar10(tmp_path / "data")
    assert "cifar-10-batches-py/data_batch_1" in str(info.value) and not target.exists()


def _flip_middle_byte(data):
    return data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1 :]


BROKEN_CIFAR = {  # case -> (archive bytes from the good archive's bytes, or members to write, expected words)
    "truncated": (lambda good: good[: len(good) * 2 // 3], "not a readable .tar.gz"),
    "corrupt byte": (_flip_middle_byte, "not a readable .tar.gz"),
    "not gzip": (lambda good: b"<html>503 Service Unavailable</html>", "not a readable .tar.gz"),
    "not tar": (lambda good: gzip.compress(b"hello" * 1000), "not a readable .tar.gz"),
    "record size": (
        lambda small: _binary_members(small, record_extra=b"\0"),
        f"data_batch_1.bin has {SMALL * 3074:,} bytes, i.e. records of 3,074 bytes; expected {SMALL} records of 3,073",
    ),
    "label 10": (
        lambda small: {**_binary_members(small), "cifar-10-batches-bin/test_batch.bin": b"\x0a" * (SMALL * 3073)},
        "test_batch.bin: label 10 at record 0, expected 0-9",
    ),
    "member missing": (
        lambda small: {k: v for k, v in _binary_members(small).items() if "data_batch_3" not in k},
        "no member cifar-10-batches-bin/data_batch_3.bin",
    ),
}


@pytest.mark.parametrize("case", BROKEN_CIFAR)
def test_cifar10_broken_archive_names_the_file(case, small_cifar, tmp_path):
    make, words = BROKEN_CIFAR[case]
    path = tmp_path / CIFAR10_BINARY
    if case in ("record size", "label 10", "member missing"):
        _tar_gz(path, make(small_cifar))
    else:
        path.write_bytes(make(_tar_gz(path, _binary_members(small_cifar)).read_bytes()))
    with pytest.raises(DatasetError, match=words) as info:
        load_cifar10(tmp_path)
    assert str(path) in str(info.value) and "Delete it" in str(info.value)


def _link(kind, name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


UNSAFE = {  # case -> extra tar entries
    "dot-dot": [tarfile.TarInfo("../evil")],
    "dot-dot inside": [tarfile.TarInfo("cifar-10-batches-bin/../../evil")],
    "absolute": [tarfile.TarInfo("/tmp/tinytorch-test-evil")],
    "symlink": [_link(tarfile.SYMTYPE, "cifar-10-batches-bin/evil", "/etc/passwd")],
    "hard link": [_link(tarfile.LNKTYPE, "cifar-10-batches-bin/evil", "/etc/passwd")],
    "symlink as a batch": [_link(tarfile.SYMTYPE, "cifar-10-batches-bin/data_batch_1.bin", "../../evil")],
}


@pytest.mark.parametrize("case", UNSAFE)
def test_cifar10_unsafe_member_is_rejected_and_nothing_written(case, small_cifar, tmp_path):
    members = _binary_members(small_cifar)
    if case == "symlink as a batch":
        del members["cifar-10-batches-bin/data_batch_1.bin"]
    data = tmp_path / "data"
    path = _tar_gz(data / CIFAR10_BINARY, members, extra=UNSAFE[case])
    before = {p: sorted(os.listdir(p)) for p in (tmp_path.parent, tmp_path, data)}
    with pytest.raises(DatasetError, match="refusing to read it") as info:
        load_cifar10(data)
    assert str(path) in str(info.value) and repr(UNSAFE[case][0].name) in str(info.value)
    assert {p: sorted(os.listdir(p)) for p in before} == before
    assert not Path("/tmp/tinytorch-test-evil").exists()


def test_cifar10_missing_in_named_dir_is_reported_not_downloaded(offline, tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(DatasetError, match="from the data_dir argument") as info:
        load_cifar10(tmp_path / "mine")
    assert CIFAR10_BINARY in str(info.value) and "TINYTORCH_DATA" in str(info.value)
    assert "offline" not in str(info.value)


def test_cifar10_offline_without_data_is_one_clear_error(offline):
    start = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        load_cifar10()
    message = str(info.value)
    assert time.perf_counter() - start < 5
    cache = offline.parent / "cifar10"
    for words in [
        "TINYTORCH_DATA",
        str(cache),
        datasets.CIFAR10_MIRRORS[0] + CIFAR10_BINARY,
        CIFAR10_BINARY,
        "offline",
    ]:
        assert words in message
    assert info.value.__suppress_context__
    assert os.listdir(cache) == []


def test_cifar10_downloads_into_the_cache_with_md5(offline, server, small_cifar, tmp_path, monkeypatch):
    good = _tar_gz(tmp_path / "served" / CIFAR10_BINARY, _binary_members(small_cifar)).read_bytes()
    monkeypatch.setattr(datasets, "CIFAR10_MIRRORS", [f"{server.url}/kriz/"])
    monkeypatch.setattr(datasets, "CIFAR10_MD5", {CIFAR10_BINARY: hashlib.md5(good).hexdigest()})
    server.files[f"/kriz/{CIFAR10_BINARY}"] = _flip_middle_byte(good)
    with pytest.raises(DatasetError, match="MD5") as info:
        load_cifar10()  # wrong bytes from the only mirror: rejected by pooch, never opened
    assert "could not be downloaded" in str(info.value) and os.listdir(offline.parent / "cifar10") == []
    server.files[f"/kriz/{CIFAR10_BINARY}"] = good
    (x_train, y_train), (x_test, y_test) = load_cifar10()
    assert np.array_equal(x_train, small_cifar.train[0]) and np.array_equal(y_test, small_cifar.test[1])
    assert (offline.parent / "cifar10" / CIFAR10_BINARY).read_bytes() == good
