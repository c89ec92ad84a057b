"""Feedback on logs: declared kinds, recording (with an API key, or a browser's feedback token),
reading, and rates per version or environment."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, status

from promptloop.api.deps import ContextDep, DbDep, SettingsDep
from promptloop.api.schemas import (
    FeedbackCreate,
    FeedbackKindCreate,
    FeedbackKindPublic,
    FeedbackPublic,
    FeedbackStatsGroup,
    FeedbackTokenPublic,
    TokenFeedbackCreate,
)
from promptloop.core.errors import Forbidden
from promptloop.services import feedback
from promptloop.services.feedback import FeedbackInput, KindSpec
from promptloop.services.prompts import get_prompt
from promptloop.services.ratelimit import RateLimiter
from promptloop.services.secrets import SecretBox
from promptloop.store.models import Judgment
from promptloop.store.types import utc

router = APIRouter(tags=["feedback"])
PUBLIC_FEEDBACK_PATH = "/api/v1/feedback"
LogId = Annotated[str, Path(max_length=36)]


@router.get("/feedback-kinds", summary="The kinds of feedback the project collects")
def list_kinds(ctx: ContextDep) -> list[FeedbackKindPublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        kinds = feedback.list_kinds(session, actor=actor, project=project)
        return [FeedbackKindPublic.model_validate(k, from_attributes=True) for k in kinds]


@router.post(
    "/feedback-kinds", status_code=status.HTTP_201_CREATED, summary="Declare a kind of feedback"
)
def create_kind(body: FeedbackKindCreate, ctx: ContextDep) -> FeedbackKindPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        kind = feedback.create_kind(
            session, actor=actor, project=project, spec=KindSpec(**body.model_dump())
        )
        return FeedbackKindPublic.model_validate(kind, from_attributes=True)


@router.post(
    "/logs/{log_id}/feedback",
    status_code=status.HTTP_201_CREATED,
    summary="Give feedback on a log: a vote, an action, a correction or a comment",
)
def create_feedback(log_id: LogId, body: FeedbackCreate, ctx: ContextDep) -> FeedbackPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        judgment = feedback.record(
            session,
            actor=actor,
            project=project,
            log_uid=log_id,
            given=FeedbackInput(**body.model_dump()),
        )
        return feedback_public(judgment, log_id)


@router.get("/logs/{log_id}/feedback", summary="All feedback on a log, oldest first")
def list_feedback(log_id: LogId, ctx: ContextDep) -> list[FeedbackPublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        items = feedback.list_for_log(session, actor=actor, project=project, log_uid=log_id)
        return [feedback_public(j, log_id) for j in items]


@router.post(
    "/logs/{log_id}/feedback-token",
    status_code=status.HTTP_201_CREATED,
    summary="A token that lets a browser give feedback on this log alone, for a limited time",
)
def create_token(
    log_id: LogId, ctx: ContextDep, request: Request, settings: SettingsDep
) -> FeedbackTokenPublic:
    box: SecretBox = request.app.state.secret_box
    with ctx.transaction(write=False) as (session, project, actor):
        feedback.get_log_for_token(session, actor=actor, project=project, log_uid=log_id)
        issued = feedback.issue_token(
            box, project=project, log_uid=log_id, ttl_s=settings.feedback_token_ttl_s
        )
    return FeedbackTokenPublic(log_id=log_id, token=issued.token, expires_at=issued.expires_at)


@router.post(
    "/feedback",
    status_code=status.HTTP_201_CREATED,
    summary="Give feedback with a feedback token (for browsers; no API key; rate limited)",
)
def create_token_feedback(body: TokenFeedbackCreate, db: DbDep, request: Request) -> FeedbackPublic:
    box: SecretBox = request.app.state.secret_box
    limiter: RateLimiter = request.app.state.feedback_limiter
    address = request.client.host if request.client else "unknown"
    limiter.hit(f"address:{address}", what="feedback requests from this address")
    project_id, log_uid = feedback.verify_token(box, body.token)
    if body.log_id is not None and body.log_id != log_uid:
        raise Forbidden("This feedback token was issued for another log.")
    limiter.hit(f"log:{project_id}:{log_uid}", what="feedback requests for this log")
    given = FeedbackInput(
        name=body.name, value=body.value, delay_s=body.delay_s, end_user=body.end_user
    )
    with db.session(write=True) as session:
        judgment = feedback.record_with_token(
            session, project_id=project_id, log_uid=log_uid, given=given
        )
        return feedback_public(judgment, log_uid)


@router.get("/feedback/stats", summary="Feedback rates per prompt version or environment")
def feedback_stats(
    ctx: ContextDep,
    by: Literal["version", "environment"] = "version",
    prompt: Annotated[str | None, Query(max_length=255)] = None,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="ISO time, inclusive.")] = None,
    until: Annotated[datetime | None, Query(description="ISO time, exclusive.")] = None,
) -> list[FeedbackStatsGroup]:
    with ctx.transaction(write=False) as (session, project, actor):
        prompt_row = get_prompt(session, project=project, path=prompt) if prompt else None
        groups = feedback.stats(
            session,
            actor=actor,
            project=project,
            by=by,
            prompt_id=prompt_row.id if prompt_row else None,
            environment=environment,
            since=utc(since),
            until=utc(until),
        )
    return [FeedbackStatsGroup.model_validate(g, from_attributes=True) for g in groups]


def feedback_public(judgment: Judgment, log_uid: str) -> FeedbackPublic:
    return FeedbackPublic(
        id=judgment.uid,
        log_id=log_uid,
        name=judgment.name,
        category=judgment.category,
        value=judgment.value,
        score=judgment.score,
        delay_s=judgment.delay_s,
        similarity=judgment.similarity,
        diff=judgment.diff,
        withheld=judgment.withheld,
        end_user=judgment.end_user,
        reviewer=judgment.reviewer,
        recorded_by=judgment.recorded_by,
        source=judgment.source,
        current=judgment.current,
        created_at=judgment.created_at,
    )
