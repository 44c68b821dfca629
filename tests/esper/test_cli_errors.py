"""Bad input to `esper train` / `esper ppo` that used to print tracebacks: one line, exit 2, no run."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections import OrderedDict

import pytest
import torch

from esper.cli import main
from esper.kasmina.blueprints import blueprint_names
from esper.tamiyo.policy import ActionSpace, PolicyNetwork
from esper.tamiyo.policy.bridge import PolicyBridge

TINY = ["--epochs", "1", "--train-size", "64", "--val-size", "32", "--batch-size", "32"]
SLOTS = ("block0", "block1", "block2")  # the synthetic-images CNN host


def _policy(path, topology="cnn", obs_dim=None) -> None:
    """A valid checkpoint for the default task, as `esper ppo` writes it (or one whose network
    reads ``obs_dim`` features, consistently in its weights)."""
    space = ActionSpace(SLOTS, tuple(blueprint_names(topology)))
    obs_dim = obs_dim or PolicyBridge(space, topology).obs_dim
    net = PolicyNetwork(obs_dim, space)
    net.save(path, {"task": "synthetic-images", "topology": topology, "features": {}, "rounds": 1})


def _edited(path, **changes) -> None:
    _policy(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt.update(changes)
    torch.save(ckpt, path)


def _wrong_shape(path) -> None:
    _policy(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["encoder.0.weight"] = torch.zeros(5, 3)
    torch.save(ckpt, path)


def _zip_not_checkpoint(path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")


class Arbitrary:
    """An object only a full (code-running) unpickling can rebuild."""


BAD_POLICIES = {
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "random bytes": (lambda p: p.write_bytes(os.urandom(4096)), "not a policy checkpoint"),
    "zip, not a checkpoint": (_zip_not_checkpoint, "not a policy checkpoint"),
    "wrong shape": (_wrong_shape, "size mismatch"),
    "needs weights_only=False": (lambda p: torch.save({"net": Arbitrary()}, p), "unsafe load"),
    "plain pickle": (lambda p: p.write_bytes(pickle.dumps(OrderedDict(a=Arbitrary()))), "not a policy checkpoint"),
    "a list": (lambda p: torch.save([1, 2], p), "holds a list"),
    "another model's state dict": (lambda p: torch.save({"w": torch.zeros(2)}, p), "no state_dict"),
    "wrong observation width": (lambda p: _policy(p, obs_dim=7), "observation features"),
    "absurd widths": (lambda p: _edited(p, network={"hidden": 10**12}), "out of range"),
    "another topology": (lambda p: _policy(p, topology="transformer"), "transformer host"),
    "a directory": (lambda p: p.mkdir(), "not found"),
}


def _one_line_error(capsys, code, needle) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("esper: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err
    return err


@pytest.mark.parametrize("variant", list(BAD_POLICIES))
def test_a_bad_policy_checkpoint_is_one_line_before_any_run(tmp_path, capsys, variant):
    make, needle = BAD_POLICIES[variant]
    path = tmp_path / "policy.pt"
    make(path)
    code = main(["train", *TINY, "--controller", f"policy:{path}", "--runs-dir", str(tmp_path / "runs")])
    _one_line_error(capsys, code, needle)
    assert not list((tmp_path / "runs").glob("*"))  # refused before a run directory was made


def test_a_good_policy_checkpoint_still_drives_a_run(tmp_path, capsys):
    path = tmp_path / "policy.pt"
    _policy(path)
    assert main(["train", *TINY, "--controller", f"policy:{path}", "--runs-dir", str(tmp_path / "runs")]) == 0


def _blocked_runs_dirs(tmp_path) -> dict[str, tuple[str, str]]:
    (tmp_path / "a-file").write_text("x")
    return {
        "a regular file": (str(tmp_path / "a-file"), "not a directory"),
        "inside a regular file": (str(tmp_path / "a-file" / "runs"), "Not a directory"),
        "under /sys": ("/sys/esper-runs", "cannot create run directories"),
        "under /proc": ("/proc/x", "cannot create run directories"),
    }


@pytest.mark.parametrize("command", [["train", *TINY], ["ppo", "--rounds", "1", "--envs", "1"]])
@pytest.mark.parametrize("where", ["a regular file", "inside a regular file", "under /sys", "under /proc"])
def test_a_runs_dir_that_cannot_hold_runs_is_one_line(tmp_path, capsys, command, where):
    runs_dir, needle = _blocked_runs_dirs(tmp_path)[where]
    if where.startswith("under") and not os.path.isdir(runs_dir.rsplit("/", 1)[0]):
        pytest.skip(f"no {runs_dir.rsplit('/', 1)[0]} on this system")
    code = main([*command, "--runs-dir", runs_dir])
    _one_line_error(capsys, code, needle)
