"""Text as both sides accept it, whatever the kind of record: what Exchange rejects removed, Outlook's
caps counted in UTF-16 code units as Exchange counts them, and every function idempotent (a cleaned
value cleans to itself), so a value read back hashes the same as the value written.
"""
from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from typing import Any

from sync_core.domain.errors import InvalidRecordError

# Outlook's cap on a one-line text field.
TEXT_MAX = 255


def is_unsafe(ch: str, keep: str = "") -> bool:
    """Control characters, lone surrogates and the two non-characters XML (hence Exchange) rejects."""
    if ch in keep:
        return False
    return unicodedata.category(ch) in ("Cc", "Cs") or ch in ("\ufffe", "\uffff")


def _utf16_len(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def fit(text: str, cap: int) -> str:
    """Cut to `cap` UTF-16 units without splitting a surrogate pair."""
    if len(text) * 2 <= cap:
        return text
    used = 0
    for index, ch in enumerate(text):
        used += _utf16_len(ch)
        if used > cap:
            return text[:index]
    return text


def fixpoint(step: Callable[[str], str], text: str) -> str:
    # Cutting a string can leave trailing space or a combining sequence to recompose; a few passes settle it.
    for _ in range(4):
        again = step(text)
        if again == text:
            return text
        text = again
    return text


def clean_line(value: str, cap: int = TEXT_MAX) -> str:
    """One-line text: NFC, no control characters, whitespace runs collapsed to one space, capped."""

    def step(text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        # Whitespace controls (tab, line breaks) separate words; other controls just go.
        text = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or not is_unsafe(ch))
        return fit(" ".join(text.split()), cap).strip()

    return fixpoint(step, value)


def clean_block(value: str, cap: int) -> str:
    """Multi-line text (notes, street): line breaks unified to \\n, tabs kept, trailing spaces dropped."""

    def step(text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        lines = [
            "".join(ch for ch in line if not is_unsafe(ch, keep="\t")).rstrip()
            for line in text.splitlines()
        ]
        return fit("\n".join(lines).strip(), cap).strip()

    return fixpoint(step, value)


def graph_item(item: object, noun: str) -> tuple[Mapping[str, Any], str]:
    """A Graph item of a delta or list page and its id; InvalidRecordError with a reason (never a value)
    when it is not an object, is a removal marker, or has no id."""
    if not isinstance(item, Mapping):
        raise InvalidRecordError("item is not a JSON object")
    if "@removed" in item:
        raise InvalidRecordError(f"item is a removal marker, not a {noun}")
    ms_id = item.get("id")
    if not isinstance(ms_id, str) or not ms_id.strip():
        raise InvalidRecordError("item has no id")
    return item, ms_id


class _Text(HTMLParser):
    """Text of an HTML body: no markup, no scripts/styles/head, block elements on their own lines."""

    _SKIP = {"script", "style", "head", "title", "template", "noscript"}
    _BLOCKS = {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "blockquote",
               "pre", "section", "article", "header", "footer"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "br" or tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            # Markup whitespace is not text: runs of it are one space, as a browser shows them.
            self.parts.append(re.sub(r"[ \t\r\n\f]+", " ", data))


def html_to_text(markup: str) -> str:
    """Plain text of an Outlook HTML body (safe: nothing of the markup survives as markup)."""
    parser = _Text()
    try:
        parser.feed(markup)
        parser.close()
    except (AssertionError, ValueError):  # malformed beyond what the parser recovers from: drop all tags
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    lines = [line.strip() for line in "".join(parser.parts).replace("\xa0", " ").split("\n")]
    # Block ends and starts both break the line: one line break between blocks, no blank lines.
    return re.sub(r"\n{2,}", "\n", "\n".join(lines)).strip()
