"""`raccrochage up --main-jobs` runs the main jobs of the services it started, in their order:
with `--only`, those services' jobs alone."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from raccrochage_platform import service
from raccrochage_rig.cli import run_main_jobs


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ran: list[str] = []

    def spec(name: str, order: int, *, job: bool = True) -> SimpleNamespace:
        async def main_job() -> None:
            ran.append(name)

        return SimpleNamespace(main_job=main_job if job else None, main_job_order=order)

    installed = {"psad": spec("psad", 20), "reperage": spec("reperage", 10), "ops": spec("ops", 0, job=False)}
    monkeypatch.setattr(service, "installed_services", lambda: installed)
    return ran


def test_every_main_job_runs_in_its_order(ran: list[str], tmp_path) -> None:
    run_main_jobs(tmp_path)
    assert ran == ["reperage", "psad"]


def test_only_the_named_services_jobs_run(ran: list[str], tmp_path) -> None:
    run_main_jobs(tmp_path, ["psad", "ops"])
    assert ran == ["psad"]
