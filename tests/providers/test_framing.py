"""SSE and NDJSON framing: splitting at any byte, comments, CRLF, multi-line data, errors."""
from __future__ import annotations

import pytest

from neptun_flask.providers import get_adapter, huggingface
from neptun_flask.providers.base import DONE, End, TextDelta
from neptun_flask.providers.framing import MalformedEvent, iter_events, iter_payloads

from .helpers import PROTOCOLS, protocol

SSE_FILES = sorted(p.name for p in PROTOCOLS.glob("*stream*.txt")
                   if not p.name.startswith(("ollama", "vercel")))
NDJSON_FILES = sorted(p.name for p in PROTOCOLS.glob("ollama_chat_stream*.txt"))
ALL_STREAMS = [(name, "sse") for name in SSE_FILES] + [(name, "ndjson") for name in NDJSON_FILES]


def payloads(chunks, framing="sse"):
    """All payloads of a chunk sequence, as a list."""
    return list(iter_payloads(chunks, framing))


def events_of(name, chunks, framing):
    """All adapter events of a transcript's chunks (the adapter named by the file prefix)."""
    provider = {"hf": "huggingface"}.get(name.split("_")[0], name.split("_")[0])
    return list(iter_events(chunks, get_adapter(provider), framing))


def test_the_transcripts_are_found():
    assert len(SSE_FILES) == 9
    assert len(NDJSON_FILES) == 2


@pytest.mark.parametrize("name, framing", ALL_STREAMS)
def test_every_two_chunk_split_gives_the_same_payloads(name, framing):
    body = protocol(name)
    whole = payloads([body], framing)
    whole_events = events_of(name, [body], framing)
    assert whole and whole_events, "a transcript yields payloads and events"
    for cut in range(1, len(body)):
        assert payloads([body[:cut], body[cut:]], framing) == whole, cut
        assert events_of(name, [body[:cut], body[cut:]], framing) == whole_events, cut


@pytest.mark.parametrize("name, framing", ALL_STREAMS)
def test_byte_by_byte_gives_the_same_payloads(name, framing):
    body = protocol(name)
    single_bytes = [body[i:i + 1] for i in range(len(body))]
    assert payloads(single_bytes, framing) == payloads([body], framing)
    assert events_of(name, single_bytes, framing) == events_of(name, [body], framing)


@pytest.mark.parametrize("name, framing", ALL_STREAMS)
def test_one_event_per_read_gives_the_same_payloads(name, framing):
    """Reads of exactly one event each (how upstreams send, and the decoder's fast path)."""
    body = protocol(name)
    separator = b"\n\n" if framing == "sse" else b"\n"
    pieces = body.split(separator)
    reads = [piece + separator for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    assert reads
    assert payloads(reads, framing) == payloads([body], framing)
    assert events_of(name, reads, framing) == events_of(name, [body], framing)


@pytest.mark.parametrize("reads, expected", [
    ([b"data: [DONE]\n\n"], [DONE]),
    ([b'data: {"a":1}\r\n\r\n', b"data: [DONE]\r\n\r\n"], [{"a": 1}, DONE]),
    ([b"data: \n\n", b"data: {}\n\n"], [{}]),
    ([b'data: {"a":', b'1}\n\n', b'data: {"b":2}\n\n'], [{"a": 1}, {"b": 2}]),
], ids=["done", "crlf", "empty-data", "held-then-whole"])
def test_whole_one_event_reads_at_the_edges(reads, expected):
    assert payloads(reads) == expected


@pytest.mark.parametrize("reads, expected", [
    ([b'{"a":1}\r\n', b"  \n", b"\n", b'{"b":2}\n'], [{"a": 1}, {"b": 2}]),
    ([b'{"a":', b'1}\n', b'{"b":2}\n'], [{"a": 1}, {"b": 2}]),
], ids=["crlf-and-blank", "held-then-whole"])
def test_whole_one_line_ndjson_reads_at_the_edges(reads, expected):
    assert payloads(reads, "ndjson") == expected


def test_keep_alive_comments_and_other_fields_are_ignored():
    body = (b":\n\n: OPENROUTER PROCESSING\n\nevent: message\nid: 7\nretry: 100\n"
            b"data: {\"a\": 1}\n\n:\n\n")
    assert payloads([body]) == [{"a": 1}]


@pytest.mark.parametrize("line", [b"data: {\"a\":1}", b"data:{\"a\":1}"])
def test_data_with_and_without_space(line):
    assert payloads([line + b"\n\n"]) == [{"a": 1}]


def test_crlf_line_endings():
    body = b": keep-alive\r\n\r\ndata: {\"a\":1}\r\n\r\ndata:[DONE]\r\n\r\n"
    assert payloads([body]) == [{"a": 1}, DONE]
    assert payloads([body[i:i + 1] for i in range(len(body))]) == [{"a": 1}, DONE]


def test_multi_line_data_is_joined_with_newlines():
    body = b'data: {"a":\ndata: [1,\ndata: 2]}\n\ndata: [DONE]\n\n'
    assert payloads([body]) == [{"a": [1, 2]}, DONE]


def test_done_yields_the_sentinel():
    assert payloads([b"data: [DONE]\n\n"]) == [DONE]
    assert payloads([b"data: [DONE]\n\n"])[0] is DONE


def test_empty_data_event_is_skipped():
    assert payloads([b"data:\n\ndata: {}\n\n"]) == [{}]


def test_malformed_json_raises_with_a_short_message():
    with pytest.raises(MalformedEvent) as caught:
        payloads([b"data: {not json" + b"x" * 5000 + b"\n\n"])
    assert len(str(caught.value)) < 200
    assert isinstance(caught.value, ValueError)


def test_malformed_ndjson_line_raises():
    with pytest.raises(MalformedEvent):
        payloads([b'{"a":1}\n{oops}\n'], "ndjson")


def test_ndjson_last_line_without_newline_is_parsed():
    assert payloads([b'{"a":1}\n{"b":', b"2}"], "ndjson") == [{"a": 1}, {"b": 2}]


def test_ndjson_blank_and_crlf_lines():
    assert payloads([b'\n{"a":1}\r\n  \n\r\n{"b":2}\n'], "ndjson") == [{"a": 1}, {"b": 2}]


def test_a_line_cut_by_eof_is_dropped_not_raised():
    assert payloads([b'{"a":1}\n{"b":'], "ndjson") == [{"a": 1}]
    assert payloads([b'data: {"a":1}\n\ndata: {"b":']) == [{"a": 1}]


def test_sse_event_completed_by_eof_without_blank_line_is_kept():
    assert payloads([b'data: {"a":1}\n\ndata: [DONE]']) == [{"a": 1}, DONE]


@pytest.mark.parametrize("framing, template", [
    ("sse", b'data: {"t":"%s"}\n\n'), ("ndjson", b'{"t":"%s"}\n')])
def test_multibyte_characters_split_across_reads(framing, template):
    body = template % "café 👋 ☀️".encode() * 3
    expected = [{"t": "café 👋 ☀️"}] * 3
    for cut in range(1, len(body)):
        assert payloads([body[:cut], body[cut:]], framing) == expected
    assert payloads([body[i:i + 1] for i in range(len(body))], framing) == expected


def test_unknown_framing_is_rejected():
    with pytest.raises(ValueError):
        iter_payloads([], "xml")


def test_iter_events_feeds_the_adapter():
    events = list(iter_events([protocol("hf_inference_api_stream_ok_legacy_nospace.txt")],
                              huggingface.adapter, "sse"))
    assert events[0] == TextDelta("Hello")
    assert events[-1] == End()
