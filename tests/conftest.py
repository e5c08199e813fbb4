"""Shared fixtures: where the shared reference data is (`../shared` beside the repository, or $FE_SHARED_DIR)."""
import os
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
