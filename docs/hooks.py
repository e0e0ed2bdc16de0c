"""MkDocs hook: the site's front page is the repository's README.md, its links to ``docs/<page>.md`` made
relative to the site (one text for both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def on_page_read_source(page: Any, config: Any) -> str | None:
    if page.file.src_uri != "index.md":
        return None
    return README.read_text(encoding="utf-8").replace("](docs/", "](")
