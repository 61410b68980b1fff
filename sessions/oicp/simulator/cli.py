"""The command line: `python -m sessions.oicp.simulator [options]`, each option defined here once.

The CPOs' options land in a `CpoConfig` by name (each argument's dest is the field's name); the
behaviour table's two options (--tidy, --cpo-window) go into the table, as the defaults a PUT of
/_sim/behaviours falls back to.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
from typing import Any
from urllib.parse import urlsplit

from .behaviours import DEFAULT_CPO_WINDOW_SECONDS, BehaviourError, BehaviourTable, cpo_window
from .config import DEFAULTS, MAX_EVSE_COUNT, CpoConfig
from .demo import DEMO_BEHAVIOURS
from .server import make_server, serve_until_signalled


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is loopback (0.0.0.0 and "" are not)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sessions.oicp.simulator", description="Hubject HBS simulator (OICP 2.3 remote stop)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--config", help="behaviour table JSON (PUT format); with --demo it is merged over the demo")
    parser.add_argument("--demo", action="store_true", help="load DEMO_BEHAVIOURS (the portal's demo CPOs)")
    parser.add_argument(
        "--tidy",
        action="store_true",
        help="accept stops for any SessionID: no 400 Session is invalid for sessions HBS never "
        'issued or already closed (for tests about something else); "tidy" in the table',
    )
    parser.add_argument(
        "--cpo-window",
        type=_window_seconds,
        default=None,
        help="seconds HBS waits for the CPO's answer before answering 310 Partner did not "
        f'respond (default {DEFAULT_CPO_WINDOW_SECONDS:g}); "cpo_window_seconds" in the table',
    )
    parser.add_argument("--allow-non-loopback", action="store_true", help="allow binding to a non-loopback address")
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    cpo = parser.add_argument_group("the CPOs behind HBS: pushes to the portal and CDRs to pull")
    cpo.add_argument(
        "--portal-url",
        dest="portal_url",
        help="base URL of the portal's inbound OICP endpoints, e.g. http://127.0.0.1:8000; "
        "without it nothing is pushed (CDRs are still kept for GetChargeDetailRecords)",
    )
    cpo.add_argument(
        "--push-delay",
        dest="push_delay_seconds",
        metavar="PUSH_DELAY",
        type=_seconds,
        default=DEFAULTS.push_delay_seconds,
        help=f"seconds from an accepted stop to the End notification (default {DEFAULTS.push_delay_seconds:g})",
    )
    cpo.add_argument(
        "--cdr-delay",
        dest="cdr_delay_seconds",
        metavar="CDR_DELAY",
        type=_seconds,
        default=DEFAULTS.cdr_delay_seconds,
        help=f"seconds from End to the CDR (default {DEFAULTS.cdr_delay_seconds:g})",
    )
    cpo.add_argument(
        "--progress-interval",
        dest="progress_interval_seconds",
        metavar="PROGRESS_INTERVAL",
        type=_seconds,
        default=DEFAULTS.progress_interval_seconds,
        help="seconds between Progress notifications of a session; 0: none "
        f"(default {DEFAULTS.progress_interval_seconds:g})",
    )
    cpo.add_argument(
        "--demo-sessions-file",
        help="JSON list of sessions the CPOs are running "
        "({SessionID, EvseID, OperatorID, EMPPartnerSessionID?, CPOPartnerSessionID?, ChargingStart?})",
    )
    cpo.add_argument(
        "--new-session-interval",
        dest="new_session_interval_seconds",
        metavar="NEW_SESSION_INTERVAL",
        type=_seconds,
        default=DEFAULTS.new_session_interval_seconds,
        help="demo: start a new session at a random demo EVSE this often (seconds); 0: never",
    )
    cpo.add_argument(
        "--max-sessions",
        dest="max_sessions",
        type=int,
        default=DEFAULTS.max_sessions,
        help="demo: above this many charging sessions the oldest one finishes when a new one starts",
    )
    cpo.add_argument(
        "--provider-id",
        dest="provider_id",
        default=DEFAULTS.provider_id,
        help="the EMP whose contracts (EvcoIDs) the sessions use",
    )
    cpo.add_argument(
        "--seed",
        dest="seed",
        type=int,
        default=DEFAULTS.seed,
        help="random seed, for repeatable demo data and EVSE network (default: a fixed network)",
    )
    directory = parser.add_argument_group(
        "the EVSE directory HBS serves (eRoamingPullEvseData, eRoamingPullEvseStatus)"
    )
    directory.add_argument(
        "--evse-count",
        dest="evse_count",
        type=_evse_count,
        default=DEFAULTS.evse_count,
        help=f"EVSEs in the generated network, up to {MAX_EVSE_COUNT:,} (default {DEFAULTS.evse_count}); "
        "records are computed when pulled, not stored",
    )
    directory.add_argument(
        "--evse-churn",
        dest="evse_churn_seconds",
        metavar="EVSE_CHURN",
        type=_churn_seconds,
        default=DEFAULTS.evse_churn_seconds,
        help="seconds per change of the network: EVSEs are updated and replaced (delete + insert) every 1 to 12 "
        f"of these (default {DEFAULTS.evse_churn_seconds:g})",
    )
    return parser.parse_args(argv)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError("must be between 0 and 86400 seconds")
    return value


def _evse_count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_EVSE_COUNT:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_EVSE_COUNT}")
    return value


def _churn_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be above 0 seconds")
    return value


def _window_seconds(text: str) -> float:
    try:
        return cpo_window(float(text), "--cpo-window")
    except (ValueError, BehaviourError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_table(args: argparse.Namespace) -> BehaviourTable:
    table = BehaviourTable.from_json(DEMO_BEHAVIOURS) if args.demo else BehaviourTable()
    if args.config:
        with open(args.config, encoding="utf-8") as fh:
            data = json.load(fh)
        table = table.merged(data) if args.demo else BehaviourTable.from_json(data)
    # The command line wins over the config file; these are also what a later PUT falls back to.
    if args.tidy:
        table.tidy = True
    if args.cpo_window is not None:
        table.cpo_window_seconds = args.cpo_window
    return table


def load_sessions_file(path: str) -> list[Any]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if isinstance(data, dict) and "sessions" in data:
        data = data["sessions"]
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.allow_non_loopback and not is_loopback(args.host):
        print(f"refusing to listen on non-loopback host {args.host!r} (use --allow-non-loopback)", file=sys.stderr)
        return 2
    try:
        table = load_table(args)
    except (OSError, json.JSONDecodeError, BehaviourError) as exc:
        print(f"cannot load behaviours: {exc}", file=sys.stderr)
        return 2
    if args.portal_url and urlsplit(args.portal_url).scheme not in ("http", "https"):
        print(f"--portal-url {args.portal_url!r} is not an http(s) URL", file=sys.stderr)
        return 2
    demo_sessions: list[Any] = []
    if args.demo_sessions_file:
        try:
            demo_sessions = load_sessions_file(args.demo_sessions_file)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            print(f"cannot read {args.demo_sessions_file}: {exc}", file=sys.stderr)
            return 2
    server = make_server(args.host, args.port, table, log_requests=not args.quiet, config=CpoConfig.from_options(args))
    if demo_sessions:
        try:
            added = server.cpo.add_sessions(demo_sessions, source="demo_sessions_file")
        except BehaviourError as exc:
            server.server_close()
            print(f"cannot load {args.demo_sessions_file}: {exc}", file=sys.stderr)
            return 2
        print(f"{added['added']} sessions loaded from {args.demo_sessions_file}", file=sys.stderr, flush=True)
    serve_until_signalled(server)
    print("Hubject simulator stopped", file=sys.stderr, flush=True)
    return 0
