"""The dispatch benchmark's baseline: a bare Celery task that only posts a body to the simulator."""

import threading

import requests
from celery import shared_task

_local = threading.local()


@shared_task(name="bench.post_body", ignore_result=True)
def post_body(url: str, body: dict) -> None:
    # One requests.Session per worker thread, as the portal's client keeps one.
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    session.post(url, json=body, timeout=(5, 75))
