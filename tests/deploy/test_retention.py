"""Retention covers every service that holds youths, and docs/privacy.md says what is configured."""

from pathlib import Path

from raccrochage_platform.privacy import answering_services
from raccrochage_platform.retention import RetentionSettings
from raccrochage_platform.service import installed_services
from raccrochage_platform.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
PRIVACY = (ROOT / "docs" / "privacy.md").read_text(encoding="utf-8")


def test_every_service_that_erases_youths_and_the_vault_have_retention_rules() -> None:
    specs = installed_services()
    holding = {"reperage", *answering_services(load_topology())}
    assert {name for name in holding if specs[name].retention is None} == set()


def test_the_documented_periods_are_the_settings_and_dead_letters_expire_after_90_days() -> None:
    defaults = RetentionSettings()
    for name, info in RetentionSettings.model_fields.items():
        variable = str(info.validation_alias)
        if variable.startswith("RETENTION_"):
            assert f"| `{variable}` | {getattr(defaults, name)} |" in PRIVACY, variable
    assert load_topology().streams["DEADLETTER"].max_age_days == 90
