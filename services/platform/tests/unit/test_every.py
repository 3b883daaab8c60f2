"""A service's periodic job: a failed pass is logged and the next pass comes all the same."""

import asyncio

import structlog
from raccrochage_platform.service import run_every


async def test_a_failing_pass_is_logged_and_the_job_goes_on() -> None:
    passes: list[int] = []
    third = asyncio.Event()

    async def job() -> None:
        passes.append(len(passes) + 1)
        if len(passes) == 1:
            raise RuntimeError("the database went away: nom=Canary")
        if len(passes) == 3:
            third.set()

    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(run_every(0, job, name="sample_job"))
        await third.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert passes[:3] == [1, 2, 3]
    failures = [entry for entry in logs if entry["event"] == "job_failed"]
    assert len(failures) == 1
    assert failures[0]["job"] == "sample_job" and failures[0]["error"] == "RuntimeError"
    assert failures[0]["where"].startswith("test_every.py:")
    assert "Canary" not in repr(failures)  # the message may quote personal data: never logged
    assert task.cancelled()


async def test_the_first_pass_waits_unless_asked_to_run_at_start() -> None:
    ran = {"waiting": asyncio.Event(), "at_start": asyncio.Event()}

    def job(name: str):
        async def run() -> None:
            ran[name].set()

        return run

    waiting = asyncio.create_task(run_every(3600, job("waiting"), name="hourly"))
    at_start = asyncio.create_task(run_every(3600, job("at_start"), name="hourly", at_start=True))
    await ran["at_start"].wait()
    for task in (waiting, at_start):
        task.cancel()
    await asyncio.gather(waiting, at_start, return_exceptions=True)
    assert not ran["waiting"].is_set()


async def test_the_first_pass_may_come_sooner_than_the_period() -> None:
    ran = asyncio.Event()

    async def job() -> None:
        ran.set()

    task = asyncio.create_task(run_every(3600, job, name="daily", first_after=0.01))
    await asyncio.wait_for(ran.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_stop_during_a_pass_that_swallows_it_ends_the_job_at_once() -> None:
    in_pass = asyncio.Event()

    async def job() -> None:
        in_pass.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:  # as some library waits do: the pass just ends
            return

    task = asyncio.create_task(run_every(3600, job, name="hourly", at_start=True))
    await in_pass.wait()
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    assert task.cancelled()
