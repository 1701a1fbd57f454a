"""The code follows the project's ruff settings (pyproject.toml), so the suite enforces them."""

import subprocess
import sys

from conftest import ROOT


def test_ruff_finds_nothing():
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
