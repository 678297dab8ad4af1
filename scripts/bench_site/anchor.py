"""(m) The minimal DRF broker the issue measures Grantry against: no Grantry code.

A sync DRF APIView that does the four things every brokered call must do and
nothing else: a token SELECT by digest, a durable INSERT, an upstream GET with
urllib3, and an INSERT that commits without waiting for the WAL flush. With Django's
connection pool on (the deployment's default) it gives its connection back to the pool
during the upstream GET, as Grantry does: otherwise against a slow upstream it would
be limited by the pool, not by the web server."""

from __future__ import annotations

import hashlib
import os

import urllib3
from django.db import connection
from django.http import HttpResponse, JsonResponse
from rest_framework.request import Request
from rest_framework.views import APIView

_POOL = urllib3.PoolManager(maxsize=64, retries=False)
_UPSTREAM = os.environ.get("BENCH_ANCHOR_UPSTREAM", "http://127.0.0.1:1/")


class MinimalBroker(APIView):
    authentication_classes = ()
    permission_classes = ()

    def post(self, request: Request) -> HttpResponse:
        raw = request.META.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ")
        digest = hashlib.sha256(raw.encode()).hexdigest()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, organization_id FROM workers_workertoken WHERE digest = %s", [digest]
            )
            row = cursor.fetchone()
            if row is None:
                return JsonResponse({"error": "unknown token"}, status=401)
            cursor.execute(
                "INSERT INTO bench_anchor_event (token_id, kind) VALUES (%s, 'attempt')", [row[0]]
            )
        if getattr(connection, "pool", None) is not None:
            connection.close()  # back to the pool for the upstream wait
        answer = _POOL.request("GET", _UPSTREAM, timeout=10)
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_anchor_event (token_id, kind) VALUES (%s, 'outcome')",
                [row[0]],
            )
        return HttpResponse(answer.data, status=answer.status, content_type="application/json")
