"""A stored record's screenshot paths stay inside its store: readers refuse an absolute path or one through
``..`` (naming the file and the record), and the trajectory store's writer refuses to store one."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from guiagent.data.store import FORMAT, VERSION, TrajectoryStore, iter_episodes
from guiagent.errors import DataError
from guiagent.types import Action, Observation, Step, Trajectory, dumps

ESCAPES = ["/etc/passwd", "../outside.png", "images/../../outside.png", ""]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 4), "red").save(buf, format="PNG")
    return buf.getvalue()


def _trajectory(path: str) -> Trajectory:
    steps = [Step(i, Observation(8, 4, screenshot_path=p), Action.click(1, 2))
             for i, p in enumerate(["images/ep/0.png", path])]
    return Trajectory("ep", "task", 0, "sim-0", "dataset", steps=tuple(steps))


@pytest.mark.parametrize("path", ESCAPES)
def test_a_converted_store_refuses_a_path_out_of_it(tmp_path: Path, path: str) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"format": FORMAT, "version": VERSION}))
    (tmp_path / "episodes.jsonl").write_text(dumps(_trajectory("images/ep/1.png")) + "\n"
                                             + dumps(_trajectory(path)) + "\n")
    episodes = iter_episodes(tmp_path)
    assert next(episodes).steps[1].observation.screenshot_path == "images/ep/1.png"
    with pytest.raises(DataError, match=r"episodes\.jsonl, record 2: .*Trajectory\.steps\[1\]\.observation\."
                                        r"screenshot_path: image path .* must stay inside the store"):
        next(episodes)


@pytest.mark.parametrize("path", ESCAPES)
def test_a_trajectory_store_refuses_a_path_out_of_it(tmp_path: Path, path: str) -> None:
    store = TrajectoryStore(tmp_path / "store")
    with pytest.raises(ValueError, match=r"Trajectory\.steps\[1\]\.observation\.screenshot_path"):
        store.put(_trajectory(path))
    assert "ep" not in store  # nothing was written
    # A record written by something else is refused when read, naming the record.
    (tmp_path / "store" / "trajectories" / "ep.json").write_text(dumps(_trajectory(path)))
    with pytest.raises(DataError, match=r"ep\.json, record ep: .*screenshot_path: image path"):
        store.get("ep")
    with pytest.raises(DataError, match="must stay inside the store"):
        list(iter_episodes(tmp_path / "store"))


def test_absolute_paths_still_work_in_memory(tmp_path: Path) -> None:
    # Evaluation points observations at the dataset's own files; only stored records must stay inside.
    (tmp_path / "shot.png").write_bytes(_png())
    observation = Observation(8, 4, screenshot_path=str(tmp_path / "shot.png"))
    assert observation.image(root="/somewhere/else").size == (8, 4)
    assert Observation.from_json(json.loads(dumps(observation))) == observation
