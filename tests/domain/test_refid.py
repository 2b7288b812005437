from __future__ import annotations

import hmac

from hypothesis import example, given
from hypothesis import strategies as st

from clickback.domain.refid import TEXT_LEN, RefIdCodec, _Mac, created_ms, floor

codec = RefIdCodec(["k-one"])


def test_refid_round_trips_time_and_link() -> None:
    r = codec.issue(123456, 1_764_000_000_123)
    info = codec.verify(r)
    assert info is not None and (info.link_id, info.created_ms) == (123456, 1_764_000_000_123)
    assert len(r) == TEXT_LEN <= 40
    assert all(c.isalnum() or c in "-_" for c in r)


def test_refids_are_unique_over_many_clicks() -> None:
    ids = {codec.issue(1, 1_764_000_000_000) for _ in range(50_000)}
    assert len(ids) == 50_000


def test_refids_sort_by_creation_time() -> None:
    times = [1_700_000_000_000 + i * 7_919 for i in range(300)]
    ids = [codec.issue(5, t) for t in times]
    assert ids == sorted(ids)


@given(st.integers(0, TEXT_LEN - 1), st.sampled_from("-0aZ_9"))
def test_any_changed_character_fails_the_mac(pos: int, ch: str) -> None:
    r = codec.issue(77, 1_764_000_000_000)
    forged = r[:pos] + ch + r[pos + 1 :]
    if forged != r:
        assert codec.verify(forged) is None


def test_truncated_garbled_and_foreign_refids_fail() -> None:
    r = codec.issue(1, 1_764_000_000_000)
    assert codec.verify(r[:-1]) is None
    assert codec.verify(r + "x") is None
    assert codec.verify("!" * TEXT_LEN) is None
    assert RefIdCodec(["other"]).verify(r) is None


def test_rotation_old_keys_still_verify() -> None:
    old = RefIdCodec(["old"]).issue(9, 1_764_000_000_000)
    rotated = RefIdCodec(["new", "old"])
    assert rotated.verify(old) is not None
    assert RefIdCodec(["old"]).verify(rotated.issue(9, 1)) is None


def test_floor_sorts_below_every_later_refid_and_above_earlier_ones() -> None:
    from clickback.domain.refid import floor

    at = 1_764_000_000_000
    assert all(codec.issue(9, at - 1) < floor(at) <= codec.issue(9, at) for _ in range(200))


@given(
    st.one_of(st.binary(min_size=1, max_size=64), st.binary(min_size=65, max_size=200)),
    st.binary(max_size=100),
)
@example(b"k" * 64, b"")
@example(b"k" * 65, b"body")  # longer than a block: the key is hashed first
def test_the_mac_is_hmac_sha256_for_any_key_and_message(key: bytes, message: bytes) -> None:
    mac = _Mac(key)
    assert mac(message) == hmac.digest(key, message, "sha256")
    assert mac(message + b"!") == hmac.digest(key, message + b"!", "sha256")  # no state kept


def test_a_stored_refids_time_is_read_without_its_key() -> None:
    for ms in (0, 1_764_000_000_123, 2**48 - 2):
        r = codec.issue(9, ms)
        assert created_ms(r) == ms and floor(ms) <= r < floor(ms + 1)
