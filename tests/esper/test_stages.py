"""The transition table: illegal moves raise; random legal walks stay legal."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esper.leyline.stages import TRANSITIONS, IllegalTransition, SeedStage, check_transition

ALL = list(SeedStage)


@pytest.mark.parametrize("a", ALL)
@pytest.mark.parametrize("b", ALL)
def test_every_illegal_move_raises(a, b):
    if b in TRANSITIONS[a]:
        check_transition(a, b)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(a, b)


def test_table_matches_spec():
    S = SeedStage
    assert TRANSITIONS[S.HOLDING] == {S.FOSSILIZED, S.BLENDING, S.PRUNED}
    assert TRANSITIONS[S.FOSSILIZED] == frozenset()  # terminal, cannot be pruned
    assert TRANSITIONS[S.PRUNED] == {S.EMBARGOED}
    assert TRANSITIONS[S.RESETTING] == {S.DORMANT}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=40))
def test_random_legal_walks(choices):
    from esper.kasmina.protocol import InjectionSpec
    from esper.kasmina.slot import SeedSlot

    slot = SeedSlot(InjectionSpec("s", 4, 0), "cnn")
    seen = [slot.stage]
    for c in choices:
        options = sorted(TRANSITIONS[slot.stage], key=lambda s: s.value)
        if not options:
            break
        target = options[c % len(options)]
        if slot.stage is SeedStage.DORMANT:
            slot.germinate("seed", "conv_small", 0, 0.0)
        else:
            slot.transition(target, "walk")
        seen.append(slot.stage)
    for a, b in zip(seen, seen[1:]):
        assert b in TRANSITIONS[a]
    if slot.stage is SeedStage.FOSSILIZED:
        with pytest.raises(IllegalTransition):
            slot.transition(SeedStage.PRUNED)
