"""Personal-data keys never reach a log line, at any depth and in any spelling."""

import io
import json
import logging

import pytest
import structlog
from raccrochage_platform.logging import configure_logging, get_logger, is_personal_key


@pytest.mark.parametrize(
    "key",
    [
        "nom",
        "NOM",
        "prenom",
        "prénom",
        "Prenom",
        "ine",
        "INE",
        "telephone",
        "téléphone",
        "courriel",
        "adresse",
        "date_naissance",
        "dateNaissance",
        "Date-Naissance",
        "date naissance",
        "birth_date",
        "email",
        "e-mail",
        "phone",
        "first_name",
        "last_name",
    ],
)
def test_personal_keys_are_recognised(key: str) -> None:
    assert is_personal_key(key)


@pytest.mark.parametrize("key", ["youth_id", "departement", "age", "event_id", "reason", "nominal", "line"])
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_personal_key(key)


def test_no_personal_value_reaches_the_output() -> None:
    out = io.StringIO()
    configure_logging("test", "DEBUG", stream=out)
    log = get_logger("t")
    canary = {
        "nom": "CANARYNOM",
        "prenom": "CANARYPRENOM",
        "ine": "CANARY12345",
        "date_naissance": "2008-02-29",
        "telephone": "0600000000",
        "courriel": "canary@example.org",
        "adresse": "1 rue du Canari",
    }
    log.info("youth_seen", youth_id="y-1", **canary)
    log.info("nested", row={"line": 3, "identity": canary}, rows=[canary])
    structlog.contextvars.bind_contextvars(nom="CANARYNOM")
    log.info("bound")
    structlog.contextvars.unbind_contextvars("nom")
    logging.getLogger("stdlib").info("stdlib %s", "ok", extra={"prenom": "CANARYPRENOM"})
    text = out.getvalue()
    for value in canary.values():
        assert value not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["youth_id"] == "y-1" and lines[0]["service"] == "test"
    assert lines[1]["row"] == {"line": 3, "identity": {}}
