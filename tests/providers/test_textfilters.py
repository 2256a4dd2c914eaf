"""Control-token removal and <think> splitting on streamed text, at every split point."""
from __future__ import annotations

import pytest

from neptun_flask.streaming.textfilters import CONTROL_TOKENS, ControlTokenFilter, ThinkSplitter


def run_filter(pieces):
    """Feed pieces through a fresh ControlTokenFilter; return the whole output."""
    f = ControlTokenFilter()
    return "".join(f.feed(piece) for piece in pieces) + f.flush()


def run_splitter(pieces, starts_in_reasoning=False):
    """Feed pieces through a fresh ThinkSplitter; return merged (kind, text) runs."""
    s = ThinkSplitter(starts_in_reasoning)
    parts = [part for piece in pieces for part in s.feed(piece)] + s.flush()
    merged: list[list[str]] = []
    for kind, text in parts:
        assert text, "no empty pieces"
        if merged and merged[-1][0] == kind:
            merged[-1][1] += text
        else:
            merged.append([kind, text])
    return [tuple(run) for run in merged]


@pytest.mark.parametrize("token", CONTROL_TOKENS)
def test_control_token_removed_at_every_split(token):
    text = f"Hi{token} there{token}"
    for cut in range(len(text) + 1):
        assert run_filter([text[:cut], text[cut:]]) == "Hi there", cut
    assert run_filter(list(text)) == "Hi there"


def test_split_example_from_qwen():
    f = ControlTokenFilter()
    assert f.feed("Hi<|im") == "Hi"
    assert f.feed("_end|>") == ""
    assert f.flush() == ""


def test_plain_text_passes_immediately():
    f = ControlTokenFilter()
    text = "no markers here, only text"
    assert f.feed(text) is text
    assert f.flush() == ""


def test_only_a_possible_token_prefix_is_held():
    f = ControlTokenFilter()
    assert f.feed("a < b and x[0") == "a < b and x[0"
    assert f.feed("see <b") == "see "           # "<b" may become "<bos>"
    assert f.feed(">bold</b>") == "<b>bold</b>"
    assert f.feed("list [") == "list "
    assert f.feed("link](x)") == "[link](x)"
    assert f.feed("end <") == "end "
    assert f.flush() == "<"


def test_markup_that_looks_like_tokens_survives():
    assert run_filter(["<think>x</think> <|im_endless|> [INSTANT] <end>"]) == (
        "<think>x</think> <|im_endless|> [INSTANT] <end>")


def test_fullwidth_deepseek_tokens():
    text = "Done.<｜end▁of▁sentence｜>"
    for cut in range(len(text) + 1):
        assert run_filter([text[:cut], text[cut:]]) == "Done."


THINK_TEXT = "<think>\nLet me add.\n</think>\n\nThe answer is 4."


def test_think_tags_split_at_every_position():
    expected = [("reasoning", "Let me add.\n"), ("text", "The answer is 4.")]
    for cut in range(len(THINK_TEXT) + 1):
        assert run_splitter([THINK_TEXT[:cut], THINK_TEXT[cut:]]) == expected, cut
    for a in range(len(THINK_TEXT) + 1):
        for b in range(a, len(THINK_TEXT) + 1):
            pieces = [THINK_TEXT[:a], THINK_TEXT[a:b], THINK_TEXT[b:]]
            assert run_splitter(pieces) == expected, (a, b)
    assert run_splitter(list(THINK_TEXT)) == expected


def test_starts_in_reasoning_for_deepseek_r1():
    text = "\nOkay, greet back.\n</think>\n\nHello!"
    expected = [("reasoning", "Okay, greet back.\n"), ("text", "Hello!")]
    for cut in range(len(text) + 1):
        assert run_splitter([text[:cut], text[cut:]], starts_in_reasoning=True) == expected


def test_text_without_tags_takes_the_fast_path():
    s = ThinkSplitter()
    assert s.feed("plain") == [("text", "plain")]
    assert s.feed("a < b") == [("text", "a < b")]
    assert s.flush() == []


def test_a_held_fragment_that_is_not_a_tag_is_released():
    s = ThinkSplitter()
    assert s.feed("x <thi") == [("text", "x ")]
    assert s.feed("s is") == [("text", "<this is")]
    assert s.feed("<") == []
    assert s.flush() == [("text", "<")]


def test_unclosed_reasoning_at_the_end():
    assert run_splitter(["before <think>", "still thinking</thi"]) == [
        ("text", "before "), ("reasoning", "still thinking</thi")]


REPLY = "<think>\nLet me add.\n</think>\n\nThe answer is 4."
REPLY_PARTS = [("reasoning", "Let me add.\n"), ("text", "The answer is 4.")]


@pytest.mark.parametrize(("starts_in_reasoning", "lead"), [
    (True, ""), (True, "\n"), (True, " \n"), (False, ""),
], ids=["prompt-opens-the-tag", "prompt-opens-the-tag-newline-first",
        "prompt-opens-the-tag-space-first", "model-opens-the-tag"])
def test_the_models_own_open_tag_never_reaches_the_reasoning(starts_in_reasoning, lead):
    """Whether the prompt opened <think> (the request starts in reasoning) or not, a reply that
    itself begins with <think> gives the same reasoning and text, without the tag, also when
    the tag is split across two deltas or sent one character at a time."""
    text = lead + REPLY
    for cut in range(len(text) + 1):
        assert run_splitter([text[:cut], text[cut:]], starts_in_reasoning) == REPLY_PARTS, cut
    assert run_splitter(list(text), starts_in_reasoning) == REPLY_PARTS


def test_only_a_leading_open_tag_is_dropped_when_the_prompt_opened_it():
    """Starting in reasoning, only an open tag at the very start is the model repeating the
    prompt's; one later in the reasoning is its text, and a reply of a partial tag is kept."""
    assert run_splitter(["Hm, <think> is a tag.</think>Yes."], starts_in_reasoning=True) == [
        ("reasoning", "Hm, <think> is a tag."), ("text", "Yes.")]
    assert run_splitter(["<thi"], starts_in_reasoning=True) == [("reasoning", "<thi")]
    assert run_splitter(["<", "/think>Hello"], starts_in_reasoning=True) == [("text", "Hello")]
    s = ThinkSplitter(starts_in_reasoning=True)
    assert s.feed("<think>") == []
    assert s.flush() == []
