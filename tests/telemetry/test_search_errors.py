"""A query the search cannot run is a one-line ``QueryError``, whatever engine refuses it."""

from __future__ import annotations

import pytest

from telemetry_schema.eventlog import EventLog
from telemetry_schema.rundir import read_run
from telemetry_schema.search import QueryError, parse, search
from telemetry_schema.synth import SynthConfig, generate


@pytest.mark.parametrize("query", ["/(?=a)/", "/(?<=a)b/", "/(a)\\1/"])
def test_regex_python_accepts_but_arrow_refuses_is_a_query_error(query):
    """Lookarounds and backreferences compile in Python's ``re`` but not in Arrow's RE2."""
    with pytest.raises(QueryError) as got:
        parse(query)
    assert "bad regular expression" in str(got.value) and "\n" not in str(got.value)


def test_search_with_such_a_regex_raises_query_error_not_arrow_invalid(tmp_path):
    log = EventLog(read_run(generate(tmp_path, SynthConfig(events=500, seed=1, run_id="r"))))
    with pytest.raises(QueryError):
        search(log, "kind:gate /(?=G2)/")
    assert len(search(log, "/G[0-9]/")) > 0  # a regex both engines take still runs


def test_quoted_values_keep_their_spaces_and_backslashes_stay_as_typed():
    from telemetry_schema import events as ev
    from telemetry_schema.eventlog import EventLog
    from telemetry_schema.reader import read_memory
    from telemetry_schema.search import QueryError, parse, quote, search
    from telemetry_schema.sinks import MemorySink
    from telemetry_schema.writer import EventWriter, WriterConfig

    sink = MemorySink()
    w = EventWriter(sink, config=WriterConfig(heartbeat_s=0), background=False)
    for slot in ("my slot", "my", "slot7"):
        w.emit(ev.StageChanged(from_stage="A", to_stage="B"), slot=slot)
    w.close()
    log = EventLog(read_memory(sink))
    assert len(search(log, f"slot={quote('my slot')}")) == 1
    assert len(search(log, "slot=my")) == 1
    assert len(search(log, r"/slot\d/")) == 1  # \d reaches the regex engine
    assert parse('to_stage:B "my slot"')[1].value == "my slot"
    with pytest.raises(QueryError, match="unbalanced quote"):
        parse('slot="open')
    with pytest.raises(QueryError, match="double quote"):
        quote('a"b')
