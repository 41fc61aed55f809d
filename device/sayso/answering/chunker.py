"""Cut the LLM's stream into clauses the voice can speak.

The first chunk goes out early (first clause boundary, or after a few words) so
the person hears something soon; later chunks end at sentences, which Piper
speaks more naturally. Decimals, thousands and abbreviations are never split.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc e.g i.e a.m p.m approx no fig inc ltd co u.s u.k".split())
_CLAUSE = re.compile(r"[,;:](?=\s)|\s[-\u2013\u2014](?=\s)|[\u2013\u2014](?=\S)")
_SENTENCE = re.compile(r"[.!?](?=[\s\"')\]])|\n")
MAX_BRACKET_CHARS = 200
"""An unclosed "[" longer than this is not an aside any more: cutting resumes."""


class ClauseChunker:
    """Feed text pieces as they stream; get back whole chunks.

    Args:
        first_words: the first chunk is cut after this many words when no clause boundary came sooner.
    """

    def __init__(self, first_words: int = 6):
        self.first_words = first_words
        self._buf = ""
        self._sent = 0

    def feed(self, piece: str) -> list[str]:
        self._buf += piece
        out = []
        while (cut := self._find_cut()) is not None:
            chunk, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if chunk:
                out.append(chunk)
                self._sent += 1
        return out

    def flush(self) -> str | None:
        chunk, self._buf = self._buf.strip(), ""
        if chunk:
            self._sent += 1
            return chunk
        return None

    def _find_cut(self) -> int | None:
        buf = self._buf
        for m in _SENTENCE.finditer(buf):
            if (m.group() == "\n" or not _is_abbreviation(buf, m.start())) and self._may_cut(m.end()):
                return m.end()
        if self._sent == 0:
            for m in _CLAUSE.finditer(buf):
                if self._may_cut(m.end()):
                    return m.end()
            words = [w for w in re.finditer(r"\S+(?=\s)", buf) if self._may_cut(w.end())]
            if len(words) >= self.first_words:
                return words[self.first_words - 1].end()
        return None

    def _may_cut(self, at: int) -> bool:
        """Never inside [brackets] or a ``` code block: the sanitizer drops them only when they arrive whole."""
        before = self._buf[:at]
        if before.count("```") % 2:
            return False
        opened = before.rfind("[")
        return opened <= before.rfind("]") or len(self._buf) - opened >= MAX_BRACKET_CHARS


def _is_abbreviation(text: str, dot: int) -> bool:
    if text[dot] != ".":
        return False
    word = re.search(r"([A-Za-z.]+)$", text[:dot])
    if not word:
        return False
    w = word.group(1).lower().rstrip(".")
    return w in ABBREVIATIONS or (len(w) == 1 and text[dot - 1].isupper())
