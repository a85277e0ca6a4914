"""The periodic sampling (gateway.core.metrics.Sampler.run) outlives a failing source: the
failure is logged with its traceback and the gauges keep following their sources."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry, Gauge

from gateway.core.metrics import Sampler


async def test_a_failing_sample_is_logged_and_sampling_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("sampler_probe", "A test gauge.", registry=registry)
    calls = 0
    recovered = asyncio.Event()  # two samples after the failure

    def value() -> float:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("a source's bug")
        if calls == 4:
            recovered.set()
        return float(calls)

    sampler = Sampler()
    sampler.add_gauge(gauge, value)
    with caplog.at_level(logging.ERROR, logger="gateway.core.metrics"):
        task = asyncio.create_task(sampler.run(interval_s=0.01))
        try:
            async with asyncio.timeout(5):
                await recovered.wait()
        finally:
            task.cancel()
    assert registry.get_sample_value("sampler_probe") == 4.0
    failures = [r for r in caplog.records if r.getMessage() == "metrics sampling failed"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert str(failures[0].exc_info[1]) == "a source's bug"
