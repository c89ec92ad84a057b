from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from promptloop.api import urls
from promptloop.api.deps import ContextDep
from promptloop.api.schemas import MemberCreate, MemberPublic, MemberUpdate, SignInLinkPublic
from promptloop.services import members

router = APIRouter(tags=["members"])

Email = Annotated[str, Path(max_length=320)]


@router.get("/members", summary="The project's members and their roles")
def list_members(ctx: ContextDep) -> list[MemberPublic]:
    with ctx.transaction(write=False) as (session, project, actor):
        found = members.list_members(session, actor=actor, project=project)
    return [MemberPublic(email=m.user.email, name=m.user.name, role=m.role.name) for m in found]


@router.post("/members", status_code=status.HTTP_201_CREATED, summary="Add a member (admin)")
def add_member(body: MemberCreate, ctx: ContextDep, request: Request) -> MemberPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        added = members.add_member(
            session, actor=actor, project=project, email=body.email, role=body.role, name=body.name
        )
    token = added.sign_in_token
    return MemberPublic(
        email=added.member.user.email,
        name=added.member.user.name,
        role=added.member.role.name,
        sign_in_url=urls.sign_in_link(urls.request_base(request), token) if token else None,
    )


@router.patch("/members/{email}", summary="Change a member's role (admin)")
def set_role(email: Email, body: MemberUpdate, ctx: ContextDep) -> MemberPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        member = members.set_role(
            session, actor=actor, project=project, email=email, role=body.role
        )
    return MemberPublic(email=member.user.email, name=member.user.name, role=member.role.name)


@router.delete(
    "/members/{email}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a member (admin)"
)
def remove_member(email: Email, ctx: ContextDep) -> Response:
    with ctx.transaction(write=True) as (session, project, actor):
        members.remove_member(session, actor=actor, project=project, email=email)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/members/{email}/sign-in-link", summary="A new one-time sign-in link for a member (admin)"
)
def sign_in_link(email: Email, ctx: ContextDep, request: Request) -> SignInLinkPublic:
    with ctx.transaction(write=True) as (session, project, actor):
        token = members.sign_in_link_for(session, actor=actor, project=project, email=email)
    return SignInLinkPublic(sign_in_url=urls.sign_in_link(urls.request_base(request), token))
