"""The run header: id, task, status, progress, timing, rates, freshness and log integrity,
and for multi-rank or multi-env runs the rank and environment shown and any rank divergence."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from telemetry_schema.runmodel import RunModel, divergences
from telemetry_schema.status import progress, run_status, usage
from tui import fmt


def silent_ranks(session: RunModel, now: float) -> list[int]:
    """Ranks with no event for a while (only while following a run that has not finished)."""
    st = session.state
    if session.replay is not None or st.end_status is not None:
        return []
    return st.ranks.silent(now, max(30.0, 6 * st.heartbeat_s))


def scope_label(session: RunModel) -> str:
    """'rank 1/2  env 3/4' (or 'env all/4'): what the panels show; '' for a one-rank, one-env run."""
    scope = session.pending or session.scope
    parts = []
    if session.multi_rank:
        parts.append(f"rank {scope.rank}/{len(session.ranks)}")
    if session.multi_env:
        parts.append(f"env {'all' if scope.env is None else scope.env}/{len(session.envs)}")
    return "  ".join(parts)


def header_text(session: RunModel, now: float, target: str) -> Text:
    """Two lines describing the run as of the cursor (live: as of ``now``)."""
    st = session.state
    replaying = session.replay is not None
    # a replay shows the run as it was at the cursor; following, as it is now
    status = run_status(st, st.last_wall if replaying and st.last_wall else now)
    if not session.loaded:
        status = "loading"
    elif st.events == 0 and session.length == 0:
        status = "waiting"
    top = Text()
    top.append(fmt.plain(st.run_id or session.manifest.get("run_id") or target), style="bold")
    top.append(f"  {fmt.plain(st.task or session.manifest.get('task', ''))}  ")
    top.append(f" {status} ", style=fmt.STATUS_STYLES.get(status, "bold") + " reverse")
    prog = progress(st, now)
    top.append(f"  {prog.label()}  step {fmt.si(st.step)}")
    shown = scope_label(session)
    if shown:
        top.append(f"  {shown}", style="bold cyan")
        if session.pending is not None:
            top.append(" folding…", style="yellow")
    bottom = Text(style="grey70")
    end = st.last_wall if (replaying or st.end_status or status == "crashed") else now
    elapsed = end - session.start_wall if end is not None and session.start_wall is not None else None
    bottom.append(f"elapsed {fmt.duration(elapsed)}")
    if prog.left_s is not None and not replaying:
        bottom.append(f" · left {fmt.duration(prog.left_s)}")
    for name, value in usage(st).parts():
        bottom.append(f" │ {name} {value}")
    sps = st.batches.last("samples_per_s")
    bottom.append(f" │ {fmt.si(sps) if sps is not None else '—'} samples/s")
    rate = session.events_per_s(now)
    bottom.append(f" │ {fmt.si(rate) if rate is not None else '—'} ev/s")
    bottom.append(f" │ {fmt.si(st.events)} events")
    if not replaying and st.last_wall is not None and st.end_status is None:
        age = now - st.last_wall
        bottom.append(f" │ data {fmt.duration(age)} old", style="yellow" if age > 3 * st.heartbeat_s else "")
    ranks = st.ranks
    if ranks.count > 1:
        silent = silent_ranks(session, now)
        bottom.append(f" │ {ranks.count} ranks", style="bold red" if ranks.divergence or silent else "")
        if silent:
            bottom.append(f" silent: {','.join(map(str, silent))}", style="bold red")
        if ranks.divergence:
            found = divergences(ranks)
            where = ": " + ", ".join(d.short() for d in found) if found else ""
            bottom.append(fmt.plain(f" DIVERGED{where}"), style="bold red")
    if session.corrupt:
        bottom.append(f" │ CORRUPT: {fmt.plain(session.corrupt[0])}", style="bold red")
    elif session.torn_bytes:
        bottom.append(f" │ torn tail {session.torn_bytes} B", style="bold yellow")
    else:
        bottom.append(" │ log intact", style="green")
    lines = [top, bottom]
    if replaying:
        replay = Text()
        replay.append(" ▶ PLAYING " if session.playing else " ❚❚ PAUSED ", style="bold reverse magenta")
        replay.append(f" event {session.cursor:,}/{session.length:,}  ×{session.speed}/tick", style="bold magenta")
        replay.append("  space play · ./, step · ]/[ epoch · p/P panic · x/X gate fail · s/S stage",
                      style="grey62")
        lines.append(replay)
    text = Text("\n").join(lines)
    text.no_wrap, text.overflow = True, "ellipsis"
    return text


class RunHeader(Static):
    """Two lines at the top of the main screen."""

    def show(self, session: RunModel, now: float, target: str) -> None:
        self.update(header_text(session, now, target))
