"""The catalogue from the guide's directory, and a site's places."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from raccrochage_mlds.config import DEFAULT_CAPACITIES
from raccrochage_mlds.domain.catalogue import (
    CapacityError,
    CatalogueError,
    DispositifKind,
    Entries,
    NoPlaceLeft,
    catalogue,
    read_directory,
)
from raccrochage_mlds.reference import directory_text

NOW = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
K = DispositifKind


def sites():
    return catalogue(read_directory(directory_text()), DEFAULT_CAPACITIES, NOW)


def test_the_guide_lists_47_paps_1_dipa_and_3_micro_lycees() -> None:
    """ "Le réseau de la mission de lutte contre le décrochage scolaire est composé de : 47 pôles
    d'accompagnement à la persévérance scolaire (PAPS), 1 dispositif d'insertion pour
    primo-arrivants (DIPA), 3 micro-lycées"."""
    assert Counter(s.kind for s in sites()) == {K.PAPS: 47, K.DIPA: 1, K.MICRO_LYCEE: 3}


def test_sites_are_numbered_by_kind_and_departement_in_the_directory_order() -> None:
    by_id = {s.dispositif_id: s for s in sites()}
    assert len(by_id) == 51
    assert by_id["paps-24-01"].host_establishment == "LP des métiers Sud Périgord Hélène Duc"
    assert by_id["dipa-33-01"].host_establishment == "LPO A. Kastler"
    assert by_id["micro_lycee-47-01"].city == "AGEN"  # "Le micro-lycée d'Agen implanté au LP Antoine Lomet"
    assert {s.dispositif_id for s in sites() if s.kind is K.MICRO_LYCEE} == {
        "micro_lycee-47-01",
        "micro_lycee-33-01",
        "micro_lycee-33-02",
    }
    assert {s.departement for s in sites()} == {"24", "33", "40", "47", "64"}


def test_each_site_starts_with_its_kinds_default_capacity_and_no_uai() -> None:
    for site in sites():
        assert (site.capacity, site.places_taken, site.host_uai) == (DEFAULT_CAPACITIES[site.kind], 0, None)


def test_sessions_paps_enter_and_leave_all_year_the_micro_lycee_enters_at_the_rentree() -> None:
    paps, micro = (next(s for s in sites() if s.kind is kind) for kind in (K.PAPS, K.MICRO_LYCEE))
    assert (paps.sessions.entries, paps.sessions.exits) == (Entries.ALL_YEAR, Entries.ALL_YEAR)
    assert paps.sessions.next_entry(date(2026, 11, 12)) == date(2026, 11, 12)
    # "Formation sur 2 ans pour préparer un baccalauréat"
    assert micro.sessions.length_months == 24
    assert micro.sessions.next_entry(date(2026, 11, 12)) == date(2027, 9, 1)
    assert micro.sessions.next_entry(date(2027, 9, 1)) == date(2027, 9, 1)


def test_a_bad_directory_line_is_named_with_its_field() -> None:
    text = (
        "dispositif,departement,etablissement,adresse,code_postal,ville,telephone\n"
        "PAPS,33,LP X,1 rue,33000,BORDEAUX,05\n"
        "CLAUSE,33,LP Y,1 rue,33000,BORDEAUX,05\n"
        "PAPS,75,LP Z,1 rue,75000,PARIS,01\n"
        "PAPS,33,,1 rue,33000,,05\n"
    )
    with pytest.raises(CatalogueError) as error:
        read_directory(text, "upload.csv")
    assert str(error.value).splitlines() == [
        "upload.csv: line 3: dispositif 'CLAUSE' is not one of PAPS, DIPA, MICRO_LYCEE",
        "upload.csv: line 4: departement '75' is not in the académie",
        "upload.csv: line 5: etablissement is empty",
        "upload.csv: line 5: ville is empty",
    ]
    with pytest.raises(CatalogueError, match="line 1: missing columns telephone"):
        read_directory("dispositif,departement,etablissement,adresse,code_postal,ville\n")


def test_never_more_places_taken_than_the_capacity() -> None:
    site = sites()[0]
    site.set_capacity(2, NOW)
    site.take_place(NOW)
    site.take_place(NOW)
    before = (site.places_taken, site.revision)
    with pytest.raises(NoPlaceLeft):
        site.take_place(NOW)
    assert (site.places_taken, site.revision) == before
    with pytest.raises(CapacityError, match="below the 2 places taken"):
        site.set_capacity(1, NOW)
    site.release_place(NOW)
    assert (site.places_taken, site.places_left) == (1, 1)
    assert site.changes == ["capacity_set", "place_taken", "place_taken", "place_released"]


@given(st.lists(st.sampled_from(["take", "release", "capacity"]), max_size=60), st.integers(0, 20))
def test_any_sequence_of_commands_keeps_places_within_capacity(commands, capacity) -> None:
    site = sites()[0]
    site.set_capacity(capacity, NOW)
    now = NOW
    for i, command in enumerate(commands):
        now += timedelta(minutes=1)
        try:
            if command == "take":
                site.take_place(now)
            elif command == "release":
                site.release_place(now)
            else:
                site.set_capacity(i % 7, now)
        except CapacityError:
            pass
        assert 0 <= site.places_taken <= site.capacity
        assert site.places_left == site.capacity - site.places_taken
