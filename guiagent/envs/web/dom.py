"""The web env's accessibility tree: MiniWoB++'s DOM snapshot as text, and that text read back.

MiniWoB++'s ``core.getDOMInfo()`` walks the page's visible elements (position, size, tag, text, input value,
colours, focus). :func:`render_dom_tree` writes it one element per line, indented two spaces per level::

    body ref=1 box=[0,0,500,320]
      div ref=2 id="wrap" box=[0,0,160,210]
        button ref=5 text="Submit" box=[52,120,56,26]
        input_text ref=6 value="" focused=true box=[10,60,120,22]

Boxes are ``[left, top, width, height]`` in device pixels (the screenshot's own), so a click at a box's
centre is the canonical action that hits the element. Every value is JSON, so :func:`parse_dom_tree` reads
back exactly what was written; agents read the tree only through it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\[[^\]]*\]|\S+)')


@dataclass(frozen=True)
class DomNode:
    """One element of the tree.

    Attributes:
        tag: Lower-case tag; ``input_<type>`` for inputs (``input_text``, ``input_checkbox``); ``t`` for text.
        ref: MiniWoB's element ref (stable within an episode; text nodes count down from -1).
        depth: Nesting level (0 for the root).
        parent: Index of the parent node in the parsed list (None for the root).
        box: ``(left, top, width, height)`` in device pixels.
        text: Text of a leaf element ("" otherwise).
        value: An input's value (its checked state, as a bool, for checkboxes and radios); None otherwise.
        id: The HTML id ("" if none).
        classes: The HTML class attribute ("" if none).
        focused: Whether the element has the keyboard focus.
        bg: Background colour ``#rrggbb`` when it is not transparent, else "".
    """

    tag: str
    ref: int
    depth: int
    parent: int | None
    box: tuple[float, float, float, float]
    text: str = ""
    value: Any = None
    id: str = ""
    classes: str = ""
    focused: bool = False
    bg: str = ""

    @property
    def center(self) -> tuple[float, float]:
        left, top, width, height = self.box
        return left + width / 2, top + height / 2


def _colour(rgba: Any) -> str:
    """``#rrggbb`` of an RGBA tuple of floats in [0, 1] (miniwob's ``bg_color``), "" when transparent."""
    if rgba is None or len(rgba) < 4 or float(rgba[3]) == 0:
        return ""
    return "#" + "".join(f"{round(255 * float(c)):02x}" for c in rgba[:3])


def render_dom_tree(root: Any) -> str:
    """The tree under ``root`` (a ``miniwob.dom.DOMElement``) as text, one element per line (see the module)."""
    lines: list[str] = []

    def visit(element: Any, depth: int) -> None:
        fields = [f"ref={element.ref}"]
        if element.id:
            fields.append(f"id={json.dumps(element.id)}")
        if element.classes:
            fields.append(f"class={json.dumps(str(element.classes))}")
        if element.text:
            fields.append(f"text={json.dumps(element.text, ensure_ascii=False)}")
        if element.value is not None:
            fields.append(f"value={json.dumps(element.value, ensure_ascii=False)}")
        if element.focused:
            fields.append("focused=true")
        bg = _colour(element.bg_color)
        if bg:
            fields.append(f'bg="{bg}"')
        box = [round(float(v), 1) for v in (element.left, element.top, element.width, element.height)]
        fields.append("box=" + json.dumps(box, separators=(",", ":")))
        lines.append("  " * depth + element.tag + " " + " ".join(fields))
        for child in element.children:
            visit(child, depth + 1)

    visit(root, 0)
    return "\n".join(lines)


def parse_dom_tree(text: str) -> list[DomNode]:
    """The nodes of a tree written by :func:`render_dom_tree`, in document order.

    Raises:
        ValueError: a line is not in the format (names the line number).
    """
    nodes: list[DomNode] = []
    stack: list[int] = []  # indices of the open ancestors, one per depth
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        tag, _, rest = line.strip().partition(" ")
        try:
            values = {key: json.loads(raw) for key, raw in _PAIR.findall(rest)}
            box = tuple(float(v) for v in values.pop("box"))
            ref = int(values.pop("ref"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"DOM tree line {number}: {line.strip()[:80]!r}: {exc}") from None
        del stack[depth:]
        nodes.append(DomNode(tag=tag, ref=ref, depth=depth, parent=stack[-1] if stack else None, box=box,
                             text=values.get("text", ""), value=values.get("value"), id=values.get("id", ""),
                             classes=values.get("class", ""), focused=bool(values.get("focused", False)),
                             bg=values.get("bg", "")))
        stack.append(len(nodes) - 1)
    return nodes


def descendants(nodes: list[DomNode], index: int) -> Iterator[DomNode]:
    """The nodes below ``nodes[index]`` (document order)."""
    depth = nodes[index].depth
    for node in nodes[index + 1:]:
        if node.depth <= depth:
            return
        yield node
