"""The SQL files of ``sql/``: views, macros and example queries, packaged or from the checkout."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from sdoml_sql.exceptions import CatalogError, QueryError


def sql_dir():
    """The ``sql/`` directory: packaged as ``sdoml_sql/sql`` in a wheel, else the checkout's."""
    packaged = resources.files("sdoml_sql") / "sql"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "sql"
    if checkout.is_dir():
        return checkout
    raise CatalogError("the sql/ directory of sdoml-sql is missing from the installation")


def read_sql(name: str) -> str:
    """The text of ``sql/<name>`` (e.g. ``"macros.sql"``, ``"views/aia.sql"``)."""
    path = sql_dir()
    for part in name.split("/"):
        path = path / part
    if not path.is_file():
        raise CatalogError(f"no SQL file {name} in {sql_dir()}")
    return path.read_text(encoding="utf-8")


def example_names() -> list[str]:
    """Names of the example queries in ``sql/examples`` (without ``.sql``), sorted."""
    folder = sql_dir() / "examples"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".sql"))


def example(name: str) -> str:
    """The text of example query ``name`` (``sql/examples/<name>.sql``)."""
    return read_sql(f"examples/{name}.sql")


def read_sql_file(path: str | os.PathLike) -> str:
    """The text of an SQL file (``@FILE`` on the command line).  A path under ``sql/`` that
    does not exist from the current directory (``sql/examples/hmi_3min.sql``) is read from
    the installed package, so the examples work from any directory."""
    file = Path(path).expanduser()
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        parts = Path(path).parts
        if len(parts) > 1 and parts[0] == "sql" and not file.is_absolute():
            packaged = sql_dir().joinpath(*parts[1:])
            if packaged.is_file():
                return packaged.read_text(encoding="utf-8")
        raise QueryError(f"no SQL file {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise QueryError(f"cannot read SQL file {path}: {getattr(error, 'strerror', None) or error}") from None


def render(template: str, **values: str) -> str:
    """Fill ``{name}`` placeholders of an SQL template (other braces are left alone)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def sql_string(text: str) -> str:
    """``text`` as the inside of a single-quoted SQL literal."""
    return text.replace("'", "''")
