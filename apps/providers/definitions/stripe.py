"""Stripe API (https://docs.stripe.com/api). Secret or restricted API key, sent as
the HTTP Basic user name. Stripe takes form-encoded request bodies."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Placement, Provider
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    enum,
    integer,
    string,
)

A = action_builder("stripe")

LIMIT = integer("How many objects (1-100, default 10).", minimum=1, maximum=100)
AFTER = string("Id of the last object of the previous page (cursor).")
CUSTOMER = string("Customer id, e.g. 'cus_…'.", pattern=r"^cus_[A-Za-z0-9]+$")

ACTIONS = (
    A(
        "get_balance",
        "Get the account balance (available and pending, per currency).",
        READ,
        "GET",
        "/balance",
    ),
    A(
        "list_customers",
        "List customers, newest first; optionally by exact email.",
        READ,
        "GET",
        "/customers",
        params={
            "email": string("Only customers with this email."),
            "limit": LIMIT,
            "starting_after": AFTER,
        },
    ),
    A(
        "get_customer",
        "Get one customer.",
        READ,
        "GET",
        "/customers/{customer_id}",
        params={"customer_id": CUSTOMER},
        required=("customer_id",),
    ),
    A(
        "create_customer",
        "Create a customer.",
        WRITE,
        "POST",
        "/customers",
        params={
            "email": string("Email address.", format="email"),
            "name": string("Full name or business name."),
            "description": string("Internal description."),
            "phone": string("Phone number."),
        },
        body_encoding="form",
    ),
    A(
        "list_charges",
        "List charges, newest first; optionally of one customer.",
        READ,
        "GET",
        "/charges",
        params={"customer": CUSTOMER, "limit": LIMIT, "starting_after": AFTER},
    ),
    A(
        "list_payment_intents",
        "List PaymentIntents, newest first; optionally of one customer.",
        READ,
        "GET",
        "/payment_intents",
        params={"customer": CUSTOMER, "limit": LIMIT, "starting_after": AFTER},
    ),
    A(
        "list_invoices",
        "List invoices; optionally of one customer or with one status.",
        READ,
        "GET",
        "/invoices",
        params={
            "customer": CUSTOMER,
            "status": enum("Invoice status.", ["draft", "open", "paid", "uncollectible", "void"]),
            "limit": LIMIT,
            "starting_after": AFTER,
        },
    ),
    A(
        "create_refund",
        "Refund a payment, fully or partly. Money moves: use with care.",
        WRITE,
        "POST",
        "/refunds",
        params={
            "payment_intent": string(
                "PaymentIntent id, e.g. 'pi_…'.", pattern=r"^pi_[A-Za-z0-9]+$"
            ),
            "amount": integer(
                "Amount to refund in the smallest currency unit (cents); "
                "leave out for a full refund.",
                minimum=1,
            ),
            "reason": enum("Reason.", ["duplicate", "fraudulent", "requested_by_customer"]),
        },
        required=("payment_intent",),
        body_encoding="form",
    ),
)

PROVIDER = Provider(
    key="stripe",
    display_name="Stripe",
    icon="ST",
    description="Stripe customers, payments, invoices and refunds.",
    auth_types=(AuthType.API_KEY,),
    api_base_url="https://api.stripe.com/v1",
    placement=Placement.BASIC,
    header_prefix="",
    userinfo_url="/account",
    userinfo_account_field="id",
    docs_url="https://docs.stripe.com/api",
    actions=ACTIONS,
)
