"""A fault that cannot fire is refused; one that panics but cannot roll back says so."""

import logging

import pytest
from telemetry_schema import read_run

from esper.cli import main
from esper.leyline.config import GovernorConfig
from esper.session import run_training
from esper.tolaria.faults import FaultSpec

from test_end_to_end import small_spec


@pytest.mark.parametrize("argv,needle", [
    (["--epochs", "40", "--inject-fault", "nan@41"], "nan@41: the run has only 40 epochs"),
    (["--epochs", "5", "--inject-fault", "spike@9"], "spike@9: the run has only 5 epochs"),
    (["--inject-fault", "spike@5"], "needs 10 epochs of loss history first (use spike@11 or later)"),
    (["--inject-fault", "spike@10"], "use spike@11"),
])
def test_faults_that_cannot_fire_are_one_line_errors(argv, needle, tmp_path, capsys):
    assert main(["train", "--runs-dir", str(tmp_path)] + argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())  # refused before any run began


def test_check_follows_the_governor_config():
    assert FaultSpec("spike", 4).check(10, GovernorConfig(min_history=3)) == []
    with pytest.raises(ValueError, match="spike@11 or later"):
        FaultSpec("spike", 10).check(40, GovernorConfig())
    assert FaultSpec("nan", 1).check(1, GovernorConfig()) == []
    assert FaultSpec("spike", 11).check(13, GovernorConfig()) == []


def test_a_spike_cut_short_by_the_end_warns_and_panics_without_rollback(tmp_path, caplog):
    spec = small_spec(tmp_path, epochs=12, fault=FaultSpec("spike", 11), controller="none")
    with caplog.at_level(logging.WARNING, logger="esper.session"):
        out = run_training(spec)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["--inject-fault spike@11: 2 spiked epoch(s) before the run ends (or the spike ends); "
                        "the governor will panic but not roll back, which takes 3 anomalies in a row"]
    log = read_run(out.run_dir)
    assert [p["consecutive"] for p in log.rows("governor_panic")] == [1, 2]  # the warning told the truth
    assert log.rows("governor_rollback") == []
