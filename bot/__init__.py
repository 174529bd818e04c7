"""Siyu's platform-free core: message types, the pipeline, members and sessions, SQL storage,
settings, the LLM client, and the composition root (``bot.app``) with the CLI (``bot.cli``)."""
