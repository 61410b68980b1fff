"""The CPO page's charts as inline SVG drawn by the server: geometry only (no database, no words
beyond labels), the template writes the elements.

The site's Content-Security-Policy allows no style attribute and no script, so the charts are SVG
with presentation attributes (x, y, width, height) and CSS classes for colours (portal.css); each
says what it shows in its aria-label, and its numbers are in a table beside it. Colour is never the
only way to tell things apart: the legend names each colour, and every number is written out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .selectors import BUCKETS, OperatorRecord, Week

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 16, 40
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
MAX_X_LABELS = 8


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    value: int


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    x_labels: list[Label]
    value_labels: list[Label]
    ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    baseline: float = TOP + PLOT_H


@dataclass(frozen=True)
class Segment:
    key: str
    label: str
    value: int
    x: float
    width: float
    percent: int


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, … at least `value` (1 for nothing): the axis' top."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover (the loop always returns)


def _ticks(top: int) -> list[Tick]:
    values = sorted({0, top // 2 if top % 2 == 0 else top, top}) if top > 1 else [0, 1]
    return [Tick(TOP + PLOT_H - PLOT_H * value / top, str(value)) for value in values]


def _height(value: int, top: int) -> float:
    return round(PLOT_H * value / top, 2)


def weekly_chart(weeks: list[Week]) -> BarChart:
    """Two bars per week, stops sent and stops confirmed, side by side."""
    top = nice_ceiling(max((week.sent for week in weeks), default=0))
    slot = PLOT_W / max(len(weeks), 1)
    bar_width = round(min(slot * 0.36, 28), 2)
    every = math.ceil(len(weeks) / MAX_X_LABELS) or 1
    bars, labels = [], []
    for index, week in enumerate(weeks):
        middle = LEFT + slot * index + slot / 2
        for offset, css, value in ((-bar_width, "bar-sent", week.sent), (0, "bar-confirmed", week.confirmed)):
            height = _height(value, top)
            bars.append(Bar(round(middle + offset, 2), round(TOP + PLOT_H - height, 2), bar_width, height, css, value))
        if index % every == 0:
            labels.append(Label(round(middle, 2), HEIGHT - BOTTOM + 18, f"{week.start:%d %b}"))
    return BarChart(bars, labels, [], _ticks(top))


def histogram(record: OperatorRecord) -> BarChart:
    """One bar per bucket of the time from request to confirmation, its count above it."""
    top = nice_ceiling(max(record.buckets, default=0))
    slot = PLOT_W / len(BUCKETS)
    bar_width = round(slot * 0.7, 2)
    bars, labels, values = [], [], []
    for index, ((label, _, _), count) in enumerate(zip(BUCKETS, record.buckets, strict=True)):
        middle = LEFT + slot * index + slot / 2
        height = _height(count, top)
        y = round(TOP + PLOT_H - height, 2)
        bars.append(Bar(round(middle - bar_width / 2, 2), y, bar_width, height, "bar-confirmed", count))
        labels.append(Label(round(middle, 2), HEIGHT - BOTTOM + 18, label))
        values.append(Label(round(middle, 2), max(y - 4, TOP - 2), str(count)))
    return BarChart(bars, labels, values, _ticks(top))


MIX_WIDTH, MIX_HEIGHT = 640, 36


def outcome_mix(record: OperatorRecord) -> list[Segment]:
    """The stacked bar of the outcomes: each its share of the stops sent (none drawn without stops)."""
    segments, x = [], 0.0
    for key, label, value in record.outcomes():
        share = value / record.sent if record.sent else 0
        width = round(MIX_WIDTH * share, 2)
        segments.append(Segment(key, label, value, round(x, 2), width, round(share * 100)))
        x += width
    return segments
