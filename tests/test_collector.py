"""The cyclic collector is paused only inside the block, and left as the caller had it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from automap._collector import collector_paused


@pytest.fixture(autouse=True)
def _restore_collector() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_paused_inside_and_running_again_after() -> None:
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_running_again_after_an_error() -> None:
    gc.enable()
    with pytest.raises(KeyError), collector_paused():
        raise KeyError

    assert gc.isenabled()


def test_left_off_when_the_caller_had_switched_it_off() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_nested_pauses_end_with_the_outer_one() -> None:
    gc.enable()
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_as_a_decorator_each_call_pauses() -> None:
    @collector_paused()
    def inside() -> bool:
        return gc.isenabled()

    gc.enable()
    assert inside() is False
    assert inside() is False
    assert gc.isenabled()


def test_cycles_made_while_paused_are_collected_afterwards() -> None:
    class Node:
        pass

    gc.enable()
    with collector_paused():
        node = Node()
        node.self = node  # type: ignore[attr-defined]
        alive = weakref.ref(node)
        del node
        assert alive() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert alive() is None


def test_what_the_block_built_goes_to_the_oldest_generation() -> None:
    gc.enable()
    with collector_paused():
        built = [[i] for i in range(100)]
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(item) in oldest for item in built)


def test_objects_the_program_froze_stay_frozen() -> None:
    gc.enable()
    kept = [[1], [2]]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused():
            built = [[3]]
        assert gc.get_freeze_count() == frozen
        assert id(built[0]) not in {id(o) for o in gc.get_objects(generation=2)}
    finally:
        gc.unfreeze()
    assert kept
