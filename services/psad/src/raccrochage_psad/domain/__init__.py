"""Pure rules of a PSAD case: its state machine, contacts, interviews, deadlines."""
