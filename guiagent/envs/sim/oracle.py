"""The expert for MobileSim tasks: plans one action at a time from what is on screen.

Every step the planner reads the uiautomator XML of the current screen (never the simulator's
internal state), decides where the task stands, and returns the next action with coordinates at the
centre of the node it wants. Because it re-plans from the screen each step, it recovers when it is
started in the middle of a task or after someone else's wrong action.

It plays through the one agent loop as :class:`guiagent.agent.OracleAgent`::

    trajectory = run_episode(MobileSimEnv(), task, OracleAgent(), policy_version="expert")

:func:`plan_actions` takes any source of UI dumps, so the same planner plays over adb (the dump that
``uiautomator dump`` returns) and in-process.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from guiagent.envs.sim.apps import APPS, KEYBOARD, LAUNCHER
from guiagent.envs.sim.tasks import digits, normalize
from guiagent.errors import ActionError
from guiagent.types import Action, ActionType, Task


@dataclass(frozen=True)
class UINode:
    """One node of a uiautomator dump."""

    text: str
    rid: str
    desc: str
    cls: str
    package: str
    checked: bool
    focused: bool
    scrollable: bool
    clickable: bool
    bounds: tuple[int, int, int, int]

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.bounds
        return (x1 + x2) / 2, (y1 + y2) / 2

    @property
    def height(self) -> int:
        return self.bounds[3] - self.bounds[1]


def _bounds(text: str) -> tuple[int, int, int, int]:
    a, b = text.strip("[]").split("][")
    x1, y1 = (int(v) for v in a.split(","))
    x2, y2 = (int(v) for v in b.split(","))
    return x1, y1, x2, y2


class UIScreen:
    """A parsed uiautomator XML dump with lookups by resource id, text and content description.

    Args:
        xml: The dump.
        size: ``(width, height)`` of the screen, for swipe distances.
    """

    def __init__(self, xml: str, size: tuple[int, int]):
        self.size = size
        root = ET.fromstring(xml.encode("utf-8"))
        self.nodes = [
            UINode(text=e.get("text", ""), rid=e.get("resource-id", ""), desc=e.get("content-desc", ""),
                   cls=e.get("class", ""), package=e.get("package", ""), checked=e.get("checked") == "true",
                   focused=e.get("focused") == "true", scrollable=e.get("scrollable") == "true",
                   clickable=e.get("clickable") == "true", bounds=_bounds(e.get("bounds", "[0,0][0,0]")))
            for e in root.iter("node")
        ]
        self.package = self.nodes[0].package if self.nodes else ""

    def find(self, rid: str | None = None, text: str | None = None, desc: str | None = None) -> list[UINode]:
        """Nodes matching every given field (resource id by suffix after ``:id/``; text case-insensitive)."""
        return [n for n in self.nodes
                if (rid is None or n.rid.endswith(f":id/{rid}"))
                and (text is None or normalize(n.text) == normalize(text))
                and (desc is None or normalize(n.desc) == normalize(desc))]

    def first(self, rid: str | None = None, text: str | None = None, desc: str | None = None) -> UINode | None:
        found = self.find(rid, text, desc)
        return found[0] if found else None

    @property
    def keyboard_shown(self) -> bool:
        return any(n.package == KEYBOARD for n in self.nodes)

    @property
    def dialog_shown(self) -> bool:
        return self.first(rid="parentPanel") is not None


def click(node: UINode) -> Action:
    return Action.click(*node.center)


def back() -> Action:
    return Action.system_button("back")


class Planner:
    """Shared navigation moves; ``memo`` carries what the planner learnt across steps of one episode
    (the direction a list search is going), nothing about the device's internals."""

    def __init__(self, params: dict[str, Any]):
        self.p = params
        self.memo: dict[str, Any] = {}

    def open_app(self, s: UIScreen, package: str) -> Action | None:
        """None when ``package`` is in front, else the next step towards it (home, then its icon)."""
        if s.package == package:
            return None
        icon = s.first(rid="icon", text=APPS[package][0])
        if s.package == LAUNCHER and icon is not None:
            return click(icon)
        return Action.system_button("home")

    def leave(self, s: UIScreen) -> Action:
        """Go up one level: dismiss a dialog or keyboard, else the app bar's up arrow, else Back."""
        up = s.first(rid="up")
        if up is not None and not s.keyboard_shown and not s.dialog_shown:
            return click(up)
        return back()

    def fill(self, s: UIScreen, rid: str, value: str) -> Action | None:
        """None when the field already holds ``value``; else focus it, clear it, or type into it."""
        field = s.first(rid=rid)
        if field is None:
            raise ActionError(f"oracle: no field {rid!r} on screen")
        if field.text == value:
            return None
        if not field.focused:
            return click(field)
        if field.text:
            return click(s.first(rid=rid + "_clear"))
        return Action.type_text(value)

    def reveal(self, s: UIScreen, list_rid: str, match: Callable[[UINode], bool]) -> UINode | Action:
        """The matching row if it is fully visible in the list, else a swipe that brings it closer.

        Rows are searched by scrolling down to the end, then up, remembering which way we were going;
        a row cut by the list's edge is scrolled towards the middle.
        """
        container = s.first(rid=list_rid)
        if container is None:
            raise ActionError(f"oracle: no list {list_rid!r} on screen")
        cx1, cy1, cx2, cy2 = container.bounds
        rows = [n for n in s.nodes if match(n) and cy1 <= n.center[1] < cy2]
        step = (cy2 - cy1) // 2
        cx = (cx1 + cx2) / 2
        if rows:
            row = rows[0]
            # A row cut by the list's edge is shorter than its unclipped siblings.
            full_height = max(n.height for n in s.nodes if n.rid == row.rid)
            inside = row.bounds[1] > cy1 and row.bounds[3] < cy2
            if inside or row.height >= full_height:
                return row
            view_down = row.bounds[3] >= cy2
            shift = min(step, max(row.height, 40) * 1.5)
        else:
            signature = tuple(n.text for n in s.nodes if cy1 <= n.center[1] < cy2)
            going = self.memo.get(list_rid, "down")
            if self.memo.get(list_rid + ":seen") == signature:
                going = "up" if going == "down" else "down"  # the list did not move: we hit an end
            self.memo[list_rid], self.memo[list_rid + ":seen"] = going, signature
            view_down, shift = going == "down", step
        # Scrolling the view down means the finger moves up.
        mid = (cy1 + cy2) / 2
        start, end = (mid + shift / 2, mid - shift / 2) if view_down else (mid - shift / 2, mid + shift / 2)
        return Action.swipe((cx, start), (cx, end), duration=0.3)


# --- Per-template planners --------------------------------------------------------------------------------
# Each returns the next action, or None when the screen shows the task is done. An ANSWER action ends
# the plan (the env records the answer; the generator then terminates).

SETTINGS = "com.android.settings"
CONTACTS = "com.android.contacts"
BROWSER = "com.guiagent.browser"
SHOPPING = "com.guiagent.shopping"
CLOCK = "com.android.deskclock"
CALCULATOR = "com.android.calculator2"


def _set_toggles(pl: Planner, s: UIScreen, targets: list[tuple[str, bool]]) -> Action | None:
    move = pl.open_app(s, SETTINGS)
    if move is not None:
        return move
    if s.first(rid="settings_list") is None:
        return pl.leave(s)
    for key, on in targets:
        row = pl.reveal(s, "settings_list", lambda n, key=key: n.rid.endswith(f":id/{key}"))
        if isinstance(row, Action):
            return row
        switch = s.first(rid=f"switch_{key}")
        if switch.checked != on:
            return click(row)
    return None


def plan_toggle(pl: Planner, s: UIScreen) -> Action | None:
    return _set_toggles(pl, s, [(pl.p["key"], pl.p["on"])])


def plan_two_toggles(pl: Planner, s: UIScreen) -> Action | None:
    return _set_toggles(pl, s, list(zip(pl.p["keys"], pl.p["on"])))


def plan_build_number(pl: Planner, s: UIScreen) -> Action | None:
    move = pl.open_app(s, SETTINGS)
    if move is not None:
        return move
    if s.first(rid="about_list") is not None:
        value = pl.reveal(s, "about_list", lambda n: n.rid.endswith(":id/build_number"))
        if isinstance(value, Action):
            return value
        return Action.answer(s.first(rid="build_number_summary").text)
    if s.first(rid="settings_list") is None:
        return pl.leave(s)
    row = pl.reveal(s, "settings_list", lambda n: n.rid.endswith(":id/about"))
    return row if isinstance(row, Action) else click(row)


def _contact_row(name: str) -> Callable[[UINode], bool]:
    return lambda n: n.rid.endswith(":id/contact_title") and normalize(n.text.replace("★", "")) == normalize(name)


def _open_contact(pl: Planner, s: UIScreen, name: str) -> Action | None:
    """None when ``name``'s detail page is showing; else the next step towards it."""
    move = pl.open_app(s, CONTACTS)
    if move is not None:
        return move
    shown = s.first(rid="name")
    if shown is not None and normalize(shown.text) == normalize(name) and not s.dialog_shown:
        return None
    if s.first(rid="contact_list") is None:
        return pl.leave(s)
    row = pl.reveal(s, "contact_list", _contact_row(name))
    return row if isinstance(row, Action) else click(row)


def _fill_form(pl: Planner, s: UIScreen, values: list[tuple[str, str]]) -> Action:
    for rid, value in values:
        move = pl.fill(s, rid, value)
        if move is not None:
            return move
    return click(s.first(rid="save"))


def plan_add_contact(pl: Planner, s: UIScreen) -> Action | None:
    name, phone = pl.p["name"], pl.p["phone"]
    shown, number = s.first(rid="name"), s.first(rid="phone_title")
    if s.package == CONTACTS and shown and number and normalize(shown.text) == normalize(name) \
            and digits(number.text) == digits(phone):
        return None
    move = pl.open_app(s, CONTACTS)
    if move is not None:
        return move
    title = s.first(rid="title")
    if s.first(rid="edit_name") is not None and title is not None and title.text == "New contact":
        return _fill_form(pl, s, [("edit_name", name), ("edit_phone", phone)])
    if s.first(rid="contact_list") is None:
        return pl.leave(s)
    return click(s.first(rid="add"))


def plan_edit_phone(pl: Planner, s: UIScreen) -> Action | None:
    name, phone = pl.p["name"], pl.p["phone"]
    if s.package == CONTACTS and s.first(rid="edit_phone") is not None:
        field = s.first(rid="edit_name")
        if normalize(field.text) == normalize(name) or pl.memo.get("editing"):
            return _fill_form(pl, s, [("edit_phone", phone)])
        return pl.leave(s)
    move = _open_contact(pl, s, name)
    if move is not None:
        return move
    if digits(s.first(rid="phone_title").text) == digits(phone):
        return None
    pl.memo["editing"] = True
    return click(s.first(rid="edit"))


def plan_delete_contact(pl: Planner, s: UIScreen) -> Action | None:
    name = pl.p["name"]
    if s.dialog_shown and s.package == CONTACTS:
        return click(s.first(text="Delete"))
    if s.package == CONTACTS and s.first(rid="contact_list") is not None:
        # Done once the list has been searched both ways without finding the name.
        if pl.memo.get("deleted"):
            return None
    move = _open_contact(pl, s, name)
    if move is not None:
        return move
    pl.memo["deleted"] = True
    return click(s.first(rid="delete"))


def plan_favorite_contact(pl: Planner, s: UIScreen) -> Action | None:
    move = _open_contact(pl, s, pl.p["name"])
    if move is not None:
        return move
    star = s.first(rid="star")
    return None if star.desc == "Remove from favourites" else click(star)


def plan_answer_phone(pl: Planner, s: UIScreen) -> Action | None:
    move = _open_contact(pl, s, pl.p["name"])
    return move if move is not None else Action.answer(s.first(rid="phone_title").text)


def _browser_search(pl: Planner, s: UIScreen, query: str) -> Action | None:
    """None when the results for ``query`` are showing; else the next step towards them."""
    move = pl.open_app(s, BROWSER)
    if move is not None:
        return move
    bar = s.first(rid="url_bar")
    if bar is None:
        return pl.leave(s)
    if s.first(rid="results") is not None and normalize(bar.text) == normalize(query) and not bar.focused:
        return None
    move = pl.fill(s, "url_bar", query)
    return move if move is not None else Action.system_button("enter")


def plan_search(pl: Planner, s: UIScreen) -> Action | None:
    return _browser_search(pl, s, pl.p["query"])


def _open_result(pl: Planner, s: UIScreen) -> Action | None:
    """None when the wanted result page is open."""
    page = s.first(rid="page_title")
    if s.package == BROWSER and page is not None and page.text == pl.p["title"]:
        return None
    move = _browser_search(pl, s, pl.p["query"])
    if move is not None:
        return move
    row = pl.reveal(s, "results", lambda n: n.rid.endswith(":id/result_title") and n.text == pl.p["title"])
    return row if isinstance(row, Action) else click(row)


def plan_open_result(pl: Planner, s: UIScreen) -> Action | None:
    return _open_result(pl, s)


def plan_bookmark_result(pl: Planner, s: UIScreen) -> Action | None:
    move = _open_result(pl, s)
    if move is not None:
        return move
    mark = s.first(rid="bookmark")
    return None if mark.desc == "Remove bookmark" else click(mark)


def _set_on_row(s: UIScreen, rid: str, row: UINode, checked: bool) -> Action | None:
    """None when the ``rid`` widget on ``row``'s line of a list (its checkbox, its switch) is already
    ``checked``; else a tap on it."""
    widget = next(n for n in s.find(rid=rid) if row.bounds[1] <= n.center[1] < row.bounds[3])
    return None if widget.checked == checked else click(widget)


def _item_row(name: str) -> Callable[[UINode], bool]:
    return lambda n: n.rid.endswith(":id/item_title") and normalize(n.text) == normalize(name)


def _shopping(pl: Planner, s: UIScreen) -> Action | None:
    move = pl.open_app(s, SHOPPING)
    if move is not None:
        return move
    return back() if s.dialog_shown else None


def plan_add_item(pl: Planner, s: UIScreen) -> Action | None:
    move = _shopping(pl, s)
    if move is not None:
        return move
    if pl.memo.get("added"):
        return None
    move = pl.fill(s, "new_item", pl.p["item"])
    if move is not None:
        return move
    pl.memo["added"] = True
    return click(s.first(rid="add"))


def plan_check_item(pl: Planner, s: UIScreen) -> Action | None:
    move = _shopping(pl, s)
    if move is not None:
        return move
    row = pl.reveal(s, "items", _item_row(pl.p["item"]))
    if isinstance(row, Action):
        return row
    return _set_on_row(s, "check", row, True)


def plan_delete_item(pl: Planner, s: UIScreen) -> Action | None:
    if s.package == SHOPPING and s.dialog_shown:
        return click(s.first(text="Delete"))
    move = _shopping(pl, s)
    if move is not None:
        return move
    if pl.memo.get("deleted"):
        return None
    row = pl.reveal(s, "items", _item_row(pl.p["item"]))
    if isinstance(row, Action):
        return row
    pl.memo["deleted"] = True
    return Action.long_press(*row.center, duration=1.0)


def plan_clear_bought(pl: Planner, s: UIScreen) -> Action | None:
    move = _shopping(pl, s)
    if move is not None:
        return move
    if pl.memo.get("cleared"):
        return None
    pl.memo["cleared"] = True
    return click(s.first(rid="clear_done"))


def _time(p: dict) -> str:
    return f"{p['hour']:02d}:{p['minute']:02d}"


def _alarms(pl: Planner, s: UIScreen) -> Action | None:
    move = pl.open_app(s, CLOCK)
    if move is not None:
        return move
    if s.dialog_shown:
        return back()
    return None if s.first(rid="alarm_list") is not None else pl.leave(s)


def _alarm_row(s: UIScreen, pl: Planner) -> UINode | Action:
    return pl.reveal(s, "alarm_list", lambda n: n.rid.endswith(":id/alarm_title") and n.text == _time(pl.p))


def plan_add_alarm(pl: Planner, s: UIScreen) -> Action | None:
    if s.package == CLOCK and s.first(rid="edit_hour") is not None:
        return _fill_form(pl, s, [("edit_hour", str(pl.p["hour"])), ("edit_minute", f"{pl.p['minute']:02d}")])
    move = _alarms(pl, s)
    if move is not None:
        return move
    if any(n.text == _time(pl.p) for n in s.find(rid="alarm_title")):
        return None
    if pl.memo.get("saved"):
        return None
    pl.memo["saved"] = True
    return click(s.first(rid="add_alarm"))


def plan_toggle_alarm(pl: Planner, s: UIScreen) -> Action | None:
    move = _alarms(pl, s)
    if move is not None:
        return move
    row = _alarm_row(s, pl)
    if isinstance(row, Action):
        return row
    return _set_on_row(s, "onoff", row, pl.p["on"])


def plan_delete_alarm(pl: Planner, s: UIScreen) -> Action | None:
    if s.package == CLOCK and s.dialog_shown:
        pl.memo["deleted"] = True
        return click(s.first(text="Delete"))
    move = _alarms(pl, s)
    if move is not None:
        return move
    if pl.memo.get("deleted"):
        return None
    row = _alarm_row(s, pl)
    return row if isinstance(row, Action) else Action.long_press(*row.center, duration=1.0)


_CALC_DESC = {"+": "plus", "×": "multiply", "=": "equals"}


def _calculate(pl: Planner, s: UIScreen, op: str) -> Action | None:
    """None once the display shows ``a op b`` evaluated; presses C first if something else is there."""
    move = pl.open_app(s, CALCULATOR)
    if move is not None:
        return move
    formula, result = s.first(rid="formula").text, s.first(rid="result").text
    wanted = f"{pl.p['a']}{op}{pl.p['b']}"
    if formula == wanted and result:
        return None
    if not wanted.startswith(formula) or result:
        return click(s.first(desc="clear"))
    if formula == wanted:
        return click(s.first(desc="equals"))
    key = wanted[len(formula)]
    return click(s.first(rid=f"digit_{key}") if key.isdigit() else s.first(desc=_CALC_DESC[key]))


def plan_compute_sum(pl: Planner, s: UIScreen) -> Action | None:
    return _calculate(pl, s, "+")


def plan_answer_product(pl: Planner, s: UIScreen) -> Action | None:
    move = _calculate(pl, s, "×")
    return move if move is not None else Action.answer(s.first(rid="result").text)


PLANNERS: dict[str, Callable[[Planner, UIScreen], Action | None]] = {
    "SettingsToggleWifi": plan_toggle, "SettingsToggleBluetooth": plan_toggle,
    "SettingsToggleAirplaneMode": plan_toggle, "SettingsEnableDarkTheme": plan_toggle,
    "SettingsEnableBatterySaver": plan_toggle, "SettingsSetTwoToggles": plan_two_toggles,
    "SettingsAnswerBuildNumber": plan_build_number,
    "ContactsAddContact": plan_add_contact, "ContactsEditPhone": plan_edit_phone,
    "ContactsDeleteContact": plan_delete_contact, "ContactsFavoriteContact": plan_favorite_contact,
    "ContactsAnswerPhone": plan_answer_phone,
    "BrowserSearchQuery": plan_search, "BrowserOpenResult": plan_open_result,
    "BrowserBookmarkResult": plan_bookmark_result,
    "ShoppingAddItem": plan_add_item, "ShoppingCheckItem": plan_check_item, "ShoppingDeleteItem": plan_delete_item,
    "ShoppingClearBought": plan_clear_bought,
    "ClockAddAlarm": plan_add_alarm, "ClockToggleAlarm": plan_toggle_alarm, "ClockDeleteAlarm": plan_delete_alarm,
    "CalculatorComputeSum": plan_compute_sum, "CalculatorAnswerProduct": plan_answer_product,
}


def plan_actions(task: Task, observe: Callable[[], tuple[str, tuple[int, int]]]) -> Iterator[Action]:
    """Expert actions for ``task`` from any screen source: ``observe()`` returns ``(ui_xml, (w, h))``.

    Works over adb as well as in-process: it only needs the uiautomator dump. Ends with a TERMINATE
    (after an ANSWER for answer tasks), or stops after ``task.max_steps`` actions.
    """
    if task.template not in PLANNERS:
        raise ActionError(f"no MobileSim oracle for template {task.template!r}")
    planner, plan = Planner(dict(task.params)), PLANNERS[task.template]
    for _ in range(task.max_steps):
        xml, size = observe()
        action = plan(planner, UIScreen(xml, size))
        if action is None:
            yield Action.terminate("success")
            return
        yield action
        if action.type is ActionType.ANSWER:
            yield Action.terminate("success")
            return


def expert_actions(sim: Any, task: Task) -> Iterator[Action]:
    """Expert actions for ``task`` on the MobileSim ``sim``, each planned from its current UI dump."""
    return plan_actions(task, lambda: (sim.dump_ui_xml(), sim.size))


def target_box(xml: str, size: tuple[int, int], point: tuple[float, float]) -> tuple[int, int, int, int] | None:
    """Bounds ``(x1, y1, x2, y2)`` of the smallest clickable node of a uiautomator dump under ``point``,
    or None when no clickable node covers it (how expert steps get their target element's box)."""
    x, y = point
    hits = [n.bounds for n in UIScreen(xml, size).nodes
            if n.clickable and n.bounds[0] <= x <= n.bounds[2] and n.bounds[1] <= y <= n.bounds[3]]
    return min(hits, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if hits else None
