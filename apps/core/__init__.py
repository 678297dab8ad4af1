"""Shared plumbing: request ids, the standard error body, pagination, health."""
