"""A scripted MiniWoB++ expert that reads the page's DOM (the observation's accessibility tree).

It plays like a careful person with the page's source open: each step it reads the tree the env wrote
(:func:`guiagent.envs.web.dom.parse_dom_tree`), the instruction and MiniWoB's utterance fields, and picks the
one canonical action (device pixels, at an element's centre) that moves the task forward; what it did earlier
in the episode is read from the page itself (a field's value, a box's checked state), so a step that did not
take is simply tried again. When MiniWoB++ reports the episode over it declares done; on a task it has no
solver for, or a page it cannot read, it gives up with TERMINATE(failure) and says why.

Tasks it solves (:data:`SOLVERS`): clicks (click-test, click-button, click-link, click-dialog, click-tab,
focus-text), selections (click-option, click-checkboxes, choose-list), typing (enter-text, enter-password,
simple-arithmetic), drags (drag-box) and multi-step forms and navigation (login-user, click-tab-2).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from guiagent.agent.base import Decision
from guiagent.envs.web.dom import DomNode, descendants, parse_dom_tree
from guiagent.types import Action, ActionType, Observation, Step, Task


@dataclass
class Page:
    """What a solver sees at one step: the parsed tree, the instruction, MiniWoB's utterance fields, and a
    scratch dict the solver keeps for the episode (e.g. which tabs it opened)."""

    nodes: list[DomNode]
    instruction: str
    fields: dict[str, str]
    memory: dict[str, Any] = field(default_factory=dict)

    def find(self, tag: str | None = None, *, text: str | None = None, id: str | None = None,
             cls: str | None = None) -> list[DomNode]:
        """Nodes matching every given criterion (``cls``: one of the element's classes)."""
        return [n for n in self.nodes if (tag is None or n.tag == tag) and (text is None or n.text == text)
                and (id is None or n.id == id) and (cls is None or cls in n.classes.split())]

    def one(self, tag: str | None = None, **criteria: Any) -> DomNode:
        """The first node matching; :class:`Unsolvable` (naming the criteria) when there is none."""
        found = self.find(tag, **criteria)
        if not found:
            raise Unsolvable(f"no {tag or 'element'} with {criteria} on the page")
        return found[0]

    def submit(self, text: str = "Submit") -> Action:
        return click(self.one("button", text=text))

    def field(self, key: str) -> str:
        if key not in self.fields:
            raise Unsolvable(f"the utterance has no {key!r} field (fields: {sorted(self.fields)})")
        return self.fields[key]


class Unsolvable(Exception):
    """The page does not hold what the solver needs (the reason goes into the TERMINATE message)."""


def click(node: DomNode) -> Action:
    return Action.click(*node.center)


def fill(node: DomNode, text: str) -> Action | None:
    """The next action that makes input ``node`` hold ``text``: focus it, clear a wrong value, type; None when
    it holds ``text`` already."""
    if node.value == text:
        return None
    if not node.focused:
        return click(node)
    if node.value:
        return Action(ActionType.HOTKEY, keys=("ctrl", "a"))  # typing then replaces the selection
    return Action.type_text(text)


def _labelled(page: Page, tag: str, label: str) -> DomNode:
    """The ``tag`` input inside the <label> whose text is ``label`` (MiniWoB's checkbox and radio lists)."""
    for index, node in enumerate(page.nodes):
        if node.tag == "label":
            inside = list(descendants(page.nodes, index))
            if any(n.text == label for n in inside) or node.text == label:
                inputs = [n for n in inside if n.tag == tag]
                if inputs:
                    return inputs[0]
    raise Unsolvable(f"no {tag} labelled {label!r}")


# --- one solver per task: Page -> the next action (None: the task is complete, declare done) ----------------


def _click_test(page: Page) -> Action:
    return click(page.one("button"))


def _click_button(page: Page) -> Action:
    return click(page.one("button", text=page.field("target")))


def _click_link(page: Page) -> Action:
    return click(page.one("span", text=page.field("target"), cls="alink"))


def _click_dialog(page: Page) -> Action:
    return click(page.one("button", cls="ui-dialog-titlebar-close"))


def _click_tab(page: Page) -> Action:
    match = re.search(r"Tab #\d+", page.instruction)
    if not match:
        raise Unsolvable(f"no tab named in {page.instruction!r}")
    return click(page.one("a", text=match.group(0)))


def _focus_text(page: Page) -> Action:
    return click(page.one("input_text"))


def _click_option(page: Page) -> Action:
    radio = _labelled(page, "input_radio", page.field("target"))
    return page.submit() if radio.value else click(radio)


def _click_checkboxes(page: Page) -> Action:
    targets = [v for k, v in page.fields.items() if k.startswith("target")]
    for label in targets:
        box = _labelled(page, "input_checkbox", label)
        if not box.value:
            return click(box)
    return page.submit()


def _choose_list(page: Page) -> Action:
    # A <select> shows no value in the DOM info, so the page cannot confirm the choice: the steps are
    # counted instead. Focus the list, type the option's name (the list's type-ahead picks it), commit.
    plan = [lambda: click(page.one("select")), lambda: Action.type_text(page.field("target")),
            lambda: Action(ActionType.KEY, keys=("enter",)), page.submit]
    done = page.memory.setdefault("choose_list", 0)
    if done >= len(plan):
        raise Unsolvable("the choice was submitted and the episode did not end")
    page.memory["choose_list"] = done + 1
    return plan[done]()


def _enter_text(page: Page) -> Action:
    return fill(page.one("input_text"), page.field("target")) or page.submit()


def _enter_password(page: Page) -> Action:
    password = page.field("target")
    for node in page.find("input_password"):
        action = fill(node, password)
        if action is not None:
            return action
    return page.submit()


def _login_user(page: Page) -> Action:
    return (fill(page.one("input_text", id="username"), page.field("username"))
            or fill(page.one("input_password", id="password"), page.field("password"))
            or page.submit("Login"))


_OPERATORS: dict[str, Callable[[int, int], int]] = {"+": operator.add, "-": operator.sub, "x": operator.mul,
                                                    "*": operator.mul}


def _simple_arithmetic(page: Page) -> Action:
    problem = page.one("div", id="math-problem").text
    match = re.fullmatch(r"\s*(-?\d+)\s*([-+x*])\s*(-?\d+)\s*=\s*", problem)
    if not match:
        raise Unsolvable(f"cannot read the problem {problem!r}")
    answer = _OPERATORS[match.group(2)](int(match.group(1)), int(match.group(3)))
    return fill(page.one("input_text", id="math-answer"), str(answer)) or page.submit()


def _drag_box(page: Page) -> Action:
    small, large = page.one(id="draggableSmall"), page.one(id="draggableLarge")
    sl, st, sw, sh = small.box
    ll, lt, lw, lh = large.box
    if ll <= sl and lt <= st and sl + sw <= ll + lw and st + sh <= lt + lh:
        return page.submit()
    return Action(ActionType.DRAG, point=small.center, end=large.center)


def _click_tab_2(page: Page) -> Action:
    # Only the open tab's panel has a size, so only its links are in the tree: open each tab in turn.
    target = page.field("target")
    links = page.find("span", text=target, cls="alink")
    if links:
        return click(links[0])
    opened = page.memory.setdefault("tabs", [])
    for tab in page.find("a", cls="ui-tabs-anchor"):
        if tab.text not in opened:
            opened.append(tab.text)
            return click(tab)
    raise Unsolvable(f"no tab holds the link {target!r}")


SOLVERS: dict[str, Callable[[Page], Action]] = {
    "click-test": _click_test, "click-test-2": _click_button, "click-button": _click_button,
    "click-link": _click_link, "click-dialog": _click_dialog, "click-tab": _click_tab, "focus-text": _focus_text,
    "click-option": _click_option, "click-checkboxes": _click_checkboxes, "choose-list": _choose_list,
    "enter-text": _enter_text, "enter-password": _enter_password, "simple-arithmetic": _simple_arithmetic,
    "drag-box": _drag_box, "login-user": _login_user, "click-tab-2": _click_tab_2,
}
"""MiniWoB++ task (page name) -> its solver."""


class MiniWoBDomAgent:
    """Solves the MiniWoB++ tasks of :data:`SOLVERS` from the DOM tree of each observation.

    Works with any env whose observations carry the web env's tree (:mod:`guiagent.envs.web.dom`) and its
    extras (``task``, ``fields``, ``done``).
    """

    def __init__(self) -> None:
        self._memory: dict[str, Any] = {}

    def reset(self, task: Task) -> None:
        self._memory = {}

    def act(self, observation: Observation, history: Sequence[Step]) -> Decision:
        extras = observation.extras
        if extras.get("done"):
            return Decision(Action.terminate("success", "MiniWoB++ ended the episode"))
        name = str(extras.get("task", ""))
        solver = SOLVERS.get(name)
        if solver is None:
            return Decision(Action.terminate("failure", f"no DOM solver for the MiniWoB++ task {name!r}"))
        if observation.a11y_tree is None:
            return Decision(Action.terminate("failure", "the observation has no DOM tree"))
        try:
            page = Page(parse_dom_tree(observation.a11y_tree), observation.instruction,
                        {str(k): str(v) for k, v in extras.get("fields", [])}, self._memory)
            action = solver(page)
        except (Unsolvable, ValueError) as exc:
            return Decision(Action.terminate("failure", f"{name}: {exc}"))
        return Decision(action, info={"solver": name})
