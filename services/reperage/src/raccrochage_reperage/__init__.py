"""Repérage: find the youths who left school without a diploma and are found nowhere."""
