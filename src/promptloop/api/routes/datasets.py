"""Datasets, their versions and datapoints. A dataset's name may hold slashes, so sub-resources
follow `/-/`, as for prompts."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptloop.api.dataset_schemas import (
    DatapointPreview,
    DatapointPublic,
    DatasetPublic,
    DatasetVersionCreate,
    DatasetVersionPublic,
    FromLogsCreate,
    FromLogsPublic,
    PreviewCreate,
    PreviewPublic,
    SavedDatasetVersionPublic,
)
from promptloop.api.deps import ContextDep, RequestContext
from promptloop.api.routes.prompts import Cursor, Limit
from promptloop.api.schemas import ListPublic
from promptloop.core.errors import InvalidInput
from promptloop.core.kernel import reject_nul
from promptloop.services import datasets
from promptloop.services.datasets import SavedVersion
from promptloop.services.logs import Logger
from promptloop.store.models import Datapoint, Dataset, DatasetVersion

router = APIRouter(tags=["datasets"])

VersionRef = Annotated[
    str,
    Path(max_length=64, description="`latest`, a version id, or a unique prefix (4+ hex digits)."),
]
_MAX_FORM_TEXT = 10_000
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV (header row) or JSON lines; UTF-8.",
                        },
                        "format": {
                            "type": "string",
                            "enum": ["csv", "jsonl"],
                            "description": "Default: from the file name (.csv, .jsonl, .json).",
                        },
                        "message": {"type": "string", "maxLength": _MAX_FORM_TEXT},
                        "description": {"type": "string", "maxLength": _MAX_FORM_TEXT},
                    },
                }
            }
        },
    }
}


@router.get("/datasets", summary="List datasets in name order, with their latest version")
def list_datasets(
    ctx: ContextDep,
    prefix: Annotated[
        str | None, Query(max_length=255, description="Folder, e.g. `support/`.")
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ListPublic[DatasetPublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        page = datasets.list_datasets(
            session, actor=actor, project=project, prefix=prefix, cursor=cursor, limit=limit
        )
        latest = datasets.latest_versions(session, page.items)
    return ListPublic(
        data=[dataset_public(d, latest.get(d.id)) for d in page.items],
        next_cursor=page.next_cursor,
    )


@router.post(
    "/datasets/{name:path}/-/versions",
    status_code=status.HTTP_201_CREATED,
    summary="Save a version: full content, or an edit of another version (201 new; 200 when "
    "identical content exists)",
)
def save_version(
    name: str, body: DatasetVersionCreate, ctx: ContextDep, response: Response
) -> SavedDatasetVersionPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        if body.base is not None:
            saved = datasets.edit_version(
                session,
                actor=actor,
                project=project,
                name=name,
                base=body.base,
                add=[d.spec() for d in body.add],
                remove=body.remove,
                message=body.message,
            )
        else:
            saved = datasets.save_version(
                session,
                actor=actor,
                project=project,
                name=name,
                datapoints=[d.spec() for d in body.datapoints or ()],
                message=body.message,
                description=body.description,
            )
    return _saved(saved, response)


@router.post(
    "/datasets/{name:path}/-/upload",
    status_code=status.HTTP_201_CREATED,
    summary="Save a version from a CSV or JSON-lines file (all or nothing)",
    openapi_extra=_UPLOAD_BODY,
)
async def upload(
    name: str, ctx: ContextDep, request: Request, response: Response
) -> SavedDatasetVersionPublic:
    # Who is asking, and in which project, before reading the body.
    await asyncio.to_thread(ctx.resolve)
    max_bytes: int = request.app.state.settings.max_body_bytes
    try:
        form = await request.form(max_part_size=max_bytes)
    except StarletteHTTPException as exc:
        if exc.status_code != status.HTTP_400_BAD_REQUEST:
            raise
        raise InvalidInput(f"The upload is not a valid multipart form: {exc.detail}") from None
    try:
        file = form.get("file")
        data = await file.read() if isinstance(file, UploadFile) else _encoded(file)
        filename = file.filename if isinstance(file, UploadFile) else None
        fmt, message, description = (_text(form, f) for f in ("format", "message", "description"))
    finally:
        await form.close()
    saved = await asyncio.to_thread(
        _save_upload,
        ctx,
        name=name,
        data=data,
        filename=filename,
        fmt=fmt,
        message=message,
        description=description,
    )
    return _saved(saved, response)


def _save_upload(
    ctx: RequestContext,
    *,
    name: str,
    data: bytes | None,
    filename: str | None,
    fmt: str | None,
    message: str | None,
    description: str | None,
) -> SavedVersion:
    with ctx.transaction(write=True) as (session, project, actor):
        return datasets.upload(
            session,
            actor=actor,
            project=project,
            name=name,
            data=data,
            filename=filename,
            fmt=fmt,
            message=message,
            description=description,
        )


@router.post(
    "/datasets/{name:path}/-/from-logs",
    status_code=status.HTTP_201_CREATED,
    summary="Save a version from logs matching filters (outputs or corrections as targets)",
)
def from_logs(
    name: str, body: FromLogsCreate, ctx: ContextDep, request: Request, response: Response
) -> FromLogsPublic:
    logger: Logger = request.app.state.logger
    with ctx.transaction(write=True) as (session, project, actor):
        saved = datasets.from_logs(
            session,
            logger.store,
            actor=actor,
            project=project,
            name=name,
            filters=body.filters.filters(),
            target=body.target,
            limit=body.limit,
            message=body.message,
            description=body.description,
        )
    public = _saved(saved, response)
    return FromLogsPublic(
        **public.model_dump(),
        skipped=sum(saved.skipped.values()),
        skipped_reasons=saved.skipped,
    )


@router.post(
    "/datasets/-/preview",
    summary="What a version from logs would hold (count, sample, skipped), saving nothing",
)
def preview(body: PreviewCreate, ctx: ContextDep, request: Request) -> PreviewPublic:
    logger: Logger = request.app.state.logger
    with ctx.transaction(write=False) as (session, project, actor):
        found = datasets.preview_from_logs(
            session,
            logger.store,
            actor=actor,
            project=project,
            filters=body.filters.filters(),
            target=body.target,
            limit=body.limit,
            sample=body.sample,
            name=body.name,
            held_out_fraction=body.held_out_fraction,
        )
    return PreviewPublic(
        count=found.count,
        matched=found.matched,
        skipped=sum(found.skipped.values()),
        skipped_reasons=found.skipped,
        version=found.version_id or None,
        exists=found.exists,
        train=found.train,
        held_out=found.held_out,
        sample=[
            DatapointPreview(
                key=d.key,
                inputs=d.inputs,
                messages=d.messages or None,
                target=d.target,
                source=d.source,
                log_id=d.log_uid,
            )
            for d in found.sample
        ],
    )


@router.get("/datasets/{name:path}/-/versions", summary="List a dataset's versions, newest first")
def list_versions(
    name: str, ctx: ContextDep, cursor: Cursor = None, limit: Limit = 50
) -> ListPublic[DatasetVersionPublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        page = datasets.list_versions(
            session, actor=actor, project=project, name=name, cursor=cursor, limit=limit
        )
    return ListPublic(
        data=[version_public(v, name=name) for v in page.items], next_cursor=page.next_cursor
    )


@router.get("/datasets/{name:path}/-/versions/{version}", summary="One version of a dataset")
def get_version(name: str, version: VersionRef, ctx: ContextDep) -> DatasetVersionPublic:
    with ctx.transaction(write=False) as (session, project, actor):
        found = datasets.read_version(session, actor=actor, project=project, name=name, ref=version)
    return version_public(found, name=name)


@router.get(
    "/datasets/{name:path}/-/versions/{version}/datapoints",
    summary="A version's datapoints, in order",
)
def list_datapoints(
    name: str, version: VersionRef, ctx: ContextDep, cursor: Cursor = None, limit: Limit = 50
) -> ListPublic[DatapointPublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        _found, page = datasets.list_datapoints(
            session,
            actor=actor,
            project=project,
            name=name,
            ref=version,
            cursor=cursor,
            limit=limit,
        )
    return ListPublic(data=[datapoint_public(d) for d in page.items], next_cursor=page.next_cursor)


@router.get(
    "/datasets/{name:path}/-/versions/{version}/download",
    summary="Download a version as JSON lines (with provenance) or CSV",
)
def download(
    name: str,
    version: VersionRef,
    ctx: ContextDep,
    format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
) -> Response:
    with ctx.transaction(write=False) as (session, project, actor):
        found, body = datasets.export(
            session, actor=actor, project=project, name=name, ref=version, fmt=format
        )
    filename = f"{name.replace('/', '-')}-{found.version_id}.{format}"
    return Response(
        body,
        media_type="application/x-ndjson" if format == "jsonl" else "text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# `/datasets/{name}` matches every sub-resource URL too, so it is declared last.
@router.get("/datasets/{name:path}", summary="Get a dataset and its latest version")
def get_dataset(name: str, ctx: ContextDep) -> DatasetPublic:
    with ctx.transaction(write=False) as (session, project, actor):
        dataset, latest = datasets.read_dataset(session, actor=actor, project=project, name=name)
    return dataset_public(dataset, latest)


def dataset_public(dataset: Dataset, latest: DatasetVersion | None) -> DatasetPublic:
    return DatasetPublic(
        name=dataset.name,
        description=dataset.description,
        created_at=dataset.created_at,
        latest_version=latest.version_id if latest else None,
        count=latest.count if latest else None,
    )


def version_public(version: DatasetVersion, *, name: str) -> DatasetVersionPublic:
    return DatasetVersionPublic(
        id=version.version_id,
        dataset=name,
        content_hash=version.content_hash,
        count=version.count,
        source=version.source,
        message=version.message,
        author=version.author,
        created_at=version.created_at,
    )


def datapoint_public(datapoint: Datapoint) -> DatapointPublic:
    return DatapointPublic(
        key=datapoint.key,
        position=datapoint.position,
        inputs=datapoint.inputs,
        messages=datapoint.messages or None,
        target=datapoint.target,
        source=datapoint.source,
        log_id=datapoint.log_uid,
    )


def _saved(saved: SavedVersion, response: Response) -> SavedDatasetVersionPublic:
    if not saved.created:
        response.status_code = status.HTTP_200_OK
    public = version_public(saved.version, name=saved.dataset.name)
    return SavedDatasetVersionPublic(**public.model_dump(), created=saved.created)


def _text(form: FormData, name: str) -> str | None:
    """A text field of the upload form (None when absent or empty)."""
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise InvalidInput(f"The form field {name!r} must be text, not a file.")
    if not value:
        return None
    if len(value) > _MAX_FORM_TEXT:
        raise InvalidInput(f"The form field {name!r} is longer than {_MAX_FORM_TEXT} characters.")
    try:
        reject_nul(value)
    except ValueError as exc:
        raise InvalidInput(f"The form field {name!r}: {exc}.") from None
    return value


def _encoded(value: str | None) -> bytes | None:
    """The file sent as a plain text field (no file name): its UTF-8 bytes."""
    return value.encode() if value is not None else None
