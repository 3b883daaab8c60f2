"""Pure rules of repérage: parsing, eligibility, territory. No I/O framework here."""
