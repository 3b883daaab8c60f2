"""PSAD's settings: what differs from the platform's defaults."""

import pytest
from raccrochage_platform.settings import load_settings
from raccrochage_psad.config import PsadSettings


def test_psad_deletes_its_published_outbox_rows_unless_told_to_keep_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RACCROCHAGE_SERVICE", "psad")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("RACCROCHAGE_TOKEN_KEY", "k" * 32)
    monkeypatch.delenv("RACCROCHAGE_OUTBOX_RETENTION_SECONDS", raising=False)
    assert load_settings(PsadSettings).outbox_retention_seconds == 0  # its inbox drops a re-run
    monkeypatch.setenv("RACCROCHAGE_OUTBOX_RETENTION_SECONDS", "3600")
    assert load_settings(PsadSettings).outbox_retention_seconds == 3600
