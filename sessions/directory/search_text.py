"""The place search's text: lower case, accents folded, so "Köln" is found as "koln" and "Straße" as "strasse"."""

import re
import unicodedata
from functools import lru_cache


def fold(text: str) -> str:
    """Lower case, ß → ss, accents dropped (NFKD, combining marks removed), spaces squashed."""
    text = text.lower().replace("ß", "ss").replace("ẞ", "ss")
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


@lru_cache(maxsize=65_536)
def _folded_part(part: str) -> str:
    return fold(part)


def search_text(*parts: str) -> str:
    """fold() of the parts joined by spaces; each part folded once per process (a pull of 500,000 EVSEs
    sees the same streets, cities and station names again and again)."""
    return " ".join(" ".join(_folded_part(part) for part in parts if part).split())


_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """The words of a folded text as the place search indexes and compares them: runs of letters and digits
    (the same split as SQLite FTS5's and the PostgreSQL index's, see migration 0019)."""
    return _WORD.findall(text)
