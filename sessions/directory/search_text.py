"""The place search's text: lower case, accents folded, so "Köln" is found as "koln" and "Straße" as "strasse"."""

import unicodedata


def fold(text: str) -> str:
    """Lower case, ß → ss, accents dropped (NFKD, combining marks removed), spaces squashed."""
    text = text.lower().replace("ß", "ss").replace("ẞ", "ss")
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def search_text(*parts: str) -> str:
    return fold(" ".join(part for part in parts if part))
