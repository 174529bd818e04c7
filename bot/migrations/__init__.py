"""Siyu's Alembic environment: ``env.py``, the revision template and ``versions/``.

Run through :mod:`bot.schema` (``siyu db upgrade``); developers add revisions as
``docs/migrations.md`` describes.
"""
