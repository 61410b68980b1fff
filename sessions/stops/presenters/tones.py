"""The marks that say a tone without colour: ✓ ok, ⚠ warn, ✕ bad, … info (cards, notices, badges)."""

TONE_MARKS = {"ok": "✓", "warn": "⚠", "bad": "✕", "info": "…"}
