"""Datasets and their immutable, content-addressed versions of datapoints.

A version is saved from full content (the API), an uploaded file, an edit of another version
(datapoints added and removed by key), or the project's logs (their outputs, or the corrections
people made to them). Saving content that already exists returns that version unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from promptloop.core import datapoints as points
from promptloop.core.access import Actor, Permission
from promptloop.core.datapoints import DatapointSpec
from promptloop.core.errors import Conflict, InvalidInput, InvalidPath, NotFound
from promptloop.core.paths import validate_prompt_path
from promptloop.services import audit, logs
from promptloop.services.pagination import Page, paginate
from promptloop.services.storage import insert_or_get
from promptloop.store.logs import JudgmentFilter, LogStore
from promptloop.store.models import (
    Datapoint,
    Dataset,
    DatasetVersion,
    Evaluator,
    FeedbackKind,
    Judgment,
    Log,
    Project,
)

MIN_VERSION_PREFIX = 4
LATEST = "latest"
# What a datapoint made from a log has as target: its output, the correction a person made of
# it (only logs with one), the correction where there is one and else the output, or nothing.
TARGETS = ("output", "correction", "corrected", "none")
MAX_FROM_LOGS = 10_000
_LOG_PAGE = 500
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class SavedVersion:
    """The version a save resolved to, and whether the save created it."""

    dataset: Dataset
    version: DatasetVersion
    created: bool


@dataclass(frozen=True)
class LogFilters:
    """Which logs to make datapoints of (the filters of the log list)."""

    prompt: str | None = None
    version: str | None = None
    environment: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error: bool | None = None
    end_user: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    feedback: tuple[str, ...] = ()
    judgments: tuple[str, ...] = ()  # `helpful>=4`, `exact=true`: see `judgment_filters`


@dataclass(frozen=True)
class SavedFromLogs(SavedVersion):
    """A version made from logs, and how many matching logs were left out, by reason
    (`withheld`: content not stored for consent; `error`: the call failed)."""

    skipped: dict[str, int] = field(default_factory=dict)


def judgment_filters(
    session: Session, *, project: Project, texts: Sequence[str]
) -> tuple[JudgmentFilter, ...]:
    """Judgment filters of the log list (`helpful>=4`, `exact=true`): each names one of the
    project's evaluators and compares the score of its judgment of a log."""
    parsed = tuple(JudgmentFilter.parse(text) for text in texts)
    if not parsed:
        return parsed
    known = set(session.scalars(select(Evaluator.name).where(Evaluator.project_id == project.id)))
    for judgment in parsed:
        if judgment.evaluator not in known:
            raise InvalidInput(
                f"Unknown evaluator {judgment.evaluator!r} in judgment filter: the project's "
                f"evaluators are {', '.join(sorted(known)) or 'none yet'}."
            )
    return parsed


# Datasets ------------------------------------------------------------------------------------


def get_dataset(session: Session, *, project: Project, name: str) -> Dataset:
    _validate_name(name)
    dataset = session.scalars(
        select(Dataset).where(Dataset.project_id == project.id, Dataset.name == name)
    ).first()
    if dataset is None:
        raise NotFound(
            f"No dataset {name!r} in project {project.name!r}. Saving a version creates it."
        )
    return dataset


def read_dataset(
    session: Session, *, actor: Actor, project: Project, name: str
) -> tuple[Dataset, DatasetVersion | None]:
    """A dataset and its latest version."""
    actor.require(Permission.read)
    dataset = get_dataset(session, project=project, name=name)
    return dataset, latest_versions(session, [dataset]).get(dataset.id)


def list_datasets(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    prefix: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Dataset]:
    """Datasets in name order; `prefix` (a folder like `support/`) narrows the list."""
    actor.require(Permission.read)
    query = select(Dataset).where(Dataset.project_id == project.id)
    if prefix:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Dataset.name.like(f"{escaped}%", escape="\\"))
    return paginate(session, query, key=Dataset.name, cursor=cursor, limit=limit, descending=False)


def latest_versions(session: Session, datasets: Sequence[Dataset]) -> dict[int, DatasetVersion]:
    """The latest version of each dataset, by dataset id (one query for a page of datasets)."""
    if not datasets:
        return {}
    newest = (
        select(func.max(DatasetVersion.id))
        .where(DatasetVersion.dataset_id.in_([d.id for d in datasets]))
        .group_by(DatasetVersion.dataset_id)
    )
    return {
        v.dataset_id: v
        for v in session.scalars(select(DatasetVersion).where(DatasetVersion.id.in_(newest)))
    }


# Versions: reading ---------------------------------------------------------------------------


def get_version(session: Session, *, project: Project, name: str, ref: str) -> DatasetVersion:
    """The version of dataset `name` that `ref` names: `latest`, or its id or a unique prefix
    of at least 4 hex digits. Callers check the actor's permission themselves."""
    dataset = get_dataset(session, project=project, name=name)
    return _version(session, dataset=dataset, ref=ref)


def datapoints_of(session: Session, *, version: DatasetVersion) -> list[Datapoint]:
    """Every datapoint of a version, in order."""
    return list(
        session.scalars(
            select(Datapoint).where(Datapoint.version_pk == version.id).order_by(Datapoint.position)
        )
    )


def read_version(
    session: Session, *, actor: Actor, project: Project, name: str, ref: str
) -> DatasetVersion:
    actor.require(Permission.read)
    return get_version(session, project=project, name=name, ref=ref)


def list_versions(
    session: Session, *, actor: Actor, project: Project, name: str, cursor: str | None, limit: int
) -> Page[DatasetVersion]:
    """A dataset's versions, newest first."""
    actor.require(Permission.read)
    dataset = get_dataset(session, project=project, name=name)
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id)
    return paginate(
        session, query, key=DatasetVersion.id, cursor=cursor, limit=limit, descending=True
    )


def list_datapoints(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    name: str,
    ref: str,
    cursor: str | None,
    limit: int,
) -> tuple[DatasetVersion, Page[Datapoint]]:
    """One page of a version's datapoints, in order."""
    version = read_version(session, actor=actor, project=project, name=name, ref=ref)
    query = select(Datapoint).where(Datapoint.version_pk == version.id)
    page = paginate(
        session, query, key=Datapoint.position, cursor=cursor, limit=limit, descending=False
    )
    return version, page


def export(
    session: Session, *, actor: Actor, project: Project, name: str, ref: str, fmt: str
) -> tuple[DatasetVersion, str]:
    """A version as a file: JSON lines (with provenance) or CSV."""
    version = read_version(session, actor=actor, project=project, name=name, ref=ref)
    specs = [spec_of(d) for d in datapoints_of(session, version=version)]
    if fmt == "csv":
        return version, points.to_csv(specs)
    if fmt == "jsonl":
        return version, points.to_jsonl(specs)
    raise InvalidInput(f"Unknown format {fmt!r}: use jsonl or csv.")


def spec_of(datapoint: Datapoint) -> DatapointSpec:
    return DatapointSpec(
        inputs=datapoint.inputs,
        messages=datapoint.messages,
        target=datapoint.target,
        source=datapoint.source,
        log_uid=datapoint.log_uid,
    )


# Versions: saving ----------------------------------------------------------------------------


def save_version(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    name: str,
    datapoints: Sequence[DatapointSpec],
    source: str = "api",
    message: str | None = None,
    description: str | None = None,
) -> SavedVersion:
    """Save a version of dataset `name` holding `datapoints` in order (creating the dataset if
    needed). Saving content that already exists returns that version unchanged: its source,
    message and author stay those of the first save."""
    actor.require(Permission.edit)
    return _store(
        session,
        actor=actor,
        project=project,
        name=name,
        datapoints=datapoints,
        source=source,
        message=message,
        description=description,
    )


def edit_version(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    name: str,
    base: str,
    add: Sequence[DatapointSpec] = (),
    remove: Sequence[str] = (),
    message: str | None = None,
) -> SavedVersion:
    """A new version: the datapoints of version `base` without those whose key is in `remove`,
    then `add`. The base version stays as it was."""
    actor.require(Permission.edit)
    dataset = get_dataset(session, project=project, name=name)
    version = _version(session, dataset=dataset, ref=base)
    kept = datapoints_of(session, version=version)
    keys = {d.key for d in kept}
    unknown = [key for key in dict.fromkeys(remove) if key not in keys]
    if unknown:
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        raise InvalidInput(
            f"Version {version.version_id} of {name!r} has no datapoint with key "
            f"{', '.join(unknown[:20])}{more}: the keys are listed with the version's "
            "datapoints. Nothing was saved.",
            details={"unknown": unknown[:1000]},
        )
    dropped = set(remove)
    return _store(
        session,
        actor=actor,
        project=project,
        name=name,
        datapoints=[spec_of(d) for d in kept if d.key not in dropped] + list(add),
        source="edit",
        message=message,
        description=None,
    )


def upload(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    name: str,
    data: bytes | None,
    filename: str | None = None,
    fmt: str | None = None,
    message: str | None = None,
    description: str | None = None,
) -> SavedVersion:
    """A version from a CSV or JSONL file (the format given, else the filename's extension).
    A file with any bad line stores nothing; the error names every problem's line."""
    actor.require(Permission.edit)
    if data is None:
        raise InvalidInput("Send the file as the multipart form field 'file'.")
    parsed = points.parse_file(data, fmt=points.file_format(filename, fmt))
    return _store(
        session,
        actor=actor,
        project=project,
        name=name,
        datapoints=parsed,
        source="upload",
        message=message,
        description=description,
    )


@dataclass(frozen=True)
class Collected:
    """The datapoints logs would give, before anything is saved."""

    datapoints: list[DatapointSpec]
    matched: int
    skipped: dict[str, int]


@dataclass(frozen=True)
class Preview:
    """What a version from logs would hold: its size, a sample as it would be stored, the
    logs left out by reason, the version id it would have (and whether it exists already),
    and how a fine-tune would split it into training and held-out datapoints."""

    count: int
    matched: int
    skipped: dict[str, int]
    sample: list[DatapointSpec]
    version_id: str
    exists: bool
    train: int
    held_out: int


def from_logs(
    session: Session,
    store: LogStore,
    *,
    actor: Actor,
    project: Project,
    name: str,
    filters: LogFilters,
    target: str = "output",
    limit: int = 1000,
    message: str | None = None,
    description: str | None = None,
) -> SavedFromLogs:
    """A version from the project's logs matching `filters`, newest first, up to `limit`
    datapoints, each keeping the id of its log.

    The target is the log's output (`output`), nothing (`none`), the text a person corrected
    the output to (`correction`: only logs with a current correction), or that correction where
    there is one and the output elsewhere (`corrected`: what a fine-tuning set wants). Logs
    whose content was withheld for consent, failed calls, and datapoints identical to one
    already taken (`duplicate`) are skipped and counted.
    """
    actor.require(Permission.edit)
    _validate_name(name)
    collected = collect_from_logs(
        session, store, actor=actor, project=project, filters=filters, target=target, limit=limit
    )
    if not collected.datapoints:
        raise _nothing_to_save(collected)
    saved = _store(
        session,
        actor=actor,
        project=project,
        name=name,
        datapoints=collected.datapoints,
        source="corrections" if target == "correction" else "logs",
        message=message,
        description=description,
    )
    return SavedFromLogs(
        dataset=saved.dataset,
        version=saved.version,
        created=saved.created,
        skipped=collected.skipped,
    )


def preview_from_logs(
    session: Session,
    store: LogStore,
    *,
    actor: Actor,
    project: Project,
    filters: LogFilters,
    target: str = "output",
    limit: int = 1000,
    sample: int = 5,
    name: str | None = None,
    held_out_fraction: float = 0.2,
) -> Preview:
    """What `from_logs` would save with these arguments, without saving anything: the count,
    the first `sample` datapoints exactly as they would be stored, what was skipped, and the
    version id (with `name`, whether that dataset holds it already)."""
    actor.require(Permission.read)
    if not 0 <= sample <= 100:
        raise InvalidInput(f"sample must be between 0 and 100, not {sample}.")
    if not 0 < held_out_fraction < 1:
        raise InvalidInput("held_out_fraction must be between 0 and 1 (e.g. 0.2).")
    collected = collect_from_logs(
        session, store, actor=actor, project=project, filters=filters, target=target, limit=limit
    )
    found = collected.datapoints
    short = points.version_id(points.content_hash(found)) if found else ""
    exists = False
    if name is not None and found:
        _validate_name(name)
        exists = (
            session.scalar(
                select(DatasetVersion.id)
                .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
                .where(
                    Dataset.project_id == project.id,
                    Dataset.name == name,
                    DatasetVersion.version_id == short,
                )
            )
            is not None
        )
    held = held_out_keys([d.key for d in found], held_out_fraction)
    return Preview(
        count=len(found),
        matched=collected.matched,
        skipped=collected.skipped,
        sample=found[:sample],
        version_id=short,
        exists=exists,
        train=len(found) - len(held),
        held_out=len(held),
    )


def held_out_keys(keys: Sequence[str], fraction: float) -> set[str]:
    """The keys a fine-tune holds out of training: those in the first `fraction` of the hash
    space, so the split is the same on every run and machine (and at least one of three or
    more, however the hashes fall)."""
    cut = int(fraction * 0x10000)
    held = {key for key in keys if int(key[:4], 16) < cut}
    if not held and len(keys) >= 3:
        held = {min(keys)}
    return held


def collect_from_logs(
    session: Session,
    store: LogStore,
    *,
    actor: Actor,
    project: Project,
    filters: LogFilters,
    target: str,
    limit: int,
) -> Collected:
    """The datapoints the matching logs give, newest first, up to `limit`: withheld content,
    failed calls and duplicates left out and counted."""
    if target not in TARGETS:
        raise InvalidInput(f"Unknown target {target!r}: use one of {', '.join(TARGETS)}.")
    if not 1 <= limit <= MAX_FROM_LOGS:
        raise InvalidInput(f"limit must be between 1 and {MAX_FROM_LOGS}, not {limit}.")
    judgments = judgment_filters(session, project=project, texts=filters.judgments)
    words = filters.feedback
    if target == "correction":
        kinds = _correction_kinds(session, project=project)
        if len(kinds) == 1 and kinds[0] not in words:
            words = (*words, kinds[0])  # lets the log store narrow the scan
    found: list[DatapointSpec] = []
    keys: set[str] = set()
    skipped: Counter[str] = Counter()
    matched = 0
    cursor: str | None = None
    while len(found) < limit:
        page = logs.list_logs(
            session,
            store,
            actor=actor,
            project=project,
            prompt=filters.prompt,
            version=filters.version,
            cursor=cursor,
            limit=_LOG_PAGE,
            environment=filters.environment,
            source=filters.source,
            since=filters.since,
            until=filters.until,
            has_error=filters.error,
            end_user=filters.end_user,
            metadata=dict(filters.metadata),
            feedback=words,
            judgments=judgments,
        )
        corrections = (
            _corrections(session, [log.id for log in page.items])
            if target in ("correction", "corrected")
            else {}
        )
        for log in page.items:
            correction = corrections.get(log.id)
            if target == "correction" and correction is None:
                continue  # no correction: not a match
            matched += 1
            reason = _skip_reason(log, correction)
            if reason:
                skipped[reason] += 1
                continue
            point = _from_log(log, target=target, correction=correction)
            if point.key in keys:
                skipped["duplicate"] += 1
                continue
            keys.add(point.key)
            found.append(point)
            if len(found) == limit:
                break
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return Collected(datapoints=found, matched=matched, skipped=dict(skipped))


def _nothing_to_save(collected: Collected) -> InvalidInput:
    matched, skipped = collected.matched, collected.skipped
    left_out = (
        f" {matched} matched but were skipped ("
        + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
        + ")."
        if matched
        else ""
    )
    return InvalidInput(
        f"Nothing to save: no logs match these filters with content to use.{left_out}",
        details={"matched": matched, "skipped": dict(skipped)},
    )


def _correction_kinds(session: Session, *, project: Project) -> list[str]:
    return list(
        session.scalars(
            select(FeedbackKind.name).where(
                FeedbackKind.project_id == project.id, FeedbackKind.category == "correction"
            )
        )
    )


@dataclass(frozen=True)
class _Correction:
    text: Any
    withheld: bool


def _corrections(session: Session, log_ids: list[int]) -> dict[int, _Correction]:
    """The newest current correction of each log that has one."""
    if not log_ids:
        return {}
    rows = session.execute(
        select(Judgment.log_id, Judgment.value, Judgment.withheld)
        .where(
            Judgment.log_id.in_(log_ids),
            Judgment.category == "correction",
            Judgment.current.is_(True),
            Judgment.kind_id.is_not(None),
        )
        .order_by(Judgment.id)
    )
    return {log_id: _Correction(value, bool(withheld)) for log_id, value, withheld in rows}


def _skip_reason(log: Log, correction: _Correction | None) -> str | None:
    if log.withheld or (correction is not None and correction.withheld):
        return "withheld"
    if log.error is not None:
        return "error"
    return None


def _from_log(log: Log, *, target: str, correction: _Correction | None) -> DatapointSpec:
    inputs = log.inputs or {}
    return DatapointSpec(
        inputs=inputs,
        messages=None if inputs else (log.messages or None),  # a raw chat call: its messages
        target=(
            correction.text
            if correction is not None
            else (log.output if target in ("output", "corrected") else None)
        ),
        source="correction" if correction is not None else "log",
        log_uid=log.uid,
    )


def _store(
    session: Session,
    *,
    actor: Actor,
    project: Project,
    name: str,
    datapoints: Sequence[DatapointSpec],
    source: str,
    message: str | None,
    description: str | None,
) -> SavedVersion:
    _validate_name(name)
    if not datapoints:
        raise InvalidInput("A dataset version needs at least one datapoint.")
    if len(datapoints) > points.MAX_DATAPOINTS:
        raise InvalidInput(
            f"A dataset version holds at most {points.MAX_DATAPOINTS:,} datapoints, not "
            f"{len(datapoints):,}: split it into several datasets."
        )
    dataset, dataset_created = insert_or_get(
        session,
        Dataset(project_id=project.id, name=name, description=description),
        select(Dataset).where(Dataset.project_id == project.id, Dataset.name == name),
    )
    digest = points.content_hash(datapoints)
    short = points.version_id(digest)
    version, created = insert_or_get(
        session,
        DatasetVersion(
            dataset_id=dataset.id,
            version_id=short,
            content_hash=digest,
            count=len(datapoints),
            source=source,
            message=message,
            author=actor.name,
        ),
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.version_id == short
        ),
    )
    if version.content_hash != digest:
        raise Conflict(
            f"Version id {short} of {name!r} already names different content (a hash prefix "
            "collision); change the content slightly and save again."
        )
    if created:
        session.execute(
            insert(Datapoint),
            [
                {
                    "version_pk": version.id,
                    "position": position,
                    "key": d.key,
                    "inputs": d.inputs,
                    "messages": d.messages or None,
                    "target": d.target,
                    "source": d.source,
                    "log_uid": d.log_uid,
                }
                for position, d in enumerate(datapoints)
            ],
        )
        audit.record(
            session,
            actor=actor,
            action="dataset_version.create",
            target=f"dataset:{name}",
            project=project,
            details={
                "version": short,
                "count": len(datapoints),
                "source": source,
                "new_dataset": dataset_created,
            },
        )
    return SavedVersion(dataset=dataset, version=version, created=created)


def _version(session: Session, *, dataset: Dataset, ref: str) -> DatasetVersion:
    if ref == LATEST:
        latest = latest_versions(session, [dataset]).get(dataset.id)
        if latest is None:
            raise NotFound(f"Dataset {dataset.name!r} has no versions yet.")
        return latest
    if len(ref) < MIN_VERSION_PREFIX or not set(ref) <= _HEX:
        raise InvalidInput(
            f"Version id {ref!r} is not valid: give 'latest' or at least {MIN_VERSION_PREFIX} "
            "lowercase hex digits."
        )
    matches = session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset.id, DatasetVersion.version_id.startswith(ref))
        .limit(2)
    ).all()
    if not matches:
        raise NotFound(f"Dataset {dataset.name!r} has no version {ref!r}.")
    if len(matches) > 1:
        raise InvalidInput(
            f"Version id {ref!r} of dataset {dataset.name!r} is ambiguous: give more digits."
        )
    return matches[0]


def _validate_name(name: str) -> None:
    """Dataset names follow the rules of prompt paths (`support/answers`)."""
    try:
        validate_prompt_path(name)
    except InvalidPath as exc:
        raise InvalidPath(
            exc.message.replace("Prompt path", "Dataset name").replace(
                "'support/answer'", "'support/questions'"
            )
        ) from None
