"""`raccrochage partner add`: the partner declared, its password generated, and a nats-server the
rig starts afterwards lets it publish on its own subjects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nats
import pytest
from raccrochage_foquale.adapters.partners import seat_partners
from raccrochage_foquale.entrypoints.cli import partner_app
from raccrochage_rig.nats import PARTNERS_TOML, NatsServer
from typer.testing import CliRunner


@pytest.fixture
def partners_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "partners.toml"
    shutil.copy(PARTNERS_TOML, path)
    monkeypatch.setenv("RACCROCHAGE_PARTNERS", str(path))
    monkeypatch.setenv("RACCROCHAGE_RIG_DIR", str(tmp_path / "rig"))
    return path


async def test_an_added_partner_connects_to_the_rigs_nats_and_publishes_its_seats(
    partners_file: Path,
) -> None:
    result = CliRunner().invoke(
        partner_app, ["add", "cfa-pau", "--base", "cfa", "--seat-uai", "0640345C", "--json"]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["user"] == "partner_cfa-pau"
    assert {str(uai) for uai in seat_partners(partners_file)["cfa-pau"].uais} == {"0640345C"}

    server = NatsServer(Path(answer["credentials"]).parent)
    server.start()
    try:
        assert server.partner_passwords["cfa-pau"] == answer["password"]  # kept, not generated again
        nc = await nats.connect(
            server.url, user=answer["user"], password=answer["password"], inbox_prefix=answer["inbox_prefix"]
        )
        await nc.publish("partner.cfa-pau.seats.published.v1", b"{}")
        await nc.flush()
        await nc.close()
    finally:
        server.stop()


def test_a_wrong_id_uai_or_duplicate_is_refused_and_nothing_is_written(partners_file: Path) -> None:
    before = partners_file.read_text(encoding="utf-8")
    runner = CliRunner()
    for args, says in [
        (["add", "cfa.pau", "--base", "cfa"], "lowercase letters"),
        (["add", "cfa-pau", "--base", "cfa", "--seat-uai", "0640345A"], "is C, not A"),
        (["add", "cfa-gironde", "--base", "cfa"], "already declared"),
        (["add", "cfa-pau", "--base", "lycee"], "not one of"),
    ]:
        result = runner.invoke(partner_app, args)
        assert result.exit_code != 0
        assert says in " ".join(result.output.split()), result.output
    assert partners_file.read_text(encoding="utf-8") == before


def test_an_added_partner_gets_its_durable_and_its_limits(partners_file: Path) -> None:
    from raccrochage_foquale.adapters.partners import partner_limits
    from raccrochage_foquale.domain.limits import PartnerLimits
    from raccrochage_platform.topology import load_topology

    runner = CliRunner()
    result = runner.invoke(partner_app, ["add", "cfa-pau", "--base", "cfa", "--max-backlog", "200"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(partner_app, ["add", "ml-pau", "--base", "ml", "--records-per-second", "2.5"])
    assert result.exit_code == 0, result.output
    limits = partner_limits(partners_file)
    assert limits["cfa-pau"] == PartnerLimits(records_per_second=50, max_backlog=200)  # [limits]' rate
    assert limits["ml-pau"] == PartnerLimits(records_per_second=2.5, max_backlog=1000)
    durables = {c.durable for c in load_topology(partners=partners_file).consumers.values()}
    assert {"foquale_partner_cfa-pau", "foquale_partner_ml-pau"} <= durables
