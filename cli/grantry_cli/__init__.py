"""The `grantry` command-line client: runs where agents run, talks to Grantry only
through its public management and agent APIs, and imports nothing of the server."""

__version__ = "0.1.0"
