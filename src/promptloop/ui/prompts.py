"""The prompts pages of a project (under /p/NAME)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
