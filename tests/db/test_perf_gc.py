"""Garbage-collector settings of a serving process (`gateway.app.tune_garbage_collection`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.app import GC_GEN0_THRESHOLD, tune_garbage_collection
from resolvers.diary.rows import HomeworkRecord, LessonRecord
from tests.support.environment import GraphQL


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_startup_objects_are_frozen_and_the_young_generation_is_larger() -> None:
    _, older, oldest = gc.get_threshold()
    tune_garbage_collection()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, older, oldest)
    # Objects made after start are still collected: a cycle is freed by a collection.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1


async def test_a_diary_request_leaves_no_records_for_the_collector(gql: GraphQL) -> None:
    """Loaders are released after execution: the rows and records of a request are freed
    by reference counting when it ends, not kept in reference cycles until a collection."""
    query = """query Week { myChildren { diary(from: "2026-11-23", to: "2026-11-29") {
        days { lessons { id topic homework { text } marks { value } attendance { code } } }
    } } }"""
    gc.collect()
    gc.disable()
    try:
        payload = await gql(query, account="parent-two-schools")
        assert payload["data"]["myChildren"], payload
        left = [o for o in gc.get_objects() if isinstance(o, LessonRecord | HomeworkRecord)]
    finally:
        gc.enable()
    assert left == []
