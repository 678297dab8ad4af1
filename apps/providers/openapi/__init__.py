"""OpenAPI import: from an OpenAPI 3.0/3.1 or Swagger 2.0 document to custom-action drafts.

A document is hostile input. It is never read in a web process: the web request stores it
in an `OpenAPIImport` job and a Celery task reads it in a child process of its own
(`isolated.py`) under a memory cap, a CPU cap and a wall-clock deadline (`document.py`).
The reading has two phases:

* the index (`reading.py`): load (no YAML aliases, bounded nesting), check against the
  OpenAPI meta-schema of the document's version (errors named by JSON pointer), and list
  every operation with its tags and summary. Nothing is resolved.
* the drafts (`drafts.py`): for the operations the admin chose (by tag, path prefix,
  method, search or one by one; at most `max_operations()`), follow their `$ref`s inside
  the document, lazily and under a node budget, into one closed input schema each.

Path, query and JSON or form body parameters become one input schema: path parameters
fill the path template, query parameters are listed in `query_params`, the properties of
an object request body (through allOf, oneOf, anyOf) form the rest, and a form body sets
`body_encoding="form"`. Header and cookie parameters are left out (Grantry sends the
credential; other headers are not part of a custom action), and an operation that
requires one is marked as not importable, with the reason.

This package imports no Django at its top: the child process loads only `reading.py`,
`drafts.py` and `isolated.py`. Nothing here writes: `services.openapi_import_*` and
`services.custom_actions_import()` do.
"""
