"""FOQUALE's handlers: one async function per command or event, each given a unit of work."""
