"""Hypothesis properties of evaluate(): deny by default, monotone, constraints hold."""

from __future__ import annotations

import fnmatch
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.policies.evaluate import Call, RuleSpec, evaluate, rule_spec_from_values

PROVIDERS = ["sandbox", "github", "git"]
ACTIONS = [
    "sandbox.list_tasks",
    "sandbox.delete_task",
    "github.list_issues",
    "github.create_issue",
    "git.push",
]
FIELDS = ["repo", "channel", "priority", "f"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["acme/web", "acme/api", "1e9", "3", "true", ""])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
inputs = (
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values, max_size=5)
    | json_values
)

constraint_values = {
    "equals": json_scalars,
    "one_of": st.lists(json_scalars, min_size=1, max_size=4),
    "glob": st.sampled_from(["acme/*", "*", "**", "a?c", "x/**"]),
    "prefix": st.text(max_size=4),
    "max": st.integers(-100, 100) | st.floats(-1e6, 1e6),
}


@st.composite
def constraints(draw: Any) -> Any:
    op = draw(st.sampled_from(sorted(constraint_values)))
    return {"field": draw(st.sampled_from(FIELDS)), "op": op, "value": draw(constraint_values[op])}


@st.composite
def rules(draw: Any, rule_id: Any = None) -> RuleSpec:
    kind = draw(st.sampled_from(["action", "proxy"]))
    provider = draw(st.sampled_from(PROVIDERS))
    conn = draw(st.none() | st.integers(1, 3))
    if kind == "proxy":
        return rule_spec_from_values(
            rule_id=rule_id or draw(st.integers(1, 10**6)),
            kind="proxy",
            provider_key=provider,
            connection_id=conn,
            methods=draw(st.lists(st.sampled_from(["GET", "POST", "x"]), max_size=2)),
            path_glob=draw(st.sampled_from(["/repos/*", "/**", "/a/**/b", "/a/x-*", "/"])),
            rate_limit_per_minute=draw(st.none() | st.integers(1, 100)),
        )
    pattern = draw(st.sampled_from(ACTIONS + [f"{p}.*" for p in PROVIDERS]))
    return rule_spec_from_values(
        rule_id=rule_id or draw(st.integers(1, 10**6)),
        kind="action",
        provider_key=provider,
        action_pattern=pattern,
        action_class=draw(st.sampled_from(["", "read", "write"])),
        connection_id=conn,
        constraints=draw(st.lists(constraints(), max_size=2)),
    )


@st.composite
def calls(draw: Any) -> Any:
    conn = draw(st.none() | st.integers(1, 3))
    if draw(st.booleans()):
        return Call.for_proxy(
            provider_key=draw(st.sampled_from(PROVIDERS)),
            method=draw(st.sampled_from(["GET", "get", "POST", "DELETE"])),
            path=draw(
                st.sampled_from(
                    [
                        "/repos/acme",
                        "/a/b",
                        "/a/q/r/b",
                        "/a/x-1",
                        "/",
                        "/a/../b",
                        "/%2e%2e",
                        "//evil.com",
                        "/repos/acme/",
                    ]
                )
                | st.text(max_size=10)
            ),
            connection_id=conn,
        )
    return Call.for_action(
        action_name=draw(st.sampled_from(ACTIONS) | st.text(max_size=10)),
        action_class=draw(st.sampled_from(["read", "write", ""])),
        connection_id=conn,
        input=draw(inputs),
    )


@settings(max_examples=400)
@given(calls())
def test_an_empty_role_denies_everything(call: Any) -> None:
    decision = evaluate([], call)
    assert decision.allowed is False
    assert decision.rule_id is None
    assert decision.reason


@settings(max_examples=400)
@given(st.lists(rules(), max_size=4), rules(), st.integers(0, 4), calls())
def test_adding_a_rule_never_removes_an_allowance(
    existing: Any, extra: Any, where: Any, call: Any
) -> None:
    before = evaluate(existing, call)
    more = list(existing)
    more.insert(min(where, len(more)), extra)
    after = evaluate(more, call)
    if before.allowed:
        assert after.allowed


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "other"


def _oracle(op: Any, expected: Any, value: Any) -> Any:
    """An independent, deliberately naive statement of what each op means."""
    if op in ("equals", "one_of"):
        options = expected if op == "one_of" else [expected]
        return any(
            _json_kind(o) == _json_kind(value) != "other"
            and not (isinstance(value, float) and not math.isfinite(value))
            and o == value
            for o in options
        )
    if op == "glob":
        # Segment-bounded glob: a match must also be an fnmatch match, and a
        # single-star pattern never spans "/".
        if not isinstance(value, str) or not fnmatch.fnmatchcase(value, expected):
            return False
        return "**" in expected or value.count("/") == expected.count("/")
    if op == "prefix":
        return isinstance(value, str) and value.startswith(expected)
    if op == "max":
        return (
            _json_kind(value) == "number"
            and (isinstance(value, int) or math.isfinite(value))
            and value <= expected
        )
    raise AssertionError(op)


@settings(max_examples=600)
@given(st.lists(constraints(), min_size=1, max_size=3), inputs)
def test_a_constraint_is_never_bypassed(cons: Any, data: Any) -> None:
    rule = rule_spec_from_values(
        rule_id=1,
        kind="action",
        provider_key="sandbox",
        action_pattern="sandbox.list_tasks",
        constraints=cons,
    )
    call = Call.for_action(
        action_name="sandbox.list_tasks", action_class="read", connection_id=1, input=data
    )
    decision = evaluate([rule], call)
    expected = isinstance(data, dict) and all(
        c["field"] in data and _oracle(c["op"], c["value"], data[c["field"]]) for c in cons
    )
    assert decision.allowed is expected, (cons, data, decision.reason)


@settings(max_examples=300)
@given(
    st.lists(constraints(), min_size=1, max_size=2),
    inputs,
    st.dictionaries(
        st.text(min_size=1, max_size=6).filter(lambda k: k not in FIELDS), json_values, max_size=4
    ),
)
def test_extra_fields_never_change_a_constrained_decision(cons: Any, data: Any, extra: Any) -> None:
    if not isinstance(data, dict):
        data = {}
    rule = rule_spec_from_values(
        rule_id=1,
        kind="action",
        provider_key="sandbox",
        action_pattern="sandbox.*",
        constraints=cons,
    )

    def decide(payload: Any) -> Any:
        return evaluate(
            [rule],
            Call.for_action(
                action_name="sandbox.get_task", action_class="read", connection_id=1, input=payload
            ),
        ).allowed

    assert decide(data) == decide({**extra, **data})


def _reference_glob(pattern: str, value: str) -> bool:
    import re

    regex = "".join(
        ".*" if p == "**" else "[^/]*" if p == "*" else "[^/]" if p == "?" else re.escape(p)
        for p in re.split(r"(\*\*|\*|\?)", pattern)
    )
    return re.fullmatch(regex, value, re.DOTALL) is not None


@settings(max_examples=500)
@given(st.text(alphabet="ab/*?", max_size=8), st.text(alphabet="ab/", max_size=10))
def test_glob_match_agrees_with_a_regex_reference(pattern: Any, value: Any) -> None:
    from apps.policies.evaluate import glob_match

    assert glob_match(pattern, value) is _reference_glob(pattern, value)


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from(["a", "*", "**", "x-*"]), max_size=5),
    st.lists(st.sampled_from(["a", "b", "x-1"]), max_size=6),
)
def test_path_glob_agrees_with_a_recursive_reference(glob_parts: Any, path_parts: Any) -> None:
    from apps.policies.evaluate import path_matches

    def ref(p: Any, q: Any) -> Any:
        if not p:
            return not q
        if p[0] == "**":
            return any(ref(p[1:], q[i:]) for i in range(len(q) + 1))
        if not q:
            return False
        head_ok = bool(q[0]) if p[0] == "*" else _reference_glob(p[0], q[0])
        return head_ok and ref(p[1:], q[1:])

    glob = "/" + "/".join(glob_parts)
    path = "/" + "/".join(path_parts)
    assert path_matches(glob, path) is ref(tuple(glob_parts), tuple(path_parts))


# --- approval rules ---------------------------------------------------------------------


def _with_approval(rule: Any, expires_in: int = 3600) -> Any:
    from dataclasses import replace

    return replace(rule, approval_required=True, approval_expires_in=expires_in)


def _plain(rule: Any) -> Any:
    from dataclasses import replace

    return replace(rule, approval_required=False)


@settings(max_examples=400)
@given(st.lists(rules(), max_size=3), st.lists(rules(), min_size=1, max_size=3), calls())
def test_an_approval_rule_never_allows_by_itself(plain: Any, gated: Any, call: Any) -> None:
    """Adding approval rules to a role never changes what it allows outright; a role
    with only plain rules decides exactly as before and never asks for approval."""
    before = evaluate(plain, call)
    after = evaluate(plain + [_with_approval(r) for r in gated], call)
    assert before.approval_required is False
    assert after.allowed == before.allowed
    if before.allowed:
        assert after == before
    if after.approval_required:
        assert after.allowed is False


@settings(max_examples=400)
@given(st.lists(rules(), max_size=3), st.lists(rules(), min_size=1, max_size=3), calls())
def test_an_approval_never_widens_what_the_rule_allows(plain: Any, gated: Any, call: Any) -> None:
    """Approval needed ⇒ the named approval rule, as a plain rule, allows this very
    call (same matching, same constraints); no approval rule allows it ⇒ denied."""
    approval_rules = [_with_approval(r, expires_in=60 * (i + 1)) for i, r in enumerate(gated)]
    decision = evaluate(plain + approval_rules, call)
    if decision.approval_required:
        assert not evaluate(plain, call).allowed
        named = [r for r in approval_rules if r.rule_id == decision.rule_id]
        assert any(evaluate([_plain(r)], call).allowed for r in named)
        assert decision.approval_expires_in in {r.approval_expires_in for r in named}
    elif not evaluate(plain, call).allowed:
        assert not any(evaluate([_plain(r)], call).allowed for r in gated)
        assert decision.allowed is False


def test_an_approval_rule_is_described_and_explained() -> None:
    rule = rule_spec_from_values(
        rule_id=9,
        kind="action",
        provider_key="sandbox",
        action_pattern="sandbox.delete_task",
        connection_id=1,
        connection_name="sandbox-demo",
        approval={"required": True, "expires_in": 3600},
    )
    from apps.policies.evaluate import describe_rule

    assert describe_rule(rule) == (
        "action sandbox.delete_task on connection 'sandbox-demo' "
        "after approval by an admin (request valid for 1 h)"
    )
    call = Call.for_action(
        action_name="sandbox.delete_task", action_class="write", connection_id=1, input={}
    )
    decision = evaluate([rule], call)
    assert (decision.allowed, decision.approval_required, decision.rule_id) == (False, True, 9)
    assert "only after a person approves" in decision.reason
    named = rule_spec_from_values(
        rule_id=9,
        kind="action",
        provider_key="sandbox",
        action_pattern="sandbox.delete_task",
        approval={"required": True, "expires_in": 600, "approvers": [{"id": 4, "email": "a@x.t"}]},
    )
    assert describe_rule(named).endswith("after approval by a@x.t (request valid for 10 min)")
    assert evaluate([named], call).approver_ids == (4,)
