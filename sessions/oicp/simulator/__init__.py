"""A Hubject HBS simulator (OICP 2.3), with the CPOs behind it, on loopback only.

Used for the demo, for agents' training (sandbox mode), as the test double of the integration
tests and as the benchmarks' target. Standard library only, and deliberately no Django: it must
start without settings, in its own process.

Run:  python -m sessions.oicp.simulator [--host 127.0.0.1] [--port 8090] [--config FILE.json] [--demo]
          [--tidy] [--cpo-window 60]
          [--portal-url http://127.0.0.1:8000] [--push-delay 3] [--cdr-delay 1] [--progress-interval 60]
          [--demo-sessions-file var/demo-sessions.json] [--new-session-interval 0]
          [--evse-count 400] [--evse-churn 600]

One idea per module:
    cli           the command line (`__main__` runs it); config: the CPOs' options (CpoConfig)
    server        SimulatorServer, make_server, serve_in_thread
    handler       HTTP: transport checks, routing, the received log, held and reset connections
    remote_stop   eRoamingAuthorizeRemoteStop as HBS answers it (400 Session is invalid, 310 after the
                  CPO window, then the behaviour's action)
    cdr_pull      eRoamingGetChargeDetailRecords: its rules and the paged answer
    evse_pull     eRoamingPullEvseData (paged, LastCall deltas) and eRoamingPullEvseStatus (all, ByID,
                  ByOperatorID); paging: the paged answers' shape and ?page=&size=
    directory     the EVSEs HBS holds, over time (updates, replacements, statuses, sessions' EVSEs);
                  network: operators and stations, computed from (seed, number); places: where they stand
    control       the /_sim/ control API, a table of handlers (its docstring lists them)
    answers       acknowledgement, FaultBody, OicpERoamingFault and nginx HTML bodies
    checks        request checks: Content-Type, UTF-8 JSON, ProviderID vs path, session entries
    behaviours    what each EVSE/CPO does (BehaviourTable); demo: the demo CPOs (DE*CBL, DE*FLT, ...)
    state         the behaviour table and the received log, shared by the handler threads
    cpos          the CPOs' sessions: Start/Progress, cable stuck, errors, End and CDR after a stop
    session       one session and its tidy messages; quirks: the messages as real CPOs send them
    cdr_store     the CDRs HBS holds; push: POSTs to the portal and their log; scheduler: when

It plays the real world by default:
- HBS answers `400 Session is invalid` (HTTP 200, Result false) to an "accept" stop whose SessionID
  it never issued or whose CDR it already has (the session is closed). SessionIDs are compared
  exactly as given, case included. Issued = learned via POST /_sim/sessions, the demo sessions
  file, or started by the simulated CPOs themselves. The other actions model failures that happen
  whatever the SessionID, so they answer as configured. `--tidy` (or "tidy": true in the table)
  turns the check off: every SessionID is accepted, as in the simulator's first versions.
- HBS waits `cpo_window_seconds` (60 s, like HBS) for the CPO: an accept, reject or no_answer
  whose delay_seconds is longer gets `310 Partner did not respond` (HTTP 200, Result false) when
  the window ends. A CPO that accepts that late still ends the session afterwards (End, CDR).
  A no_answer with "hang": true holds the connection for its whole delay (HBS itself silent).

It serves Hubject's EVSE directory: a generated network of `--evse-count` EVSEs (default 400, up to
2,000,000, computed on demand) of the demo CPOs and more, in DE, AT, FR, NL, BE, CH and IT, that
changes every `--evse-churn` seconds; every session's EVSE is in it, Occupied while the car charges.

It also plays the CPOs (DIGEST §5.2-§5.4): with --portal-url it pushes ChargingNotifications
(Start and Progress for the sessions it runs; End after an accepted stop) and then the CDR to the
portal's inbound endpoints, and it answers eRoamingGetChargeDetailRecords_V2.2 (paged) over every
CDR it made, pushed or not. A behaviour with "confirm": false accepts stops but never ends the
session (no End, no CDR). Pushes run in background threads, are retried twice on transport errors
and 5xx, then dropped and logged: a portal that is down never stops the simulator. Messages are
tidy unless a behaviour asks for the quirks real CPOs show (see below).

Behaviour table (PUT format; `--config` file, /_sim/behaviours):
    {"default": {...}, "operators": {"DE*ABC": {...}}, "evses": {"DE*ABC*E1": {...}},
     "tidy": false, "cpo_window_seconds": 60}
  A PUT without "tidy"/"cpo_window_seconds" goes back to the values the simulator started with
  (--tidy, --cpo-window); a PATCH keeps the current ones. A behaviour (exact EvseID, then the
  EVSE's OperatorID, then default) has these keys:
    action            accept | reject | http_error | html_error | non_json | wrong_shape | no_answer | reset
    delay_seconds     wait before answering (no_answer: how long the connection is held, default 600)
    code              reject: the OICP code ("400", "501", ...)
    http_status       http_error / html_error: the HTTP status
    additional_info   accept / reject: StatusCode.AdditionalInfo
    confirm           accept: false = the CPO never ends the session (no End, no CDR)
    hang              no_answer: true = hold for delay_seconds even past the CPO window (no 310)
    cpo_window_seconds  this CPO's window, instead of the table's
  and keys shaping what the CPO pushes, whatever the action:
    cable_stuck_after_seconds  charging ends by itself this long after the session starts: End is
                      pushed, the cable stays locked (no CDR) until a stop is accepted; then the CDR
                      alone follows (no second End)
    error_types       Error notifications to push, one per session, cycling through the list:
                      "ConnectorError", "CriticalError", "Connector Error" (Hubject's sample spelling)
    error_after_seconds  when, after the session starts (default 10)
    hub_operator_id   a hub operator (e.g. "DE*HUB") sending for this CPO: notifications carry its
                      OperatorID, CDRs carry HubOperatorID and are pushed to /operators/{hub}/...
    quirks            a list of: eichrecht, eichrecht_over_10, float_noise, four_decimals,
                      float_duration, explicit_nulls, upper_case_session_ids, long_product_id,
                      no_operator_id (QUIRKS describes each)
"""

# What other code imports from the package: tests, load_demo, export_sim_sessions' test.
from .behaviours import BehaviourError, BehaviourTable
from .checks import session_violations
from .cli import main
from .config import CpoConfig
from .demo import DEMO_BEHAVIOURS, DEMO_OPERATORS
from .quirks import QUIRKS
from .server import SimulatorServer, make_server, serve_in_thread

__all__ = [
    "DEMO_BEHAVIOURS",
    "DEMO_OPERATORS",
    "QUIRKS",
    "BehaviourError",
    "BehaviourTable",
    "CpoConfig",
    "SimulatorServer",
    "main",
    "make_server",
    "serve_in_thread",
    "session_violations",
]
