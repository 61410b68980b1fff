"""The HBS client: one requests.Session with mutual TLS and timeouts; every call returns a result, never raises."""

# Plain `requests`, no ORM. Network, HTTP and parsing problems come back as a result that says whether
# the call was accepted, finally rejected, or may be retried (`outcomes`). Retrying is Celery's job, so
# there are no transport retries here. The calls: the remote stop (`remote_stop`), the CDR pull (`cdr_pull`),
# the EVSE data pull and the EVSE status by id (`evse_pull`).

from __future__ import annotations

import json

import requests

from .cdr_pull import get_charge_detail_records
from .evse_pull import EvseStatuses, pull_evse_data, pull_evse_status_by_id
from .exchange import Page
from .outcomes import Outcome
from .paths import AUTHORIZE_REMOTE_STOP as STOP_PATH
from .paths import MAX_CDR_PAGE_SIZE, MAX_EVSE_PAGE_SIZE
from .remote_stop import RemoteStopResult, send_remote_stop

# Re-exported: the stop service and the CDR reconciliation import these from here.
__all__ = [
    "MAX_CDR_PAGE_SIZE",
    "MAX_EVSE_PAGE_SIZE",
    "EvseStatuses",
    "HubjectClient",
    "Outcome",
    "Page",
    "RemoteStopResult",
]


class HubjectClient:
    """Hubject's HBS for one EMP (ProviderID): the session, certificates and timeouts every call uses."""

    def __init__(
        self,
        *,
        base_url: str,
        provider_id: str,
        client_cert: str = "",
        client_key: str = "",
        ca_bundle: str = "",
        timeout: float = 75.0,
        connect_timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.provider_id = provider_id
        # Hubject authenticates partners by TLS client certificate (mutual TLS, no token).
        self.cert: tuple[str, str] | str | None = (
            (client_cert, client_key) if client_cert and client_key else client_cert or None
        )
        # Hubject's server certificate chains to Hubject's own CA, not a public one.
        self.verify: str | bool = ca_bundle or True
        # HBS waits up to 60 s for the CPO; the read timeout must outlast that or we lose the answer.
        self.timeout = (connect_timeout, timeout)
        # A new Session's adapters make no retries (max_retries=0): Celery owns retrying.
        self.session = session or requests.Session()

    @classmethod
    def from_settings(cls) -> HubjectClient:
        from django.conf import settings

        return cls(
            base_url=settings.OICP_BASE_URL,
            provider_id=settings.OICP_PROVIDER_ID,
            client_cert=settings.OICP_CLIENT_CERT,
            client_key=settings.OICP_CLIENT_KEY,
            ca_bundle=settings.OICP_CA_BUNDLE,
            timeout=settings.OICP_TIMEOUT_SECONDS,
            connect_timeout=settings.OICP_CONNECT_TIMEOUT_SECONDS,
        )

    def redact(self, text: str) -> str:
        """Error texts go to the database, the audit trail and the logs: never name the key's file.

        requests puts the certificate or key path into its "invalid path" errors; the agent and
        the audit need to know *that* the TLS files failed, not where the private key lives.
        """
        if isinstance(self.cert, tuple):
            cert_file, key_file = self.cert
        else:
            cert_file, key_file = self.cert or "", ""
        for path, label in ((key_file, "<client key file>"), (cert_file, "<client certificate file>")):
            if path:
                text = text.replace(path, label)
        return text

    def stop_url(self) -> str:
        # The ProviderID goes into the path as is: Hubject's own examples keep "*" unencoded (DIGEST §8.1).
        return self.base_url + STOP_PATH.format(provider_id=self.provider_id)

    def post(self, url: str, body: dict, *, headers: dict[str, str], timeout) -> requests.Response:
        """POST `body` as UTF-8 JSON (OICP mandates UTF-8) with the client's certificate; raises what
        requests raises: each call turns that into its result (`exchange.call`, `remote_stop`)."""
        return self.session.request(
            "POST",
            url,
            data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers=headers,
            timeout=timeout,
            cert=self.cert,
            verify=self.verify,
            # A redirect would turn the POST into a GET; for an API it means a wrong base URL.
            allow_redirects=False,
        )

    # The calls, each in its own module with its own result type; they take the client as `self`.
    authorize_remote_stop = send_remote_stop
    get_charge_detail_records = get_charge_detail_records
    pull_evse_data = pull_evse_data
    pull_evse_status_by_id = pull_evse_status_by_id
