"""The demo project that `./scripts/run` opens on: every page populated, and the whole data
flywheel (log, feedback, dataset, fine-tune, evaluation) run for real on the offline model.

Two parts, so that seeding never delays the server becoming healthy:

- `seed_on_start` (at start-up, a few database writes, only while the `demo` project has no
  prompts): the project, its first admin, prompts with a version history by several authors,
  deployments to development, staging and production, a feedback kind, evaluators, a golden
  dataset, and a queued `demo_seed` job.
- `Seeder` (the `demo_seed` job, in the server's worker): calls the offline SmolLM2-135M on the
  extraction prompt through the normal call path (real logs), records the feedback a team would
  give them (votes, actions, corrections), logs synthetic calls the team's app would have made
  (labelled `metadata.demo = synthetic`), builds the fine-tuning set from the logs filtered by
  feedback, starts a LoRA fine-tune (which registers its model and evaluates it against the
  base model on held-out data) and an evaluation of two prompt versions, then waits for both
  and logs their figures.

Every step goes through the services, as a user's request would. Each phase is safe to run
again (a restarted job resumes): logs have fixed ids, feedback is given once per log, saved
datasets are content-addressed, and runs and fine-tunes are looked up before they are started.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from promptloop.core.access import Actor, Role
from promptloop.core.datapoints import DatapointSpec
from promptloop.core.errors import NotFound
from promptloop.core.kernel import Kernel
from promptloop.finetune.demo import SYSTEM_PROMPT, extraction_examples
from promptloop.services import (
    datasets,
    deployments,
    evaluations,
    evaluators,
    feedback,
    finetunes,
    jobs,
    prompts,
)
from promptloop.services.calls import Caller, CallSpec
from promptloop.services.jobs import JobContext
from promptloop.services.logs import LogEntry, Logger
from promptloop.services.projects import ensure_project
from promptloop.store.db import Database
from promptloop.store.models import EvaluationRun, FineTune, Job, Membership, Project, User

logger = logging.getLogger("promptloop.demo")

PROJECT = "demo"
JOB_KIND = "demo_seed"
PROMPT = "orders/extract"
REPLY_PROMPT = "support/reply"
GOLDEN = "orders/golden"
FLYWHEEL = "orders/flywheel"
TUNED = "orders-extract-lora"
RUN_NAME = "demo: first draft vs production"
EVALUATORS = ("exact", "valid-json", "fields-correct")
# The model the demo's prompts call (tests swap in a fake provider).
PROVIDER, MODEL = "local", "smollm2-135m"
SYNTHETIC = "synthetic"

# The people of the demo team (authors, reviewers); nobody signs in as them.
SAM, MARIA, LEE = "sam@demo.example", "maria@demo.example", "lee@demo.example"


def _person(email: str) -> Actor:
    """A member of the demo team, acting in the seed (a system actor with their name)."""
    return Actor(kind="system", id=None, name=email, role=Role.developer)


_APP = Actor(kind="api_key", id=None, name="orders-app (demo)", role=Role.member)
_REVIEWER = _person(MARIA)

FIELDS_CORRECT = '''import json


def evaluate(log, datapoint):
    """Share of the five order fields the output got right (0 when it is not a JSON object)."""
    try:
        got = json.loads(log["output"] or "")
        want = datapoint["target"]
        want = json.loads(want) if isinstance(want, str) else want
    except ValueError:
        return 0.0
    if not isinstance(got, dict):
        return 0.0
    keys = ("item", "qty", "color", "name", "city")
    return sum(got.get(k) == want.get(k) for k in keys) / len(keys)
'''


@dataclass(frozen=True)
class Plan:
    """How big the demo is. The default fits a 2-core CPU in a few minutes (see docs/demo.md);
    tests shrink it."""

    real_calls: int = 30  # calls to the offline model, each ~1.5 s
    synthetic_logs: int = 170  # logged as the team's app would have, with feedback
    golden: int = 12  # datapoints of the golden dataset (two versions evaluated on it)
    max_steps: int = 60  # LoRA training steps (batches of 8)
    held_out_fraction: float = 0.15
    watch_s: float = 1800.0  # how long the job waits for the fine-tune and runs to finish
    poll_s: float = 5.0


DEFAULT_PLAN = Plan()


# Start-up ------------------------------------------------------------------------------------


def seed_on_start(db: Database, *, url: str | None = None, plan: Plan | None = None) -> bool:
    """Create the demo project's quick parts and queue the slow ones, unless the project has
    prompts already. Never raises: a failure is logged and the server starts all the same.
    True when it seeded."""
    _show_progress()
    started = time.perf_counter()
    try:
        with db.session(write=True) as session:
            seeded = seed(session, plan or DEFAULT_PLAN)
    except Exception:
        logger.exception("Demo: seeding the %r project failed; the server runs without it", PROJECT)
        return False
    if seeded:
        logger.info(
            "Demo: project %r seeded in %.2f s (prompts, deployments, evaluators, dataset); "
            "its logs, fine-tune and evaluations follow in the background job %r. Open %s",
            PROJECT,
            time.perf_counter() - started,
            JOB_KIND,
            f"{url or ''}/p/{PROJECT}/prompts",
        )
    return seeded


def seed(session: Session, plan: Plan) -> bool:
    """The quick parts, in the caller's transaction; False (and nothing written but the first
    admin's membership) when the demo project has prompts already."""
    project = ensure_project(session, name=PROJECT)
    _admins_join(session, project)
    if prompts.list_prompts(session, project=project, prefix=None, cursor=None, limit=1).items:
        return False
    versions = _prompts(session, project)
    _deploy(session, project, versions)
    feedback.create_kind(
        session,
        actor=_REVIEWER,
        project=project,
        spec=feedback.KindSpec(
            name="stars",
            category="vote",
            type="number",
            minimum=1,
            maximum=5,
            description="A reviewer's rating of the answer, 1 to 5 stars.",
        ),
    )
    _evaluators(session, project)
    datasets.save_version(
        session,
        actor=_REVIEWER,
        project=project,
        name=GOLDEN,
        datapoints=[
            DatapointSpec(
                inputs={"text": e.messages[1]["content"]}, target=e.messages[2]["content"]
            )
            for e in extraction_examples(plan.golden, seed=2024)
        ],
        source="edit",
        message="Orders checked by hand: the golden set for prompt changes.",
        description="Order messages with the JSON the extraction prompt must return.",
    )
    jobs.enqueue(session, project=project, kind=JOB_KIND, payload={"plan": asdict(plan)})
    return True


def _admins_join(session: Session, project: Project) -> None:
    """Server admins (the first admin) are admins of the demo project."""
    members = set(
        session.scalars(select(Membership.user_id).where(Membership.project_id == project.id))
    )
    for user in session.scalars(select(User).where(User.server_admin.is_(True))):
        if user.id not in members:
            session.add(Membership(project_id=project.id, user_id=user.id, role=Role.admin.name))
    session.flush()


def _kernel(system: str, user: str = "{{ text }}", **parameters: Any) -> Kernel:
    return Kernel.model_validate(
        {
            "provider": PROVIDER,
            "model": MODEL,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "parameters": parameters,
        }
    )


def _prompts(session: Session, project: Project) -> dict[str, str]:
    """The prompts and their histories; the version ids by name."""
    history = [
        (
            PROMPT,
            "draft",
            SAM,
            "First draft: ask for the order as JSON.",
            _kernel(
                "Extract the order details from the customer's message as JSON.",
                temperature=0.7,
                max_tokens=60,
            ),
        ),
        (
            PROMPT,
            "fields",
            MARIA,
            "Name the five fields we store; greedy decoding, so the same message gives the "
            "same JSON.",
            _kernel(SYSTEM_PROMPT, temperature=0, max_tokens=60),
        ),
        (
            PROMPT,
            "short",
            LEE,
            "Cap answers at 32 tokens: the JSON needs at most 27, and rambling answers were slow.",
            _kernel(SYSTEM_PROMPT, temperature=0, max_tokens=32),
        ),
        (
            REPLY_PROMPT,
            "reply-v1",
            SAM,
            "A friendly reply to an order message.",
            _kernel(
                "You answer customers of a small shop. Be brief and friendly.",
                "{{ message }}",
                max_tokens=48,
            ),
        ),
        (
            REPLY_PROMPT,
            "reply-v2",
            MARIA,
            "Sign replies with the shop's name and thank the customer by name.",
            _kernel(
                "You answer customers of the Little Shop. Thank them by name, be brief, and "
                "sign as 'The Little Shop'.",
                "Customer {{ name }} wrote: {{ message }}",
                max_tokens=64,
                temperature=0.3,
            ),
        ),
    ]
    ids = {}
    for path, name, author, message, kernel in history:
        saved = prompts.save_version(
            session,
            actor=_person(author),
            project=project,
            path=path,
            kernel=kernel,
            author=author,
            name=name,
            message=message,
            description=(
                "Turns an order message into JSON (the fine-tuning demo)."
                if path == PROMPT
                else "Replies to customers."
            ),
        )
        ids[name] = saved.version.version_id
    return ids


def _deploy(session: Session, project: Project, ids: dict[str, str]) -> None:
    moves = [
        (PROMPT, "draft", "development", SAM, "Try the draft."),
        (PROMPT, "fields", "development", MARIA, None),
        (PROMPT, "fields", "staging", MARIA, "Field list reviewed."),
        (PROMPT, "short", "development", LEE, None),
        (PROMPT, "short", "staging", LEE, "Shorter answers: faster."),
        (PROMPT, "short", "production", MARIA, "Ship the 32-token cap."),
        (REPLY_PROMPT, "reply-v1", "development", SAM, None),
        (REPLY_PROMPT, "reply-v2", "development", MARIA, "Sign with the shop's name."),
        (REPLY_PROMPT, "reply-v1", "production", MARIA, None),
    ]
    for path, name, environment, who, message in moves:
        deployments.deploy(
            session,
            project=project,
            path=path,
            version=ids[name],
            environment=environment,
            actor=_person(who),
            message=message,
        )


def _evaluators(session: Session, project: Project) -> None:
    specs = [
        ("exact", evaluators.EvaluatorSpec(kind="builtin", builtin="exact_match"), "Same JSON."),
        ("valid-json", evaluators.EvaluatorSpec(kind="builtin", builtin="valid_json"), None),
        (
            "fields-correct",
            evaluators.EvaluatorSpec(kind="code", returns="number", source=FIELDS_CORRECT),
            "Share of the five fields right: partial credit where exact match gives none.",
        ),
    ]
    for name, spec, description in specs:
        evaluators.save_version(
            session,
            actor=_REVIEWER,
            project=project,
            name=name,
            spec=spec,
            message="Demo evaluator.",
            description=description,
        )


# The job -------------------------------------------------------------------------------------


def _uid(project: Project, kind: str, index: int) -> str:
    """A fixed log id per demo log, so a resumed job finds the logs it wrote before."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"promptloop-demo/{project.id}/{kind}/{index}").hex


def _wrong(answer: str, rng: random.Random) -> str:
    """The answer with one field wrong, as a weaker model would get it."""
    order = json.loads(answer)
    key = rng.choice(["qty", "color", "city", "item", "name"])
    order[key] = {
        "qty": order["qty"] % 9 + 1,
        "color": "blue" if order["color"] != "blue" else "red",
        "city": "London",
        "item": order["item"] + "s",
        "name": order["name"].lower(),
    }[key]
    return json.dumps(order, separators=(",", ":"))


@dataclass
class _Given:
    uid: str
    output: str | None
    answer: str
    end_user: str


class Seeder:
    """The `demo_seed` job handler: the slow part of the demo, phase by phase."""

    def __init__(self, db: Database, caller: Caller, log_writer: Logger) -> None:
        self.db = db
        self.caller = caller
        self.log_writer = log_writer
        self.wake: Callable[[], None] | None = None

    async def __call__(self, ctx: JobContext) -> None:
        plan = Plan(**ctx.payload.get("plan", {}))
        project = await asyncio.to_thread(self._project, ctx.project_id)
        timings: dict[str, float] = dict(ctx.progress.get("timings", {}))
        phases: list[tuple[str, Callable[..., Any]]] = [
            ("calls", self._calls),
            ("synthetic", self._synthetic),
            ("dataset", self._dataset),
            ("jobs", self._jobs),
            ("watch", self._watch),
        ]
        for name, phase in phases:
            if name in timings:
                continue  # done before a restart
            logger.info("Demo: phase %r started", name)
            await ctx.checkpoint(phase=name)
            started = time.perf_counter()
            await phase(ctx, project, plan)
            timings[name] = round(time.perf_counter() - started, 1)
            await ctx.checkpoint(timings=timings)
            logger.info("Demo: phase %r done in %.1f s", name, timings[name])
        logger.info("Demo: the %r project is ready (%s)", PROJECT, _seconds(timings))

    def _project(self, project_id: int) -> Project:
        with self.db.session(write=False) as session:
            project = session.get(Project, project_id)
            if project is None:
                raise NotFound(f"The demo project (id {project_id}) no longer exists.")
            session.expunge(project)
            return project

    # Phase 1: real calls to the model, and the feedback they got.

    async def _calls(self, ctx: JobContext, project: Project, plan: Plan) -> None:
        examples = extraction_examples(plan.real_calls, seed=7)
        right = 0
        for index, example in enumerate(examples):
            uid = _uid(project, "call", index)
            text, answer = example.messages[1]["content"], example.messages[2]["content"]
            end_user = f"customer-{index % 11:02d}"
            log = await asyncio.to_thread(self._find_log, project, uid)
            if log is None:
                result = await self.caller.call(
                    actor=_APP,
                    project=project,
                    spec=CallSpec(
                        prompt=PROMPT,
                        environment="production",
                        inputs={"text": text},
                        source="sdk",
                        end_user=end_user,
                        metadata={"demo": "model"},
                        log_id=uid,
                    ),
                )
                output = result.completion.output if result.completion else None
            else:
                output = log
            right += output is not None and output.strip() == answer
            given = _Given(uid, output, answer, end_user)
            await asyncio.to_thread(self._review_call, project, index, given)
            await ctx.checkpoint(calls=index + 1, calls_right=right)
        logger.info(
            "Demo: %d calls to %s/%s on %r, %d answered with the right JSON",
            len(examples),
            PROVIDER,
            MODEL,
            PROMPT,
            right,
        )

    def _find_log(self, project: Project, uid: str) -> str | None:
        """The output of the log with this id, '' for a log without one; None: no such log."""
        log = self.log_writer.store.get(project_id=project.id, uid=uid)
        return None if log is None else (log.output or "")

    def _review_call(self, project: Project, index: int, given: _Given) -> None:
        """What people did with a real answer: every fifth one nobody looked at; the end user
        votes and copies the right ones; a reviewer corrects the wrong ones."""
        if index % 5 == 4:
            return
        output = given.output or ""
        right = output.strip() == given.answer
        app = [("rating", right)] + ([("copied", None), ("accepted", None)] if right else [])
        if not right and index % 3 == 0:
            app.append(("regenerated", None))
        reviewer: list[tuple[str, Any]] = []
        if not right:
            reviewer.append(("correction", given.answer))
            reviewer.append(("stars", 1 if not output.lstrip().startswith("{") else 2))
            if not output.lstrip().startswith("{"):
                reviewer.append(("comment", "Prose instead of JSON."))
        self._give(project, given, app, reviewer)

    def _give(
        self,
        project: Project,
        given: _Given,
        app: Sequence[tuple[str, Any]],
        reviewer: Sequence[tuple[str, Any]],
    ) -> None:
        with self.db.session(write=True) as session:
            if feedback.list_for_log(session, actor=_APP, project=project, log_uid=given.uid):
                return  # given before a restart
            for name, value in app:
                feedback.record(
                    session,
                    actor=_APP,
                    project=project,
                    log_uid=given.uid,
                    given=feedback.FeedbackInput(
                        name=name, value=value, end_user=given.end_user, source="sdk"
                    ),
                )
            for name, value in reviewer:
                feedback.record(
                    session,
                    actor=_REVIEWER,
                    project=project,
                    log_uid=given.uid,
                    given=feedback.FeedbackInput(name=name, value=value, source="ui"),
                )

    # Phase 2: what the team's app logged over the weeks before (synthetic, labelled).

    async def _synthetic(self, ctx: JobContext, project: Project, plan: Plan) -> None:
        rng = random.Random(11)
        version = await asyncio.to_thread(self._production_version, project)
        examples = extraction_examples(plan.synthetic_logs, seed=1)
        given: list[_Given] = []
        entries: list[LogEntry] = []
        for index, example in enumerate(examples):
            uid = _uid(project, SYNTHETIC, index)
            text, answer = example.messages[1]["content"], example.messages[2]["content"]
            output = answer if rng.random() < 0.7 else _wrong(answer, rng)
            given.append(_Given(uid, output, answer, f"customer-{index % 23:02d}"))
            if await asyncio.to_thread(self._find_log, project, uid) is not None:
                continue
            entries.append(
                LogEntry(
                    source="sdk",
                    uid=uid,
                    prompt=PROMPT,
                    version=version,
                    environment="production",
                    provider="demo",
                    model=SYNTHETIC,
                    inputs={"text": text},
                    messages=[*example.messages[:2]],
                    output=output,
                    finish_reason="stop",
                    end_user=given[-1].end_user,
                    metadata={"demo": SYNTHETIC},
                )
            )
        if entries:
            await self.log_writer.record(self.db, actor=_APP, project=project, entries=entries)
        for index, each in enumerate(given):
            right = each.output == each.answer
            app: list[tuple[str, Any]] = [("rating", right)]
            if right:
                app.append(("copied" if index % 2 else "accepted", None))
            reviewer = [] if right else [("correction", each.answer)]
            await asyncio.to_thread(self._give, project, each, app, reviewer)
            if index % 25 == 24:
                await ctx.checkpoint(synthetic=index + 1)
        await ctx.checkpoint(synthetic=len(given))

    def _production_version(self, project: Project) -> str:
        with self.db.session(write=False) as session:
            version = prompts.resolve_version(
                session, project=project, path=PROMPT, environment="production"
            )
            return version.version_id

    # Phase 3: the fine-tuning set, from the logs people reviewed.

    async def _dataset(self, ctx: JobContext, project: Project, plan: Plan) -> None:
        def build() -> tuple[int, str, dict[str, int]]:
            with self.db.session(write=True) as session:
                saved = datasets.from_logs(
                    session,
                    self.log_writer.store,
                    actor=_REVIEWER,
                    project=project,
                    name=FLYWHEEL,
                    filters=datasets.LogFilters(prompt=PROMPT, source="sdk", feedback=("rating",)),
                    target="corrected",
                    limit=plan.real_calls + plan.synthetic_logs,
                    message="Every rated log: its correction where it has one, else its output.",
                    description="The fine-tuning set: reviewed orders with the right JSON.",
                )
                return saved.version.count, saved.version.version_id, saved.skipped

        count, version, skipped = await asyncio.to_thread(build)
        await ctx.checkpoint(dataset=version, datapoints=count)
        logger.info(
            "Demo: dataset %s@%s has %d datapoints (skipped: %s)",
            FLYWHEEL,
            version,
            count,
            skipped or "none",
        )

    # Phase 4: the fine-tune and the evaluation of two prompt versions.

    async def _jobs(self, ctx: JobContext, project: Project, plan: Plan) -> None:
        def start() -> tuple[str, str]:
            with self.db.session(write=True) as session:
                tune = session.scalars(
                    select(FineTune).where(
                        FineTune.model_name == finetunes.model_name(project, TUNED)
                    )
                ).first()
                if tune is None:
                    tune = finetunes.start(
                        session,
                        actor=_REVIEWER,
                        project=project,
                        request=finetunes.FineTuneRequest(
                            name=TUNED,
                            dataset=FLYWHEEL,
                            prompt=PROMPT,
                            environment="production",
                            hyperparameters={"max_steps": plan.max_steps},
                            held_out_fraction=plan.held_out_fraction,
                            evaluators=list(EVALUATORS),
                        ),
                    )
                run = self._versions_run(session, project)
                if run is None:
                    versions = {
                        v.name: v.version_id
                        for v in prompts.list_versions(
                            session, project=project, path=PROMPT, cursor=None, limit=20
                        ).items
                    }
                    run = evaluations.create_run(
                        session,
                        actor=_REVIEWER,
                        project=project,
                        request=evaluations.RunRequest(
                            dataset=GOLDEN,
                            candidates=[
                                evaluations.CandidateSpec(prompt=PROMPT, version=versions["draft"]),
                                evaluations.CandidateSpec(prompt=PROMPT, version=versions["short"]),
                            ],
                            evaluators=list(EVALUATORS),
                            control=1,
                            concurrency=1,
                            name=RUN_NAME,
                        ),
                    )
                return tune.uid, run.uid

        tune_uid, run_uid = await asyncio.to_thread(start)
        if self.wake is not None:
            self.wake()
        await ctx.checkpoint(fine_tune=tune_uid, run=run_uid)
        logger.info("Demo: fine-tune %s and evaluation run %s queued", tune_uid, run_uid)

    @staticmethod
    def _versions_run(session: Session, project: Project) -> EvaluationRun | None:
        return session.scalars(
            select(EvaluationRun).where(
                EvaluationRun.project_id == project.id, EvaluationRun.name == RUN_NAME
            )
        ).first()

    # Phase 5: wait for them, and say how they went.

    async def _watch(self, ctx: JobContext, project: Project, plan: Plan) -> None:
        deadline = time.monotonic() + plan.watch_s
        reported: set[str] = set()
        while time.monotonic() < deadline:
            state = await asyncio.to_thread(self._state, project)
            for key, line in state.lines.items():
                if key not in reported:
                    reported.add(key)
                    logger.info("Demo: %s", line)
            await ctx.checkpoint(**state.progress)
            if state.finished:
                return
            await asyncio.sleep(plan.poll_s)
        logger.warning("Demo: stopped waiting for the fine-tune after %.0f s", plan.watch_s)

    def _state(self, project: Project) -> _State:
        state = _State()
        with self.db.session(write=False) as session:
            tune = session.scalars(
                select(FineTune).where(FineTune.model_name == finetunes.model_name(project, TUNED))
            ).first()
            runs = [self._versions_run(session, project)]
            if tune is not None:
                state.progress["fine_tune_status"] = tune.status
                if tune.status in jobs.FINISHED:
                    metrics = tune.metrics or {}
                    state.lines["tune"] = (
                        f"fine-tune {tune.model_name} {tune.status}"
                        + (f": {tune.error}" if tune.error else "")
                        + (
                            f" ({metrics.get('steps')} steps on {metrics.get('train_examples')} "
                            f"examples in {metrics.get('seconds')} s, "
                            f"{metrics.get('held_out_examples')} held out)"
                            if metrics
                            else ""
                        )
                    )
                    state.progress["training_s"] = metrics.get("seconds")
                    if tune.evaluation_run_id is not None:
                        runs.append(session.get(EvaluationRun, tune.evaluation_run_id))
                    elif tune.status == "completed":
                        state.finished = False
                else:
                    state.finished = False
                    job = session.get(Job, tune.job_id) if tune.job_id else None
                    if job is not None and job.progress:
                        state.progress["fine_tune_step"] = job.progress.get("step")
            for run in runs:
                if run is None:
                    continue
                if run.status not in jobs.FINISHED:
                    state.finished = False
                    continue
                state.lines[run.uid] = f"evaluation {run.name!r} {run.status}: " + _scores(
                    evaluations.summarize(session, run=run)
                )
        return state


@dataclass
class _State:
    """What the fine-tune and the runs have come to: a log line for each finished one."""

    finished: bool = True
    lines: dict[str, str] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)


def _scores(summary: dict[str, Any]) -> str:
    """`label: exact 0.00 [0.00, 0.14]; …` for each candidate's mean per evaluator."""
    parts = []
    for result in summary.get("results", []):
        mean = result["mean"]
        value, low, high = mean["value"], mean["low"], mean["high"]
        span = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
        shown = f"{value:.2f}" if value is not None else "n/a"
        parts.append(f"{result['candidate']} {result['evaluator']} {shown}{span} (n={mean['n']})")
    return "; ".join(parts) or "no results"


def _seconds(timings: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())


def _show_progress() -> None:
    """`promptloop serve` configures uvicorn's loggers only: give the demo's a handler of its
    own, so its progress reaches the server log."""
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
