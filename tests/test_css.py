"""The style sheets stay tidy (issue 14): one @media block per condition, at the end of each sheet, and
every class a template writes in a class="…" attribute is styled somewhere, or is a hook listed below.

- static/portal/portal.css and static/portal/admin.css: at most one @media block per condition, and no
  ordinary rule after the first @media block (a narrow-screen rule then always comes after the rule it
  adjusts, so equal specificity never lets the base rule win on a narrow screen);
- templates/: each class in a class attribute is defined in the sheet that page loads: portal.css for the
  portal's pages (base.html, 500.html), admin.css or Django admin's own CSS for templates/admin/. Template
  tags ({% if %}…{% endif %}) are read through, so a class written inside a condition counts; a class made
  from a variable (state-{{ x }}) needs its family: some defined class starts with "state-".

No database, no browser: the files are read as text.
"""

from __future__ import annotations

import re
from pathlib import Path

import django
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
PORTAL_CSS = ROOT / "static" / "portal" / "portal.css"
ADMIN_CSS = ROOT / "static" / "portal" / "admin.css"
DJANGO_ADMIN_CSS = Path(django.__file__).parent / "contrib" / "admin" / "static" / "admin" / "css"

# Classes with no style on purpose: something else selects them. One line each says what.
HOOKS = {
    "session-head": "tests/test_cable_stuck_integration.py reads the session's state badge as .session-head .badge.big",
    "anomaly": 'tests/test_anomalies.py finds each anomaly\'s <li> by class="anomaly …"',
    "anomaly-held": 'tests/test_anomalies.py tells a held-back anomaly by class="anomaly anomaly-held"',
}

CLASS_ATTRIBUTE = re.compile(r"""(?<![\w-])class=(?:"((?:[^"{]|\{\{.*?\}\}|\{%.*?%\}|\{(?![{%]))*)"|'([^']*)')""", re.S)
TEMPLATE_TAG = re.compile(r"\{%.*?%\}", re.S)
TEMPLATE_VARIABLE = re.compile(r"\{\{.*?\}\}", re.S)
VARIABLE_MARK = "\0"


def strip_comments(css: str) -> str:
    return re.sub(r"/\*.*?\*/", "", css, flags=re.S)


def top_level_blocks(css: str) -> list[str]:
    """The prelude of each top-level block, in order: a selector list or an at-rule ("@media (…)")."""
    preludes, depth, start = [], 0, 0
    for index, char in enumerate(css):
        if char == "{":
            if depth == 0:
                preludes.append(" ".join(css[start:index].split()))
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                start = index + 1
    assert depth == 0, "unbalanced braces"
    return preludes


def media_conditions(css: str) -> list[str]:
    return [
        re.sub(r"\s*([:(),])\s*", r"\1", prelude[len("@media") :]).strip().lower()
        for prelude in top_level_blocks(strip_comments(css))
        if prelude.startswith("@media")
    ]


def defined_classes(css: str) -> set[str]:
    """Every class named in a selector (inside @media blocks too), never in a declaration."""
    classes = set()
    for prelude in re.findall(r"([^{}]*)\{", strip_comments(css)):
        if not prelude.strip().startswith("@"):
            classes |= set(re.findall(r"\.(-?[_a-zA-Z][\w-]*)", prelude))
    return classes


def template_classes(html: str) -> tuple[set[str], set[str]]:
    """(the literal classes, the prefixes of classes made from a variable) of every class attribute."""
    literal, prefixes = set(), set()
    for match in CLASS_ATTRIBUTE.finditer(html):
        value = match.group(1) if match.group(1) is not None else match.group(2)
        value = TEMPLATE_VARIABLE.sub(VARIABLE_MARK, TEMPLATE_TAG.sub(" ", value))
        for token in value.split():
            if VARIABLE_MARK not in token:
                literal.add(token)
            elif prefix := token.split(VARIABLE_MARK)[0]:
                prefixes.add(prefix)  # "state-{{ x }}": the state- family; "{{ x }}" alone: nothing to check
    return literal, prefixes


def undefined(html: str, defined: set[str]) -> list[str]:
    literal, prefixes = template_classes(html)
    missing = sorted(name for name in literal - defined if name not in HOOKS)
    missing += sorted(
        f"{prefix}{{{{…}}}}" for prefix in prefixes if not any(name.startswith(prefix) for name in defined)
    )
    return missing


def sheets_for(template: Path) -> set[str]:
    if template.relative_to(TEMPLATES).parts[0] == "admin":
        django_admin = set()
        for sheet in DJANGO_ADMIN_CSS.rglob("*.css"):
            django_admin |= defined_classes(sheet.read_text())
        return defined_classes(ADMIN_CSS.read_text()) | django_admin
    return defined_classes(PORTAL_CSS.read_text())


@pytest.mark.parametrize("sheet", [PORTAL_CSS, ADMIN_CSS], ids=lambda path: path.name)
def test_one_media_block_per_condition(sheet):
    conditions = media_conditions(sheet.read_text())
    repeated = sorted({condition for condition in conditions if conditions.count(condition) > 1})
    assert not repeated, f"{sheet.name}: more than one @media block for {repeated}; merge each into one"


@pytest.mark.parametrize("sheet", [PORTAL_CSS, ADMIN_CSS], ids=lambda path: path.name)
def test_media_blocks_come_after_every_ordinary_rule(sheet):
    preludes = top_level_blocks(strip_comments(sheet.read_text()))
    first = next((i for i, prelude in enumerate(preludes) if prelude.startswith("@media")), len(preludes))
    late = [prelude for prelude in preludes[first:] if not prelude.startswith("@")]
    assert not late, f"{sheet.name}: rules after the first @media block (move them above it): {late}"


def test_every_class_in_the_templates_is_defined_or_a_listed_hook():
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert len(templates) > 40, "the templates were not found"
    problems = []
    for template in templates:
        missing = undefined(template.read_text(), sheets_for(template))
        if missing:
            problems.append(f"{template.relative_to(ROOT)}: {', '.join(missing)}")
    assert not problems, (
        "classes no style sheet defines (style them, drop them, or list them in HOOKS with the reason):\n"
        + "\n".join(problems)
    )


def test_each_hook_is_still_used_and_still_needs_listing():
    portal = defined_classes(PORTAL_CSS.read_text()) | defined_classes(ADMIN_CSS.read_text())
    used = set()
    for template in TEMPLATES.rglob("*.html"):
        used |= template_classes(template.read_text())[0]
    for name, reason in HOOKS.items():
        assert name in used, f"hook {name!r} is no longer in any template: remove it from HOOKS"
        assert name not in portal, f"{name!r} is styled now: remove it from HOOKS"
        test_file = ROOT / reason.split()[0]
        assert test_file.is_file() and name in test_file.read_text(), f"{name!r}: {test_file} no longer selects it"


def test_the_checks_catch_a_stray_class_a_family_and_a_second_media_block():
    css = ".card { x:1 } .state-active { x:1 } @media (max-width:600px) { .wide { x:2 } }"
    assert defined_classes(css) == {"card", "state-active", "wide"}
    html = (
        '<div class="card bogus-class{% if on %} also-bogus{% endif %}"><span class="state-{{ s }} tone-{{ t }}">'
        '<i class="{{ whole }}"></i></span></div>'
    )
    assert undefined(html, defined_classes(css)) == ["also-bogus", "bogus-class", "tone-{{…}}"]
    assert undefined('<p class="card {% if x == "a" %}wide{% endif %}">', defined_classes(css)) == []
    twice = css + " @media (max-width: 600px) { .card { x:3 } } .late { x:1 }"
    assert media_conditions(twice) == ["(max-width:600px)", "(max-width:600px)"]
    assert top_level_blocks(strip_comments(twice))[-1] == ".late"
