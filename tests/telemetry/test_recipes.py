"""Every recipe of telemetry_schema/README.md's "Reading a log without Esper" runs as written,
in a fresh process that never imports Esper, on a real run (and the torn-tail recipe on a
stream cut short)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from telemetry_schema.rundir import read_run
from telemetry_schema.synth import SynthConfig, generate

README = Path(__file__).resolve().parents[2] / "telemetry_schema" / "README.md"


def recipes() -> list[str]:
    section = README.read_text().split("## Reading a log without Esper", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipes")
    generate(out, SynthConfig(events=3000, seed=5, run_id="my-run"))
    return out


def run_recipe(code: str, cwd: Path, probe: str) -> str:
    code += f"\n{probe}\nimport sys\nassert not any(m.split('.')[0] in ('esper', 'telemetry_schema') for m in sys.modules)\n"
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_the_readme_has_the_recipes():
    assert len(recipes()) == 5


@pytest.mark.parametrize("index, probe, expected", [
    (0, "print(len(gates), len(failed))", lambda log: f"{len(log.rows('gate_evaluated'))} "
        f"{sum(not g['passed'] for g in log.rows('gate_evaluated'))}"),
    (2, "print(len(stages))", lambda log: str(len(log.rows("stage_changed")))),
    (3, "print(epochs.epoch.dtype, int(best.epoch))", lambda log: "int32 " + str(
        max(log.rows("epoch_completed"), key=lambda r: r["val_acc"])["epoch"])),
])
def test_each_recipe_runs_as_written(run, index, probe, expected):
    out = run_recipe(recipes()[index].replace("runs/my-run", str(run / "my-run")), run, probe)
    assert out.split("\n")[-2] == expected(read_run(run / "my-run"))


def test_the_many_ranks_recipe_reads_every_rank(tmp_path):
    from telemetry_schema import events as ev
    from telemetry_schema.rundir import create_run

    for rank in (0, 1):
        started = ev.RunStarted(run_id="my-run", task="t", topology="cnn", host_params=1, world_size=2)
        with create_run(tmp_path, started, rank=rank) as rw:
            for epoch in (1, 2, 3):
                rw.writer.emit(ev.EpochCompleted(train_loss=1, train_acc=1, val_loss=1, val_acc=rank), epoch=epoch)
    code = recipes()[1].replace("runs/my-run", str(tmp_path / "my-run"))
    out = run_recipe(code, tmp_path, "print(epochs.height, sorted(set(epochs['rank'].to_list())))")
    assert out.strip() == "6 [0, 1]"


def test_the_torn_tail_recipe_reads_every_whole_batch(tmp_path):
    from telemetry_schema import events as ev
    from telemetry_schema.rundir import create_run

    with create_run(tmp_path, ev.RunStarted(run_id="my-run", task="t", topology="cnn", host_params=1)) as rw:
        for flush in range(4):
            for i in range(10):
                rw.writer.scalar("loss", float(flush * 10 + i))
            rw.writer.flush()
    stream = tmp_path / "my-run" / "events" / "scalar.rank0.arrows"
    stream.write_bytes(stream.read_bytes()[:-30])  # the last batch cut short
    assert read_run(stream).torn_bytes > 0
    code = recipes()[4].replace("runs/my-run", str(tmp_path / "my-run"))
    out = run_recipe(code, tmp_path, "print(scalars.num_rows, scalars['value'].to_pylist()[-1])")
    assert out.split() == ["30", "29.0"]
