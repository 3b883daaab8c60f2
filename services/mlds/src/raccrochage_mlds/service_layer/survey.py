"""The yearly survey from the MLDS's own events (a replay of its stream, or the outbox)."""

from __future__ import annotations

from collections.abc import Iterable

from raccrochage_contracts import CloudEvent
from raccrochage_contracts.events.mlds_v1 import EnrolmentExited, EnrolmentStarted

from ..domain.catalogue import DispositifKind
from ..domain.dates import SchoolYear
from ..domain.states import ExitDestination
from ..domain.survey import Leave, Start, Survey, build_survey

READ = {"mlds.enrolment.started.v1": EnrolmentStarted, "mlds.enrolment.exited.v1": EnrolmentExited}


def survey_from_events(events: Iterable[CloudEvent], year: SchoolYear, threshold: int = 5) -> Survey:
    """Every enrolment start and exit among `events` (others are skipped), read as a consumer
    reads them (fields added later are ignored), then the survey of `year`."""
    starts, leaves = [], []
    for envelope in events:
        model = READ.get(envelope.type)
        if model is None:
            continue
        data = model.read(envelope.data)
        if isinstance(data, EnrolmentStarted):
            starts.append(
                Start(
                    data.candidacy_id,
                    data.youth_id,
                    DispositifKind(data.dispositif),
                    data.departement,
                    data.started_on,
                    data.under_obligation_de_formation,
                )
            )
        else:
            leaves.append(
                Leave(
                    data.candidacy_id,
                    data.youth_id,
                    DispositifKind(data.dispositif),
                    data.departement,
                    data.started_on,
                    data.exited_on,
                    ExitDestination(data.destination),
                )
            )
    return build_survey(year, starts, leaves, threshold)
