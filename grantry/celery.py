import os
import sys
from pathlib import Path

from celery import Celery

if Path(sys.argv[0]).name == "celery":  # the celery command, not the web or the tests
    from grantry.devenv import load_dev_env

    load_dev_env()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grantry.settings")

app = Celery("grantry")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
