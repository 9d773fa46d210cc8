"""Anchor-state keys for GiGPO step groups (arXiv 2505.10978).

GiGPO groups the steps that start from the same environment state. Pixels never repeat exactly on a
GUI (clock, cursor blink, animation frames), so the key is canonical:

* :func:`anchor_key_from_a11y`: a hash of the accessibility tree with the volatile parts removed.
* :func:`perceptual_hash` + :func:`group_by_phash`: a 64-bit perceptual hash of the screenshot and a
  Hamming-distance threshold, when there is no tree.

:func:`anchor_ids` puts them together for a batch of trajectory groups: one id per
:class:`~guiagent.algos.batch.AdvantageBatch` row, ready for ``AdvantageBatch.anchor_ids``.
"""

from __future__ import annotations

import hashlib
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np
import torch

from guiagent.algos.batch import dense_ids
from guiagent.errors import DataError
from guiagent.types import Step, Trajectory

AnchorSource = Literal["auto", "a11y", "phash"]

# Attributes that change while the screen means the same thing: layout jitter while animating or when
# the keyboard opens (bounds), input focus and the cursor, and the node's position among siblings
# (``index`` shifts when an invisible node comes or goes). Everything else (class, resource-id, text,
# content-desc, checked, selected, enabled, ...) is state the agent can change, so it stays.
VOLATILE_ATTRIBUTES = frozenset({"bounds", "focused", "index", "drawing-order"})
# The status bar (clock, battery, notifications) belongs to the system UI, not to the task.
VOLATILE_PACKAGES = frozenset({"com.android.systemui"})
# Clock-like text anywhere in the tree ("9:41", "21:05:33", "9:41 PM") is masked.
_TIME = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AaPp][Mm])?\b")
# Coordinates and sizes in text trees (desktop a11y dumps: "(120, 48)", "[0,0][1080,2400]", "x=12").
_COORDS = re.compile(r"\[\s*-?\d+\s*,\s*-?\d+\s*\]|\(\s*-?\d+(?:\.\d+)?\s*,\s*-?\d+(?:\.\d+)?\s*\)|\b[xywh]=-?\d+\b")


def _canonical_xml(node: ET.Element, out: list[str]) -> None:
    if node.get("package") in VOLATILE_PACKAGES:
        return
    attrs = sorted((k, _TIME.sub("<time>", v)) for k, v in node.attrib.items() if k not in VOLATILE_ATTRIBUTES)
    out.append("<" + node.tag + "".join(f' {k}="{v}"' for k, v in attrs) + ">")
    for child in node:
        _canonical_xml(child, out)
    out.append("</>")


def normalize_a11y(tree_text: str) -> str:
    """Canonical text of an accessibility tree, equal for trees that show the same state.

    uiautomator XML is parsed and re-serialised with attributes sorted, volatile attributes
    (:data:`VOLATILE_ATTRIBUTES`) and system-UI nodes dropped, and clock times masked. Any other text
    (desktop a11y dumps) is normalised line by line: coordinates and times masked, whitespace collapsed.

    Args:
        tree_text: uiautomator XML or an a11y tree as text.

    Returns:
        The canonical text.
    """
    text = tree_text.strip()
    if text.startswith("<"):
        try:
            root = ET.fromstring(text.encode("utf-8"))
        except ET.ParseError:
            pass  # not well-formed XML after all: fall back to the text normalisation below
        else:
            out: list[str] = []
            _canonical_xml(root, out)
            return "".join(out)
    lines = (" ".join(_TIME.sub("<time>", _COORDS.sub("<xy>", line)).split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def anchor_key_from_a11y(tree_text: str) -> str:
    """Anchor key of a state: SHA-256 (first 16 hex digits) of :func:`normalize_a11y`, prefixed ``a11y:``."""
    return "a11y:" + hashlib.sha256(normalize_a11y(tree_text).encode("utf-8")).hexdigest()[:16]


def _bits_to_int(bits: np.ndarray) -> int:
    return int("".join("1" if b else "0" for b in bits.ravel()), 2)


def perceptual_hash(image, method: Literal["dhash", "phash"] = "dhash") -> int:
    """64-bit perceptual hash of a screenshot.

    * ``dhash`` (difference hash): grey 9×8 thumbnail, one bit per horizontal neighbour pair
      (left brighter than right). Cheap, robust to brightness changes and small redraws.
    * ``phash``: grey 32×32 thumbnail, 2-D DCT-II, the 8×8 lowest frequencies compared with their median
      (the DC term replaced by the median so it cannot dominate). Robust to small shifts and blur.

    Args:
        image: A PIL image (any mode).
        method: ``"dhash"`` or ``"phash"``.

    Returns:
        The hash as an int in [0, 2**64).
    """
    from PIL import Image  # deferred: only screenshot anchors need Pillow

    grey = image.convert("L")
    if method == "dhash":
        pixels = np.asarray(grey.resize((9, 8), Image.Resampling.LANCZOS), dtype=np.float64)
        return _bits_to_int(pixels[:, :-1] > pixels[:, 1:])
    if method == "phash":
        pixels = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
        n = np.arange(32)
        # Orthonormal DCT-II basis: basis[k, i] = cos(pi * (2i + 1) * k / 64), row 0 scaled by 1/sqrt(2).
        basis = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / 64.0)
        basis[0] /= np.sqrt(2.0)
        low = (basis @ pixels @ basis.T)[:8, :8].copy()
        low[0, 0] = np.median(low[1:].ravel())
        return _bits_to_int(low > np.median(low))
    raise ValueError(f"method must be 'dhash' or 'phash', got {method!r}")


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def group_by_phash(hashes: Sequence[int], max_distance: int) -> list[int]:
    """Group perceptual hashes by Hamming distance, deterministically.

    Leader clustering in input order: each hash joins the earliest group whose *first* member (its
    leader) is within ``max_distance``; otherwise it starts a new group. Comparing with the leader
    only (not any member) keeps groups from chaining A≈B≈C into one group when A and C are far apart,
    and makes the result depend only on the input order.

    Args:
        hashes: 64-bit hashes, in batch row order.
        max_distance: Largest Hamming distance that still counts as the same state (0 = exact).

    Returns:
        Dense group ids in first-seen order, one per hash.
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    leaders: list[int] = []
    out: list[int] = []
    for h in hashes:
        for gid, leader in enumerate(leaders):
            if hamming(h, leader) <= max_distance:
                out.append(gid)
                break
        else:
            out.append(len(leaders))
            leaders.append(h)
    return out


def anchor_ids(
    groups: Sequence[Sequence[Trajectory]],
    *,
    source: AnchorSource = "auto",
    phash_distance: int = 4,
    image_root: str | os.PathLike | None = None,
) -> torch.Tensor:
    """Anchor-state ids of the steps of ``groups``: ``AdvantageBatch.anchor_ids`` (GiGPO, arXiv 2505.10978).

    Rows come in :meth:`~guiagent.algos.batch.AdvantageBatch.from_trajectories` order (group →
    trajectory → step). States are compared only inside their group (the same task and seed), so two
    groups never share an id. Inside a group every visit of a state gets that state's id, whichever
    trajectory made it and however often: a screen a trajectory comes back to joins the step group of its
    first visit.

    * ``"a11y"``: :func:`anchor_key_from_a11y` of the step's accessibility tree.
    * ``"phash"``: :func:`perceptual_hash` (dhash) of the screenshot, clustered per group by
      :func:`group_by_phash` with ``phash_distance``.
    * ``"auto"``: ``"a11y"`` for a group whose every observation has a tree, else ``"phash"`` for the whole
      group. Deciding per group rather than per step keeps all states of a group keyed one way: a tree
      hash and a screenshot hash of the same screen could never be equal.

    Example: one group, trajectory A visits [home, settings], B visits [home, home] → ids [0, 1, 0, 0].

    Args:
        groups: The comparison groups, as given to ``AdvantageBatch.from_trajectories``.
        source: Which key, see above.
        phash_distance: Largest Hamming distance between screenshot hashes of one state.
        image_root: Directory relative screenshot paths resolve against (the episode store root).

    Returns:
        (N,) int64 dense ids in first-seen order, N = the number of steps.

    Raises:
        DataError: ``"a11y"`` and a step has no tree, or a screenshot cannot be read.
        ValueError: unknown ``source``.
    """
    if source not in ("auto", "a11y", "phash"):
        raise ValueError(f"source must be 'auto', 'a11y' or 'phash', got {source!r}")
    keys: list[tuple[int, Hashable]] = []
    for g, group in enumerate(groups):
        steps = [(traj, step) for traj in group for step in traj.steps]
        has_trees = all(step.observation.a11y_tree is not None for _, step in steps)
        if source == "a11y" or (source == "auto" and has_trees):
            for traj, step in steps:
                if step.observation.a11y_tree is None:
                    raise DataError("anchor source 'a11y': the step has no accessibility tree",
                                    record=f"{traj.episode_id} step {step.index}")
                keys.append((g, anchor_key_from_a11y(step.observation.a11y_tree)))
        else:
            hashes = [_screenshot_hash(traj, step, image_root) for traj, step in steps]
            keys += [(g, k) for k in group_by_phash(hashes, phash_distance)]
    return dense_ids(keys)


def _screenshot_hash(traj: Trajectory, step: Step, image_root: str | os.PathLike | None) -> int:
    try:
        image = step.observation.image(None if image_root is None else str(image_root))
    except OSError as exc:  # a missing or truncated file in the store
        raise DataError(f"cannot read the screenshot: {exc}",
                        record=f"{traj.episode_id} step {step.index}") from exc
    return perceptual_hash(image)
