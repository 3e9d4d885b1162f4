"""Lineage against a naive model that copies whole histories (the obviously right thing)."""

from __future__ import annotations

import pytest
from aixgo.session.lineage import Lineage
from hypothesis import given, settings
from hypothesis import strategies as st

# An op: ("append", n) | ("checkpoint", 0) | ("restore", index into checkpoints so far).
ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 4)),
        st.tuples(st.just("checkpoint"), st.just(0)),
        st.tuples(st.just("restore"), st.integers(0, 50)),
    ),
    max_size=60,
)


def history(lin: Lineage, store: dict[tuple[int, int], int], last: int | None = None) -> list[int]:
    return [store[(b, s)] for b, lo, hi in lin.tail_spans(last) for s in range(lo, hi + 1)]


@settings(max_examples=300, deadline=None)
@given(ops)
def test_lineage_matches_a_model_that_copies_histories(script: list[tuple[str, int]]) -> None:
    lin = Lineage()
    store: dict[tuple[int, int], int] = {}  # (branch, seq) -> message number
    model: list[int] = []
    checkpoints: list[tuple[tuple[int, int], list[int]]] = []
    counter = 0
    for op, arg in script:
        if op == "append":
            branch, first = lin.append(arg)
            for i in range(arg):
                counter += 1
                store[(branch, first + i)] = counter
                model.append(counter)
        elif op == "checkpoint":
            checkpoints.append((lin.head_ref(), list(model)))
        elif checkpoints:
            ref, saved = checkpoints[arg % len(checkpoints)]
            checkpoints.append((lin.head_ref(), list(model)))  # the undo checkpoint
            lin.move_head(*ref)
            model = list(saved)
        assert history(lin, store) == model
        assert lin.length == len(model)
        for n in (0, 1, 3):
            assert history(lin, store, n) == (model[max(0, len(model) - n) :] if n else [])
        # Every stored message is live exactly when the model's history holds it.
        for (b, s), number in store.items():
            assert lin.is_live(b, s) == (number in model)
    # Every checkpoint still means the history it was taken of.
    for (branch, seq), saved in checkpoints:
        spans = lin.spans(branch, 1, seq)
        assert [store[(b, s)] for b, lo, hi in spans for s in range(lo, hi + 1)] == saved


def test_tail_walks_few_branches_after_many_restores() -> None:
    lin = Lineage()
    lin.append(10)
    for _ in range(1000):  # checkpoint the head and restore to it, again and again
        lin.move_head(*lin.head_ref())
    lin.append(1)
    assert lin.tail_spans(2) == [(0, 10, 10), (1000, 11, 11)]
    assert lin.branches[-1].parent == 0  # the empty intermediate branches are skipped


def test_restore_to_an_empty_history() -> None:
    lin = Lineage()
    empty = lin.head_ref()
    lin.append(3)
    lin.move_head(*empty)
    assert lin.length == 0
    assert lin.tail_spans(None) == []
    assert lin.append(1) == (1, 1)


def test_move_head_refuses_a_seq_the_branch_never_had() -> None:
    lin = Lineage()
    lin.append(2)
    with pytest.raises(ValueError, match="outside branch"):
        lin.move_head(0, 3)
