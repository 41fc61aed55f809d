"""Make LLM text speakable: no markdown, code, URLs or emoji reach the voice."""

from __future__ import annotations

import re

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.S)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_BRACKETED = re.compile(r"\[[^\]]*\]")
"""Stage directions, and the turn log's cut-in marker echoed back by a small model: never spoken."""
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.I)
_LINE_MARK = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|#{1,6}|>)\s+", re.M)
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1")
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D]")
_LEFTOVER = re.compile(r"[*#`|<>\\^\[\]]+")


def speakable(text: str) -> str:
    """The words of `text` a person should hear; markup removed, code and URLs dropped."""
    text = _CODE_BLOCK.sub(" ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _BRACKETED.sub(" ", text)
    text = _URL.sub("a link", text)
    text = _LINE_MARK.sub("", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _EMOJI.sub("", text)
    text = re.sub(r"(?<=\d)\s*[*×]\s*(?=\d)", " times ", text)
    text = _LEFTOVER.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()
