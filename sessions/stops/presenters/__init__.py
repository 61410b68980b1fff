"""What the agent reads about a remote stop: the advice card, the live progress, why the button is
disabled, and the answer to a click. Every word of these is in this package, written once.

The card is chosen by one resolver, `advise(subject, facts)` (`cards`): the subject is the OICP
status code of the last answer or, when none came back, the kind of failure
(`oicp.status_codes.FAILURE_KINDS`); the facts are the state of the request and the session
(`facts.StopFacts`: attempts left, End or CDR arrived, outcome unknown, accepted or confirmed,
whether a new stop may be sent). From the facts comes one situation (`SITUATIONS`); the table
`ADVICE` (`table`) gives each subject's words, with rows for the situations where they differ, and
`SITUATION_WORDS` the words that depend on the situation alone.

One module per idea: `facts` (what a card is chosen from), `table` (the words), `cards` (the
resolver), `times` (times as the agent reads them), `blockers` (why the button is disabled; the
eligibility rule's verdict in words), `notices` (the answer to a click), `progress` (the live
progress of one stop), `follow_up` (the sessions list, the stuck queue, the resend dialog), `stuck_rows` (the
stuck queue's rows as plain values).

Reads go through `selectors` and the eligibility rule is `stop_rules`; this package only turns
facts into words (a presenter, DESIGN §2). The names below are the ones other code uses.
"""

from .blockers import blocker_text, blocker_tone, refusal_text, stop_blocker
from .cards import Action, Advice, advise, code_words
from .facts import FINAL_FAILURE_SITUATIONS, HBS_CPO_WINDOW_SECONDS, SITUATIONS, StopFacts, stop_facts
from .follow_up import (
    OUTCOME_UNKNOWN_FLAG,
    OUTCOME_UNKNOWN_TITLE,
    RESEND_REFUSED,
    RESEND_TITLE,
    RESENT,
    STATE_WORDS,
    STUCK_KIND_LABELS,
    WITHHELD,
    Badge,
    StuckLine,
    last_stop_badge,
    resend_description,
    stuck_session_line,
    stuck_stop_line,
)
from .notices import QUEUED_WHILE_WORKER_UNREACHABLE, REFUSED, REQUESTED, Notice, stop_notice
from .progress import OUTCOME_UNKNOWN_NOTE, StopProgress, StopStep, TimeRow, stop_progress
from .stuck_rows import RowActions, StuckRow, row_actions, stuck_session_rows, stuck_stop_rows
from .table import ADVICE, CONTEXT, SITUATION_WORDS, Row, Words
from .times import Moment, age, ago, clock, duration
from .tones import TONE_MARKS

__all__ = [
    "ADVICE",
    "CONTEXT",
    "FINAL_FAILURE_SITUATIONS",
    "HBS_CPO_WINDOW_SECONDS",
    "OUTCOME_UNKNOWN_FLAG",
    "OUTCOME_UNKNOWN_NOTE",
    "OUTCOME_UNKNOWN_TITLE",
    "QUEUED_WHILE_WORKER_UNREACHABLE",
    "REFUSED",
    "REQUESTED",
    "RESEND_REFUSED",
    "RESEND_TITLE",
    "RESENT",
    "SITUATIONS",
    "SITUATION_WORDS",
    "STATE_WORDS",
    "STUCK_KIND_LABELS",
    "TONE_MARKS",
    "WITHHELD",
    "Action",
    "Advice",
    "Badge",
    "Moment",
    "Notice",
    "Row",
    "RowActions",
    "StopFacts",
    "StopProgress",
    "StopStep",
    "StuckLine",
    "StuckRow",
    "TimeRow",
    "Words",
    "advise",
    "age",
    "ago",
    "blocker_text",
    "blocker_tone",
    "clock",
    "code_words",
    "duration",
    "last_stop_badge",
    "refusal_text",
    "resend_description",
    "row_actions",
    "stop_blocker",
    "stop_facts",
    "stop_notice",
    "stop_progress",
    "stuck_session_line",
    "stuck_session_rows",
    "stuck_stop_line",
    "stuck_stop_rows",
]
