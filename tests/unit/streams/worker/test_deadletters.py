"""Dead-letter records: bounded whatever the message, and the original recoverable or proven."""

from __future__ import annotations

import base64
import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from streams.worker.deadletters import (
    MAX_DETAIL_CHARS,
    Rejection,
    dlq_payload,
    dlq_record_limit,
)

LIMIT = 1_024


def record(payload: bytes | None, key: bytes | None = b"s-1", detail: str = "schema: x") -> dict:
    rejection = Rejection("schema", detail, 2, 41, payload, key)
    raw = dlq_payload(rejection, "storefront.events", "w", 1_795_000_000_000, LIMIT)
    assert len(raw) <= dlq_record_limit(LIMIT)
    return json.loads(raw)


payloads = st.one_of(
    st.binary(max_size=4 * LIMIT),
    st.text(max_size=4 * LIMIT).map(lambda t: t.encode("utf-8", "surrogatepass")),
    # JSON escapes these six characters wide: the worst case for the record's size.
    st.integers(0, 6 * LIMIT).map(lambda n: b"\x01" * n),
    st.integers(0, 3 * LIMIT).map(lambda n: ("é" * n).encode()),
)


@given(payload=payloads, key=st.none() | st.binary(max_size=3_000), detail=st.text(max_size=3_000))
def test_any_message_makes_a_bounded_record_that_keeps_or_proves_its_payload(
    payload: bytes, key: bytes | None, detail: str
) -> None:
    body = record(payload, key, detail)
    assert (body["reason"], body["partition"], body["offset"]) == ("schema", 2, 41)
    assert len(body["detail"]) <= MAX_DETAIL_CHARS
    if "payload" in body:
        kept = body["payload"].encode("utf-8", "surrogatepass")
        payload.decode("utf-8")  # text only when the whole payload is UTF-8
    else:
        kept = base64.b64decode(body["payload_base64"])
    assert payload.startswith(kept)
    if len(payload) <= LIMIT:
        assert kept == payload and "payload_truncated" not in body
    else:
        assert body["payload_truncated"] is True
        assert body["payload_bytes"] == len(payload)
        assert body["payload_sha256"] == hashlib.sha256(payload).hexdigest()
        assert len(payload[:LIMIT]) - len(kept) <= 3  # at most a split UTF-8 character lost


def test_a_200_kb_message_of_control_characters_stays_far_below_a_megabyte() -> None:
    # The case of the report: escaped six times, it made a 1.2 MB record Kafka refused.
    payload = b'{"pad":"' + b"\x01" * 200_000
    rejection = Rejection("schema", "too large", 0, 7, payload, b"k")
    raw = dlq_payload(rejection, "t", "w", 0, 16_384)
    assert len(raw) < 120_000 < 1_048_576
    assert dlq_record_limit(16_384) < 1_048_576 and dlq_record_limit(131_072) < 1_048_576


def test_no_key_and_no_payload() -> None:
    body = record(None, None)
    assert body["payload"] is None and body["key"] is None


def test_a_payload_that_is_not_utf8_is_base64() -> None:
    body = record(b"\xff\xfe\x00abc")
    assert base64.b64decode(body["payload_base64"]) == b"\xff\xfe\x00abc"
    assert "payload" not in body
