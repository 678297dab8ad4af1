"""Signals apps.organizations sends. A signal is the last resort between layers
(docs/architecture.md, "Layers"): each one here says who listens and why a call
was not possible.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent by services.membership_remove() in its transaction, after the removal is
# audited and before the row is deleted, with `membership` and `actor` (the user who
# removes). Sent with send(), not send_robust(): a receiver that
# fails rolls the removal back.
# Listeners: apps.accounts.services revokes the member's personal API tokens
# for the organization, each one audited, so they do not come back to life if the
# person is re-invited; apps.workers.members disables the workers that act for the
# member (fenced, `worker.member_gone`) and disconnects the member's personal
# connections there. accounts and workers sit above organizations (a personal token,
# a worker and a connection belong to an organization), so organizations cannot call
# them.
membership_removed = Signal()
