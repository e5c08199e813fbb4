"""Shared fixtures: where the shared reference data is (`../shared` beside the repository, or $FE_SHARED_DIR)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared() -> Path:
    path = Path(os.environ.get("FE_SHARED_DIR", REPO.parent / "shared"))
    if not (path / "reference").is_dir():
        pytest.fail(f"shared reference data not found at {path}: clone the repository beside `shared/`, "
                    "or set FE_SHARED_DIR")
    return path


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    "Run headless Chromium with some arguments; returns its stdout. Skips (fails under CI) without it."
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        msg = "Chromium not found: install Debian's chromium (`apt-get install chromium`) for the browser tests"
        if os.environ.get("CI"): pytest.fail(msg)
        pytest.skip(msg)
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(*args, timeout=120) -> str:
        r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"chromium failed ({r.returncode}):\n{r.stderr[-3000:]}"
        return r.stdout
    return run
