"""The OpenAI-compatible gateway's use cases: what a `model` name means, how a chat-completions
request becomes a call, and which models the gateway lists.

A `model` is either a provider's model, `provider/name` (`openai/gpt-4o-mini`,
`anthropic/claude-haiku-4-5`, `local/smollm2-135m`), called with the request's messages as they
are; or a prompt, `prompt:path[@environment-or-version]` (default: production), rendered with
the request's `inputs` and followed by its messages. For prompts the version's parameters and
tools apply: a request's sampling fields are ignored, so deployed behaviour stays what was
deployed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from promptloop.core.access import Actor, Permission
from promptloop.core.errors import InvalidInput
from promptloop.core.kernel import VERSION_ID_LENGTH, Parameters
from promptloop.services import catalogue
from promptloop.services.calls import BareModel, CallSpec
from promptloop.store.models import Project, Prompt

PROMPT_PREFIX = "prompt:"
DEFAULT_ENVIRONMENT = "production"
# Request fields that are the gateway's own or have a place in the call; the rest go upstream.
OWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "inputs",
        "user",
        "metadata",
        "timeout",
        "n",
        "consent",
        "feedback_token",
    }
)
PARAMETER_FIELDS = frozenset(
    {
        "temperature",
        "max_tokens",
        "top_p",
        "stop",
        "seed",
        "response_format",
        "presence_penalty",
        "frequency_penalty",
    }
)
_VERSION_ID = re.compile(rf"^[0-9a-f]{{7,{VERSION_ID_LENGTH}}}$")  # an id or a git-like prefix


@dataclass(frozen=True)
class PromptTarget:
    path: str
    environment: str | None
    version: str | None


@dataclass(frozen=True)
class ModelTarget:
    provider: str
    model: str


@dataclass
class ChatCall:
    """A chat-completions request, as the gateway received it (messages as plain dicts)."""

    model: str
    messages: list[dict[str, Any]]
    body: dict[str, Any] = field(default_factory=dict)  # every other field the client sent
    inputs: dict[str, Any] = field(default_factory=dict)
    user: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    consent: bool | None = None


def parse_model(model: str) -> PromptTarget | ModelTarget:
    """What a `model` names. After `@`, 7 to 12 hex digits are a version id (or its prefix),
    anything else an environment."""
    if model.startswith(PROMPT_PREFIX):
        path, _, ref = model[len(PROMPT_PREFIX) :].partition("@")
        if not path:
            raise InvalidInput(
                f"Model {model!r} names no prompt: use 'prompt:<path>' or "
                "'prompt:<path>@<environment or version id>'."
            )
        if not ref:
            return PromptTarget(path, DEFAULT_ENVIRONMENT, None)
        if _VERSION_ID.match(ref):
            return PromptTarget(path, None, ref)
        return PromptTarget(path, ref, None)
    provider, slash, name = model.partition("/")
    if not slash or not provider or not name:
        raise InvalidInput(
            f"Unknown model {model!r}: name a provider's model as '<provider>/<model>' "
            "(e.g. 'openai/gpt-4o-mini') or a prompt as 'prompt:<path>[@<environment>]'. "
            "GET /v1/models lists them."
        )
    return ModelTarget(provider, name)


def call_spec(call: ChatCall, *, log_id: str) -> CallSpec:
    """The CallSpec for a chat-completions request (logged with source `gateway`)."""
    target = parse_model(call.model)
    common: dict[str, Any] = {
        "messages": call.messages,
        "inputs": call.inputs,
        "source": "gateway",
        "end_user": call.user,
        "metadata": call.metadata,
        "log_id": log_id,
        "timeout": call.timeout,
        "consent": call.consent,
    }
    if isinstance(target, PromptTarget):
        return CallSpec(
            prompt=target.path, environment=target.environment, version=target.version, **common
        )
    if call.inputs:
        raise InvalidInput(
            "'inputs' fill a prompt's template: call a prompt ('prompt:<path>') to use them."
        )
    tools = call.body.get("tools") or []
    if not isinstance(tools, list):
        raise InvalidInput("'tools' must be a list of tools in the OpenAI shape.")
    return CallSpec(
        model=BareModel(
            provider=target.provider,
            model=target.model,
            parameters=parameters_of(call.body),
            tools=tools,
        ),
        **common,
    )


def parameters_of(body: dict[str, Any]) -> Parameters:
    """Sampling parameters from a request body; fields promptloop does not model go upstream
    verbatim as `extras` (tool_choice, logit_bias, top_k…)."""
    values = {name: body[name] for name in PARAMETER_FIELDS if body.get(name) is not None}
    if body.get("max_completion_tokens") is not None:
        values["max_tokens"] = body["max_completion_tokens"]
    extras = {
        name: value
        for name, value in body.items()
        if name not in PARAMETER_FIELDS
        and name not in OWN_FIELDS
        and name not in ("tools", "max_completion_tokens")
    }
    try:
        return Parameters.model_validate({**values, "extras": extras})
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem.get("loc", ()))
        raise InvalidInput(
            f"Invalid {where}: {problem.get('msg', 'bad value')}.", details={"param": where}
        ) from None


@dataclass(frozen=True)
class ListedModel:
    id: str
    owned_by: str
    created: int


def list_models(
    session: Session, *, actor: Actor, project: Project, limit: int = 10_000
) -> list[ListedModel]:
    """The catalogue's models as `provider/name`, then the project's prompts as `prompt:path`."""
    actor.require(Permission.read)
    listed = [
        ListedModel(f"{m.provider}/{m.name}", m.provider, _epoch(m.updated_at))
        for m in catalogue.list_models(session, project=project)
    ]
    prompts = session.execute(
        select(Prompt.path, Prompt.created_at)
        .where(Prompt.project_id == project.id)
        .order_by(Prompt.path)
        .limit(limit)
    )
    listed += [
        ListedModel(f"{PROMPT_PREFIX}{path}", "promptloop", _epoch(c)) for path, c in prompts
    ]
    return listed


def _epoch(moment: Any) -> int:
    return int(moment.timestamp()) if moment is not None else 0
