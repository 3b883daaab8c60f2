"""FOQUALE: the directory of seats a youth can return to, and reservations that become placements."""
