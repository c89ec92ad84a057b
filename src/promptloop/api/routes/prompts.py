"""Prompts and versions. A prompt's path may hold slashes, so sub-resources follow `/-/`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from promptloop.api.deps import ContextDep
from promptloop.api.present import version_public
from promptloop.api.schemas import (
    DiffPublic,
    ListPublic,
    PromptCreate,
    PromptPublic,
    RenderPublic,
    RenderRequest,
    SavedVersionPublic,
    VersionCreate,
    VersionPublic,
)
from promptloop.services import prompts
from promptloop.services.pagination import MAX_LIMIT

router = APIRouter(tags=["prompts"])
# `/prompts/{path}` matches every sub-resource URL too, so it lives on a router included last.
prompt_router = APIRouter(tags=["prompts"])

Cursor = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


@router.get("/prompts", summary="List prompts in path order")
def list_prompts(
    ctx: ContextDep,
    prefix: Annotated[
        str | None, Query(max_length=255, description="Folder, e.g. `support/`.")
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ListPublic[PromptPublic]:
    with ctx.transaction(write=False) as (session, project, _actor):
        page = prompts.list_prompts(
            session, project=project, prefix=prefix, cursor=cursor, limit=limit
        )
        return ListPublic(
            data=[PromptPublic.model_validate(p, from_attributes=True) for p in page.items],
            next_cursor=page.next_cursor,
        )


@router.post("/prompts", status_code=status.HTTP_201_CREATED, summary="Create an empty prompt")
def create_prompt(body: PromptCreate, ctx: ContextDep) -> PromptPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        prompt = prompts.create_prompt(
            session, actor=actor, project=project, path=body.path, description=body.description
        )
        return PromptPublic.model_validate(prompt, from_attributes=True)


@router.post(
    "/prompts/{path:path}/-/versions",
    status_code=status.HTTP_201_CREATED,
    summary="Save a version (201 new; 200 when identical content exists)",
)
def save_version(
    path: str, body: VersionCreate, ctx: ContextDep, response: Response
) -> SavedVersionPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        saved = prompts.save_version(
            session,
            project=project,
            path=path,
            kernel=body.kernel(),
            author=body.author,
            actor=actor,
            name=body.name,
            message=body.message,
            description=body.description,
        )
        serving = prompts.environments_serving(session, prompt_id=saved.version.prompt_id)
    if not saved.created:
        response.status_code = status.HTTP_200_OK
    public = version_public(saved.version, path=path, environments=serving.get(saved.version.id))
    return SavedVersionPublic(**public.model_dump(), created=saved.created)


@router.get("/prompts/{path:path}/-/versions", summary="List a prompt's versions, newest first")
def list_versions(
    path: str, ctx: ContextDep, cursor: Cursor = None, limit: Limit = 50
) -> ListPublic[VersionPublic]:
    with ctx.transaction(write=False) as (session, project, _actor):
        page = prompts.list_versions(
            session, project=project, path=path, cursor=cursor, limit=limit
        )
        serving = (
            prompts.environments_serving(session, prompt_id=page.items[0].prompt_id)
            if page.items
            else {}
        )
    return ListPublic(
        data=[version_public(v, path=path, environments=serving.get(v.id)) for v in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/prompts/{path:path}/-/version",
    summary="The version to use: by id, by environment, or the latest",
)
def get_version(
    path: str,
    ctx: ContextDep,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[
        str | None, Query(max_length=64, description="Version id or unique prefix.")
    ] = None,
) -> VersionPublic:
    with ctx.transaction(write=False) as (session, project, _actor):
        resolved = prompts.resolve_version(
            session, project=project, path=path, environment=environment, version=version
        )
        serving = prompts.environments_serving(session, prompt_id=resolved.prompt_id)
    return version_public(resolved, path=path, environments=serving.get(resolved.id))


@router.post("/prompts/{path:path}/-/render", summary="Render a version with inputs")
def render(path: str, body: RenderRequest, ctx: ContextDep) -> RenderPublic:
    with ctx.transaction(write=False) as (session, project, _actor):
        version, rendered = prompts.render_version(
            session,
            project=project,
            path=path,
            inputs=body.inputs,
            environment=body.environment,
            version=body.version,
        )
    return RenderPublic(
        version_id=version.version_id, messages=rendered.messages, prompt=rendered.prompt
    )


@router.get("/prompts/{path:path}/-/diff", summary="Diff two versions (templates and parameters)")
def diff(
    path: str,
    ctx: ContextDep,
    before: Annotated[str, Query(max_length=64, alias="from")],
    after: Annotated[str, Query(max_length=64, alias="to")],
) -> DiffPublic:
    with ctx.transaction(write=False) as (session, project, _actor):
        old, new, result = prompts.diff_versions(
            session, project=project, path=path, before=before, after=after
        )
    return DiffPublic(
        before=old.version_id,
        after=new.version_id,
        template=result.template,
        changes=result.changes,
    )


@prompt_router.get("/prompts/{path:path}", summary="Get a prompt")
def get_prompt(path: str, ctx: ContextDep) -> PromptPublic:
    with ctx.transaction(write=False) as (session, project, _actor):
        return PromptPublic.model_validate(
            prompts.get_prompt(session, project=project, path=path), from_attributes=True
        )
