"""Who may do what: roles, permissions and the actor a use case runs as.

Roles are ordered (viewer < member < developer < admin); a permission names the lowest role
that holds it. Services call `actor.require(...)`; routes never decide access themselves.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from promptloop.core.errors import Forbidden, InvalidInput


class Role(enum.IntEnum):
    """A member's role in one project."""

    viewer = 1
    member = 2
    developer = 3
    admin = 4

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name]
        except KeyError:
            raise InvalidInput(
                f"Unknown role {name!r}: use one of {', '.join(r.name for r in cls)}."
            ) from None


class Permission(enum.Enum):
    """An action, with the lowest role allowed to take it and how messages describe it.

    (Each value is unique, so no two permissions collapse into one enum alias.)
    """

    read = (Role.viewer, "read this project")
    edit = (Role.member, "change prompts, feedback kinds, datasets and evaluators in this project")
    write_logs = (Role.member, "log, call models or give feedback")
    write_code = (Role.developer, "save code evaluators (their code runs on the server)")
    fine_tune = (Role.developer, "start fine-tuning jobs")
    deploy = (Role.member, "deploy")  # to unprotected environments
    deploy_protected = (Role.developer, "deploy to a protected environment")
    manage_environments = (Role.developer, "manage environments")
    manage_provider_keys = (Role.developer, "manage provider keys")
    manage_api_keys = (Role.developer, "manage API keys")
    manage_members = (Role.admin, "manage members and roles")
    manage_project = (Role.admin, "change project settings")
    read_audit = (Role.admin, "read the audit log")

    @property
    def role(self) -> Role:
        """The lowest role that holds this permission."""
        role: Role = self.value[0]
        return role

    @property
    def description(self) -> str:
        text: str = self.value[1]
        return text


@dataclass(frozen=True)
class Actor:
    """The caller, as a use case sees it: who, with which role in the current project, and from
    where (for the audit log)."""

    kind: str  # "user", "api_key" or "system"
    id: int | None
    name: str
    role: Role
    address: str | None = None
    server_admin: bool = False  # may change what every project shares (the model catalogue)

    def can(self, permission: Permission) -> bool:
        return self.role >= permission.role

    def require_server_admin(self, what: str) -> None:
        """Raise Forbidden unless the actor administers the whole server."""
        if not self.server_admin:
            raise Forbidden(
                f"Only a server admin can {what}: it affects every project on this server."
            )

    def require(self, permission: Permission, *, detail: str = "") -> None:
        """Raise Forbidden, saying which role is needed, unless the actor may take the action."""
        if self.can(permission):
            return
        needed = permission.role.name
        what = permission.description + (f" ({detail})" if detail else "")
        raise Forbidden(
            f"Your role '{self.role.name}' cannot {what}; it needs '{needed}' or higher. "
            "Ask a project admin.",
            details={"role": self.role.name, "needed": needed},
        )


SYSTEM = Actor(kind="system", id=None, name="system", role=Role.admin, server_admin=True)
