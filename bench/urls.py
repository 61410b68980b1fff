"""The portal's URLs plus the ingest benchmark's baseline view (served with DJANGO_ROOT_URLCONF=bench.urls).

The baseline is the least a Django view can do with an inbound message: parse the same JSON and
INSERT one row (into a table bench/ingest.py creates with raw SQL), through the same middleware,
server and database connection settings as the portal's inbound endpoints.
"""

import json

from django.db import connection
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

BASELINE_TABLE = "bench_ingest_baseline"


@csrf_exempt
def ingest_baseline(request):
    body = request.body
    data = json.loads(body)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {BASELINE_TABLE} (session_id, evse_id, body) VALUES (%s, %s, %s)",
            [data.get("SessionID", ""), data.get("EvseID", ""), body.decode()],
        )
    return HttpResponse('{"Result": true, "StatusCode": {"Code": "000"}}', content_type="application/json")


urlpatterns = [
    path("bench/ingest-baseline/", ingest_baseline, name="bench-ingest-baseline"),
    path("", include("portal.urls")),
]
