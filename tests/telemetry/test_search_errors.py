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
