"""A system binary a test needs: a failure in CI, a skip on a developer's machine."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI") == "true"


def need_binary(path: str, what: str) -> str:
    """A system binary a test needs: a failure in CI, a skip on a developer's machine."""
    found = shutil.which(path) or (path if os.path.exists(path) else None)
    if found is None:
        if IN_CI:
            pytest.fail(f"{what} ({path}) is missing in CI: .ci/run must install it")
        pytest.skip(f"{what} ({path}) is not installed here")
    return found
