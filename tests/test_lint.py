"""The code passes the linter: ``ruff check`` with the settings of pyproject.toml ([tool.ruff])."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    checked = ["sdoml_sql", "tests", "benchmarks", "docs/notebooks"]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *checked],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
