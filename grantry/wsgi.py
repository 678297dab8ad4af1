import os

from django.core.wsgi import get_wsgi_application

from grantry.telemetry import setup_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grantry.settings")
setup_tracing("grantry-web")  # off unless the OTEL_* variables ask (grantry/telemetry.py)
application = get_wsgi_application()
