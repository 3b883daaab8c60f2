"""The MLDS's settings: default capacities per kind, and a survey threshold never below 5."""

import pytest
from raccrochage_mlds.config import MldsSettings
from raccrochage_mlds.domain.catalogue import DispositifKind
from raccrochage_platform.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACCROCHAGE_SERVICE", "mlds")
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("RACCROCHAGE_TOKEN_KEY", "k" * 32)
    for name in (
        "MLDS_CAPACITY_PAPS",
        "MLDS_CAPACITY_DIPA",
        "MLDS_CAPACITY_MICRO_LYCEE",
        "MLDS_SURVEY_THRESHOLD",
    ):
        monkeypatch.delenv(name, raising=False)


def test_default_capacities_and_an_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(MldsSettings).default_capacities() == {
        DispositifKind.PAPS: 15,
        DispositifKind.DIPA: 15,
        DispositifKind.MICRO_LYCEE: 30,
    }
    monkeypatch.setenv("MLDS_CAPACITY_MICRO_LYCEE", "24")
    assert load_settings(MldsSettings).default_capacities()[DispositifKind.MICRO_LYCEE] == 24


def test_the_survey_threshold_cannot_go_below_5(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLDS_SURVEY_THRESHOLD", "3")
    with pytest.raises(ConfigError, match="MLDS_SURVEY_THRESHOLD"):
        load_settings(MldsSettings)
