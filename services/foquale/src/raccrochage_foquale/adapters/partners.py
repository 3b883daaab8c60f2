"""The partner systems that publish seats, from deploy/partners.toml.

A partner publishes seats if its entry lists `seat_uais`, the establishments it speaks for; it
may act on those UAIs only. The file is read at start-up (`RACCROCHAGE_PARTNERS` names another):
a partner added later is taken once FOQUALE restarts. Each partner's flood limits are its own
`records_per_second` and `max_backlog`, else those of the file's `[limits]`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from raccrochage_platform.topology import REPO_ROOT

from ..domain.errors import InvalidCommand
from ..domain.limits import PartnerLimits
from ..domain.owners import Actor
from ..domain.uai import Uai

PARTNERS_TOML = REPO_ROOT / "deploy" / "partners.toml"


def inbox_prefix(partner_id: str) -> str:
    """Where a partner's replies arrive: its NATS user may read this inbox and no other."""
    return f"_INBOX.partner_{partner_id}"


def partners_file() -> Path:
    return Path(os.environ.get("RACCROCHAGE_PARTNERS", PARTNERS_TOML))


def seat_partners(path: Path | None = None) -> dict[str, Actor]:
    """Each partner allowed to publish seats, as the actor its records act as. A wrong UAI in the
    file stops the start-up with the partner and the UAI named."""
    source = path or partners_file()
    raw = tomllib.loads(source.read_text(encoding="utf-8"))
    actors = {}
    for partner_id, body in raw.get("partners", {}).items():
        uais = body.get("seat_uais") or []
        parsed = set()
        for text in uais:
            try:
                parsed.add(Uai.parse(text))
            except InvalidCommand as error:
                raise ValueError(f"{source}: partners.{partner_id}.seat_uais: {error}") from None
        if parsed:
            actors[partner_id] = Actor.partner(partner_id, parsed)
    return actors


DEFAULT_LIMITS = {"records_per_second": 50.0, "max_backlog": 1000}  # a file without [limits]


def partner_limits(path: Path | None = None) -> dict[str, PartnerLimits]:
    """Each partner's flood limits; a wrong value stops the start-up with the partner named."""
    source = path or partners_file()
    raw = tomllib.loads(source.read_text(encoding="utf-8"))
    defaults = {**DEFAULT_LIMITS, **raw.get("limits", {})}
    limits = {}
    for partner_id, body in raw.get("partners", {}).items():
        try:
            limits[partner_id] = PartnerLimits(
                records_per_second=float(body.get("records_per_second", defaults["records_per_second"])),
                max_backlog=int(body.get("max_backlog", defaults["max_backlog"])),
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: partners.{partner_id}: {error}") from None
    return limits
