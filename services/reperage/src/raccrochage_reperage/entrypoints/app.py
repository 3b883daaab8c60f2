"""Repérage's service: partner enrolments and contact cards by request/reply, campaign upload by HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from faststream.nats.annotations import NatsMessage
from prometheus_client import Gauge
from raccrochage_contracts.events.privacy_v1 import ErasureDone
from raccrochage_contracts.events.psad_v1 import CaseClosed, CaseTransferred
from raccrochage_platform.broker import connection, jetstream
from raccrochage_platform.consumer import Event
from raccrochage_platform.db import exclusive
from raccrochage_platform.logging import error_fields, get_logger
from raccrochage_platform.privacy import answering_services, ask_export, privacy_consumer
from raccrochage_platform.service import ServiceContext, ServiceSpec

from ..adapters import audit, audit_anchors
from ..adapters.retention import rules as retention_rules
from ..adapters.stream_sweep import JetStreamSweeper
from ..adapters.unit_of_work import ReperageUnitOfWork
from ..config import ReperageSettings
from ..service_layer import campaigns, handovers, privacy
from ..service_layer.vault import OnBehalf, give_contact_card
from .api import campaign_router
from .cli import demo_main_job
from .enrolments import EnrolmentResponder
from .privacy_api import privacy_router

log = get_logger(__name__)
STALLED_CAMPAIGNS = Gauge(
    "raccrochage_reperage_campaigns_stalled",
    "campaigns still ingesting with no chunk committed for REPERAGE_INGEST_STALL_SECONDS (their ingest died)",
)
CONTACT_CARD_SUBJECT = "rpc.reperage.contact_card"


async def build(context: ServiceContext) -> None:
    settings: ReperageSettings = context.settings  # type: ignore[assignment]
    broker = context.broker
    allowed_callers = {c.strip() for c in settings.contact_card_callers.split(",") if c.strip()}
    unit_of_work = context.unit_of_work(ReperageUnitOfWork)

    # Partners' enrolments: a plain nats-py queue subscription (see enrolments.py).
    enrolments = EnrolmentResponder(unit_of_work, key=settings.key)
    await enrolments.subscribe(connection(broker))
    context.background.append(enrolments.run_until_cancelled)

    @broker.subscriber(f"{CONTACT_CARD_SUBJECT}.*", queue="reperage", title="contact card")
    async def contact_card(body: dict, msg: NatsMessage) -> dict:
        """`rpc.reperage.contact_card.<caller>` {youth_id, purpose, on_behalf: {role, sub,
        territory}}: the caller is the subject's last token, which its NATS credentials restrict;
        on_behalf is the person the service asks for, as it says, recorded in the audit."""
        caller = msg.raw_message.subject.rsplit(".", 1)[-1]
        youth_id, purpose = str(body.get("youth_id", "")), str(body.get("purpose", ""))
        person = body.get("on_behalf") if isinstance(body.get("on_behalf"), dict) else {}
        on_behalf = OnBehalf(
            *(None if person.get(k) is None else str(person[k])[:64] for k in ("role", "sub", "territory"))
        )
        answer = await give_contact_card(
            unit_of_work(),
            caller=caller,
            youth_id=youth_id,
            purpose=purpose,
            allowed=allowed_callers,
            on_behalf=on_behalf,
        )
        if answer.card is None:
            log.warning("contact_card_not_given", caller=caller, status=answer.status)
            return {"status": answer.status, "error": answer.reason}
        log.info("contact_card_given", caller=caller, role=on_behalf.role)
        return {"status": "ok", "card": asdict(answer.card)}

    # What the PSADs did with the youths handed over (deploy/topology.toml: reperage_psad), in
    # one process at a time: a close handled before the transfer it follows would match no
    # handover (it names the new PSAD) and leave it open.
    from_psad = context.in_one_process(context.consumer("reperage_psad", unit_of_work))

    @from_psad.on("psad.case.closed.v1")
    async def case_closed(uow: ReperageUnitOfWork, event: Event[CaseClosed]) -> None:
        if await handovers.case_closed(uow, event.data):
            log.info("handover_closed_by_psad", case_id=str(event.data.case_id), reason=event.data.reason)

    @from_psad.on("psad.case.transferred.v1")
    async def case_transferred(uow: ReperageUnitOfWork, event: Event[CaseTransferred]) -> None:
        await handovers.case_transferred(uow, event.data)

    context.app.include_router(campaign_router(unit_of_work, settings))

    async def watch_stalled_ingests() -> None:
        """Counts the campaigns whose ingest died (REPERAGE_INGEST_STALL_SECONDS without a chunk)
        into a gauge an alert can watch, and logs each once as it stalls."""
        told: set[str] = set()
        while True:
            try:
                stalled = await campaigns.stalled(unit_of_work(), settings.ingest_stall_seconds)
            except Exception as error:  # the database is down: /ready says so; try again later
                log.warning("stalled_ingests_unknown", error=type(error).__name__)
            else:
                STALLED_CAMPAIGNS.set(len(stalled))
                for campaign_id in sorted(set(stalled) - told):
                    log.warning(
                        "campaign_ingest_stalled", campaign_id=campaign_id, retry=campaigns.RETRY_STALLED
                    )
                told = set(stalled)
            await asyncio.sleep(settings.stall_check_seconds)

    context.background.append(watch_stalled_ingests)

    anchored: tuple[int, str] | None = None

    async def anchor_audit() -> None:
        """The identity audit's head, out of the database, each time it moved (docs/privacy.md)."""
        nonlocal anchored
        async with context.engine.connect() as db:
            head = await audit.head(db)
        if head is not None and head != anchored:
            await audit_anchors.publish(jetstream(broker), head, datetime.now(UTC))
            anchored = head
            log.info("audit_anchored", seq=head[0])

    context.every(settings.audit_anchor_seconds, anchor_audit, name="audit_anchor", at_start=True)

    # The services' answers to the DPO's erasure requests (service_layer/privacy.py).
    answers = context.consumer(privacy_consumer("reperage"), unit_of_work)
    sweep_now = asyncio.Event()

    @answers.on("privacy.erasure.done.v1")
    async def erasure_done(uow: ReperageUnitOfWork, event: Event[ErasureDone]) -> None:
        if not await privacy.record_answer(uow, event.data, datetime.now(UTC)):
            log.warning(
                "erasure_answer_unexpected", request_id=str(event.data.request_id), service=event.data.service
            )
        else:
            sweep_now.set()  # the sweep reads the request once this transaction ends

    # Then the streams are swept of the erased youths: at start, after an answer, and every
    # REPERAGE_ERASURE_SWEEP_SECONDS (docs/privacy.md "The streams").
    sweeper = JetStreamSweeper(connection(broker).jetstream(), batch=settings.erasure_sweep_batch)
    streams = sorted(context.topology.streams)

    async def sweep_streams_of_erased_youths() -> None:
        while True:
            sweep_now.clear()
            try:
                # One replica sweeps at a time (two would split the deletions and the counts);
                # the others try again a second later, for a request that completed meanwhile.
                async with exclusive(context.engine, ERASURE_SWEEP_JOB) as mine:
                    swept = (
                        await privacy.sweep_streams(unit_of_work, sweeper, streams, lambda: datetime.now(UTC))
                        if mine
                        else None
                    )
            except Exception as error:  # NATS or the database is down: the next pass takes them
                log.error("erasure_sweep_failed", **error_fields(error))
            else:
                if swept is None:
                    await asyncio.sleep(1)
                    continue
                for request_id, deleted in swept.items():
                    log.info("erasure_streams_swept", request_id=str(request_id), deleted=deleted)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sweep_now.wait(), settings.erasure_sweep_seconds)

    context.background.append(sweep_streams_of_erased_youths)

    async def ask(service: str, youth_id: str) -> dict | None:
        return await ask_export(connection(broker), service, youth_id)

    context.app.include_router(
        privacy_router(
            unit_of_work,
            token_key=settings.token_key,
            key=settings.key,
            services=answering_services(context.topology),
            ask=ask,
        )
    )


# The advisory lock the replica that sweeps holds.
ERASURE_SWEEP_JOB = "reperage.erasure_sweep"

spec = ServiceSpec(
    name="reperage",
    migrations=Path(__file__).resolve().parents[3] / "migrations",
    build=build,
    retention=retention_rules,
    settings=ReperageSettings,
    main_job=demo_main_job,
    main_job_order=10,
)
