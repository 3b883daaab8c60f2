"""A service whose stop takes long logs where each of its tasks still waits."""

from __future__ import annotations

import asyncio

from raccrochage_platform import service


async def test_a_slow_stop_names_each_coroutine_a_task_waits_in(monkeypatch) -> None:
    logged: list[dict] = []
    monkeypatch.setattr(
        service.log, "warning", lambda event, **fields: logged.append({"event": event, **fields})
    )
    gate = asyncio.Event()

    async def drain_forever() -> None:
        await gate.wait()

    async def stop_consumer() -> None:
        await drain_forever()

    stuck = asyncio.create_task(stop_consumer(), name="consumer-ops_clause")
    await service._report_slow_stop(0)
    gate.set()
    await stuck
    [report] = [entry for entry in logged if entry["task"] == "consumer-ops_clause"]
    assert report["event"] == "service_stop_slow"
    assert [where.rsplit(" ", 1)[1] for where in report["awaiting"]][:3] == [
        "stop_consumer",
        "drain_forever",
        "wait",
    ]
    assert report["awaiting"][0].startswith(__file__.rsplit("/", 1)[0])
