"""The benchmarks' settings: the portal's, plus their baseline views (bench/urls.py) beside its URLs.

DJANGO_SETTINGS_MODULE=bench.settings    (bench/ingest.py sets it for the server it measures)
"""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
