"""The arrays task, ``--task npz:PATH``: classification on arrays from a NumPy ``.npz`` file.

Keys: ``x`` and ``y`` (training), and ``x_val``/``y_val`` or, failing those, ``x_test``/``y_test``
(validation). ``y`` holds integer class labels 0..K-1 (K = the largest training label + 1;
floats are accepted when every value is a whole number). The shape of ``x`` picks the host:

    (N, C, H, W)          image                -> the CNN host
    (N, H, W)             image, square (H = W) -> the CNN host, one channel
    (N, C, L)             signal, otherwise    -> the 1-D convolutional host (conv1d)
    (N, F)                features             -> the MLP host
    (N, L)                signal only with ``kind="signal"`` (``--npz-kind signal``)

A 3-D ``x`` is ambiguous between grey images and multi-channel signals: square ones are images,
others signals. A 2-D ``x`` is read as flat features (tabular data is the common case). The
``kind`` option (``--npz-kind image|signal|features``) overrides both rules; ``features``
flattens any shape. Inputs are standardised with the training split's mean and standard
deviation (per channel for images and signals, per feature for features), never the validation
split's. Every problem with the file is a ValueError (FileNotFoundError when it is missing)
with a one-line message naming the file and the key.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from esper.kasmina.hosts import CNNConfig, CNNHost
from esper.kasmina.hosts1d import Conv1dConfig, Conv1dHost, MLPConfig, MLPHost

NPZ_KINDS = ("auto", "image", "signal", "features")
VAL_KEYS = (("x_val", "y_val"), ("x_test", "y_test"))
TOPOLOGY = {"image": "cnn", "signal": "conv1d", "features": "mlp"}
MAX_CLASSES = 100_000
"""Labels above this are refused: a head that large is a mistake, not a task."""


class NpzError(ValueError):
    """A problem with the arrays file: one line, naming the file."""


@dataclass(frozen=True)
class NpzData:
    """The arrays of a task, checked, shaped for their host and standardised."""

    kind: str
    # 'image' (N, C, H, W), 'signal' (N, C, L) or 'features' (N, F)
    num_classes: int
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    val_key: str
    # where the validation split came from: 'x_val' or 'x_test'


def load_npz(path: str | Path, kind: str = "auto") -> NpzData:
    """Read, check, shape and standardise the arrays of ``path`` (see the module docstring)."""
    path = Path(path)
    if kind not in NPZ_KINDS:
        raise NpzError(f"npz kind {kind!r}: expected one of {', '.join(NPZ_KINDS)}")
    arrays = _read(path)
    try:
        return _checked(arrays, kind)
    except NpzError as exc:
        raise NpzError(f"{path}: {exc}") from None


def _checked(arrays: dict[str, np.ndarray], kind: str) -> NpzData:
    if "x" not in arrays or "y" not in arrays:
        raise NpzError(f"needs keys 'x' and 'y'; it has {', '.join(sorted(arrays)) or 'none'}")
    val = next(((xk, yk) for xk, yk in VAL_KEYS if xk in arrays and yk in arrays), None)
    if val is None:
        alone = [k for pair in VAL_KEYS for k in pair if k in arrays]
        raise NpzError("has no validation split: expected keys x_val/y_val or x_test/y_test"
                       + (f" (it has {alone[0]} alone)" if alone else ""))
    x, x_val = (_inputs(arrays[k], k) for k in ("x", val[0]))
    y, y_val = (_labels(arrays[k], k) for k in ("y", val[1]))
    for xk, yk, xs, ys in (("x", "y", x, y), (*val, x_val, y_val)):
        if len(xs) != len(ys):
            raise NpzError(f"{xk} has {len(xs)} samples but {yk} has {len(ys)}")
        if len(xs) == 0:
            raise NpzError(f"{xk} is empty")
    if x_val.shape[1:] != x.shape[1:]:
        raise NpzError(f"{val[0]} samples are {x_val.shape[1:]}, but x samples are {x.shape[1:]}")
    kind = infer_kind(x.shape, kind)
    num_classes = _num_classes(y, y_val, val[1])
    x, x_val = standardise(_shape_for(kind, x), _shape_for(kind, x_val), kind)
    return NpzData(kind, num_classes, x, y, x_val, y_val, val[0])


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {path}")
    try:
        with path.open("rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise NpzError(f"{path}: unreadable ({_first_line(exc)})") from None
    if magic.startswith(b"\x93NUMPY"):
        raise NpzError(f"{path}: a single .npy array, not an .npz archive; save x, y, x_val, y_val with np.savez")
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise NpzError(f"{path}: not an .npz archive (no zip signature); save the arrays with np.savez")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise NpzError(f"{path}: holds Python objects (dtype object); store numeric arrays") from None
        raise NpzError(f"{path}: unreadable .npz ({_first_line(exc)})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise NpzError(f"{path}: unreadable .npz ({type(exc).__name__}: {_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _inputs(a: np.ndarray, key: str) -> np.ndarray:
    if a.dtype.kind not in "biuf":
        raise NpzError(f"{key} has dtype {a.dtype}; expected numbers (bool, int or float)")
    if a.ndim < 2:
        raise NpzError(f"{key} has shape {a.shape}; expected (N, ...) with at least one feature axis")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise NpzError(f"{key} has {int((~np.isfinite(a)).sum())} NaN or infinite values")
    return a


def _labels(a: np.ndarray, key: str) -> np.ndarray:
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise NpzError(f"{key} has shape {a.shape}; expected (N,) class labels")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or (a != np.round(a)).any():
            raise NpzError(f"{key} has non-integer values (dtype {a.dtype}); expected class labels 0..K-1")
    elif a.dtype.kind not in "biu":
        raise NpzError(f"{key} has dtype {a.dtype}; expected integer class labels")
    if len(a) and a.min() < 0:
        raise NpzError(f"{key} has a negative label ({a.min():g}); expected class labels 0..K-1")
    return a.astype(np.int64)


def _num_classes(y: np.ndarray, y_val: np.ndarray, val_key: str) -> int:
    k = int(y.max()) + 1
    if k > MAX_CLASSES:
        raise NpzError(f"y has label {k - 1}; more than {MAX_CLASSES} classes is not a task for this host")
    if len(np.unique(y)) < 2:
        raise NpzError(f"y holds a single class ({k - 1}); a classifier needs at least two")
    if int(y_val.max()) >= k:
        raise NpzError(f"{val_key} has label {int(y_val.max())}, outside the training labels 0..{k - 1}")
    return k


def infer_kind(shape: tuple[int, ...], kind: str = "auto") -> str:
    """'image', 'signal' or 'features' for a training array of ``shape`` (N first)."""
    nd = len(shape)
    if kind == "auto":
        if nd == 4:
            return "image"
        if nd == 3:
            return "image" if shape[1] == shape[2] else "signal"
        if nd == 2:
            return "features"
        raise NpzError(f"x has shape {shape}: which host? give the kind (image, signal or features)")
    if kind == "image" and nd not in (3, 4):
        raise NpzError(f"x has shape {shape}; images are (N, H, W) or (N, C, H, W)")
    if kind == "signal" and nd not in (2, 3):
        raise NpzError(f"x has shape {shape}; signals are (N, L) or (N, C, L)")
    return kind


def _shape_for(kind: str, a: np.ndarray) -> np.ndarray:
    """Add the channel axis of a one-channel image or signal; flatten features."""
    if kind == "features":
        return a.reshape(len(a), -1)
    if (kind == "image" and a.ndim == 3) or (kind == "signal" and a.ndim == 2):
        return a[:, None]
    return a


def standardise(x: np.ndarray, x_val: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(x - mean) / std of both splits, with the training split's statistics per channel
    (images, signals) or per feature; a constant channel or feature keeps std 1."""
    axes = (0,) if kind == "features" else tuple(i for i in range(x.ndim) if i != 1)
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x.std(axis=axes, keepdims=True, dtype=np.float64)
    std[std < 1e-12] = 1.0
    return tuple(((a - mean) / std).astype(np.float32) for a in (x, x_val))


def host_factory(data: NpzData):
    """A constructor of the host that suits the data."""
    shape = data.x.shape
    if data.kind == "image":
        pools = min(2, max(0, int(np.log2(min(shape[2:])))))
        return partial(CNNHost, CNNConfig(in_channels=shape[1], pool_blocks=pools, num_classes=data.num_classes))
    if data.kind == "signal":
        pools = min(2, max(0, int(np.log2(shape[2]))))
        return partial(Conv1dHost, Conv1dConfig(in_channels=shape[1], pool_blocks=pools,
                                                num_classes=data.num_classes))
    return partial(MLPHost, MLPConfig(in_features=shape[1], num_classes=data.num_classes))


def tensors(data: NpzData) -> tuple[torch.Tensor, ...]:
    """(x, y, x_val, y_val) as torch tensors."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (data.x, data.y, data.x_val, data.y_val))


def npz_task(name: str, opts) -> "Task":
    """The task ``npz:PATH`` (``name``) under ``TaskOptions`` ``opts`` (batch size, seed, kind)."""
    from esper.runtime.data import TensorLoader
    from esper.runtime.tasks import Task

    data = load_npz(name[len("npz:"):], opts.npz_kind)
    factory = host_factory(data)
    x, y, xv, yv = tensors(data)
    return Task(name, TOPOLOGY[data.kind], data.num_classes, False, factory(),
                TensorLoader(x, y, opts.batch_size, True, opts.seed), TensorLoader(xv, yv, 512),
                opts.batch_size, host_factory=factory)
