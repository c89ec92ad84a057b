"""Administration that acts on the database directly, for the CLI run where the server's data
is: bootstrapping API keys for scripts and CI, and sign-in links when nobody can sign in."""

from __future__ import annotations

from promptloop.core.access import SYSTEM
from promptloop.services import api_keys, auth
from promptloop.services.api_keys import CreatedKey
from promptloop.services.projects import get_project
from promptloop.settings import Settings
from promptloop.store.db import Database


def open_database(settings: Settings) -> Database:
    """The server's database, migrated to the current schema."""
    db = Database(settings.resolved_database_url())
    db.migrate()
    return db


def create_api_key(settings: Settings, *, project: str, role: str, name: str) -> CreatedKey:
    db = open_database(settings)
    try:
        with db.session(write=True) as session:
            found = get_project(session, name=project)
            return api_keys.create_key(session, actor=SYSTEM, project=found, name=name, role=role)
    finally:
        db.dispose()


def sign_in_link(settings: Settings, *, email: str) -> str:
    db = open_database(settings)
    try:
        with db.session(write=True) as session:
            user = auth.get_user_by_email(session, email=email)
            return auth.create_sign_in_link(session, user=user)
    finally:
        db.dispose()
