"""README stays true: every console command and Python block in it runs, every CLI command and
public name is documented (the ```sql blocks are run by test_examples.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sdoml_sql
from sdoml_sql.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text(), flags=re.S)


def console_commands() -> list[str]:
    return [line[2:] for block in blocks("console") for line in block.splitlines() if line.startswith("$ ")]


@pytest.fixture(scope="module")
def workdir(sample_dir, catalog_dir, tmp_path_factory):
    """A directory laid out as after `make demo`: demo-output/stores and demo-output/catalog."""
    work = tmp_path_factory.mktemp("readme")
    (work / "demo-output").mkdir()
    (work / "demo-output" / "stores").symlink_to(sample_dir)
    shutil.copytree(catalog_dir, work / "demo-output" / "catalog")
    (work / "sql").symlink_to(ROOT / "sql")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    script = bin_dir / "sdoml-sql"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sdoml_sql.cli "$@"\n')
    script.chmod(0o755)
    return work


def run_in(workdir: Path, command: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{workdir / 'bin'}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}
    env.pop("SDOML_CATALOG", None)
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def test_readme_has_commands_for_every_cli_command():
    text = README.read_text()
    commands = console_commands()
    for name in main.commands:
        assert f"### `sdoml-sql {name}`" in text, name
        assert any(c.startswith(f"sdoml-sql {name} ") or f"| sdoml-sql {name} " in c for c in commands), name


def test_readme_names_every_public_name():
    text = README.read_text()
    for name in sdoml_sql.__all__:
        if name != "__version__":
            assert f"`{name}" in text, name


def test_readme_console_commands_run(workdir):
    commands = console_commands()
    assert len(commands) >= 14
    for command in commands:
        result = run_in(workdir, ["bash", "-o", "pipefail", "-c", command])
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
    outputs = workdir / "demo-output"
    for produced in ("day.npy", "day.headers.parquet", "day.gif", "eve.png", "bz.png", "hmi.csv",
                     "small/sdomlv2_small.zarr/.zgroup"):
        assert (outputs / produced).exists(), produced
    assert len(list((outputs / "short-frames").glob("*.fits"))) > 0


def test_readme_python_runs(workdir):
    code = "\n".join(blocks("python"))
    assert "sdoml_sql.Catalog" in code
    result = run_in(workdir, [sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "demo-output" / "eve-lines.png").stat().st_size > 10_000


def test_every_module_readme_names_exists():
    # `sdoml_sql.fetch.maps` (dotted) and `fetch/stack.py` (the Development tree) must be real.
    import importlib

    text = README.read_text()
    dotted = set(re.findall(r"\bsdoml_sql(?:\.[A-Za-z_]\w*)+", text))
    assert "sdoml_sql.stores.sample.write_sample" in dotted
    for name in sorted(dotted):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                target = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            break
        for attribute in parts[cut:]:
            assert hasattr(target, attribute), f"README names {name}: {'.'.join(parts[:cut])} has no {attribute}"
            target = getattr(target, attribute)
    tree = re.search(r"## Development\n\n```\n(.*?)```", text, flags=re.S).group(1)
    package, folder = ROOT / "sdoml_sql", None
    named = 0
    for line in tree.splitlines():
        indent = len(line) - len(line.lstrip())
        words = line.split()
        if indent == 2 and words and words[0].endswith("/"):
            folder = package / words[0].rstrip("/")
        for word in words:
            if word.endswith(".py") and indent >= 2 and "/" not in word:
                where = folder if indent > 2 and folder else package
                assert (where / word).is_file() or (package / word).is_file(), f"README names {word} in {where}"
                named += 1
    assert named >= 25
