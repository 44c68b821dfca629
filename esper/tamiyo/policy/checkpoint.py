"""Reading a policy checkpoint (``policy.pt`` of ``esper ppo``) without trusting it.

A path given on the command line may hold anything: nothing, random bytes, a zip that is
not a checkpoint, a foreign model, a pickle that only an unsafe load would read. Every such
file becomes one ``CheckpointError`` line naming the file and what is wrong with it, never a
traceback from deep inside ``torch.load``.
"""

from __future__ import annotations

import math

import pickle
import warnings
from pathlib import Path

import torch

FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("state_dict", dict), ("obs_dim", int), ("slot_ids", (list, tuple)), ("blueprints", (list, tuple)),
    ("network", dict), ("extra", dict),
)
"""What ``PolicyNetwork.save`` writes: (key, the type its value must have)."""

MAX_OBS_DIM = 1 << 20
"""A bound on the observation width a checkpoint may claim (the network is built from it)."""
MAX_WIDTH = 1 << 16
"""A bound on each layer width of the ``network`` settings (the network is built from them)."""


class CheckpointError(ValueError):
    """A file that is not a usable policy checkpoint; the message is one line."""


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def load_file(path: Path) -> object:
    """``torch.load`` (weights only, on the CPU) of ``path``; any failure -> CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"policy checkpoint {path} not found (or not a regular file)")
    try:
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: empty file, not a policy checkpoint")
        with warnings.catch_warnings():  # torch warns about odd pickles it then refuses: one line is ours
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or _first_line(exc)})") from None
    except pickle.UnpicklingError as exc:
        why = ("it holds Python objects that only an unsafe load, which can run code, would read"
               if "can still be loaded" in str(exc) else "corrupt, or not written by torch.save")
        raise CheckpointError(f"{path}: not a policy checkpoint ({why})") from None
    except CheckpointError:
        raise
    except Exception as exc:  # a corrupt or foreign file fails in many ways inside torch.load
        raise CheckpointError(f"{path}: not a policy checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None


def read_checkpoint(path: str | Path) -> dict:
    """The dict ``PolicyNetwork.save`` wrote to ``path``, its fields checked; else CheckpointError."""
    path = Path(path)
    ckpt = load_file(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a policy checkpoint (it holds a {type(ckpt).__name__}, not a dict)")
    missing = [k for k, _ in FIELDS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a policy checkpoint of esper ppo (no {', '.join(missing)})")
    wrong = [k for k, t in FIELDS if not isinstance(ckpt[k], t)]
    if wrong:
        raise CheckpointError(f"{path}: not a policy checkpoint (wrong type of {', '.join(wrong)})")
    if not 0 < ckpt["obs_dim"] <= MAX_OBS_DIM:
        raise CheckpointError(f"{path}: not a policy checkpoint (obs_dim {ckpt['obs_dim']} out of range)")
    if not all(_setting_ok(k, v) for k, v in ckpt["network"].items()):
        raise CheckpointError(f"{path}: not a policy checkpoint (network settings {ckpt['network']!r} out of range)")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in ckpt["state_dict"].items()):
        raise CheckpointError(f"{path}: not a policy checkpoint (its state_dict holds more than named tensors)")
    names = list(ckpt["slot_ids"]) + list(ckpt["blueprints"])
    if not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: not a policy checkpoint (slot ids and blueprints must be names)")
    return ckpt


def _setting_ok(name, value) -> bool:
    """A network setting as ``NetworkConfig`` could hold it: a width (a positive int, at most
    MAX_WIDTH; the names without 'bias' or 'prior'), a count of inputs (an int, 0 to MAX_WIDTH;
    'inputs') or a finite initial logit or prior."""
    if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if "bias" in name or "prior" in name:
        return math.isfinite(value) and abs(value) <= 100
    return isinstance(value, int) and (0 if name.endswith("inputs") else 1) <= value <= MAX_WIDTH


def summarise_keys(keys: list[str], shown: int = 3) -> str:
    """'a, b, c and 40 more' (a checkpoint of another network misses dozens of keys)."""
    if not keys:
        return "-"
    head = ", ".join(keys[:shown])
    return head if len(keys) <= shown else f"{head} and {len(keys) - shown} more"
