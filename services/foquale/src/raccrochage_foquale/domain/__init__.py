"""Pure rules of FOQUALE: establishments' codes, seat offers and their freshness, reservations, matching."""
