"""The trajectory viewer: a trajectory store's episodes as web pages, served or written as static files.

Pages (the same relative layout served and on disk, so every link works in both):

- ``index.html`` — one row per episode, with filters by task, outcome, policy version and rollout kind
  (the filter state lives in the URL's ``#`` part: ``index.html#policy=step-20&outcome=failure``).
- ``episode/<key>.html`` — each step's screenshot with its action drawn over it in device pixels (click
  points, swipe and scroll arrows, drag paths, typed text), the expert action and target boxes when the
  step has them, the thought and raw output, parse failures, refusals, reward, advantage, patched steps;
  ``j``/``k`` or the arrow keys move between steps.
- ``group/<key>.html`` — the G trajectories of one GRPO group side by side, step by step.
- ``screens/<store-relative path>`` — the screenshots; ``static/`` — the script and style sheet.

A SCROLL is drawn as the finger stroke the device performed, from the one gesture rule
(:func:`guiagent.actions.gestures.scroll_stroke`). Every value from a trajectory reaches the page through
Jinja2's autoescaping, so model output holding HTML or ``<script>`` is shown as text and never runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guiagent.actions.gestures import scroll_stroke
from guiagent.data.store import TrajectoryStore
from guiagent.data.store import _episode_id as _name_of_key
from guiagent.data.store import _episode_key as _key_of_name
from guiagent.errors import DataError
from guiagent.rewards.format import extract_think
from guiagent.types import Action, ActionType, Point, Step, Trajectory

PACKAGE = Path(__file__).parent
TEMPLATES = PACKAGE / "templates"
STATIC = PACKAGE / "static"
# Scripts only from our own static files: a string that escaped the templates' escaping still could not run.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")

_POINT_ACTIONS = frozenset({ActionType.CLICK, ActionType.LONG_PRESS, ActionType.DOUBLE_CLICK,
                            ActionType.TRIPLE_CLICK, ActionType.RIGHT_CLICK, ActionType.MIDDLE_CLICK,
                            ActionType.MOVE})
NO_VALUE = "none"  # the filter value of an episode without an outcome / rollout kind


def page_key(name: str) -> str:
    """An episode or group id as one URL path and file name component (the store's own encoding)."""
    return _key_of_name(name)


# --- what is drawn ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """One thing drawn over a screenshot.

    Attributes:
        kind: ``"tap"`` (a point), ``"stroke"`` (an arrow from ``points[0]`` to ``points[1]``), ``"box"``
            (``points`` = top-left, bottom-right) or ``"caption"`` (text under the screen: typed text, keys).
        role: ``"action"`` (what was executed) or ``"expert"`` (the ground truth).
        label: What the mark says (``"click"``, ``"scroll down"``, ``'type text="hello"'``).
        points: Device pixels ``(x, y)`` of the screenshot.
        style: The stroke's gesture (``"swipe"``, ``"scroll"``, ``"drag"``), the tap's action type.
    """

    kind: str
    role: str
    label: str
    points: tuple[Point, ...] = ()
    style: str = ""


def describe_action(action: Action | None) -> str:
    """One line for an action: its type and payload (``click point=(540, 1200)``); ``"—"`` for None."""
    if action is None:
        return "—"
    parts = [action.type.value]
    for name, value in action.to_json().items():
        if name == "type" or value is None:
            continue
        if name in ("point", "end"):
            parts.append(f"{name}=({value[0]:g}, {value[1]:g})")
        else:
            parts.append(f"{name}={json.dumps(value, ensure_ascii=False)}")
    return " ".join(parts)


def action_marks(action: Action | None, size: tuple[int, int], role: str = "action") -> list[Mark]:
    """What to draw for ``action`` on a ``size`` = (width, height) screenshot.

    Taps are points; swipes and drags arrows from ``point`` to ``end``; a SCROLL the finger stroke
    :func:`~guiagent.actions.gestures.scroll_stroke` performs for it (scrolling down moves the finger up);
    everything else (typed text, keys, buttons, answers, waits, terminations) a caption.
    """
    if action is None:
        return []
    kind = action.type
    if kind in _POINT_ACTIONS:
        return [Mark("tap", role, kind.value, (action.point,), style=kind.value)]
    if kind in (ActionType.SWIPE, ActionType.DRAG):
        return [Mark("stroke", role, kind.value, (action.point, action.end), style=kind.value)]
    if kind is ActionType.SCROLL:
        start, end = scroll_stroke(action.direction, size, anchor=action.point, amount=action.amount)
        return [Mark("stroke", role, f"scroll {action.direction.value}", (start, end), style="scroll")]
    return [Mark("caption", role, describe_action(action), style=kind.value)]


def thought_of(response: str) -> str | None:
    """The reasoning in a raw response: UI-S1's ``<think>`` block, else the text before a Qwen tool call."""
    think = extract_think(response)
    if think is not None:
        return think
    before, found, _ = response.partition("<tool_call>")
    return (before.strip() or None) if found else None


# --- what a page shows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeSummary:
    """One index row: what the filters and the group pages need of a trajectory."""

    episode_id: str
    key: str
    task_id: str
    instruction: str
    outcome: str
    policy_version: str
    rollout: str
    group: str | None
    steps: int
    reward: float | None
    env_id: str

    @property
    def group_key(self) -> str | None:
        return None if self.group is None else page_key(self.group)


def summarize(trajectory: Trajectory) -> EpisodeSummary:
    """The index row of ``trajectory``.

    The rollout kind is ``info["rollout"]`` when it is a name (:func:`guiagent.rollout.recording.record_groups`
    writes it), the group ``info["group"]`` (the farm's GRPO group id).
    """
    info = trajectory.info
    rewards = [s.reward for s in trajectory.steps if s.reward is not None]
    if rewards:
        reward = sum(rewards)
    else:
        reward = trajectory.outcome.reward if trajectory.outcome is not None else None
    rollout, group = info.get("rollout"), info.get("group")
    return EpisodeSummary(
        episode_id=trajectory.episode_id,
        key=page_key(trajectory.episode_id),
        task_id=trajectory.task_id,
        instruction=trajectory.instruction,
        outcome=trajectory.outcome.status.value if trajectory.outcome is not None else NO_VALUE,
        policy_version=trajectory.policy_version,
        rollout=rollout if isinstance(rollout, str) and rollout else NO_VALUE,
        group=group if isinstance(group, str) and group else None,
        steps=len(trajectory),
        reward=reward,
        env_id=trajectory.env_id,
    )


@dataclass(frozen=True)
class StepView:
    """One step as a page draws it."""

    step: Step
    width: int
    height: int
    image: str | None  # store-relative screenshot path
    marks: tuple[Mark, ...]
    action: str
    expert: str | None
    thought: str | None
    info: str  # the step's info as indented JSON ("" when empty)


def step_view(step: Step, expert: Step | None = None) -> StepView:
    """What a page shows of ``step``; ``expert`` is the expert's step at the same index, when known.

    The expert action is ``step.info["expert_action"]`` (an Action's JSON) when the step records one, else
    ``expert.action``; target boxes are the step's own, else the expert step's.
    """
    observation = step.observation
    size = (observation.width, observation.height)
    expert_action = expert.action if expert is not None else None
    recorded = step.info.get("expert_action")
    if isinstance(recorded, Mapping):
        try:
            expert_action = Action.from_json(recorded)
        except ValueError:
            expert_action = None  # shown as the raw JSON in the step's info
    boxes = step.target_boxes or (expert.target_boxes if expert is not None else ())
    marks = [*(Mark("box", "expert", "target", ((x1, y1), (x2, y2))) for x1, y1, x2, y2 in boxes),
             *action_marks(expert_action, size, "expert"), *action_marks(step.action, size)]
    return StepView(
        step=step,
        width=observation.width,
        height=observation.height,
        image=observation.screenshot_path,
        marks=tuple(marks),
        action=describe_action(step.action),
        expert=describe_action(expert_action) if expert_action is not None else None,
        thought=thought_of(step.response),
        info=json.dumps(dict(step.info), indent=2, ensure_ascii=False, sort_keys=True) if step.info else "",
    )


def step_views(store: TrajectoryStore, trajectory: Trajectory) -> list[StepView]:
    """Every step of ``trajectory`` as drawn; the expert steps come from ``info["expert_episode_id"]`` when
    that episode is in the same store (semi-online rollouts on recorded expert episodes)."""
    experts: dict[int, Step] = {}
    expert_id = trajectory.info.get("expert_episode_id")
    if isinstance(expert_id, str) and expert_id and expert_id != trajectory.episode_id and expert_id in store:
        experts = {s.index: s for s in store.get(expert_id).steps}
    return [step_view(step, experts.get(step.index)) for step in trajectory.steps]


# --- loading ------------------------------------------------------------------------------------------------


def open_store(path: str | os.PathLike) -> TrajectoryStore:
    """The trajectory store of a run directory (``RUN/store/``) or the store at ``path`` itself.

    Raises:
        DataError: ``path`` is neither (the message names it).
    """
    text = os.fspath(path)
    if "://" not in text:
        root = Path(text)
        if not root.exists():
            raise DataError("no such run directory or trajectory store", file=text)
        if (root / "store").is_dir() and not (root / "manifest.json").exists():
            root = root / "store"
        text = str(root)
    try:
        return TrajectoryStore(text, create=False)
    except DataError as exc:
        raise DataError(f"not a run directory (RUN/store/) nor a trajectory store: {exc.message}",
                        file=text) from None


class Catalog:
    """The episodes of a store, read once each (stored records never change: the store is idempotent by
    episode id) and listed again on every call, so that episodes stored meanwhile appear."""

    def __init__(self, store: TrajectoryStore):
        self.store = store
        self._trajectories: dict[str, Trajectory] = {}

    def get(self, episode_id: str) -> Trajectory:
        if episode_id not in self._trajectories:
            self._trajectories[episode_id] = self.store.get(episode_id)
        return self._trajectories[episode_id]

    def summaries(self) -> list[EpisodeSummary]:
        """Every complete episode's row, by task, group and episode id."""
        rows = [summarize(self.get(e)) for e in self.store.episode_ids()]
        return sorted(rows, key=lambda r: (r.task_id, r.group or "", r.episode_id))

    def group(self, group: str) -> list[Trajectory]:
        """The trajectories of one group, by episode id (the farm names a group's members ``<group>-<k>``)."""
        members = [self.get(r.episode_id) for r in self.summaries() if r.group == group]
        return sorted(members, key=lambda t: t.episode_id)


# --- rendering ----------------------------------------------------------------------------------------------


def environment():
    """The Jinja2 environment of every ui page: autoescaping on for all templates, whatever their name."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _number
    return env


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _choices(rows: Sequence[EpisodeSummary], field: str) -> list[str]:
    return sorted({getattr(r, field) for r in rows})


def _render_index(env, rows: Sequence[EpisodeSummary], title: str) -> str:
    return env.get_template("index.html").render(
        root="", title=title, rows=rows,
        filters=[("task", "task", _choices(rows, "task_id")), ("outcome", "outcome", _choices(rows, "outcome")),
                 ("policy", "policy version", _choices(rows, "policy_version")),
                 ("rollout", "rollout kind", _choices(rows, "rollout"))])


def _render_episode(env, store: TrajectoryStore, trajectory: Trajectory, title: str) -> str:
    expert = trajectory.info.get("expert_episode_id")
    return env.get_template("episode.html").render(
        root="../", title=title, t=trajectory, summary=summarize(trajectory), views=step_views(store, trajectory),
        expert=expert if isinstance(expert, str) and expert and expert in store else None, page_key=page_key,
        info=json.dumps(dict(trajectory.info), indent=2, ensure_ascii=False, sort_keys=True))


def _render_group(env, catalog: Catalog, group: str, title: str) -> str:
    members = catalog.group(group)
    columns = [(summarize(t), step_views(catalog.store, t)) for t in members]
    rows = max((len(t) for t in members), default=0)
    return env.get_template("group.html").render(root="../", title=title, group=group, columns=columns,
                                                 rows=range(rows))


def write_static(store: TrajectoryStore, out_dir: str | os.PathLike,
                 title: str | None = None) -> list[EpisodeSummary]:
    """Write the viewer's pages (``out_dir/index.html`` and the rest), screenshots, script and style sheet.

    Screenshots are named by a digest of their bytes in the store, so one already in ``out_dir`` is kept
    (writing the viewer of a growing run again copies only the new ones).

    Returns:
        The index rows written, one per episode.

    Raises:
        DataError: a record or screenshot of the store cannot be read (named in the message).
    """
    import shutil

    out, env, catalog = Path(out_dir), environment(), Catalog(store)
    title = title or f"Trajectories — {store.url}"
    rows = catalog.summaries()
    for folder in ("episode", "group", "screens"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    shutil.copytree(STATIC, out / "static", dirs_exist_ok=True)
    (out / "index.html").write_text(_render_index(env, rows, title), encoding="utf-8")
    for row in rows:
        trajectory = catalog.get(row.episode_id)
        (out / "episode" / f"{row.key}.html").write_text(_render_episode(env, store, trajectory, title),
                                                         encoding="utf-8")
        for step in trajectory.steps:
            rel = step.observation.screenshot_path
            if rel is not None and not (out / "screens" / rel).exists():
                (out / "screens" / rel).parent.mkdir(parents=True, exist_ok=True)
                (out / "screens" / rel).write_bytes(store.read_image(rel))
    for group in sorted({r.group for r in rows if r.group is not None}):
        (out / "group" / f"{page_key(group)}.html").write_text(_render_group(env, catalog, group, title),
                                                               encoding="utf-8")
    return rows


def create_app(store: TrajectoryStore, title: str | None = None):
    """The viewer as a Starlette app: the static layout, rendered on each request from the store."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import HTMLResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    env, catalog = environment(), Catalog(store)
    title = title or f"Trajectories — {store.url}"

    def page(html: str) -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})

    # Sync handlers: Starlette runs them in a thread pool, so the store's blocking reads stall no other request.
    def index(request):
        return page(_render_index(env, catalog.summaries(), title))

    def episode(request):
        episode_id = _name_of_key(request.path_params["key"])
        try:
            trajectory = catalog.get(episode_id)
        except KeyError:
            raise HTTPException(404, f"no episode {episode_id!r} in {store.url}") from None
        return page(_render_episode(env, store, trajectory, title))

    def group(request):
        name = _name_of_key(request.path_params["key"])
        if not any(r.group == name for r in catalog.summaries()):
            raise HTTPException(404, f"no group {name!r} in {store.url}")
        return page(_render_group(env, catalog, name, title))

    def screen(request):
        return screenshot_response(store, request.path_params["path"])

    return Starlette(routes=[
        Route("/", index),
        Route("/index.html", index),
        Route("/episode/{key}.html", episode),
        Route("/group/{key}.html", group),
        Route("/screens/{path:path}", screen),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])


def screenshot_response(store: TrajectoryStore, rel: str):
    """A stored screenshot by its store-relative path, as an HTTP response; 404 for a path that leaves the
    store, a missing file, or a file that is not a PNG or JPEG (the store's manifest and records included)."""
    from starlette.exceptions import HTTPException
    from starlette.responses import Response

    try:
        data = store.read_image(rel)
    except (ValueError, DataError) as exc:
        raise HTTPException(404, str(exc)) from None
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        media = "image/png"
    elif data.startswith(b"\xff\xd8\xff"):
        media = "image/jpeg"
    else:
        raise HTTPException(404, f"{rel}: not a screenshot")
    # Named by a digest of their bytes: a screenshot under one name never changes.
    return Response(data, media_type=media, headers={"Cache-Control": "max-age=86400, immutable",
                                                     "X-Content-Type-Options": "nosniff"})


def serve(app, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve a ui app with uvicorn until interrupted (loopback only unless ``host`` says otherwise)."""
    import uvicorn

    # An open event stream (the dashboard's) would hold a graceful shutdown forever: give it 2 s.
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
