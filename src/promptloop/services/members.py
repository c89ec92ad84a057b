"""Project membership and roles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from promptloop.core.access import Actor, Permission, Role
from promptloop.core.errors import Conflict, Forbidden, NotFound
from promptloop.services import audit, auth
from promptloop.store.models import Membership, Project, User


@dataclass(frozen=True)
class Member:
    user: User
    role: Role


@dataclass(frozen=True)
class Added:
    """The new member, and a one-time sign-in token when the account was created for them."""

    member: Member
    sign_in_token: str | None


def list_members(session: Session, *, actor: Actor, project: Project) -> list[Member]:
    actor.require(Permission.read)
    rows = session.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.project_id == project.id)
        .order_by(User.email)
    ).all()
    return [Member(user=user, role=Role[role]) for user, role in rows]


def add_member(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    email: str,
    role: str,
    name: str | None = None,
) -> Added:
    """Add a user (creating the account, with a sign-in link, if it is new) with a role."""
    actor.require(Permission.manage_members)
    wanted = Role.parse(role)
    email = auth.normalize_email(email)
    user = session.scalars(select(User).where(User.email == email)).first()
    token = None
    if user is None:
        user = auth.create_user(session, email=email, name=name)
        token = auth.create_sign_in_link(session, user=user)
    elif _membership(session, project=project, user=user) is not None:
        raise Conflict(
            f"{email} is already a member of {project.name!r}; change their role instead."
        )
    session.add(Membership(project_id=project.id, user_id=user.id, role=wanted.name))
    audit.record(
        session,
        actor=actor,
        action="member.add",
        target=f"user:{email}",
        project=project,
        details={"role": wanted.name, "new_account": token is not None},
    )
    return Added(member=Member(user=user, role=wanted), sign_in_token=token)


def set_role(session: Session, *, actor: Actor, project: Project, email: str, role: str) -> Member:
    actor.require(Permission.manage_members)
    wanted = Role.parse(role)
    user, membership = _member(session, project=project, email=email)
    before = Role[membership.role]
    if before == Role.admin and wanted != Role.admin:
        _keep_an_admin(session, project=project)
    membership.role = wanted.name
    audit.record(
        session,
        actor=actor,
        action="member.role",
        target=f"user:{user.email}",
        project=project,
        details={"before": before.name, "after": wanted.name},
    )
    return Member(user=user, role=wanted)


def remove_member(session: Session, *, actor: Actor, project: Project, email: str) -> None:
    actor.require(Permission.manage_members)
    user, membership = _member(session, project=project, email=email)
    if membership.role == Role.admin.name:
        _keep_an_admin(session, project=project)
    session.delete(membership)
    audit.record(
        session,
        actor=actor,
        action="member.remove",
        target=f"user:{user.email}",
        project=project,
        details={"role": membership.role},
    )


def sign_in_link_for(session: Session, *, actor: Actor, project: Project, email: str) -> str:
    """A new one-time sign-in link for a member who has not set a password yet (a lost
    invitation). A link signs in as the whole account, so a project admin may only issue one
    for an account that reaches nothing beyond this project; anything wider needs a server
    admin (or `promptloop users link` on the server)."""
    actor.require(Permission.manage_members)
    user, _ = _member(session, project=project, email=email)
    if not actor.server_admin:
        elsewhere = [p.name for p, _ in memberships_of(session, user=user) if p.id != project.id]
        if user.server_admin or user.password_hash is not None or elsewhere:
            raise Forbidden(
                f"Only a server admin can issue a sign-in link for {user.email}: the account "
                "already has a password, or access beyond this project."
            )
    audit.record(
        session,
        actor=actor,
        action="member.sign_in_link",
        target=f"user:{user.email}",
        project=project,
    )
    return auth.create_sign_in_link(session, user=user)


def _membership(session: Session, *, project: Project, user: User) -> Membership | None:
    return session.scalars(
        select(Membership).where(Membership.project_id == project.id, Membership.user_id == user.id)
    ).first()


def _member(session: Session, *, project: Project, email: str) -> tuple[User, Membership]:
    user = session.scalars(select(User).where(User.email == auth.normalize_email(email))).first()
    membership = _membership(session, project=project, user=user) if user else None
    if user is None or membership is None:
        raise NotFound(f"{email} is not a member of {project.name!r}.")
    return user, membership


def _keep_an_admin(session: Session, *, project: Project) -> None:
    admins = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.project_id == project.id, Membership.role == Role.admin.name)
    )
    if (admins or 0) <= 1:
        raise Conflict(f"{project.name!r} needs at least one admin: make someone else admin first.")


def memberships_of(session: Session, *, user: User) -> Sequence[tuple[Project, str]]:
    rows = session.execute(
        select(Project, Membership.role)
        .join(Membership, Membership.project_id == Project.id)
        .where(Membership.user_id == user.id)
        .order_by(Project.name)
    ).all()
    return [(project, role) for project, role in rows]
