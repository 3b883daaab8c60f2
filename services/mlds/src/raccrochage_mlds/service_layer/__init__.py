"""Handlers: one async function per command or event, each taking an MldsUnitOfWork."""
