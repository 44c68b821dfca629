"""Log any training loop to an Esper run directory, with TensorBoard's habits. Torch-free.

    import esper.log

    with esper.log.Run("baseline", config={"lr": 3e-4}) as run:
        for step in range(100):
            run.scalar("train/loss", loss, step=step)

    from esper.log import SummaryWriter   # instead of torch.utils.tensorboard's SummaryWriter

A run is a directory ``runs_dir/<run_id>/`` made by ``telemetry_schema.rundir.create_run``:
run.json, ``run_started`` (with the config), heartbeats, and ``run_finished`` on every exit —
the end of a ``with`` block, ``close()``, an exception (status ``failed``), Ctrl-C, SIGTERM or
SIGHUP (``interrupted``: while a run is open, ``telemetry_schema.endings.exit_signals`` turns
those signals into ``RunInterrupted``, a KeyboardInterrupt, in the main thread), or, as a last
resort, interpreter exit without either (``atexit``). Runs opened without ``with`` should be
closed in the reverse order of their start, so each restores the signal handlers it found.
``esper-tui`` and ``esper-dashboard`` show it live and afterwards.

The run starts on first use (a scalar, a message, ``start()``, ``dir``), so a ``config()``
made before that is part of ``run_started``; one made later is added to run.json's config and
logged as a message. Values may be Python or numpy numbers, or anything with ``.item()`` (a
one-element torch tensor): read by duck typing, so this module never imports torch.
"""

from __future__ import annotations

import atexit
import json
import numbers
import platform
import sys
from pathlib import Path
from typing import Any, Mapping

from telemetry_schema import events as ev
from telemetry_schema.endings import ending, exit_signals
from telemetry_schema.rundir import RunWriter, create_run, new_run_id, validate_run_id
from telemetry_schema.reader import stream_files

__all__ = ["Run", "SummaryWriter", "as_number", "claim_run_dir"]


def as_number(value: Any, what: str) -> float:
    """``value`` as a float: a real number, or anything whose ``.item()`` is one (a numpy
    scalar, a one-element array or tensor). TypeError or ValueError with a one-line message
    for anything else (strings included: a metric is never parsed from text)."""
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes)):
        try:
            got = item()
        except (ValueError, RuntimeError, TypeError, IndexError) as exc:
            raise ValueError(f"{what}: expected a single number, got {type(value).__name__} "
                             f"({str(exc).splitlines()[0] if str(exc) else 'not one element'})") from None
        if isinstance(got, numbers.Real):
            return float(got)
        value = got
    raise TypeError(f"{what}: expected a number, got {type(value).__name__} {_short(value)}")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _jsonable(value: Any) -> Any:
    """A config value as JSON: numbers, strings, booleans and None kept, containers walked,
    one-element arrays/tensors as their number, anything else as its ``str``."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, numbers.Real):
        return float(value) if not isinstance(value, numbers.Integral) else int(value)
    try:
        return as_number(value, "config")
    except (TypeError, ValueError):
        return str(value)


def claim_run_dir(runs_dir: str | Path, name: str | None = None) -> Path:
    """Make and return ``runs_dir/<name>-<timestamp>`` (``-2``, ``-3``, ... appended while that is
    taken): made here, so two runs started in the same second never share a directory."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    base = new_run_id(name)
    for k in range(1, 10_000):
        run_dir = runs_dir / (base if k == 1 else f"{base}-{k}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        return run_dir
    raise FileExistsError(f"no free run id for {base!r} under {runs_dir}")


def _check_tag(tag: Any, what: str) -> str:
    if not isinstance(tag, str) or not tag:
        raise TypeError(f"{what}: the name must be a non-empty string, got {_short(tag)}")
    return tag


class Run:
    """One run directory that a training loop logs scalars and messages to.

    ``name`` prefixes the run id (a timestamp is appended, and ``-2``, ``-3``, ... when that id
    is taken); ``run_dir`` instead names the directory exactly (it must not already hold a
    run). ``config`` is the run's configuration (any JSON-able mapping). ``task`` is what the
    viewers show as the task (default: the name). ``heartbeat_s`` is the interval of the
    liveness events the viewers judge a silent run by.
    """

    def __init__(self, name: str | None = None, *, runs_dir: str | Path = "runs",
                 run_dir: str | Path | None = None, config: Mapping | None = None,
                 task: str | None = None, heartbeat_s: float = 5.0) -> None:
        if run_dir is not None:
            run_dir = Path(run_dir)
            validate_run_id(run_dir.name)
        if not heartbeat_s >= 0:
            raise ValueError(f"heartbeat_s must be >= 0, got {heartbeat_s!r}")
        self._name, self._runs_dir, self._fixed_dir = name, Path(runs_dir), run_dir
        self._task = task or name or (run_dir.name if run_dir is not None else "run")
        self._heartbeat_s = float(heartbeat_s)
        self._config: dict = {}
        self._rw: RunWriter | None = None
        self._closed = False
        if config is not None:
            self.config(config)

    # -- life ------------------------------------------------------------------------------

    def start(self) -> "Run":
        """Create the run directory and write ``run_started`` (once; later calls do nothing)."""
        if self._closed:
            raise ValueError("this run is closed")
        if self._rw is not None:
            return self
        started = dict(task=self._task, topology="", host_params=0, slot_ids=[],
                       config_json=json.dumps(self._config), python_version=platform.python_version(),
                       device="", heartbeat_s=self._heartbeat_s)
        runs_dir, run_id = self._claim_dir()
        self._rw = create_run(runs_dir, ev.RunStarted(run_id=run_id, **started))
        atexit.register(self._at_exit)
        self._signals = exit_signals()
        self._signals.__enter__()  # left in close(): stop signals close the run as 'interrupted'
        return self

    def _claim_dir(self) -> tuple[Path, str]:
        """(runs_dir, run_id) of a directory this run now owns."""
        d = self._fixed_dir
        if d is None:
            d = claim_run_dir(self._runs_dir, self._name)
        else:
            d.mkdir(parents=True, exist_ok=True)
            if stream_files(d) or any(d.glob("events*.arrows")):
                raise FileExistsError(f"{d} already holds a run; choose another directory")
        return d.parent, d.name

    def close(self, status: str = "completed", reason: str = "") -> None:
        """Write ``run_finished`` with ``status`` and close the log (once; a run never started
        is started first, so it still leaves a directory)."""
        if self._closed:
            return
        rw = self.start()._rw
        self._closed = True
        atexit.unregister(self._at_exit)
        try:
            rw.close(status, reason)
        finally:
            self._signals.__exit__(None, None, None)

    def _at_exit(self) -> None:
        """Interpreter exit with the run still open: failed if an exception went unhandled."""
        exc = getattr(sys, "last_value", None)
        self.close(*ending(type(exc), exc) if exc is not None else ("completed", "closed at exit"))

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(*ending(exc_type, exc))

    @property
    def dir(self) -> Path:
        """The run directory (starts the run if it has not started)."""
        return (self._rw or self.start()._rw).run_dir

    @property
    def run_id(self) -> str:
        return self.dir.name

    @property
    def closed(self) -> bool:
        return self._closed

    # -- logging ---------------------------------------------------------------------------

    def config(self, values: Mapping | None = None, /, **more: Any) -> None:
        """Add to the run's configuration. Before the run starts this goes into ``run_started``;
        after, into run.json's ``config`` and a ``log`` message (the viewers read the config of
        ``run_started``, so set it first where you can)."""
        if values is not None and not isinstance(values, Mapping):
            raise TypeError(f"config: expected a mapping, got {type(values).__name__}")
        added = _jsonable({**(values or {}), **more})
        self._config.update(added)
        if self._rw is not None and not self._closed:
            self._rw.manifest.setdefault("config", {}).update(added)
            self._rw.writer.log("info", "config " + json.dumps(added, sort_keys=True))

    def scalar(self, name: str, value: Any, step: int | None = None, *, epoch: int | None = None) -> None:
        """Log ``value`` under ``name`` (namespace it: 'train/loss'). ``step`` defaults to the
        last step given to this run (0 at first); ``epoch`` likewise."""
        _check_tag(name, "scalar")
        number = as_number(value, f"scalar {name!r}")
        w = self._writer()
        if step is not None:
            w.step = _as_int(step, "step")
        if epoch is not None:
            w.epoch = _as_int(epoch, "epoch")
        w.scalar(name, number)

    def scalars(self, values: Mapping[str, Any], step: int | None = None, *, epoch: int | None = None) -> None:
        """Log several scalars at one step (every value is checked before any is written)."""
        if not isinstance(values, Mapping):
            raise TypeError(f"scalars: expected a mapping of name -> number, got {type(values).__name__}")
        checked = {_check_tag(k, "scalars"): as_number(v, f"scalar {k!r}") for k, v in values.items()}
        for name, number in checked.items():
            self.scalar(name, number, step, epoch=epoch)

    def message(self, text: str, level: str = "info") -> None:
        """A free-form message in the run's event list."""
        if level not in ("debug", "info", "warning", "error"):
            raise ValueError(f"message level {level!r}: expected debug, info, warning or error")
        self._writer().log(level, str(text))

    def flush(self) -> None:
        """Write everything logged so far (viewers see it within a second or two without this)."""
        if self._rw is not None and not self._closed:
            self._rw.writer.flush()

    def _writer(self):
        if self._closed:
            raise ValueError("this run is closed")
        return self.start()._rw.writer


def _as_int(value: Any, what: str) -> int:
    number = as_number(value, what)
    if number != int(number):
        raise ValueError(f"{what}: expected an integer, got {value!r}")
    return int(number)


class SummaryWriter:
    """``torch.utils.tensorboard.SummaryWriter``'s scalar API, writing an Esper run.

    ``log_dir`` is the run directory (default ``runs/<comment-or-run>-<timestamp>``). The
    queue and flush arguments are accepted for compatibility and unused: the Esper writer
    flushes on its own every 0.25-2 s. ``walltime`` is accepted and unused: an event's time is
    when it was logged. Methods for images, histograms, graphs and the like are not provided.
    """

    def __init__(self, log_dir: str | Path | None = None, comment: str = "", purge_step: int | None = None,
                 max_queue: int = 10, flush_secs: int = 120, filename_suffix: str = "") -> None:
        if log_dir is not None:
            self.run = Run(run_dir=log_dir)
        else:
            self.run = Run(("run" + comment) if comment else None)
        self.run.start()

    def get_logdir(self) -> str:
        return str(self.run.dir)

    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None,
                   walltime: float | None = None, new_style: bool = False,
                   double_precision: bool = False) -> None:
        self.run.scalar(tag, scalar_value, global_step)

    def add_scalars(self, main_tag: str, tag_scalar_dict: Mapping[str, Any], global_step: int | None = None,
                    walltime: float | None = None) -> None:
        """Each value is logged as ``main_tag/tag`` (TensorBoard's names for them)."""
        _check_tag(main_tag, "add_scalars")
        if not isinstance(tag_scalar_dict, Mapping):
            raise TypeError("add_scalars: tag_scalar_dict must be a mapping of tag -> number")
        self.run.scalars({f"{main_tag}/{_check_tag(k, 'add_scalars')}": v for k, v in tag_scalar_dict.items()},
                         global_step)

    def add_hparams(self, hparam_dict: Mapping[str, Any], metric_dict: Mapping[str, Any],
                    hparam_domain_discrete: Mapping | None = None, run_name: str | None = None,
                    global_step: int | None = None) -> None:
        """The hyperparameters join the run's config (see ``Run.config``); each metric is logged
        as a scalar under its own name, and all of them go into run.json's ``hparam_metrics``."""
        if not isinstance(hparam_dict, Mapping) or not isinstance(metric_dict, Mapping):
            raise TypeError("add_hparams: hparam_dict and metric_dict must be dictionaries")
        for k, v in hparam_dict.items():
            _check_tag(k, "add_hparams")
            if not (v is None or isinstance(v, (str, bool))):
                as_number(v, f"hparam {k!r}")
        metrics = {_check_tag(k, "add_hparams"): as_number(v, f"metric {k!r}") for k, v in metric_dict.items()}
        self.run.config(hparam_dict)
        self.run.scalars(metrics, global_step)
        self.run._rw.manifest.setdefault("hparam_metrics", {}).update(metrics)

    def add_text(self, tag: str, text_string: str, global_step: int | None = None,
                 walltime: float | None = None) -> None:
        """Logged as a message ``tag: text``."""
        self.run.message(f"{_check_tag(tag, 'add_text')}: {text_string}")

    def flush(self) -> None:
        self.run.flush()

    def close(self) -> None:
        self.run.close()

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.run.close(*ending(exc_type, exc))

    def __getattr__(self, name: str):
        if name.startswith("add_"):
            raise AttributeError(f"esper.log.SummaryWriter has no {name}: it logs scalars, hparams "
                                 f"and text only")
        raise AttributeError(name)
