"""Who may act on an offer: an establishment's API key or a partner, each on its own UAIs only."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import NotYourEstablishment
from .offer_types import Owner, OwnerKind, Source
from .uai import Uai


@dataclass(frozen=True)
class Actor:
    """The caller, as its credential says (an API key's UAIs, a partner's registration): never
    as a payload says."""

    kind: OwnerKind
    id: str  # the partner id, or the API key's id
    uais: frozenset[Uai]

    @classmethod
    def partner(cls, partner_id: str, uais: frozenset[Uai] | set[Uai]) -> Actor:
        return cls(OwnerKind.PARTNER, partner_id, frozenset(uais))

    @classmethod
    def establishment(cls, key_id: str, uais: frozenset[Uai] | set[Uai]) -> Actor:
        return cls(OwnerKind.ESTABLISHMENT, key_id, frozenset(uais))

    def may_act_on(self, uai: Uai) -> bool:
        return uai in self.uais

    def check(self, uai: Uai) -> None:
        if not self.may_act_on(uai):
            raise NotYourEstablishment(f"{self.kind.value} {self.id} is not registered for UAI {uai}")

    def owner_for(self, uai: Uai) -> Owner:
        """The owner of an offer this actor publishes: the partner, or the establishment itself."""
        self.check(uai)
        return Owner.partner(self.id) if self.kind is OwnerKind.PARTNER else Owner.establishment(uai)

    @property
    def default_source(self) -> Source:
        return Source.PARTNER_FEED if self.kind is OwnerKind.PARTNER else Source.ESTABLISHMENT_API
