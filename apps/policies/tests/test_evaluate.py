"""The pure evaluate(): example tests for every op, proxy globs and path tricks."""

from __future__ import annotations

from typing import Any

import pytest

from apps.policies.evaluate import (
    Call,
    RuleSpec,
    UnsafePath,
    describe_rule,
    evaluate,
    normalize_path,
    rule_spec_from_values,
)


def action_rule(
    rule_id: int = 1, pattern: str = "sandbox.list_tasks", provider: str = "sandbox", **kw: Any
) -> RuleSpec:
    return rule_spec_from_values(
        rule_id=rule_id, kind="action", provider_key=provider, action_pattern=pattern, **kw
    )


def proxy_rule(
    rule_id: int = 1,
    methods: Any = ("GET",),
    glob: str = "/repos/*",
    connection_id: int = 7,
    **kw: Any,
) -> RuleSpec:
    return rule_spec_from_values(
        rule_id=rule_id,
        kind="proxy",
        provider_key="github",
        methods=methods,
        path_glob=glob,
        connection_id=connection_id,
        connection_name="gh",
        **kw,
    )


def action_call(
    name: str = "sandbox.list_tasks",
    cls: str = "read",
    conn: int | None = 7,
    data: Any = None,
    **kw: Any,
) -> Any:
    return Call.for_action(
        action_name=name,
        action_class=cls,
        connection_id=conn,
        connection_name="sandbox-demo",
        input=data or {},
        **kw,
    )


def proxy_call(method: str = "GET", path: str = "/repos/acme", conn: int = 7) -> Any:
    return Call.for_proxy(
        provider_key="github", method=method, path=path, connection_id=conn, connection_name="gh"
    )


def test_empty_role_denies_with_a_reason_naming_action_connection_and_fix() -> None:
    decision = evaluate(
        [], action_call(name="sandbox.delete_task", cls="write", role_name="triage")
    )
    assert not decision.allowed
    assert decision.rule_id is None
    assert decision.reason == (
        "Role 'triage' has no rule allowing action 'sandbox.delete_task' on connection "
        "'sandbox-demo'. An admin can add an action rule for sandbox.delete_task."
    )


def test_exact_rule_allows_only_its_action() -> None:
    rules = [action_rule(rule_id=5, rate_limit_per_minute=10)]
    allowed = evaluate(rules, action_call())
    assert allowed.allowed
    assert allowed.rule_id == 5
    assert allowed.rate_limit_per_minute == 10
    assert "rule #5" in allowed.reason
    assert not evaluate(rules, action_call(name="sandbox.get_task")).allowed


def test_provider_pattern_and_action_class() -> None:
    reads = [action_rule(pattern="sandbox.*", action_class="read")]
    assert evaluate(reads, action_call(name="sandbox.get_task", cls="read")).allowed
    assert not evaluate(reads, action_call(name="sandbox.create_task", cls="write")).allowed
    # A pattern of one provider never covers another provider's actions.
    assert not evaluate(reads, action_call(name="github.list_issues", cls="read")).allowed
    everything = [action_rule(pattern="sandbox.*")]
    assert evaluate(everything, action_call(name="sandbox.delete_task", cls="write")).allowed


def test_pattern_does_not_match_a_provider_with_a_longer_key() -> None:
    rules = [action_rule(pattern="git.*", provider="git")]
    assert not evaluate(rules, action_call(name="github.list_issues")).allowed


def test_connection_specific_rule_names_the_allowed_connection() -> None:
    rules = [action_rule(connection_id=3, connection_name="prod")]
    assert evaluate(rules, action_call(conn=3)).allowed
    denied = evaluate(rules, action_call(conn=7, role_name="triage"))
    assert not denied.allowed
    assert "only on connection 'prod'" in denied.reason
    assert "not on connection 'sandbox-demo'" in denied.reason


def test_unspecified_connection_only_matches_any_connection_rules() -> None:
    assert not evaluate([action_rule(connection_id=3)], action_call(conn=None)).allowed
    assert evaluate([action_rule()], action_call(conn=None)).allowed


@pytest.mark.parametrize(
    ("op", "value", "good", "bad"),
    [
        ("equals", "#alerts", "#alerts", ["#general", ["#alerts"], {"x": 1}, None, 1]),
        ("equals", 3, 3, ["3", True, 3.5, [3]]),
        ("equals", True, True, [1, "true", False]),
        ("one_of", ["acme/web", "acme/api"], "acme/api", ["evil/x", ["acme/web"], 0]),
        ("one_of", [1, 2], 2, ["2", True, 2.5]),
        ("glob", "acme/*", "acme/web", ["acme/web/x", "evil/acme/web", 5, ["acme/web"]]),
        ("glob", "logs/**", "logs/a/b", ["log/a", None]),
        ("prefix", "feature/", "feature/x", ["main", 7, ["feature/x"], {"a": "feature/"}]),
        ("max", 5, 5, [6, "1", "1e9", True, None, [1], float("nan"), float("inf"), 10**400]),
        ("max", 2.5, -1, [2.6]),
    ],
)
def test_every_constraint_op(op: str, value: Any, good: Any, bad: Any) -> None:
    rules = [action_rule(constraints=[{"field": "f", "op": op, "value": value}])]
    assert evaluate(rules, action_call(data={"f": good, "extra": "ignored"})).allowed
    for wrong in bad:
        decision = evaluate(rules, action_call(data={"f": wrong}))
        assert not decision.allowed, (op, value, wrong)
        assert "input.f" in decision.reason
    missing = evaluate(rules, action_call(data={"other": good}))
    assert not missing.allowed
    assert "it is missing" in missing.reason


def test_max_allows_smaller_numbers_and_bools_never_count() -> None:
    rules = [action_rule(constraints=[{"field": "priority", "op": "max", "value": 3}])]
    assert evaluate(rules, action_call(data={"priority": 1})).allowed
    assert evaluate(rules, action_call(data={"priority": 2.9})).allowed
    assert not evaluate(rules, action_call(data={"priority": False})).allowed


def test_constraint_reason_matches_the_documented_wording() -> None:
    rules = [
        action_rule(
            constraints=[{"field": "repo", "op": "one_of", "value": ["acme/web", "acme/api"]}]
        )
    ]
    decision = evaluate(rules, action_call(data={"repo": "evil/x"}))
    assert "input.repo must be one of acme/web, acme/api (got 'evil/x')" in decision.reason


def test_non_object_input_fails_every_constraint_but_not_unconstrained_rules() -> None:
    constrained = [action_rule(constraints=[{"field": "a", "op": "equals", "value": 1}])]
    assert not evaluate(constrained, action_call(data=[{"a": 1}])).allowed
    assert evaluate([action_rule()], action_call(data=[1])).allowed


def test_unknown_constraint_op_denies() -> None:
    rules = [action_rule(constraints=[{"field": "a", "op": "regex", "value": ".*"}])]
    assert not evaluate(rules, action_call(data={"a": "x"})).allowed


def test_any_allowing_rule_wins_over_a_failed_constraint() -> None:
    rules = [
        action_rule(rule_id=1, constraints=[{"field": "a", "op": "equals", "value": 1}]),
        action_rule(rule_id=2),
    ]
    decision = evaluate(rules, action_call(data={"a": 2}))
    assert decision.allowed
    assert decision.rule_id == 2


# --- proxy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "path", "expected"),
    [
        ("/repos/*", "/repos/acme", True),
        ("/repos/*", "/repos/acme/", True),
        ("/repos/*", "/repos/acme/web", False),
        ("/repos/*", "/repos", False),
        ("/repos/acme/*/issues", "/repos/acme/web/issues", True),
        ("/repos/acme/*/issues", "/repos/acme/web/pulls", False),
        ("/repos/**", "/repos", True),
        ("/repos/**", "/repos/a/b/c", True),
        ("/repos/**/issues", "/repos/a/b/issues", True),
        ("/repos/**/issues", "/repos/a/b/pulls", False),
        ("/repos/issue-*", "/repos/issue-4", True),
        ("/repos/issue-*", "/repos/pull-4", False),
        ("/user", "/users", False),
    ],
)
def test_path_globs(glob: str, path: str, expected: bool) -> None:
    assert evaluate([proxy_rule(glob=glob)], proxy_call(path=path)).allowed is expected


@pytest.mark.parametrize(
    "path",
    [
        "/repos/acme/../admin",
        "/repos/./acme",
        "/repos/%2e%2e/admin",
        "/repos/%2E%2E/admin",
        "/repos/acme%2fweb",
        "/repos/%252e%252e/x",
        "//evil.com/repos/acme",
        "https://evil.com/repos/acme",
        "/repos//acme",
        "/repos\\acme",
        "repos/acme",
        "/repos/acme?x=1",
        "/repos/acme#frag",
        "/repos/ac me",
        "/repos/acme%00",
        "/repos/acme/..;/admin",
        "/repos/acme/..;x=1/admin",
        "/repos/.;/acme",
        "/repos;/acme",
        "/repos/acme%3b/x",
        "/repos/acme/..%3B/admin",
        "",
    ],
)
def test_path_tricks_are_rejected_even_with_a_catch_all_rule(path: str) -> None:
    rules = [proxy_rule(glob="/**", methods=("GET", "POST"))]
    decision = evaluate(rules, proxy_call(path=path))
    assert not decision.allowed
    assert "rejected" in decision.reason
    with pytest.raises(UnsafePath):
        normalize_path(path)


def test_a_star_glob_does_not_match_a_dot_dot_semicolon_segment() -> None:
    # '/repos/*/issues' must not let '/repos/..;/issues' through (it is '/issues' upstream).
    rules = [proxy_rule(glob="/repos/*/issues")]
    assert evaluate(rules, proxy_call(path="/repos/acme/issues")).allowed
    decision = evaluate(rules, proxy_call(path="/repos/..;/issues"))
    assert not decision.allowed
    assert "rejected" in decision.reason


def test_methods_compare_uppercase_and_must_be_listed() -> None:
    rules = [proxy_rule(methods=["get"])]
    assert evaluate(rules, proxy_call(method="get")).allowed
    assert evaluate(rules, proxy_call(method="GET")).allowed
    denied = evaluate(rules, proxy_call(method="DELETE"))
    assert not denied.allowed
    assert "allows only GET on /repos/acme through connection 'gh', not DELETE" in denied.reason
    elsewhere = evaluate(rules, proxy_call(method="GET", path="/orgs/acme"))
    assert not elsewhere.allowed
    assert "no proxy rule allowing GET /orgs/acme on connection 'gh'" in elsewhere.reason
    assert "An admin can add a proxy rule for GET" in elsewhere.reason


def test_proxy_rule_is_bound_to_its_connection_and_kind() -> None:
    rules = [proxy_rule(connection_id=7)]
    assert not evaluate(rules, proxy_call(conn=8)).allowed
    # A proxy rule never allows an action, and an action rule never allows proxying.
    assert not evaluate(rules, action_call(name="github.list_issues", conn=7)).allowed
    assert not evaluate([action_rule(pattern="github.*", provider="github")], proxy_call()).allowed


def test_describe_rule_in_plain_words() -> None:
    rule = action_rule(pattern="sandbox.*", action_class="read", rate_limit_per_minute=30)
    assert describe_rule(rule) == (
        "all read actions of sandbox on any sandbox connection, "
        "at most 30 calls per minute per token"
    )
    constrained = action_rule(
        connection_id=2,
        connection_name="demo",
        constraints=[{"field": "repo", "op": "prefix", "value": "acme/"}],
    )
    assert describe_rule(constrained) == (
        "action sandbox.list_tasks on connection 'demo', if input.repo starts with 'acme/'"
    )


def test_adversarial_globs_stay_fast() -> None:
    import time

    from apps.policies.evaluate import glob_match, path_matches

    started = time.monotonic()
    assert not glob_match("*a*a*a*a*a*a*a*b", "a" * 20_000)
    assert not glob_match("**a**a**a**a**b", "a/" * 10_000)
    assert not path_matches("/**/**/**/**/x", "/" + "/".join(["a"] * 5_000))
    assert path_matches("/**/x", "/" + "/".join(["a"] * 5_000) + "/x")
    assert time.monotonic() - started < 5
