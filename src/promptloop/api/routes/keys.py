"""API keys (for code and CI) and provider keys (for calling model providers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from promptloop.api.deps import ContextDep
from promptloop.api.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    ProviderKeyPublic,
    ProviderKeySet,
)
from promptloop.core.kernel import MAX_INT
from promptloop.services import api_keys, provider_keys
from promptloop.services.secrets import SecretBox

router = APIRouter(tags=["keys"])

Provider = Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")]


@router.get("/api-keys", summary="The project's API keys (never their secrets)")
def list_api_keys(ctx: ContextDep) -> list[ApiKeyPublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        found = api_keys.list_keys(session, actor=actor, project=project)
        return [ApiKeyPublic.model_validate(k, from_attributes=True) for k in found]


@router.post(
    "/api-keys", status_code=status.HTTP_201_CREATED, summary="Create an API key (shown once)"
)
def create_api_key(body: ApiKeyCreate, ctx: ContextDep) -> ApiKeyCreated:
    with ctx.transaction(write=True) as (session, project, actor):
        created = api_keys.create_key(
            session, actor=actor, project=project, name=body.name, role=body.role
        )
        public = ApiKeyPublic.model_validate(created.key, from_attributes=True)
    return ApiKeyCreated(**public.model_dump(), key=created.secret)


@router.delete("/api-keys/{key_id}", summary="Revoke an API key")
def revoke_api_key(key_id: Annotated[int, Path(ge=1, le=MAX_INT)], ctx: ContextDep) -> ApiKeyPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        key = api_keys.revoke_key(session, actor=actor, project=project, key_id=key_id)
        return ApiKeyPublic.model_validate(key, from_attributes=True)


@router.get("/provider-keys", summary="Providers with a stored key (only the last 4 characters)")
def list_provider_keys(ctx: ContextDep) -> list[ProviderKeyPublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        found = provider_keys.list_keys(session, actor=actor, project=project)
        return [ProviderKeyPublic.model_validate(k, from_attributes=True) for k in found]


@router.put("/provider-keys/{provider}", summary="Store a provider's API key, encrypted")
def set_provider_key(
    provider: Provider, body: ProviderKeySet, ctx: ContextDep, request: Request
) -> ProviderKeyPublic:
    box: SecretBox = request.app.state.secret_box
    with ctx.transaction(write=True) as (session, project, actor):
        stored = provider_keys.set_key(
            session,
            actor=actor,
            project=project,
            box=box,
            provider=provider,
            secret=body.api_key,
            base_url=body.base_url,
        )
        return ProviderKeyPublic.model_validate(stored, from_attributes=True)


@router.delete(
    "/provider-keys/{provider}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a provider key",
)
def delete_provider_key(provider: Provider, ctx: ContextDep) -> Response:
    with ctx.transaction(write=True) as (session, project, actor):
        provider_keys.delete_key(session, actor=actor, project=project, provider=provider)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
