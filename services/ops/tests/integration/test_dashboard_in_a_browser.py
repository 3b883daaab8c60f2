"""The dashboard in a real browser (Debian's chromium driven by Playwright): after a campaign
handed to PSAD, the page's figures equal PSAD's own /stats; a filter narrows them; a dead letter
is replayed from its page. Screenshots go to test-artifacts/ops/ (or $RACCROCHAGE_ARTIFACTS)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import httpx
import pytest
from nats.js.errors import NotFoundError
from raccrochage_contracts import new_event
from raccrochage_ops.synthetic import payload, youth_id
from raccrochage_platform.auth import mint
from raccrochage_platform.migrations import upgrade
from raccrochage_platform.topology import declare, load_topology
from raccrochage_rig.testing.processes import service_process

from .conftest import TOKEN_KEY, caught_up, eventually, publish_all, put_dead_letter, token

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[4]
PSAD_MIGRATIONS = REPO / "services" / "psad" / "migrations"
ARTIFACTS = Path(os.environ.get("RACCROCHAGE_ARTIFACTS", REPO / "test-artifacts")) / "ops"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium: `make test` installs it as root with apt-get; else `apt-get install -y chromium`",
)


@pytest.fixture
async def psad(servers, nc, ops_topology, tmp_path):
    """PSAD as its own process on a migrated database, with its consumers from the start."""
    url = await servers.create_database("psad")
    await asyncio.to_thread(upgrade, PSAD_MIGRATIONS, url)
    js = nc.jetstream()
    for consumer in load_topology().consumers_of("psad"):
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(consumer.stream, consumer.durable)
    await declare(js, load_topology(), services={"psad"})
    env = {k: v for k, v in os.environ.items() if k != "RACCROCHAGE_RIG_DIR"}
    env.update(
        RACCROCHAGE_SERVICE="psad",
        NATS_URL=servers.nats_url,
        DATABASE_URL=url,
        RACCROCHAGE_TOKEN_KEY=TOKEN_KEY,
        RACCROCHAGE_RIG_DIR=str(tmp_path / "rig"),
        RACCROCHAGE_RELAY_SWEEP_SECONDS="0.2",
    )
    with service_process("psad", env, tmp_path) as running:
        yield running


def identified(n: int, departement: str):
    return payload(
        "reperage.youth.identified.v1",
        youth_id=youth_id(n, seed=99),
        campaign_id="demo-2026-11",
        psad_id=f"psad-{departement.lower()}",
        departement=departement,
        age=17,
    )


async def test_the_dashboard_in_chromium(psad, start_ops, nc, tmp_path):
    from playwright.async_api import async_playwright

    youths = [(n, "33" if n < 24 else "40") for n in range(36)]
    await publish_all(nc, [("reperage.youth.identified.v1", identified(n, dep)) for n, dep in youths])
    headers = {"Authorization": f"Bearer {mint(TOKEN_KEY, role='ops', sub='browser-test')}"}
    async with httpx.AsyncClient(base_url=psad.url, headers=headers, timeout=10) as psad_api:

        async def psad_opened_all() -> dict | None:
            stats = (await psad_api.get("/stats")).json()
            return stats if sum(stats["by_status"].values()) == len(youths) else None

        stats = await eventually(psad_opened_all, what="PSAD opened every case")
    ops = start_ops(OPS_SERVICE_URLS=f"psad={psad.url}")
    await eventually(lambda: caught_up(nc), timeout=90, what="ops caught up with repérage and PSAD")

    data = payload("reperage.campaign.ingested.v1", campaign_id="demo-2026-11")
    letter = await put_dead_letter(
        nc,
        new_event(data, source="raccrochage/reperage", subject="demo-2026-11"),
        consumer="ops_reperage",
        reason="handler failed: OperationalError (after 6 deliveries)",
    )

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            # Offline but for ops itself: any request elsewhere (a CDN) fails the test.
            elsewhere: list[str] = []

            async def only_ops(route) -> None:
                if route.request.url.startswith(ops.url):
                    await route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    await route.abort()

            await page.route("**/*", only_ops)
            await page.goto(ops.url + "/")
            await page.fill("#token", token("ops", sub="browser-test"))
            await page.click("button[type=submit]")
            await page.wait_for_selector("[data-testid=by-status]")
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            async def table(test_id: str) -> dict[str, str]:
                rows = await page.locator(f"[data-testid={test_id}] tbody tr").all_inner_texts()
                return dict(row.split("\t")[:2] for row in rows)

            shown = await table("by-status")
            assert {k: int(v) for k, v in shown.items()} == stats["by_status"]
            funnel = await table("funnel")
            assert funnel["case opened by a PSAD"] == str(len(youths))
            assert funnel["handed over by repérage"] == str(len(youths))
            per_departement = await page.locator("[data-testid=by-departement] tbody tr").all_inner_texts()
            assert [row.split("\t")[:3] for row in per_departement] == [
                ["33", "24", "24"],
                ["40", "12", "12"],
            ]

            await page.select_option("select[name=departement]", "40")
            await page.click("form.filters button[type=submit]")
            await page.wait_for_url("**departement=40**")
            filtered = await table("funnel")
            assert filtered["case opened by a PSAD"] == "12"
            await page.screenshot(path=str(ARTIFACTS / "dashboard-40.png"), full_page=True)

            await page.click("text=Pipeline")
            await page.wait_for_selector("[data-testid=consumers]")
            assert "psad" in await page.locator("[data-testid=outboxes]").inner_text()
            await page.screenshot(path=str(ARTIFACTS / "pipeline.png"), full_page=True)

            await page.click("nav >> text=Dead letters")
            await page.click(f"a[href='/deadletters/{letter}']")
            assert "demo-2026-11" in await page.locator("[data-testid=payload]").inner_text()
            await page.screenshot(path=str(ARTIFACTS / "dead-letter.png"), full_page=True)
            await page.click("text=Replay")
            await page.wait_for_selector(".message")
            assert f"dead letter {letter} replayed" in await page.locator(".message").inner_text()
            await page.screenshot(path=str(ARTIFACTS / "replayed.png"), full_page=True)
            assert elsewhere == []
        finally:
            await browser.close()
