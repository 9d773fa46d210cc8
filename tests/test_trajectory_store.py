"""The trajectory store: many writers, idempotent by episode id, readers see only complete episodes."""

from __future__ import annotations

import dataclasses
import io
import json
import multiprocessing
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from guiagent.data.store import EpisodeWriter, TrajectoryStore, iter_episodes, read_manifest
from guiagent.errors import DataError
from guiagent.types import Action, Observation, Outcome, Step, Trajectory

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 4), colour).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(colour: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 4), colour).save(buf, format="JPEG")
    return buf.getvalue()


def _episode(eid: str, screenshots: list[bytes], writer: str = "w0") -> Trajectory:
    steps = tuple(Step(index=i, observation=Observation(width=8, height=4, screenshot=shot, instruction="goal"),
                       action=Action.click(1.0, 2.0), reward=0.5)
                  for i, shot in enumerate(screenshots))
    return Trajectory(episode_id=eid, task_id="MobileSim/SettingsToggleWifi/3", seed=3, env_id="sim-0",
                      policy_version="step-7", steps=steps, outcome=Outcome("success", reward=1.0),
                      info={"writer": writer})


def _replace_observations(trajectory: Trajectory, **values: list) -> Trajectory:
    steps = tuple(dataclasses.replace(step, observation=dataclasses.replace(
        step.observation, **{name: column[i] for name, column in values.items()}))
        for i, step in enumerate(trajectory.steps))
    return dataclasses.replace(trajectory, steps=steps)


@pytest.fixture(params=["path", "file_url", "memory_url"])
def url(request, tmp_path):
    if request.param == "path":
        yield str(tmp_path / "store")
    elif request.param == "file_url":
        yield f"file://{tmp_path}/store"
    else:
        import fsspec

        name = f"memory://trajectories-{uuid.uuid4().hex}"
        yield name
        fsspec.filesystem("memory").rm(name.removeprefix("memory:/"), recursive=True)


def test_put_is_idempotent_and_get_returns_the_episode_with_its_screenshots(url):
    store = TrajectoryStore(url)
    assert len(store) == 0 and store.episode_ids() == [] and list(store) == []
    eid = "MobileSim/SettingsToggleWifi/3~g0"  # '/' and '~' must survive the file name
    red, blue = _png("red"), _jpeg("blue")
    assert store.put(_episode(eid, [red, blue])) is True
    # A redelivered episode (here with other screenshots) never replaces the stored one.
    assert store.put(_episode(eid, [_png("green")], writer="w1")) is False
    assert store.put(_episode("other", [red])) is True

    assert len(store) == 2 and set(store.episode_ids()) == {eid, "other"}
    assert eid in store and "missing" not in store
    stored = store.get(eid)
    assert stored.info == {"writer": "w0"} and len(stored) == 2 and stored.outcome.success
    paths = [s.observation.screenshot_path for s in stored.steps]
    assert all(s.observation.screenshot is None for s in stored.steps)
    assert paths[0].startswith("images/") and paths[0].endswith(".png") and paths[1].endswith(".jpg")
    assert store.read_image(paths[0]) == red and store.read_image(paths[1]) == blue
    inlined = store.get(eid, with_images=True)
    assert [s.observation.screenshot for s in inlined.steps] == [red, blue]
    assert [s.observation.screenshot_path for s in inlined.steps] == paths
    # Nothing but the screenshot's form changed on the way through the store.
    original = _episode(eid, [red, blue])
    assert _replace_observations(inlined, screenshot_path=[None, None]) == original
    with pytest.raises(KeyError):
        store.get("missing")
    with pytest.raises(ValueError, match="inside the store"):
        store.read_image("../elsewhere.png")

    # The readers of converted datasets read the trajectory store too.
    assert read_manifest(url)["layout"] == "trajectories"
    assert {t.episode_id: t for t in iter_episodes(url)} == {eid: stored, "other": store.get("other")}
    assert TrajectoryStore(url).get(eid) == stored  # a second handle on the same store


def test_local_store_is_read_by_iter_episodes_and_opens_images_from_its_root(tmp_path):
    store = TrajectoryStore(tmp_path / "store", dataset="mobilesim-online")
    store.put(_episode("e1", [_png("red")]))
    assert read_manifest(tmp_path / "store")["dataset"] == "mobilesim-online"
    (episode,) = iter_episodes(tmp_path / "store")
    image = episode.steps[0].observation.image(root=str(tmp_path / "store"))
    assert image.size == (8, 4) and image.getpixel((0, 0)) == (255, 0, 0)


def test_a_writer_that_dies_before_the_record_leaves_no_visible_episode_and_a_retry_stores_it(
        tmp_path, monkeypatch):
    store = TrajectoryStore(tmp_path)
    real_link = os.link

    def disk_full_for_records(src, dst, **kwargs):
        if "/trajectories/" in str(dst):
            raise OSError(28, "No space left on device")
        return real_link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", disk_full_for_records)
    with pytest.raises(OSError, match="No space"):
        store.put(_episode("e1", [_png("red"), _png("blue")]))
    assert list((tmp_path / "images").rglob("*.png"))  # the screenshots were written first...
    assert "e1" not in store and len(store) == 0 and list(iter_episodes(tmp_path)) == []  # ...but nobody sees them
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left either
    monkeypatch.setattr(os, "link", real_link)
    assert store.put(_episode("e1", [_png("red"), _png("blue")])) is True
    assert [s.observation.screenshot for s in store.get("e1", with_images=True).steps] == [_png("red"), _png("blue")]


def test_bad_records_are_data_errors_naming_the_file_and_the_episode(tmp_path):
    store = TrajectoryStore(tmp_path)
    store.put(_episode("good", [_png("red")]))
    store.put(_episode("bad/1", [_png("red")]))
    (record,) = [p for p in (tmp_path / "trajectories").iterdir() if p.name != "good.json"]
    record.write_text('{"episode_id": "bad/1", "task_id"')
    with pytest.raises(DataError, match="not a trajectory record") as err:
        store.get("bad/1")
    assert err.value.record == "bad/1" and err.value.file == str(record)
    with pytest.raises(DataError):
        list(iter_episodes(tmp_path))

    record.write_text("[" * 200_000 + "]" * 200_000)  # nested deeper than the JSON reader's stack
    with pytest.raises(DataError, match="not a trajectory record"):
        store.get("bad/1")

    record.write_text((tmp_path / "trajectories" / "good.json").read_text())  # a record under the wrong name
    with pytest.raises(DataError, match="holds episode 'good'"):
        store.get("bad/1")

    image = tmp_path / store.get("good").steps[0].observation.screenshot_path
    image.unlink()
    assert store.get("good").episode_id == "good"  # paths only: nothing is read
    with pytest.raises(DataError, match="screenshot is missing") as err:
        store.get("good", with_images=True)
    assert err.value.record == "good" and err.value.file == str(image)


def test_stores_refuse_each_other_and_readers_never_create_one(tmp_path):
    with EpisodeWriter(tmp_path / "converted", "aitw", source="x"):
        pass
    with pytest.raises(DataError, match="converted dataset"):
        TrajectoryStore(tmp_path / "converted")
    TrajectoryStore(tmp_path / "trajectories")
    with pytest.raises(FileExistsError, match="not part of a store"):
        EpisodeWriter(tmp_path / "trajectories", "aitw", source="x", overwrite=True)
    with pytest.raises(DataError, match="no manifest"):
        TrajectoryStore(tmp_path / "nowhere", create=False)
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(ValueError, match="neither PNG nor JPEG"):
        TrajectoryStore(tmp_path / "trajectories").put(_episode("e", [b"GIF89a..."]))


# --- many processes ---------------------------------------------------------------------------------------

EPISODES = [f"task/{i}" for i in range(8)]
WRITERS = 4
STEPS = 4


def _tagged(writer: str, eid: str, step: int) -> bytes:
    return PNG_MAGIC + f"{writer}|{eid}|{step}".encode()  # the store checks the signature only


def _write_episodes(url: str, writer: str, barrier, results) -> None:
    """One farm worker: every worker runs every episode (redeliveries), all of them at the same moment."""
    store = TrajectoryStore(url)
    for eid in EPISODES:
        barrier.wait(timeout=60)
        shots = [_tagged(writer, eid, step) for step in range(STEPS)]
        results.put((writer, eid, store.put(_episode(eid, shots, writer=writer))))


def _check_complete(store: TrajectoryStore, eid: str) -> None:
    """The episode is whole and every screenshot comes from the writer whose record won."""
    trajectory = store.get(eid, with_images=True)
    writer = trajectory.info["writer"]
    assert [s.observation.screenshot for s in trajectory.steps] == [_tagged(writer, eid, i) for i in range(STEPS)]


def test_concurrent_writers_store_each_episode_once_and_readers_see_only_complete_ones(tmp_path):
    url = str(tmp_path / "store")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(WRITERS), ctx.Queue()
    writers = [ctx.Process(target=_write_episodes, args=(url, f"w{i}", barrier, results)) for i in range(WRITERS)]
    for process in writers:
        process.start()
    seen: set[int] = set()
    reader = None
    deadline = time.monotonic() + 240
    # This process reads while the others write: whatever it lists must be complete.
    while any(p.is_alive() for p in writers) and time.monotonic() < deadline:
        if reader is None and os.path.exists(os.path.join(url, "manifest.json")):
            reader = TrajectoryStore(url, create=False)
        if reader is not None:
            ids = reader.episode_ids()
            seen.add(len(ids))
            for eid in ids:
                _check_complete(reader, eid)
        time.sleep(0.01)
    for process in writers:  # the results are a few bytes: the queue's pipe holds them without a reader
        process.join(timeout=60)
    assert [p.exitcode for p in writers] == [0] * WRITERS
    outcomes = [results.get(timeout=10) for _ in range(WRITERS * len(EPISODES))]
    assert len(seen) > 1, "the reader never ran while the writers wrote"

    store = TrajectoryStore(url, create=False)
    for eid in EPISODES:
        winners = [writer for writer, e, stored in outcomes if e == eid and stored]
        assert len(winners) == 1, (eid, winners)
        assert store.get(eid).info["writer"] == winners[0]
        _check_complete(store, eid)
    assert sorted(store.episode_ids()) == sorted(EPISODES)
    assert sorted(os.listdir(os.path.join(url, "trajectories"))) == sorted(
        e.replace("/", "~2F") + ".json" for e in EPISODES)  # one record each, no temporary files left
    assert read_manifest(url)["layout"] == "trajectories"


# --- S3 (moto's server), when installed -------------------------------------------------------------------

def test_s3_store_through_moto_server():
    pytest.importorskip("s3fs", reason="needs s3fs")
    moto_server = pytest.importorskip("moto.server", reason="needs moto[server]")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}",
                                                                            "region_name": "eu-west-1"}}
        import s3fs

        s3fs.S3FileSystem(**options).mkdir("rollouts")
        store = TrajectoryStore("s3://rollouts/run-1", storage_options=options)
        shots = [_png("red"), _jpeg("blue")]
        assert store.put(_episode("a/1", shots)) is True
        assert store.put(_episode("a/1", [_png("green")])) is False
        reader = TrajectoryStore("s3://rollouts/run-1", storage_options=options, create=False)
        assert reader.episode_ids() == ["a/1"] and "a/1" in reader and len(reader) == 1
        assert [s.observation.screenshot for s in reader.get("a/1", with_images=True).steps] == shots
        assert json.loads(reader.fs.cat_file("rollouts/run-1/manifest.json"))["layout"] == "trajectories"
        # Same episode from several writers at once: S3's conditional put lets exactly one record in.
        barrier = threading.Barrier(WRITERS)

        def put(writer: str) -> bool:
            shots = [_tagged(writer, "race", step) for step in range(STEPS)]
            barrier.wait(timeout=30)
            return store.put(_episode("race", shots, writer=writer))

        with ThreadPoolExecutor(WRITERS) as pool:
            stored = list(pool.map(put, [f"w{i}" for i in range(WRITERS)]))
        assert stored.count(True) == 1
        assert reader.get("race").info["writer"] == f"w{stored.index(True)}"
        _check_complete(reader, "race")
    finally:
        server.stop()
