"""The project's settings, with the anchor's URL added (bench only)."""

from grantry.settings import *  # noqa: F403

ROOT_URLCONF = "bench_site.urls"
