"""The one module that knows the SQL files: named queries and numbered migrations.

Queries live in ``sql/queries.sql`` as ``-- name: NAME`` blocks with ``:param`` placeholders;
``sql/<dialect>.sql`` overrides a query by name where the SQL must differ. Keeping SQL in
files lets it be read, reviewed and EXPLAINed as SQL.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Literal

Dialect = Literal["sqlite", "postgres"]

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def _read(name: str) -> str:
    return resources.files("mailsms.store").joinpath("sql", name).read_text(encoding="utf-8")


def _split(text: str) -> dict[str, str]:
    chunks = _NAME.split(text)
    out: dict[str, str] = {}
    for name, body in zip(chunks[1::2], chunks[2::2], strict=True):
        lines = [ln for ln in body.splitlines() if not ln.lstrip().startswith("--")]
        out[name] = "\n".join(lines).strip().rstrip(";")
    return out


@cache
def queries(dialect: Dialect) -> dict[str, str]:
    """Every named query for ``dialect``, placeholders already in the driver's style."""
    merged = {**_split(_read("queries.sql")), **_split(_read(f"{dialect}.sql"))}
    if dialect == "postgres":
        return {k: _PARAM.sub(r"%(\1)s", v) for k, v in merged.items()}
    return merged


def migrations(dialect: Dialect) -> list[tuple[int, str, str]]:
    """(version, name, SQL) of every migration file, in order."""
    folder = resources.files("mailsms.store").joinpath("sql", "migrations", dialect)
    found = []
    for entry in folder.iterdir():
        match = re.match(r"^(\d+)_(\w+)\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)
