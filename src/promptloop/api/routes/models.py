"""The model catalogue and its prices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from promptloop.api.deps import ContextDep
from promptloop.api.schemas import ModelPrices, ModelPublic
from promptloop.services import catalogue
from promptloop.services.catalogue import Prices

router = APIRouter(tags=["models"])


@router.get("/models", summary="Models in the catalogue, with prices per million tokens")
def list_models(
    ctx: ContextDep, provider: Annotated[str | None, Query(max_length=64)] = None
) -> list[ModelPublic]:
    with ctx.transaction(write=False) as (session, project, _actor):
        return [
            ModelPublic.model_validate(m, from_attributes=True)
            for m in catalogue.list_models(session, provider=provider, project=project)
        ]


@router.put(
    "/models/{provider}/{name:path}", summary="Set a model's prices (adds the model if new)"
)
def set_prices(
    provider: Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")],
    name: Annotated[str, Path(max_length=200)],
    body: ModelPrices,
    ctx: ContextDep,
    request: Request,
) -> ModelPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        model = catalogue.set_prices(
            session,
            actor=actor,
            project=project,
            provider=provider,
            name=name,
            input_price=body.input_price,
            output_price=body.output_price,
        )
        public = ModelPublic.model_validate(model, from_attributes=True)
    prices: Prices = request.app.state.logger.prices
    prices.invalidate()
    return public
