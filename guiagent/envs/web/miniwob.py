"""MiniWoB++ in headless Chromium: every task the ``miniwob`` package registers, by name, as an :class:`Env`.

One env owns one browser (:class:`~guiagent.envs.web.browser.Browser`) and plays any MiniWoB++ task in it:
``reset(task)`` opens the task's page from the package's own HTML (``file://``; FlightWoB pages through a local
HTTP server of the same files), seeds it with ``task.seed`` and starts an episode. The task is named by
``task.template`` (``"click-test"``, or the gymnasium id ``"miniwob/click-test-v1"``).

Observations are the task area's screenshot (device pixels = the page's CSS pixels, 160x210 for MiniWoB,
375x667 for FlightWoB), the instruction (the page's utterance), and the page's DOM as an accessibility tree
(:mod:`guiagent.envs.web.dom`). Canonical actions go through :func:`guiagent.actions.to_miniwob` to
MiniWoB++'s own action executor. The verdict is the task's own reward: MiniWoB++ ends an episode itself
(the task's check, or its 10 s timer with reward -1), after which actions are refused and ``evaluate``
returns that reward; success means MiniWoB's binary criterion, a raw reward of 1.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from guiagent.actions import to_miniwob
from guiagent.envs.base import Env
from guiagent.envs.web.browser import Browser, lost
from guiagent.envs.web.dom import render_dom_tree
from guiagent.errors import ActionError, ConfigError, DeviceNotReady, DeviceTimeout
from guiagent.images import encode_png
from guiagent.types import Action, ActionType, EpisodeStatus, Observation, Outcome, Task

log = logging.getLogger(__name__)

DEFAULT_TASK = "click-test"
REWARDS = ("raw", "env")


@functools.lru_cache(maxsize=1)
def _registry() -> dict[str, str]:
    """Task name (the page's subdomain, ``click-test``, ``flight.AA``) -> its gymnasium id, for every
    MiniWoB++ environment the installed package registers."""
    import gymnasium
    import miniwob  # noqa: F401  (importing it registers the environments)

    names = {}
    for env_id, spec in gymnasium.envs.registry.items():
        if env_id.startswith("miniwob/"):
            module, _, cls = spec.entry_point.partition(":")
            names[getattr(importlib.import_module(module), cls).subdomain] = env_id
    return names


def miniwob_task_names() -> list[str]:
    """Every registered MiniWoB++ task, by page name (``click-test``), sorted."""
    return sorted(_registry())


def resolve_task_name(name: str) -> str:
    """The page name of a MiniWoB++ task named by page (``click-test``) or gymnasium id
    (``miniwob/click-test-v1``).

    Raises:
        ConfigError: no registered task has that name.
    """
    registry = _registry()
    if name in registry:
        return name
    for page, env_id in registry.items():
        if name == env_id or name == env_id.removeprefix("miniwob/"):
            return page
    raise ConfigError(f"unknown MiniWoB++ task {name!r} ({len(registry)} registered, e.g. "
                      f"{', '.join(sorted(registry)[:5])}; see guiagent.envs.web.miniwob_task_names())")


def miniwob_tasks(names: Sequence[str], seeds: Sequence[int] = (0,), max_steps: int = 15) -> list[Task]:
    """One task per (name, seed): ``Task(task_id="MiniWoB/click-test/3", template="click-test", env="web")``.

    The instruction is empty: the page writes it when the episode starts, and the env's observations carry it.

    Raises:
        ConfigError: a name is not a registered MiniWoB++ task.
    """
    pages = [resolve_task_name(name) for name in names]
    return [Task(task_id=f"MiniWoB/{page}/{seed}", instruction="", seed=seed, env="web", template=page,
                 max_steps=max_steps) for page in pages for seed in seeds]


class MiniWoBEnv(Env):
    """Any MiniWoB++ task in one headless Chromium.

    Args:
        env_id: Device id recorded in trajectories (``web-0``).
        reward: ``"raw"`` (the task's reward without MiniWoB's time penalty: a served policy's latency does not
            change the score) or ``"env"`` (MiniWoB's official, time-scaled reward).
        episode_seconds: MiniWoB's episode time limit in seconds (None: the task's own, 10 s).
        chrome_binary: Chromium executable (default: ``MINIWOB_CHROME_BINARY`` or ``chromium`` on the PATH).
        chromedriver: chromedriver executable (default: ``MINIWOB_CHROMEDRIVER`` or ``chromedriver``).
        timeout: Seconds any browser command may take.
        task: The page opened at start and by ``reset(None)``.
        fresh_page: Load the task's page anew at every reset (about 90 ms more per reset), so that an episode's
            initial state depends on its task and seed only: widgets such as jQuery's datepicker keep state
            across MiniWoB's own episode resets, and a GRPO group's devices ran different tasks before. False
            reuses the open page when the task is the same.

    Raises:
        ConfigError: a bad option, or Chromium/chromedriver not installed.
        DeviceNotReady: the browser or the first page did not load.
    """

    def __init__(self, env_id: str = "web-0", *, reward: str = "raw", episode_seconds: float | None = None,
                 chrome_binary: str | None = None, chromedriver: str | None = None, timeout: float = 30.0,
                 task: str = DEFAULT_TASK, fresh_page: bool = True):
        from miniwob.action import ActionSpaceConfig

        if reward not in REWARDS:
            raise ConfigError(f"web env option 'reward' must be one of {REWARDS}, got {reward!r}")
        if episode_seconds is not None and not episode_seconds > 0:
            raise ConfigError(f"web env option 'episode_seconds' must be > 0, got {episode_seconds!r}")
        self.env_id = env_id
        self.reward = reward
        self.episode_seconds = episode_seconds
        self.fresh_page = fresh_page
        self.answer = None
        self._config = ActionSpaceConfig.get_preset("all_supported")
        self._page: Any = None  # miniwob's SeleniumInstance of the open page, driving our browser
        self._metadata: dict[str, Any] = {"done": False}
        self._episode = False  # an episode was started since the page was opened
        self._http: Any = None  # the HTTP server of FlightWoB pages, once one was opened
        self.browser = Browser(chrome_binary, chromedriver, timeout)
        try:
            self._open(resolve_task_name(task))
        except BaseException:
            self.browser.close()
            raise

    # --- the page -----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _device(self, what: str) -> Iterator[None]:
        """Browser failures as device errors: a timeout as DeviceTimeout, anything else as DeviceLost."""
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except TimeoutException as exc:
            raise DeviceTimeout(f"{self.env_id}: {what} timed out: {exc.msg}") from None
        except (WebDriverException, HTTPError, OSError) as exc:  # chromedriver or Chromium is gone
            raise lost(exc, f"{self.env_id} {what}") from None

    def _open(self, page: str) -> None:
        """Open ``page``'s HTML in the browser (the sync screen, before any episode)."""
        from miniwob.selenium_instance import SeleniumInstance
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.wait import WebDriverWait

        # miniwob's instance drives a browser it did not start: ours, with its process group and reaper.
        base_url = self._flight_server() if page.startswith("flight.") else None
        instance = SeleniumInstance(index=0, subdomain=page, headless=True, base_url=base_url)
        instance.driver = self.browser.driver
        with self._device(f"opening {page}"):
            driver = instance.driver
            # MiniWoB's window size is the page's inner size; headless Chromium keeps room for browser chrome
            # in the outer one (320 outer = 177 inner), which would cut the task area off: add that room.
            width, height = driver.execute_script("return [window.outerWidth - window.innerWidth, "
                                                  "window.outerHeight - window.innerHeight];")
            driver.set_window_size(instance.window_width + width, instance.window_height + height)
            driver.get(instance.url)
            WebDriverWait(driver, 10).until(
                expected_conditions.element_to_be_clickable((By.ID, instance.SYNC_SCREEN_ID)))
            instance.inner_width, instance.inner_height = driver.execute_script(
                "return [window.innerWidth, window.innerHeight];")
        self._page, self._page_name, self._episode = instance, page, False
        self._config.screen_width, self._config.screen_height = instance.task_width, instance.task_height

    def _flight_server(self) -> str:
        """The base URL of this env's HTTP server for the package's HTML (FlightWoB pages cannot load from
        ``file://``). Started on first use, on a free loopback port, silent (miniwob's own logs every file
        request to stderr), and stopped by :meth:`close`."""
        if self._http is None:
            import functools
            import threading
            from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

            from miniwob.selenium_instance import HTML_DIR

            class Quiet(SimpleHTTPRequestHandler):
                def log_message(self, format: str, *args: Any) -> None:
                    pass

            self._http = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(HTML_DIR)))
            threading.Thread(target=self._http.serve_forever, name=f"{self.env_id}-http", daemon=True).start()
        return f"http://127.0.0.1:{self._http.server_address[1]}/"

    @property
    def task_name(self) -> str:
        """The page open in the browser (``click-test``)."""
        return self._page_name

    @property
    def screen_size(self) -> tuple[int, int]:
        return self._page.task_width, self._page.task_height

    @property
    def done(self) -> bool:
        """True once MiniWoB++ ended the episode (its check, or its timer)."""
        return bool(self._metadata.get("done"))

    # --- Env ----------------------------------------------------------------------------------------------

    def reset(self, task: Task | None = None) -> Observation:
        """Open the task's page (anew, with ``fresh_page``), seed it with ``task.seed`` and start an episode.

        ``reset(None)`` reloads the open page (the sync screen): the farm's snapshot-reload recovery.

        Raises:
            ConfigError: the task names no registered MiniWoB++ task.
            DeviceLost: the browser is gone (a restart, i.e. a new env, brings it back).
            DeviceNotReady: the page did not generate its problem.
        """
        self.answer = None
        self._metadata = {"done": False}
        if task is None:
            self._open(self.task_name)
            return self.observe()
        page = resolve_task_name(task.template or task.task_id)
        if self.fresh_page or page != self.task_name:
            self._open(page)
        instance = self._page
        with self._device(f"starting {page} (seed {task.seed})"):
            if self.episode_seconds is not None:
                instance.driver.execute_script("core.EPISODE_MAX_TIME = arguments[0];",
                                               int(1000 * self.episode_seconds))
            try:
                instance.force_stop()
                instance.begin_task(seed=task.seed)
            except RuntimeError as exc:  # miniwob's "does not load properly": WOB_TASK_READY stayed false
                raise DeviceNotReady(f"{self.env_id}: {page} did not start: {exc}") from None
            instance.get_observation(use_cached_fields=False)  # extracts the utterance's fields for the episode
        self._episode = True
        return self.observe()

    def observe(self) -> Observation:
        """The task area's screenshot, the utterance and the DOM tree; ``extras`` hold the task, MiniWoB's
        utterance fields, whether the episode is done and its reward so far."""
        instance = self._page
        with self._device("observe"):
            observation, extra = instance.get_observation(use_cached_fields=True)
            if self._episode and not self.done:
                self._metadata = instance.get_metadata()
        from PIL import Image

        return Observation(
            width=instance.task_width, height=instance.task_height,
            screenshot=encode_png(Image.fromarray(observation["screenshot"])),
            a11y_tree=render_dom_tree(extra["root_dom"]), instruction=observation["utterance"],
            extras={"task": self._page_name, "url": instance.url, "done": self.done,
                    "reward": float(self._metadata.get("raw_reward") or 0.0),
                    "fields": [[str(k), str(v)] for k, v in observation["fields"]]})

    def execute(self, action: Action) -> None:
        """Run one canonical action through MiniWoB++'s executor (a DRAG is mouse down, then up).

        Raises:
            ActionError: no MiniWoB++ equivalent (a swipe, a system button, a scroll without a point), a key
                MiniWoB++ does not allow, a coordinate off the task area, or the episode is already over.
        """
        if action.type is ActionType.ANSWER:
            self.answer = action.text
            return
        if action.type is ActionType.TERMINATE:
            return
        self.check_on_screen(action)
        records = to_miniwob(action)
        if self.done:
            raise ActionError(f"the MiniWoB++ episode is over (reward {self._metadata.get('raw_reward')}, "
                              f"{self._metadata.get('reason') or 'no reason given'}): nothing more to do")
        actions = [self._action(record) for record in records]
        with self._device(f"{action.type.value}"):
            for record in actions:
                self._page.perform(record, self._config)
            if self._episode:
                self._metadata = self._page.get_metadata()

    def _action(self, record: dict[str, Any]) -> dict[str, Any]:
        """A converter record (``{"action_type": "CLICK_COORDS", "coords": [x, y]}``) as a MiniWoB++ action."""
        import numpy as np

        kind = record["action_type"]
        action: dict[str, Any] = {"action_type": self._config.action_types.index(kind)}
        if "coords" in record:
            action["coords"] = np.array(record["coords"], dtype=np.float32)
        if "text" in record:
            action["text"] = record["text"]
        if "key" in record:
            if record["key"] not in self._config.allowed_keys:
                raise ActionError(f"MiniWoB++ does not allow the key {record['key']!r}")
            action["key"] = self._config.allowed_keys.index(record["key"])
        return action

    def evaluate(self, task: Task) -> Outcome:
        """The task's own reward once MiniWoB++ ended the episode; an episode still running has reward 0.

        Success is MiniWoB++'s binary criterion (raw reward 1); ``reward`` is the raw reward, or the
        time-scaled one with ``reward="env"``. The message gives MiniWoB's reason.
        """
        if not self._episode:
            raise ConfigError(f"{self.env_id}: evaluate({task.task_id}) before reset(task)")
        with self._device("evaluate"):
            if not self.done:
                self._metadata = self._page.get_metadata()
        metadata = self._metadata
        if not metadata.get("done"):
            return Outcome(EpisodeStatus.FAILURE, 0.0, "the MiniWoB++ episode had not ended")
        raw = float(metadata["raw_reward"])
        reward = raw if self.reward == "raw" else float(metadata["env_reward"])
        status = EpisodeStatus.SUCCESS if raw >= 1.0 else EpisodeStatus.FAILURE
        return Outcome(status, reward, f"raw reward {raw:g}: {metadata.get('reason') or 'no reason given'}")

    def close(self) -> None:
        self.browser.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
