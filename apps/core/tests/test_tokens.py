from __future__ import annotations

import zlib
from typing import Any

import pytest
from pytest_django import DjangoAssertNumQueries

from apps.core import tokens
from apps.core.tokens import (
    BASE62,
    checksum,
    generate_token,
    parse_token,
    token_digest,
)


def test_generated_worker_token_has_the_github_shape() -> None:
    generated = generate_token("worker")
    raw = generated.raw
    assert raw.startswith("gry_")
    body = raw[len("gry_") :]
    assert len(body) == 43 + 6
    assert set(body) <= set(BASE62)
    # 43 base62 characters carry at least 256 bits.
    assert 62**43 >= 2**256
    assert body[-6:] == checksum(body[:43])
    assert generated.digest == token_digest(raw)
    assert len(generated.digest) == 64
    assert generated.last4 == raw[-4:]


def test_checksum_is_base62_crc32_of_the_random_part() -> None:
    random_part = "a" * 43
    number = 0
    for char in checksum(random_part):
        number = number * 62 + BASE62.index(char)
    assert number == zlib.crc32(random_part.encode())


def test_tokens_are_unique() -> None:
    assert len({generate_token("worker").raw for _ in range(200)}) == 200


def test_personal_tokens_have_their_own_prefix_and_kind() -> None:
    raw = generate_token("personal").raw
    assert raw.startswith("gryp_")
    assert parse_token(raw).kind == "personal"
    assert parse_token(raw, kind="worker") is None
    assert parse_token(generate_token("worker").raw, kind="personal") is None


def test_parse_accepts_a_good_token() -> None:
    generated = generate_token("worker")
    parsed = parse_token(generated.raw, kind="worker")
    assert parsed is not None
    assert (parsed.kind, parsed.digest, parsed.last4) == (
        "worker",
        generated.digest,
        generated.last4,
    )


def _flip(char: Any) -> Any:
    return "A" if char != "A" else "B"


@pytest.mark.django_db
def test_bad_tokens_are_rejected_without_any_query(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    raw = generate_token("worker").raw
    bad_checksum = raw[:-1] + _flip(raw[-1])
    bad_random = raw[:10] + _flip(raw[10]) + raw[11:]
    candidates = [
        "",
        None,
        "gry_",
        "ghp_" + raw[4:],  # someone else's prefix
        raw[:-1],  # too short
        raw + "x",  # too long
        raw[:20] + "-" + raw[21:],  # not base62
        bad_checksum,
        bad_random,
        raw.upper(),
    ]
    with django_assert_num_queries(0):
        for candidate in candidates:
            assert parse_token(candidate) is None, candidate


def test_repr_never_shows_the_raw_token() -> None:
    generated = generate_token("worker")
    assert generated.raw not in repr(generated)
    assert generated.raw not in repr(parse_token(generated.raw))


def test_public_ids_look_like_tok_plus_12_base62() -> None:
    public_id = tokens.new_public_id()
    assert public_id.startswith("tok_")
    assert len(public_id) == 16
    assert set(public_id[4:]) <= set(BASE62)
