"""Hubject's own files in ../shared/oicp-spec/, read by the tests that prove the portal against them.

They are reference material beside the project, not part of it. On a developer's machine without
them such a test skips and says where the file should be; in CI (CI=true) a missing file fails the
test, as a missing server does (tests/servers.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

SPEC_DIR = Path(__file__).resolve().parents[2] / "shared" / "oicp-spec"


def spec_file(relative: str) -> Path:
    """The path of a file under ../shared/oicp-spec/; skips (fails under CI) when it is missing."""
    path = SPEC_DIR / relative
    if not path.exists():
        message = f"Hubject's file is not at {path} (../shared/oicp-spec/{relative} beside the project)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


_SECTION = re.compile(r"^== (\S+)\s*$", re.MULTILINE)
_LISTING = re.compile(r"^----\s*$(.*?)^----\s*$", re.MULTILINE | re.DOTALL)


def code_snippets(relative: str) -> dict[str, list[str]]:
    """The JSON listings of an asciidoc code-snippets file by section title, request then response."""
    text = spec_file(relative).read_text(encoding="utf-8")
    starts = list(_SECTION.finditer(text))
    snippets: dict[str, list[str]] = {}
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        snippets[match.group(1)] = [listing.strip() for listing in _LISTING.findall(text, match.end(), end)]
    return snippets
