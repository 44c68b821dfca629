"""Search terms name fields of the event catalogue, whether or not the log holds that kind yet."""

from __future__ import annotations

import pytest

from telemetry_schema import events as ev
from telemetry_schema.eventlog import EventLog
from telemetry_schema.rundir import create_run, read_run
from telemetry_schema.search import QueryError, search
from telemetry_schema.writer import WriterConfig


@pytest.fixture
def early_log(tmp_path) -> EventLog:
    """A run at its start: run_started and one epoch, no event about a slot, no governor event."""
    started = ev.RunStarted(run_id="early", task="t", topology="cnn", host_params=10, slot_ids=["r0c0"])
    with create_run(tmp_path, started, config=WriterConfig(heartbeat_s=0)) as run:
        run.writer.emit(ev.EpochCompleted(train_loss=1.0, train_acc=50.0, val_loss=1.0, val_acc=1.0), epoch=1)
    return EventLog(read_run(tmp_path / "early"))


@pytest.mark.parametrize("query", ["slot=r0c0", "seed:s1", "loss>10", "gate:G2 passed:false"])
def test_a_field_of_a_kind_not_yet_logged_matches_nothing(early_log, query):
    assert search(early_log, query).tolist() == []


def test_a_field_of_no_kind_is_still_an_error(early_log):
    with pytest.raises(QueryError, match="no event has a field 'sloot'"):
        search(early_log, "sloot=r0c0")
    assert search(early_log, "epoch=1 val_acc>0").tolist() == [1]  # the fields it has still match
