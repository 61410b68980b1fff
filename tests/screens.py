"""What the browser tests share to look at a page as people will: screenshots at the two widths
SCREENS.md asks for, and axe at both."""

from __future__ import annotations

import os
from pathlib import Path

from tests.axe import assert_no_violations

WIDTHS = (1366, 390)
HEIGHT = 850


def shoot(page, name: str) -> None:
    """With PORTAL_SCREENSHOTS set: the page at 1366 and at 390 px wide (full height)."""
    folder = os.environ.get("PORTAL_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        page.screenshot(path=f"{folder}/{name}-{width}.png", full_page=True)
    page.set_viewport_size({"width": WIDTHS[0], "height": HEIGHT})


def axe_at_both_widths(page, what: str) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": HEIGHT})
        assert_no_violations(page, what=f"{what} at {width} px")
    page.set_viewport_size({"width": WIDTHS[0], "height": HEIGHT})
