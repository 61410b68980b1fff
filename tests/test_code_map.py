"""House rules checked on every run: the README's code map names every part and module of the tree,
and no module outside tests and migrations grows past 500 lines."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Packages whose inner modules the map describes in words (listed by their folder only).
DESCRIBED_AS_A_WHOLE = {"migrations", "templatetags", "management", "simulator", "services", "presenters", "inbound"}


def code_map() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```\n(portal/ .*?)```", readme, re.S)
    assert match, "README.md has no code map (a code block starting with 'portal/')"
    return match.group(1)


def listed_modules() -> list[Path]:
    """Every module of portal/ and sessions/ the map must name, and every package folder."""
    paths = []
    for package in ("portal", "sessions"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            inner = relative.parts[1:-1]
            if path.name == "__init__.py" or any(part in DESCRIBED_AS_A_WHOLE for part in inner[1:]):
                continue
            if inner and inner[0] in {"migrations", "templatetags", "management"}:
                continue
            paths.append(relative)
    return paths


def test_every_module_and_part_is_on_the_code_map():
    text = code_map()
    missing = [str(path) for path in listed_modules() if not re.search(rf"\b{re.escape(path.stem)}\b", text)]
    folders = {path.parts[1] for path in listed_modules() if len(path.parts) > 2}
    missing += [f"sessions/{folder}/" for folder in sorted(folders) if f"{folder}/" not in text]
    assert not missing, f"README's code map does not name: {', '.join(missing)}"


def test_the_code_map_names_no_module_that_is_gone():
    text = code_map()
    named = set(re.findall(r"\b(\w+)\.py\b", text))
    existing = {
        path.stem for package in ("portal", "sessions", "scripts", "tests") for path in (ROOT / package).rglob("*.py")
    }
    assert not named - existing, f"README's code map names modules that do not exist: {sorted(named - existing)}"


def test_no_module_outside_tests_and_migrations_is_over_500_lines():
    """A module that grows past this holds more than one idea: split it by what it does."""
    too_long = {
        str(path.relative_to(ROOT)): lines
        for folder in ("portal", "sessions", "bench", "scripts")
        for path in (ROOT / folder).rglob("*.py")
        if "migrations" not in path.parts and (lines := len(path.read_text().splitlines())) > 500
    }
    assert not too_long, f"modules over 500 lines: {too_long}"
