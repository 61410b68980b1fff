"""The simulated HBS as a server: its state, the CPOs behind it, the CDRs and EVSE directory it holds, on one loopback port."""

from __future__ import annotations

import signal
import socket
import socketserver
import threading
from collections.abc import Mapping
from http.server import ThreadingHTTPServer
from typing import Any

from .behaviours import BehaviourTable
from .cdr_store import CdrStore
from .config import CpoConfig
from .cpos import ChargePointOperators
from .directory import EvseDirectory
from .handler import SimulatorHandler
from .state import SimulatorState


class SimulatorServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with the simulator's state; handler threads are daemons so delays never block exit."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, host: str, port: int, state: SimulatorState, config: CpoConfig | None = None, log_requests: bool = False
    ) -> None:
        self.state = state
        self.log_requests = log_requests
        self.stopping = threading.Event()  # tells delayed/held requests and pending pushes to give up on shutdown
        self.cdrs = CdrStore()  # HBS's, whoever made them: the CPOs or POST /_sim/cdrs
        config = config or CpoConfig()
        self.cpo = ChargePointOperators(config, stopping=self.stopping, cdrs=self.cdrs, behaviour_lookup=state.lookup)
        # The EVSEs HBS knows (eRoamingPullEvseData/-Status); the CPOs start their new sessions there.
        self.directory = EvseDirectory(
            config.evse_count,
            seed=config.seed or 0,
            churn_seconds=config.evse_churn_seconds,
            session_evses=self.cpo.session_evses,
        )
        self.cpo.directory = self.directory
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), SimulatorHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall; we do not need it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self.cpo.start()
        super().serve_forever(poll_interval)

    def shutdown(self) -> None:
        self.stopping.set()
        self.cpo.scheduler.wake()
        super().shutdown()


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    behaviours: BehaviourTable | Mapping[str, Any] | None = None,
    log_requests: bool = False,
    config: CpoConfig | None = None,
    **options: Any,
) -> SimulatorServer:
    """A bound, not yet serving simulator; port 0 picks a free port (see `.url`).

    The CPOs' options come as `config` or as keyword arguments named like CpoConfig's fields
    (`portal_url=...`, `push_delay_seconds=...`). With a portal_url the simulated CPOs push (via
    "HBS") to the portal's inbound endpoints: Start and Progress for the sessions they run, and End
    then the CDR after each accepted stop. Sessions are added with `server.cpo.add_sessions([...])`
    or POST /_sim/sessions.
    """
    if config is not None and options:
        raise TypeError("pass the CPOs' options either as config or as keyword arguments, not both")
    if behaviours is not None and not isinstance(behaviours, BehaviourTable):
        behaviours = BehaviourTable.from_json(behaviours)
    return SimulatorServer(
        host, port, SimulatorState(behaviours), config or CpoConfig(**options), log_requests=log_requests
    )


def serve_in_thread(server: SimulatorServer) -> threading.Thread:
    """Serve in a daemon thread; stop with server.shutdown() then server.server_close()."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="hubject-simulator", daemon=True
    )
    thread.start()
    return thread


def serve_until_signalled(server: SimulatorServer) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly (the command line's and the benchmark's loop)."""
    stop = threading.Event()
    # Signal handlers only set a flag: shutdown() must not run on the thread that serves.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    thread = serve_in_thread(server)
    print(f"Hubject simulator listening on {server.url}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
