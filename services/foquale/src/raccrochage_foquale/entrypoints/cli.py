"""`raccrochage partner add ID`: declare a partner system and give it a NATS user.

The partner is appended to deploy/partners.toml (or the file `RACCROCHAGE_PARTNERS` names), its
password generated into the rig's credentials (`<rig dir>/nats/partners.json`, readable by its
owner only). The rig's nats-server renders partners' users when it starts: the new partner can
connect after the next `raccrochage up`. In production the same entry is rendered into
users.conf from deploy/nats/partner-user.template.conf, with the password from the environment
variable printed here.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated

import typer

from ..adapters.partners import inbox_prefix
from ..domain.errors import InvalidCommand
from ..domain.uai import Uai

partner_app = typer.Typer(help="Partner systems: their declaration and NATS users.", no_args_is_help=True)
BASES = ("cfa", "agri", "ml", "mlds", "en")  # reperage_v1.PartnerBase: repérage reads every entry's


@partner_app.command("add")
def add(
    partner_id: Annotated[str, typer.Argument(help="one subject token: a-z, 0-9, '_' or '-'")],
    base: Annotated[str, typer.Option(help=f"the kind of base it is: {', '.join(BASES)}")],
    name: Annotated[str, typer.Option(help="who the partner is, for people")] = "",
    seat_uai: Annotated[
        list[str] | None, typer.Option("--seat-uai", help="an establishment it publishes seats for (repeat)")
    ] = None,
    records_per_second: Annotated[
        float | None, typer.Option(help="its records applied per second at most (else [limits]'s)", min=0.01)
    ] = None,
    max_backlog: Annotated[
        int | None, typer.Option(help="its records waiting beyond which the oldest are refused", min=1)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the credentials as one JSON object")] = False,
) -> None:
    """Declare a partner (deploy/partners.toml) and generate its NATS user and password."""
    # The rig renders and keeps the users: a developer's command (a service image has no rig).
    from raccrochage_rig.nats import (
        PARTNER_ID,
        PARTNERS_TOML,
        declared_partners,
        partner_credentials,
        partner_password_env,
        partner_user,
    )
    from raccrochage_rig.state import rig_dir

    if not PARTNER_ID.match(partner_id):
        raise typer.BadParameter(
            f"{partner_id!r}: lowercase letters, digits, '_' or '-', 2 to 63", param_hint="ID"
        )
    if base not in BASES:
        raise typer.BadParameter(f"{base!r} is not one of {', '.join(BASES)}", param_hint="--base")
    uais = []
    for text in seat_uai or []:
        try:
            uais.append(str(Uai.parse(text)))
        except InvalidCommand as error:
            raise typer.BadParameter(str(error), param_hint="--seat-uai") from None
    path = Path(os.environ.get("RACCROCHAGE_PARTNERS", PARTNERS_TOML))
    if partner_id in declared_partners(path):
        raise typer.BadParameter(f"{partner_id} is already declared in {path}", param_hint="ID")
    entry = [f"\n[partners.{partner_id}]", f"base = {json.dumps(base)}"]
    entry.append(f"name = {json.dumps(name or partner_id, ensure_ascii=False)}")
    if uais:
        entry.append(f"seat_uais = {json.dumps(uais)}")
    if records_per_second is not None:  # else the file's [limits] (docs/foquale.md, flood limits)
        entry.append(f"records_per_second = {records_per_second:g}")
    if max_backlog is not None:
        entry.append(f"max_backlog = {max_backlog}")
    text = path.read_text(encoding="utf-8")
    tomllib.loads(text + "\n".join(entry) + "\n")  # the file stays valid TOML, or nothing is written
    with path.open("a", encoding="utf-8") as out:
        out.write("\n".join(entry) + "\n")
    folder = rig_dir() / "nats"
    password = partner_credentials(folder, declared_partners(path))[partner_id]
    answer = {
        "partner_id": partner_id,
        "user": partner_user(partner_id),
        "password": password,
        "password_env": partner_password_env(partner_id),
        "inbox_prefix": inbox_prefix(partner_id),
        "publishes": f"partner.{partner_id}.>",
        "credentials": str(folder / "partners.json"),
    }
    if as_json:
        print(json.dumps(answer))
        return
    for key, value in answer.items():
        print(f"{key}: {value}")
    print("the rig's NATS takes the new user at its next `raccrochage up`")


@partner_app.command("list")
def list_partners() -> None:
    """The declared partners, their NATS users and the UAIs they publish seats for."""
    from raccrochage_rig.nats import PARTNERS_TOML, declared_partners, partner_user

    path = Path(os.environ.get("RACCROCHAGE_PARTNERS", PARTNERS_TOML))
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("partners", {})
    for partner_id in declared_partners(path):
        uais = ", ".join(entries[partner_id].get("seat_uais", [])) or "-"
        print(f"{partner_id}\t{partner_user(partner_id)}\tseats: {uais}")
