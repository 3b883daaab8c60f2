"""Repérage's use cases: ingest a campaign, ingest a partner base, record a live enrolment, give a contact card."""
