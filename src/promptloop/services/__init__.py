"""Use cases. Keyword-only functions taking a session; no web framework, no CLI, no HTTP here."""
