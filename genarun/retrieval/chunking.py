"""Splitting documents into chunks: by headings, then paragraphs, packed up to a size.

A chunk's identity is the hash of its content, so an edited file keeps the hashes (and the
stored vectors) of the chunks it did not change: only the changed ones are embedded again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".json", ".html", ".htm"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})

_HEADING = re.compile(r"^#{1,6}\s")


@dataclass(frozen=True)
class Chunk:
    """One piece of a document: a text, or a whole image (`text` None)."""

    source: str  # the file, relative to the tree's folder
    index: int  # its position in the file
    text: str | None
    content_hash: str

    @property
    def modality(self) -> str:
        return "text" if self.text is not None else "image"

    @property
    def id(self) -> str:
        return f"doc:{self.source}#{self.index}"


def text_hash(text: str) -> str:
    return hashlib.sha256(b"text\0" + text.encode()).hexdigest()


def image_hash(data: bytes) -> str:
    return hashlib.sha256(b"image\0" + data).hexdigest()


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """Sections (a heading and what follows it), packed paragraph by paragraph into chunks of
    at most `size` characters; a longer paragraph is cut at words with `overlap` characters
    repeated, so a sentence cut in two is whole in one of the chunks."""
    chunks: list[str] = []
    for section in _sections(text):
        current = ""
        for paragraph in section:
            for piece in _cut(paragraph, size, overlap):
                if current and len(current) + 2 + len(piece) > size:
                    chunks.append(current)
                    current = ""
                current = f"{current}\n\n{piece}" if current else piece
        if current:
            chunks.append(current)
    return chunks


def _sections(text: str) -> list[list[str]]:
    sections: list[list[str]] = [[]]
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        block = block.strip()
        if not block:
            continue
        lines = block.split("\n")
        # A heading opens a section, also when a paragraph follows it without a blank line.
        for i, line in enumerate(lines):
            if _HEADING.match(line) and sections[-1]:
                sections.append([])
            if _HEADING.match(line) or i == 0:
                sections[-1].append(line)
            else:
                sections[-1][-1] += "\n" + line
    return [s for s in sections if s]


def _cut(paragraph: str, size: int, overlap: int) -> list[str]:
    if len(paragraph) <= size:
        return [paragraph]
    pieces, start = [], 0
    while start < len(paragraph):
        end = min(len(paragraph), start + size)
        if end < len(paragraph):
            space = paragraph.rfind(" ", start + size // 2, end)
            end = space if space > start else end
        pieces.append(paragraph[start:end].strip())
        if end >= len(paragraph):
            break
        start = max(end - overlap, start + 1)
        space = paragraph.find(" ", start, end)
        start = space + 1 if 0 <= space < end else start
    return [p for p in pieces if p]


def text_of(suffix: str, raw: str) -> str:
    """A document's text: HTML without its tags, JSON as one block per item or key."""
    if suffix in (".html", ".htm"):
        return _html_text(raw)
    if suffix == ".json":
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
        if isinstance(value, dict):
            items = [f"{k}: {_plain(v)}" for k, v in value.items()]
        elif isinstance(value, list):
            items = [_plain(v) for v in value]
        else:
            items = [_plain(value)]
        return "\n\n".join(items)
    return raw


def _plain(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class _TextCollector(HTMLParser):
    BLOCKS = frozenset({"p", "div", "li", "br", "tr", "section", "article", "h1", "h2", "h3"})
    BLOCKS |= frozenset({"h4", "h5", "h6", "pre", "blockquote"})
    SKIPPED = frozenset({"script", "style", "head", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n" + ("#" * int(tag[1]) + " " if tag in _HEADINGS else ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED and self.skipping:
            self.skipping -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


def _html_text(raw: str) -> str:
    collector = _TextCollector()
    collector.feed(raw)
    collector.close()
    text = "".join(collector.parts)
    return "\n\n".join(b.strip() for b in re.split(r"\n\s*\n", text) if b.strip())
