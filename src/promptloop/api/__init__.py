"""The JSON API under /api/v1 (FastAPI). Routes parse, call one service, and shape the answer."""
