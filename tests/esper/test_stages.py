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
@given(st.lists(st.sampled_from(ALL), min_size=1, max_size=40))
def test_random_walks_take_legal_moves_and_refuse_illegal_ones(targets):
    from esper.kasmina.protocol import InjectionSpec
    from esper.kasmina.slot import SeedSlot
    from esper.nissa.sink import Sink

    class Moves(Sink):
        def __init__(self):
            self.seen = []

        def stage_changed(self, slot_id, seed_id, a, b, reason):
            self.seen.append((a, b))

    moves = Moves()
    slot = SeedSlot(InjectionSpec("s", 4, 0), "cnn", sink=moves)
    taken = []
    for target in targets:
        before = slot.stage
        if target in TRANSITIONS[before]:
            if before is SeedStage.DORMANT:
                slot.germinate("seed", "conv_small", 0, 0.0)
            else:
                slot.transition(target, "walk")
            assert slot.stage is target
            taken.append((before, target))
        else:
            with pytest.raises(IllegalTransition):
                slot.transition(target, "walk")
            assert slot.stage is before  # a refused move changes nothing
    assert moves.seen == taken  # every move, and only the moves taken, is reported
