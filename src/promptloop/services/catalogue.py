"""The model catalogue: which models exist, their prices, and what a call cost.

Prices are per million tokens and editable; a model without a known price costs None
("unknown"), never 0. Built-in providers seed the catalogue on start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from promptloop.core.access import Actor
from promptloop.core.errors import InvalidInput, NotFound
from promptloop.providers.base import ModelInfo
from promptloop.services import audit
from promptloop.store.db import Database
from promptloop.store.models import Model, Project
from promptloop.store.types import utcnow


def seed(session: Session, models: Sequence[ModelInfo]) -> None:
    """Add providers' built-in models that the catalogue lacks; never overwrite edited prices."""
    existing = {(m.provider, m.name) for m in session.scalars(select(Model))}
    for info in models:
        if (info.provider, info.name) not in existing:
            session.add(
                Model(
                    provider=info.provider,
                    name=info.name,
                    input_price=info.input_price,
                    output_price=info.output_price,
                    context_window=info.context_window,
                    capabilities={"kinds": list(info.capabilities)},
                )
            )


def list_models(
    session: Session, *, provider: str | None = None, project: Project | None = None
) -> Sequence[Model]:
    """The catalogue; with `project`, only the models that project may use (fine-tuned models
    belong to the project whose data trained them)."""
    query = select(Model).order_by(Model.provider, Model.name)
    if provider:
        query = query.where(Model.provider == provider)
    if project is not None:
        query = query.where(or_(Model.project_id.is_(None), Model.project_id == project.id))
    return session.scalars(query).all()


def check_access(
    session: Session, *, project: Project, provider: str, name: str, prices: Prices | None = None
) -> None:
    """NotFound for a fine-tuned model of another project: its weights learned that project's
    data, which can be extracted by whoever can prompt it, so only that project may call or
    deploy it (and to others it does not exist). With `prices`, its cached catalogue answers
    for models it knows (an owner never changes), and the database for any other."""
    cached = prices.owners() if prices is not None else {}
    if (provider, name) in cached:
        owner = cached[(provider, name)]
    else:
        owner = session.scalar(
            select(Model.project_id).where(Model.provider == provider, Model.name == name)
        )
    if owner is not None and owner != project.id:
        raise NotFound(f"No model {provider}/{name} in project {project.name!r}.")


def set_prices(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    provider: str,
    name: str,
    input_price: float | None,
    output_price: float | None,
) -> Model:
    """Set a model's prices per million tokens (adding the model if it is new). The catalogue
    is shared by every project, so this is a server admin's decision."""
    actor.require_server_admin("change model prices")
    for price in (input_price, output_price):
        if price is not None and price < 0:
            raise InvalidInput("Prices are per million tokens and cannot be negative.")
    model = session.scalars(
        select(Model).where(Model.provider == provider, Model.name == name)
    ).first()
    if model is None:
        model = Model(provider=provider, name=name, capabilities={"kinds": ["chat"]})
        session.add(model)
    before = (model.input_price, model.output_price)
    model.input_price, model.output_price, model.updated_at = input_price, output_price, utcnow()
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="model.prices",
        target=f"model:{provider}/{name}",
        project=None,
        details={"before": list(before), "after": [input_price, output_price]},
    )
    return model


class Prices:
    """Prices looked up on the hot path (every log), refreshed from the database every few
    seconds so that edits show up without a query per log."""

    def __init__(self, db: Database, *, ttl: float = 5.0) -> None:
        self.db = db
        self.ttl = ttl
        self._loaded_at = -1e9
        self._prices: dict[tuple[str, str], tuple[float | None, float | None]] = {}
        self._owners: dict[tuple[str, str], int | None] = {}
        self._lock = threading.Lock()

    def cost(
        self,
        provider: str | None,
        model: str | None,
        prompt_tokens: int | None,
        output_tokens: int | None,
    ) -> float | None:
        """Dollars for the call, or None when a price or a token count is unknown."""
        if provider is None or model is None or prompt_tokens is None or output_tokens is None:
            return None
        input_price, output_price = self._table().get((provider, model), (None, None))
        if input_price is None or output_price is None:
            return None
        return (prompt_tokens * input_price + output_tokens * output_price) / 1_000_000

    def _table(self) -> dict[tuple[str, str], tuple[float | None, float | None]]:
        with self._lock:
            if time.monotonic() - self._loaded_at > self.ttl:
                with self.db.session(write=False) as session:
                    models = list_models(session)
                    self._prices = {
                        (m.provider, m.name): (m.input_price, m.output_price) for m in models
                    }
                    self._owners = {(m.provider, m.name): m.project_id for m in models}
                self._loaded_at = time.monotonic()
            return self._prices

    def owners(self) -> dict[tuple[str, str], int | None]:
        """The project each catalogue model belongs to (None: every project's)."""
        self._table()
        return self._owners

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = -1e9
