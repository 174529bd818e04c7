"""One ``INSERT ... ON CONFLICT`` for SQLite and PostgreSQL: :func:`upsert`.

Both backends speak the same upsert, but SQLAlchemy builds it from each dialect's own ``insert``.
This is the one place that picks between them; every package writes its upserts through it
(the knowledge registry's embedding cache, the campaigns' members, profiles, outbox, rate slots
and send locks).

It lives in ``knowledge`` because that is the one package every other may import and which
itself imports none of them (the import-linter contracts): ``bot``, ``campaigns`` and the
registry all reach it here, so no package keeps a dialect picker of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

__all__ = ["DIALECTS", "Upsert", "upsert"]

DIALECTS = ("sqlite", "postgresql")
"""The SQL backends Siyu runs on (``engine.dialect.name``)."""

Upsert = postgresql.Insert | sqlite.Insert
"""The statement :func:`upsert` returns: add ``.returning(...)`` or execute it as it is."""


def upsert(
    dialect: Dialect,
    table: sa.Table,
    keys: Sequence[str] = (),
    *,
    replace: Sequence[str] = (),
    update: Mapping[str, Any] | None = None,
    where: sa.ColumnElement[bool] | None = None,
) -> Upsert:
    """``INSERT INTO table ... ON CONFLICT (keys)`` for ``dialect`` (an engine's or a
    connection's ``.dialect``).

    Without ``replace`` and ``update`` a conflicting row is left as it is (``DO NOTHING``; with
    no ``keys`` any unique key counts). Otherwise the stored row is updated (``DO UPDATE SET``,
    which needs ``keys``): each column in ``replace`` takes the value the insert proposed (SQL's
    ``excluded``), each in ``update`` the given value or expression, only where ``where`` holds.
    Values are given with ``.values(...)`` or at execution (many rows: one statement).
    """
    if dialect.name not in DIALECTS:
        raise NotImplementedError(f"Siyu supports SQLite and PostgreSQL, not {dialect.name}")
    insert: Upsert = (postgresql if dialect.name == "postgresql" else sqlite).insert(table)
    index = list(keys) or None
    if not replace and not update:
        return insert.on_conflict_do_nothing(index_elements=index)
    if index is None:
        raise ValueError(f"an upsert that updates {table.name} needs the conflict's key columns")
    values = {name: insert.excluded[name] for name in replace} | dict(update or {})
    return insert.on_conflict_do_update(index_elements=index, set_=values, where=where)
