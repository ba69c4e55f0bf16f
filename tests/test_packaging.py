"""The wheel ships the SQL: top-level ``sql/`` goes in as ``sdoml_sql/sql`` (hatchling
force-include), and a non-editable install finds it.

Builds the wheel offline with the venv's hatchling (``pip wheel --no-build-isolation``),
installs it with ``pip install --no-deps --target`` into a scratch directory and, from a
directory outside the checkout, opens a catalog and runs a query that needs a view and a macro.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("hatchling", reason="the test extra installs hatchling: pip install -e '.[test]'")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "--no-index", "--quiet", "-w", str(out)],
                   check=True, cwd=out, env=_pip_env(), timeout=300)
    (built,) = out.glob("sdoml_sql-*.whl")
    return built


def _pip_env() -> dict[str, str]:
    return {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def test_wheel_holds_every_sql_file_under_the_package(wheel):
    expected = {"sdoml_sql/sql/" + p.relative_to(ROOT / "sql").as_posix()
                for p in (ROOT / "sql").rglob("*") if p.is_file()}
    assert {"sdoml_sql/sql/macros.sql", "sdoml_sql/sql/views/aia.sql"} <= expected
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert expected <= names, sorted(expected - names)
    assert not any(n.startswith("sql/") for n in names)  # only inside the package


def test_wheel_ships_the_explorer_pages(wheel):
    static = ROOT / "sdoml_sql" / "web" / "static"
    expected = {"sdoml_sql/web/static/" + p.name for p in static.iterdir() if p.is_file()}
    assert {"sdoml_sql/web/static/app.js", "sdoml_sql/web/static/sql.html"} <= expected
    with zipfile.ZipFile(wheel) as archive:
        assert expected <= set(archive.namelist())


def test_installed_wheel_finds_its_sql_outside_the_checkout(wheel, catalog_dir, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                    "--target", str(target), str(wheel)],
                   check=True, cwd=tmp_path, env=_pip_env(), timeout=300)
    assert (target / "sdoml_sql" / "sql" / "macros.sql").is_file()
    script = textwrap.dedent(f"""
        import sdoml_sql, sdoml_sql.query.sqlfiles as c
        assert {str(ROOT)!r} not in sdoml_sql.__file__, sdoml_sql.__file__
        print("SQL_DIR", c.sql_dir())
        cat = sdoml_sql.Catalog({str(catalog_dir)!r})
        sel = cat.query("SELECT n.idx, h.T_OBS_STR FROM nearest('hmi', 'Bz', '2010-08-27', "
                        "'2010-08-27 01:00', INTERVAL 12 minutes, INTERVAL 3 minutes) n "
                        "JOIN hmi h USING (year, channel, idx) ORDER BY n.row")
        print("ROWS", len(sel), sel.to_pandas().idx.tolist())
        print("EXAMPLES", len(c.example_names()))
        from sdoml_sql.web import get
        status, kind, body = get(cat, "/timeline")
        print("PAGE", status, kind, b"<svg" in body or b"timeline" in body)
    """)
    env = {k: v for k, v in _pip_env().items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    done = subprocess.run([sys.executable, "-c", script], cwd=outside, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert Path(lines["SQL_DIR"]) == target / "sdoml_sql" / "sql"
    assert lines["ROWS"].startswith("5 [0, 1, 2, 3, 4]")
    assert int(lines["EXAMPLES"]) == len(list((ROOT / "sql" / "examples").glob("*.sql")))
    assert lines["PAGE"] == "200 text/html; charset=utf-8 True"
