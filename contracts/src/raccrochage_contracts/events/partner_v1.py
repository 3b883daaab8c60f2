"""Events partner systems send about enrolments, version 1.

They carry identities (INE, or names and birth date) because that is how a partner knows a
youth. So they never enter a stream: a partner sends them by NATS request/reply on
`partner.<partner_id>.enrolment.<verb>.v1` to the repérage identity vault, which answers once the
enrolment is committed (or says what is wrong, and where). The partner comes from the subject,
which its NATS credentials restrict; the payload cannot name another.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field, model_validator

from ..payload import Payload
from ..registry import event_type


class _Enrolment(Payload):
    ine: str | None = Field(
        None,
        max_length=40,  # spaces a partner's system puts in are removed by the vault
        description="11 letters or digits; may be empty when the partner has none",
    )
    nom: str = Field(min_length=1, max_length=120)
    prenom: str = Field(min_length=1, max_length=120)
    date_naissance: date
    training: str | None = Field(None, max_length=200, description="the training or contract, as a label")


@event_type("partner.enrolment.started.v1")
class EnrolmentStarted(_Enrolment):
    """A youth starts a training, an apprenticeship or an accompaniment at the partner."""

    date_debut: date
    date_fin: date | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> EnrolmentStarted:
        if self.date_fin is not None and self.date_fin < self.date_debut:
            raise ValueError("date_fin is before date_debut")
        return self


@event_type("partner.enrolment.ended.v1")
class EnrolmentEnded(_Enrolment):
    """The enrolment ended (contract broken, training left or finished)."""

    date_debut: date | None = None
    date_fin: date
