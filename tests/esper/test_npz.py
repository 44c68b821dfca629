"""The arrays task (--task npz:PATH): the host by x's shape, training-split normalisation,
one-line errors for every kind of bad file, and short runs on each host."""

from __future__ import annotations

import json

import numpy as np
import pytest

from telemetry_schema import read_run

from esper.cli import main
from esper.runtime.npz import NpzError, infer_kind, load_npz
from esper.runtime.tasks import TaskOptions, build_task

EAGER = "min_epoch=1,plateau_window=1,plateau_pp=100,stable_window=1,stable_rel_change=10,hold_decide_epochs=1"


def learnable(kind: str, n: int, seed: int, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A task a small host learns in a few epochs: the class is the brightest channel (images),
    the frequency (signals) or the largest of the first ``classes`` features."""
    g = np.random.default_rng(seed)
    y = g.integers(0, classes, n)
    if kind == "image":  # (N, 3, 8, 8)
        x = 0.5 * g.normal(size=(n, 3, 8, 8))
        x[np.arange(n), y] += 1.0
        return (x * 40 + 100).astype(np.uint8), y
    if kind == "signal":  # (N, 2, 32): a sine of frequency 1 + class, random phase, noise
        t = np.arange(32)
        phase = g.uniform(0, 2 * np.pi, (n, 1))
        wave = np.sin(2 * np.pi * (1 + y[:, None]) * t / 32 + phase)
        x = np.stack([wave, 0.3 * g.normal(size=(n, 32))], axis=1) + 0.2 * g.normal(size=(n, 2, 32))
        return x.astype(np.float32), y
    x = g.normal(size=(n, 12))  # features
    x[np.arange(n), y] += 2.0
    return (x * 5 + 10).astype(np.float64), y


def write(tmp_path, name="data.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def task_file(tmp_path, kind: str, val_key="val", n=240) -> str:
    x, y = learnable(kind, n, 0)
    xv, yv = learnable(kind, n // 2, 1)
    return write(tmp_path, f"{kind}.npz", x=x, y=y, **{f"x_{val_key}": xv, f"y_{val_key}": yv})


@pytest.mark.parametrize("shape, kind, expected", [
    ((10, 3, 8, 8), "auto", "image"), ((10, 28, 28), "auto", "image"), ((10, 2, 100), "auto", "signal"),
    ((10, 1, 7), "auto", "signal"), ((10, 12), "auto", "features"), ((10, 100), "signal", "signal"),
    ((10, 16, 16), "signal", "signal"), ((10, 2, 50), "image", "image"), ((10, 3, 4, 4), "features", "features"),
])
def test_kind_by_shape_and_override(shape, kind, expected):
    assert infer_kind(shape, kind) == expected


@pytest.mark.parametrize("shape, kind", [((10, 2, 3, 4, 5), "auto"), ((10, 5), "image"), ((10, 2, 3, 4), "signal")])
def test_shapes_no_host_takes(shape, kind):
    with pytest.raises(NpzError):
        infer_kind(shape, kind)


@pytest.mark.parametrize("kind, topology, host, x_shape", [
    ("image", "cnn", "CNNHost", (3, 8, 8)), ("signal", "conv1d", "Conv1dHost", (2, 32)),
    ("features", "mlp", "MLPHost", (12,)),
])
def test_each_kind_gets_its_host(tmp_path, kind, topology, host, x_shape):
    task = build_task(f"npz:{task_file(tmp_path, kind)}", TaskOptions(batch_size=32))
    assert task.topology == topology and type(task.host).__name__ == host and task.num_classes == 3
    xb, yb = next(iter(task.train_loader))
    assert tuple(xb.shape[1:]) == x_shape and xb.dtype.is_floating_point and len(xb) == 32
    assert task.host(xb).shape == (32, 3)


def test_one_channel_images_and_signals_get_a_channel_axis(tmp_path):
    y = np.array([0, 1] * 10)
    img = load_npz(write(tmp_path, "i.npz", x=np.ones((20, 6, 6)), y=y, x_val=np.ones((4, 6, 6)), y_val=y[:4]))
    assert img.kind == "image" and img.x.shape == (20, 1, 6, 6)
    sig = load_npz(write(tmp_path, "s.npz", x=np.ones((20, 9)), y=y, x_test=np.ones((4, 9)), y_test=y[:4]), "signal")
    assert sig.kind == "signal" and sig.x.shape == (20, 1, 9) and sig.val_key == "x_test"


def test_normalisation_uses_the_training_split_only(tmp_path):
    g = np.random.default_rng(0)
    x = np.stack([g.normal(5, 2, 400), g.normal(-3, 0.5, 400), np.full(400, 7.0)], axis=1)
    x_val = x[:100] + 10.0  # shifted: its own statistics would hide the shift
    y = np.array([0, 1] * 200)
    data = load_npz(write(tmp_path, x=x, y=y, x_val=x_val, y_val=y[:100]))
    assert np.allclose(data.x.mean(axis=0), 0, atol=1e-5) and np.allclose(data.x[:, :2].std(axis=0), 1, atol=1e-4)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[2] = 1.0  # a constant feature keeps std 1
    assert np.allclose(data.x_val, (x_val - mean) / std, atol=1e-4)
    assert data.x_val.dtype == np.float32


def test_signal_normalisation_is_per_channel(tmp_path):
    x = np.stack([np.full((30, 16), 1.0), np.linspace(0, 100, 30 * 16).reshape(30, 16)], axis=1)
    y = np.array([0, 1, 2] * 10)
    data = load_npz(write(tmp_path, x=x, y=y, x_val=x[:3], y_val=y[:3]))
    assert data.kind == "signal"
    assert np.allclose(data.x[:, 0], 0.0) and abs(data.x[:, 1].mean()) < 1e-5
    assert data.x[:, 1].std() == pytest.approx(1.0, abs=1e-4)


Y = np.array([0, 1, 2, 1] * 5)
X = np.ones((20, 4))
BAD = {
    "missing split": dict(x=X, y=Y),
    "half a split": dict(x=X, y=Y, x_val=X),
    "missing y": dict(x=X, x_val=X, y_val=Y),
    "1-D x": dict(x=np.ones(20), y=Y, x_val=np.ones(20), y_val=Y),
    "5-D x": dict(x=np.ones((20, 1, 2, 2, 2)), y=Y, x_val=np.ones((20, 1, 2, 2, 2)), y_val=Y),
    "2-D labels": dict(x=X, y=np.ones((20, 2)), x_val=X, y_val=Y),
    "string x": dict(x=np.array([["a"] * 4] * 20), y=Y, x_val=X, y_val=Y),
    "complex x": dict(x=X.astype(complex), y=Y, x_val=X, y_val=Y),
    "NaN in x": dict(x=np.where(X > 0, np.nan, X), y=Y, x_val=X, y_val=Y),
    "string labels": dict(x=X, y=np.array(["cat"] * 20), x_val=X, y_val=Y),
    "fractional labels": dict(x=X, y=Y + 0.5, x_val=X, y_val=Y),
    "negative label": dict(x=X, y=Y - 1, x_val=X, y_val=Y),
    "val label unseen": dict(x=X, y=Y, x_val=X, y_val=Y + 1),
    "one class": dict(x=X, y=np.zeros(20, int), x_val=X, y_val=np.zeros(20, int)),
    "length mismatch": dict(x=X, y=Y[:10], x_val=X, y_val=Y),
    "empty val": dict(x=X, y=Y, x_val=X[:0], y_val=Y[:0]),
    "val feature mismatch": dict(x=X, y=Y, x_val=np.ones((20, 5)), y_val=Y),
    "wrong kind": "--npz-kind image",
}
MESSAGES = {
    "missing split": "has no validation split: expected keys x_val/y_val or x_test/y_test",
    "half a split": "(it has x_val alone)", "missing y": "needs keys 'x' and 'y'",
    "1-D x": "x has shape (20,)", "5-D x": "which host?", "2-D labels": "y has shape (20, 2)",
    "string x": "x has dtype <U1", "complex x": "x has dtype complex128", "NaN in x": "80 NaN or infinite",
    "string labels": "y has dtype <U3", "fractional labels": "y has non-integer values",
    "negative label": "negative label (-1)", "val label unseen": "y_val has label 3, outside the training labels 0..2",
    "one class": "single class", "length mismatch": "x has 20 samples but y has 10", "empty val": "x_val is empty",
    "val feature mismatch": "x_val samples are (5,), but x samples are (4,)",
    "wrong kind": "images are (N, H, W) or (N, C, H, W)",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arrays_are_one_line_errors_with_exit_2(tmp_path, capsys, case):
    arrays = BAD[case]
    extra = []
    if isinstance(arrays, str):
        extra, arrays = arrays.split(), dict(x=X, y=Y, x_val=X, y_val=Y)
    path = write(tmp_path, **arrays)
    rc = main(["train", "--task", f"npz:{path}", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith(f"esper: error: {path}: ") and err.count("\n") == 1, err
    assert MESSAGES[case] in err
    assert not (tmp_path / "runs").exists()  # refused before any run began


@pytest.mark.parametrize("content, message", [
    (None, "npz file not found"), (b"hello", "not an .npz archive (no zip signature)"),
    ("npy", "a single .npy array"), ("cut", "unreadable .npz (BadZipFile"),
    ("object", "holds Python objects"),
])
def test_missing_and_corrupt_files_are_one_line_errors(tmp_path, capsys, content, message):
    path = tmp_path / "f.npz"
    if content == "npy":
        with path.open("wb") as fh:
            np.save(fh, np.zeros(3))
    elif content == "cut":
        data = (tmp_path / "whole.npz")
        np.savez(data, x=X, y=Y, x_val=X, y_val=Y)
        path.write_bytes(data.read_bytes()[:300])
    elif content == "object":
        np.savez(path, x=np.array([1, "a"], dtype=object), y=Y, x_val=X, y_val=Y)
    elif content is not None:
        path.write_bytes(content)
    assert main(["train", "--task", f"npz:{path}", "--epochs", "1", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("kind, topology", [("image", "cnn"), ("signal", "conv1d"), ("features", "mlp")])
def test_a_short_run_on_each_host_learns_and_grows(tmp_path, kind, topology):
    path = task_file(tmp_path, kind, val_key="test")
    rc = main(["train", "--task", f"npz:{path}", "--epochs", "8", "--batch-size", "32", "--runs-dir",
               str(tmp_path / "runs"), "--run-name", kind, "--heuristic", EAGER])
    assert rc == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    log = read_run(run_dir)
    (started,) = log.rows("run_started")
    assert started["topology"] == topology and started["task"] == f"npz:{path}"
    assert json.loads(started["config_json"])["run"]["task_options"]["npz_kind"] == "auto"
    epochs = log.rows("epoch_completed")
    assert len(epochs) == 8 and all(np.isfinite(e["val_loss"]) for e in epochs)
    assert max(e["val_acc"] for e in epochs) > 60.0  # chance is 33 %: the labels reach the host intact
    germinated = log.rows("seed_germinated")
    assert germinated, "the eager heuristic germinated nothing"
    from esper.kasmina import BLUEPRINTS
    assert all(g["blueprint"] in BLUEPRINTS[topology] for g in germinated)
    assert log.rows("run_finished")[0]["status"] == "completed"
