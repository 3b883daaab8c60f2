"""Ops' HTTP routes: the JSON API (/api/...) and the dashboard's pages, on one token check.

Every route takes a bearer token or the cookie the login form sets (entrypoints/security.py);
counts are scoped to the caller's territory unless the token is an ops token; the pipeline and
dead letters are for ops tokens only.
"""

from __future__ import annotations

import pathlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from nats.js import JetStreamContext
from raccrochage_contracts.registry import Registry
from raccrochage_platform.auth import InvalidToken, verify
from raccrochage_platform.topology import Topology

from ..adapters import health
from ..adapters.repository import Filters
from ..service_layer import deadletters, figures
from ..service_layer.deadletters import DeadLetterNotFound
from ..service_layer.unit_of_work import OpsUnitOfWork
from . import pages
from .security import BEARER_SCHEME, COOKIE, COOKIE_SCHEME, Caller, NotLoggedIn, caller_dependency

STATIC = pathlib.Path(__file__).resolve().parent / "static"
# A dead letter's sequence in its stream: JetStream's are unsigned 64-bit; a larger one is a 422,
# not a request the server refuses.
Seq = Annotated[int, Path(ge=1, le=2**63 - 1, description="the dead letter's sequence in DEADLETTER")]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": {"detail": description}}}}


R401 = {401: _error("no token, or an invalid or expired one")}
R403 = {403: _error("the token's role or territory does not allow it")}
R404 = {404: _error("no such dead letter (replayed, or past the stream's max age)")}
R422 = {422: _error("a query parameter is not valid")}


@dataclass
class OpsWeb:
    """What the routes use, built by the composition root."""

    unit_of_work: Callable[[], OpsUnitOfWork]
    js: JetStreamContext
    topology: Topology
    registry: Registry
    token_key: str
    service_urls: Callable[[], dict[str, str]]
    producing: list[str] = field(default_factory=list)
    # Rebuilds the read models from the streams (entrypoints/app.py); returns the consumers started.
    rebuild: Callable[[str], Awaitable[list[str]]] | None = None

    async def health(self) -> dict[str, Any]:
        # Every producing service is listed, one with no known address as down: a panel row
        # does not vanish because its service is not running.
        known = self.service_urls()
        urls = {name: known.get(name, "") for name in self.producing}
        return await health.snapshot(self.js, self.topology, urls)


def _filters(
    caller: Caller,
    campaign: str | None,
    departement: str | None,
    psad: str | None,
    opened_from: date | None,
    opened_to: date | None,
) -> Filters:
    if opened_from and opened_to and opened_from > opened_to:
        raise HTTPException(422, f"opened_from {opened_from} is after opened_to {opened_to}")
    return Filters(
        campaign_id=campaign or None,
        departement=caller.scope(departement),
        psad_id=psad or None,
        opened_from=opened_from,
        opened_to=opened_to,
    )


def _optional_date(raw: str | None, name: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise HTTPException(422, f"{name}: {raw!r} is not a date (YYYY-MM-DD)") from None


def install(app: FastAPI, web: OpsWeb) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    caller_of = caller_dependency(web.token_key)
    # The schemes, for OpenAPI: either one is accepted (checked by `caller_of`).
    schemes = [Depends(BEARER_SCHEME), Depends(COOKIE_SCHEME)]
    caller = Depends(caller_of)

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, error: NotLoggedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"detail": error.why}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return HTMLResponse(pages.login(error.why), status_code=401)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, error: HTTPException) -> Response:
        """JSON for the API; for a page, the same message in a page (a 403 on a filter)."""
        if request.url.path.startswith("/api/") or request.url.path in ("/login", "/logout"):
            return JSONResponse(
                {"detail": error.detail}, status_code=error.status_code, headers=error.headers
            )
        body = f'<p class="error">{pages.esc(error.detail)}</p><p><a href="/">Back to the dashboard</a></p>'
        return HTMLResponse(pages.layout(f"error {error.status_code}", body), status_code=error.status_code)

    api = APIRouter(prefix="/api", tags=["ops"], dependencies=schemes, responses={**R401, **R403})

    @api.get(
        "/figures", summary="The dashboard's figures (suppressed), for the caller's territory", responses=R422
    )
    async def figures_json(
        who: Caller = caller,
        campaign: str | None = None,
        departement: Annotated[str | None, Query(pattern=r"^([0-9]{2}|2A|2B|9[78][0-9])$")] = None,
        psad: str | None = None,
        opened_from: date | None = None,
        opened_to: date | None = None,
    ) -> dict:
        filters = _filters(who, campaign, departement, psad, opened_from, opened_to)
        return await figures.dashboard(web.unit_of_work(), filters, datetime.now(UTC))

    @api.get("/pipeline", summary="Consumers' lag, outboxes, dead letters per reason (ops)")
    async def pipeline_json(who: Caller = caller) -> dict:
        who.require_ops()
        return await web.health()

    @api.get(
        "/deadletters",
        summary="Dead letters, newest first, filtered by service and reason (ops)",
        description=(
            f"Reads the {deadletters.WINDOW:,} most recent dead letters before `before` (a stream "
            f"sequence) and lists at most {deadletters.LIMIT} of them. `truncated` says that older "
            "ones were not read: ask again with `before` = `older_than`."
        ),
    )
    async def dead_letters_json(
        who: Caller = caller,
        service: str | None = None,
        reason: str | None = None,
        before: Annotated[int | None, Query(ge=1)] = None,
    ) -> dict:
        who.require_ops()
        found = await deadletters.search(web.js, web.topology, service=service, reason=reason, before=before)
        return {
            "dead_letters": [deadletters.summary(web.topology, letter) for letter in found.letters],
            "truncated": found.truncated,
            "older_than": found.older,
        }

    @api.get(
        "/deadletters/{seq}",
        summary="One dead letter: headers, reason, payload if harmless (ops)",
        responses=R404,
    )
    async def dead_letter_json(seq: Seq, who: Caller = caller) -> dict:
        who.require_ops()
        try:
            return await deadletters.view(web.js, web.topology, web.registry, seq)
        except DeadLetterNotFound as error:
            raise HTTPException(404, str(error)) from None

    @api.post("/deadletters/{seq}/replay", summary="Replay one dead letter, audited (ops)", responses=R404)
    async def replay_json(seq: Seq, who: Caller = caller) -> dict:
        who.require_ops()
        try:
            return {"replayed": await deadletters.replay_one(web.unit_of_work(), web.js, seq, who.principal)}
        except DeadLetterNotFound as error:
            raise HTTPException(404, str(error)) from None

    @api.post(
        "/deadletters/replay", summary="Replay every dead letter of a reason, audited (ops)", responses=R404
    )
    async def replay_reason_json(reason: str, who: Caller = caller, service: str | None = None) -> dict:
        who.require_ops()
        try:
            replayed = await deadletters.replay_reason(
                web.unit_of_work(), web.js, web.topology, reason, who.principal, service or None
            )
        except DeadLetterNotFound as error:
            raise HTTPException(404, str(error)) from None
        return {"replayed": replayed}

    @api.post(
        "/rebuild",
        status_code=202,
        summary="Rebuild the read models from the streams (ops); figures fill up again as the replay runs",
        responses={409: _error("a rebuild is not available in this process")},
    )
    async def rebuild_json(who: Caller = caller) -> dict:
        who.require_ops()
        if web.rebuild is None:
            raise HTTPException(409, "this process cannot rebuild its projections")
        return {"rebuilding": await web.rebuild(who.principal.sub)}

    @api.get("/replays", summary="Who replayed which dead letter (ops)")
    async def replays_json(who: Caller = caller) -> dict:
        who.require_ops()
        async with web.unit_of_work() as uow:
            rows = await uow.projections.replays()
        return {
            "replays": [
                {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows
            ]
        }

    app.include_router(api)

    # --- pages ------------------------------------------------------------------------------------
    html = APIRouter(
        tags=["ops pages"],
        dependencies=schemes,
        responses={**R401, **R403},
        default_response_class=HTMLResponse,
    )

    def page(who: Caller, title: str, body: str, message: str | None = None) -> HTMLResponse:
        is_ops = who.territory is None
        label = (
            f"{who.principal.sub} ({who.principal.role.value}{'' if is_ops else ', ' + str(who.territory)})"
        )
        return HTMLResponse(pages.layout(title, body, who=label, ops=is_ops, message=message))

    @html.get("/", summary="The dashboard: funnel, outcomes, weeks, seats, MLDS, clauses", responses=R422)
    async def dashboard_page(
        who: Caller = caller,
        campaign: str | None = None,
        departement: str | None = None,
        psad: str | None = None,
        opened_from: str | None = None,
        opened_to: str | None = None,
    ) -> HTMLResponse:
        filters = _filters(
            who,
            campaign,
            departement,
            psad,
            _optional_date(opened_from, "opened_from"),
            _optional_date(opened_to, "opened_to"),
        )
        shown = await figures.dashboard(web.unit_of_work(), filters, datetime.now(UTC))
        return page(who, "dashboard", pages.dashboard(shown, territory=who.territory))

    @html.get("/pipeline", summary="Pipeline health (ops)")
    async def pipeline_page(who: Caller = caller, message: str | None = None) -> HTMLResponse:
        who.require_ops()
        return page(who, "pipeline", pages.pipeline(await web.health()), message)

    @html.post(
        "/rebuild",
        summary="Rebuild the read models (ops), back to the pipeline page",
        responses={409: _error("not available")},
    )
    async def rebuild_page(who: Caller = caller) -> Response:
        who.require_ops()
        if web.rebuild is None:
            raise HTTPException(409, "this process cannot rebuild its projections")
        await web.rebuild(who.principal.sub)
        return RedirectResponse(
            "/pipeline?" + urlencode({"message": "rebuilding the read models from the streams"}),
            status_code=303,
        )

    @html.get("/deadletters", summary="Dead letters (ops)")
    async def dead_letters_page(
        who: Caller = caller,
        service: str | None = None,
        reason: str | None = None,
        before: Annotated[int | None, Query(ge=1)] = None,
        message: str | None = None,
    ) -> HTMLResponse:
        who.require_ops()
        found = await deadletters.search(
            web.js, web.topology, service=service or None, reason=reason or None, before=before
        )
        services = sorted({definition.service for definition in web.topology.consumers.values()})
        rows = [deadletters.summary(web.topology, letter) for letter in found.letters]
        return page(
            who,
            "dead letters",
            pages.dead_letters(
                rows,
                services,
                sorted({*found.reasons, *([reason] if reason else [])}),
                service or None,
                reason or None,
                found.older,
            ),
            message,
        )

    @html.get("/deadletters/{seq}", summary="One dead letter (ops)", responses=R404)
    async def dead_letter_page(seq: Seq, who: Caller = caller) -> HTMLResponse:
        who.require_ops()
        try:
            letter = await deadletters.view(web.js, web.topology, web.registry, seq)
        except DeadLetterNotFound as error:
            raise HTTPException(404, str(error)) from None
        return page(who, f"dead letter {seq}", pages.dead_letter(letter))

    @html.post(
        "/deadletters/{seq}/replay", summary="Replay one dead letter (ops), back to the list", responses=R404
    )
    async def replay_page(seq: Seq, who: Caller = caller) -> Response:
        who.require_ops()
        try:
            await deadletters.replay_one(web.unit_of_work(), web.js, seq, who.principal)
        except DeadLetterNotFound as error:
            raise HTTPException(404, str(error)) from None
        return RedirectResponse(
            "/deadletters?" + urlencode({"message": f"dead letter {seq} replayed"}), status_code=303
        )

    @html.post(
        "/deadletters/replay",
        summary="Replay every dead letter of a reason (ops)",
        responses={**R404, 422: _error("form field reason: missing")},
    )
    async def replay_reason_page(request: Request, who: Caller = caller) -> Response:
        who.require_ops()
        form = parse_qs((await request.body()).decode())
        reason = (form.get("reason") or [""])[0]
        service = (form.get("service") or [""])[0] or None
        if not reason:
            raise HTTPException(422, "form field reason: missing")
        try:
            n = await deadletters.replay_reason(
                web.unit_of_work(), web.js, web.topology, reason, who.principal, service
            )
        except DeadLetterNotFound as error:
            raise HTTPException(404, str(error)) from None
        return RedirectResponse(
            "/deadletters?" + urlencode({"message": f"{n} dead letters replayed"}), status_code=303
        )

    app.include_router(html)

    @app.get("/login", tags=["ops pages"], response_class=HTMLResponse, summary="The login form")
    async def login_page() -> HTMLResponse:
        return HTMLResponse(pages.login())

    @app.post(
        "/login",
        tags=["ops pages"],
        summary="Keep a token in an HttpOnly cookie, then open the dashboard",
        responses={
            303: {"description": "to the dashboard"},
            **R401,
            422: _error("form field token: missing"),
        },
    )
    async def login(request: Request) -> Response:
        token = (parse_qs((await request.body()).decode()).get("token") or [""])[0].strip()
        if not token:
            raise HTTPException(422, "form field token: missing")
        try:
            verify(web.token_key, token)
        except InvalidToken as error:
            return HTMLResponse(pages.login(f"invalid token: {error}"), status_code=401)
        response = RedirectResponse("/", status_code=303)
        # SameSite=Strict: another site's form cannot post with it (the replay buttons).
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=12 * 3600)
        return response

    @app.post(
        "/logout",
        tags=["ops pages"],
        summary="Forget the cookie",
        responses={303: {"description": "to /login"}},
    )
    async def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response
