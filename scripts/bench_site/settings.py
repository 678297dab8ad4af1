"""The project's settings, with the anchor's URL added (bench only)."""

from grantry.settings import *  # noqa: F403 - the project's settings, overridden below

ROOT_URLCONF = "bench_site.urls"
