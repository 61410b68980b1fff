"""Accessibility checks with axe-core in the browser tests.

axe.min.js comes from the PyPI package `axe-playwright-python` (requirements-test.txt), which ships
axe-core's script (MPL-2.0); only that script is used, injected into the page and run here, so the
rules and the report are ours. Nothing is fetched at run time.

    from tests.axe import assert_no_violations
    assert_no_violations(page)                      # the whole page, WCAG 2.x A/AA and best practices
    assert_no_violations(page, exclude=["#foo"])    # leave out what the project does not own
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

# WCAG 2.0/2.1/2.2 A and AA, plus axe's best practices (landmarks with names, one main, headings).
RULE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


@cache
def axe_script() -> str:
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text(encoding="utf-8")


def axe_version(page) -> str:
    _inject(page)
    return page.evaluate("axe.version")


def _inject(page) -> None:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_script())


def violations(page, *, exclude: list[str] | None = None, tags: list[str] | None = None) -> list[dict]:
    """axe's violations on the page as it is now (each with its rule id, impact, help and nodes)."""
    _inject(page)
    context = {"exclude": [[selector] for selector in exclude]} if exclude else None
    # preload: false: axe would otherwise re-read every stylesheet (the admin's forms.css @imports
    # widgets.css) into <style> elements, which the portal's Content-Security-Policy blocks, and every
    # browser test fails on a CSP violation (tests/conftest.py). Only the experimental
    # css-orientation-lock rule needs that CSSOM, and experimental rules are not run.
    options = {"runOnly": {"type": "tag", "values": tags or RULE_TAGS}, "resultTypes": ["violations"], "preload": False}
    return page.evaluate(
        "([context, options]) => axe.run(context || document, options).then(results => results.violations)",
        [context, options],
    )


def report(found: list[dict]) -> str:
    """One line per rule and the first few elements it names, readable in a test failure."""
    lines = []
    for violation in found:
        lines.append(f"{violation['id']} ({violation.get('impact')}): {violation['help']}  {violation['helpUrl']}")
        for node in violation["nodes"][:5]:
            lines.append(f"    {json.dumps(node['target'])}: {node.get('failureSummary', '').splitlines()[-1:]}")
    return "\n".join(lines)


def assert_no_violations(page, *, exclude: list[str] | None = None, what: str = "") -> None:
    found = violations(page, exclude=exclude)
    assert not found, f"axe found {len(found)} violation(s) on {what or page.url}:\n{report(found)}"
