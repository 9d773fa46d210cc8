"""The on-disk episode stores: the converted-dataset store and the trajectory store for many writers.

A converted dataset (:class:`EpisodeWriter`, one writer) is one directory::

    manifest.json     {"format": "guiagent-episodes", "version": 1, "dataset": ..., "source": ...,
                       "split": ..., "episodes": N, "steps": M, "samples": S, "skipped_invalid": K}
    episodes.jsonl    one ``guiagent.types.dumps(trajectory)`` per line (multi-step datasets), or
    samples.jsonl     one grounding sample per line (single-step datasets: ScreenSpot v1/v2/Pro)
    images/           the screenshots, as files (PNG)

Each trajectory's steps point at their screenshot through ``Observation.screenshot_path``, relative
to the store root (``images/<episode_id>/<step>.png``). Readers stream line by line, so a store of any
size is read in constant memory. The writer fills a hidden directory beside the destination and swaps it
in only when the conversion finished (manifest written), so a failed conversion leaves any old store as it
was and creates nothing.

A trajectory store (:class:`TrajectoryStore`: farm workers, rollouts, many processes on many hosts at once)
is a directory or an fsspec URL (``memory://``, ``s3://bucket/run``) with one file per episode::

    manifest.json                       {"format": "guiagent-episodes", "version": 1,
                                         "layout": "trajectories", "dataset": ...}
    trajectories/<key>.json             one ``dumps(trajectory)`` per episode; ``<key>`` is the episode id
                                        percent-encoded with ``~`` for ``%`` (reversible, one component)
    images/<key>/<step>-<digest>.png    the screenshots (``.jpg`` for JPEG bytes)

:func:`read_manifest` and :func:`iter_episodes` read both layouts, so training and evaluation code that
reads a converted dataset reads a trajectory store too.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import fsspec
from fsspec.implementations.local import LocalFileSystem

from guiagent.errors import DataError
from guiagent.images import encode_png
from guiagent.types import Trajectory, dumps

FORMAT = "guiagent-episodes"
VERSION = 1
MANIFEST = "manifest.json"
EPISODES = "episodes.jsonl"
SAMPLES = "samples.jsonl"
IMAGES = "images"
TRAJECTORIES = "trajectories"  # the trajectory store's record folder (see TrajectoryStore)
LAYOUT_TRAJECTORIES = "trajectories"  # the manifest's "layout" of a trajectory store
_STORE_ENTRIES = (MANIFEST, EPISODES, SAMPLES, IMAGES)

# The fields of one grounding sample, in file order. Fields a benchmark lacks are null.
SAMPLE_FIELDS = (
    "sample_id", "image", "instruction", "bbox_xyxy", "width", "height", "platform", "data_type",
    "data_source", "group", "application", "ui_type", "benchmark",
)
_SAMPLE_REQUIRED = ("sample_id", "image", "instruction", "bbox_xyxy", "width", "height", "benchmark")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str | int) -> str:
    """Turn a dataset id into one safe path component (ids may hold ``/`` or spaces)."""
    text = _UNSAFE.sub("_", str(name)).strip(".")
    if not text:
        raise ValueError(f"id {name!r} gives an empty file name")
    return text


def step_image_path(episode_id: str | int, step: int, ext: str = "png") -> str:
    """Store-relative path of one step's screenshot: ``images/<episode_id>/<step>.png``."""
    return f"images/{safe_name(episode_id)}/{step}.{ext}"


def _check_relative(rel: str, root: Any) -> None:
    """Refuse an image path that would leave the store (absolute, empty, or through ``..``)."""
    if not rel or rel.startswith("/") or ".." in rel.split("/"):
        raise ValueError(f"image path {rel!r} must stay inside the store {root}")


def _check_screenshot_paths(trajectory: Trajectory, root: Any) -> None:
    """Refuse a trajectory whose screenshots lie outside the store (``ValueError`` naming the step).

    The trajectory store's writer and both layouts' readers check, so a record never points a reader at
    an arbitrary file on the reader's machine, and ``put`` never stores a record that ``get`` refuses.
    """
    for i, step in enumerate(trajectory.steps):
        if step.observation.screenshot_path is not None:
            try:
                _check_relative(step.observation.screenshot_path, root)
            except ValueError as exc:
                raise ValueError(f"Trajectory.steps[{i}].observation.screenshot_path: {exc}") from None


def _encode_image(image: Any) -> bytes:
    """Encoded bytes as given, or a PIL image saved as PNG."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if hasattr(image, "save"):
        return encode_png(image)
    raise TypeError(f"an image must be encoded bytes or a PIL image, got {type(image).__name__}")


class EpisodeWriter:
    """Write a store directory: trajectories (or grounding samples), their images, then the manifest.

    Use as a context manager; the manifest is written and the store swapped in when the block exits
    without an exception::

        with EpisodeWriter("out/aitw", "aitw", source="raw/general", split="test") as writer:
            for trajectory, images in reader:
                writer.add(trajectory, images)
            writer.skipped_invalid += reader_skipped

    Everything is written into a hidden directory beside ``root`` (``.<name>.<token>.partial``). Closing
    cleanly writes the manifest there and renames the directory to ``root``; an old store at ``root`` is
    moved aside first and deleted only after the new one is in place. A failed conversion deletes the
    hidden directory, so it leaves ``root`` as it was (an old store intact, or nothing at all). Only a
    killed process leaves a ``.partial`` directory behind.

    Args:
        root: The store directory; it must be missing, an empty directory, or (with ``overwrite``) a store.
        dataset: Dataset name written to the manifest (``"aitw"``, ``"androidcontrol"``, ...).
        source: The original path or name the data came from.
        split: Split name, or None for the whole source.
        overwrite: Replace an existing store in ``root``; otherwise an existing one is an error.

    Attributes:
        episodes: Trajectories written so far.
        steps: Steps written so far.
        samples: Grounding samples written so far.
        skipped_invalid: Corrupt records the reader skipped; the caller adds to it, the manifest records it.

    Ids are unique within a store: evaluation keys predictions by ``episode_id`` (``sample_id``), so a
    repeated id would score one prediction twice. :meth:`add` and :meth:`add_sample` refuse a repeated id
    (and an image path written already, as two ids of one :func:`safe_name` would give) with a DataError,
    before writing anything of that unit.

    Raises:
        FileExistsError: ``root`` holds a store and ``overwrite`` is off, or holds anything that is not part
            of a store (swapping the directory would delete it).
    """

    def __init__(self, root: str | os.PathLike, dataset: str, source: str, split: str | None = None,
                 overwrite: bool = False):
        self.root = Path(root)
        self.dataset = dataset
        self.source = str(source)
        self.split = split
        self.episodes = 0
        self.steps = 0
        self.samples = 0
        self.skipped_invalid = 0
        self._overwrite = overwrite
        self._destination = os.path.realpath(self.root)  # a symlinked store is swapped where it points
        if os.path.lexists(self._destination):
            if not os.path.isdir(self._destination):
                raise FileExistsError(f"{self.root} exists and is not a directory")
            entries = sorted(os.listdir(self._destination))
            foreign = [n for n in entries if n not in _STORE_ENTRIES]
            if foreign:
                raise FileExistsError(f"{self.root} holds files that are not part of a store "
                                      f"({', '.join(foreign[:5])}); write the store to a new or empty directory")
            if entries and not overwrite:
                raise FileExistsError(f"{self.root} already holds a store ({', '.join(entries)}); pass overwrite")
        parent, name = os.path.split(self._destination)
        self._created_parents = _missing_ancestors(parent)
        os.makedirs(parent, exist_ok=True)
        # Beside the destination, so the final rename stays on one filesystem (and is atomic).
        self._root = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:12]}.partial")
        os.mkdir(self._root)
        self._episodes_file: io.TextIOBase | None = None
        self._samples_file: io.TextIOBase | None = None
        self._closed = False
        self._last_dir = ""
        self._ids: set[str] = set()  # episode or sample ids written so far

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(write_manifest=exc_type is None)

    def _claim(self, unit: str, unit_id: str, images: Mapping[str, Any]) -> None:
        """Refuse a repeated id, or an image path an earlier unit wrote, before anything of this unit is."""
        if unit_id in self._ids:
            raise DataError(f"{unit} id {unit_id!r} appears twice; each {unit} of a store needs its own id",
                            file=self.source, record=f"{unit} {unit_id}")
        for rel in images:
            _check_relative(rel, self.root)
            if os.path.lexists(os.path.join(self._root, rel)):
                raise DataError(f"image {rel} was written for an earlier {unit} (ids that differ only in "
                                "characters a file name cannot hold share a path)",
                                file=self.source, record=f"{unit} {unit_id}")
        self._ids.add(unit_id)

    def _write_images(self, images: Mapping[str, Any]) -> None:
        for rel, image in images.items():
            # Plain strings, not Path objects: pathlib interns every path component it parses, which would
            # grow memory with the number of episodes converted.
            path = os.path.join(self._root, rel)
            directory = os.path.dirname(path)
            if directory != self._last_dir:  # an episode's images share a directory: one mkdir for all
                os.makedirs(directory, exist_ok=True)
                self._last_dir = directory
            with open(path, "wb") as f:
                f.write(_encode_image(image))

    def add(self, trajectory: Trajectory, images: Mapping[str, Any] | None = None) -> None:
        """Append one trajectory and write its screenshots.

        Args:
            trajectory: The episode; each step's ``observation.screenshot_path`` is store-relative.
            images: Store-relative path → encoded image bytes or PIL image, for the paths the steps use.

        Raises:
            DataError: the episode id was added already, or one of ``images`` was written already.
        """
        if self._samples_file is not None:
            raise ValueError("this store already holds grounding samples; episodes and samples do not mix")
        self._claim("episode", trajectory.episode_id, images or {})
        self._write_images(images or {})
        if self._episodes_file is None:
            self._episodes_file = open(os.path.join(self._root, EPISODES), "w", encoding="utf-8")
        self._episodes_file.write(dumps(trajectory) + "\n")
        self.episodes += 1
        self.steps += len(trajectory.steps)

    def add_sample(self, sample: Mapping[str, Any], images: Mapping[str, Any] | None = None) -> None:
        """Append one grounding sample (see ``SAMPLE_FIELDS``) and write its image.

        Args:
            sample: ``sample_id``, ``image`` (store-relative), ``instruction``, ``bbox_xyxy`` (device
                pixels), ``width``, ``height`` and ``benchmark`` are required; the other fields of
                ``SAMPLE_FIELDS`` default to null. Unknown fields are an error.
            images: Store-relative path → encoded image bytes or PIL image.

        Raises:
            DataError: the sample id was added already, or its image was written already.
        """
        if self._episodes_file is not None:
            raise ValueError("this store already holds episodes; episodes and samples do not mix")
        unknown = set(sample) - set(SAMPLE_FIELDS)
        if unknown:
            raise ValueError(f"sample {sample.get('sample_id')!r}: unknown field(s) {sorted(unknown)}")
        missing = [k for k in _SAMPLE_REQUIRED if sample.get(k) is None]
        if missing:
            raise ValueError(f"sample {sample.get('sample_id')!r}: missing field(s) {missing}")
        if len(sample["bbox_xyxy"]) != 4:
            raise ValueError(f"sample {sample['sample_id']!r}: bbox_xyxy needs 4 numbers")
        self._claim("sample", str(sample["sample_id"]), images or {})
        self._write_images(images or {})
        if self._samples_file is None:
            self._samples_file = open(os.path.join(self._root, SAMPLES), "w", encoding="utf-8")
        record = {k: sample.get(k) for k in SAMPLE_FIELDS}
        self._samples_file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.samples += 1

    def manifest(self) -> dict[str, Any]:
        """The manifest as it stands now."""
        return {
            "format": FORMAT, "version": VERSION, "dataset": self.dataset, "source": self.source,
            "split": self.split, "episodes": self.episodes, "steps": self.steps, "samples": self.samples,
            "skipped_invalid": self.skipped_invalid,
        }

    def close(self, write_manifest: bool = True) -> None:
        """Close the data files; then write the manifest and swap the store in, or (``write_manifest=False``,
        a failed conversion) delete what was written and leave ``root`` as it was."""
        if self._closed:
            return
        self._closed = True
        for f in (self._episodes_file, self._samples_file):
            if f is not None:
                f.close()
        try:
            if write_manifest:
                with open(os.path.join(self._root, MANIFEST), "w", encoding="utf-8") as f:
                    f.write(json.dumps(self.manifest(), indent=2, ensure_ascii=False) + "\n")
                self._swap_in()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)  # gone already after a successful swap
            if not os.path.isdir(self._destination):  # failed: remove the parents this writer created
                for directory in reversed(self._created_parents):
                    try:
                        os.rmdir(directory)
                    except OSError:
                        break  # not empty: someone else uses it

    def _swap_in(self) -> None:
        """Rename the finished directory to the destination, replacing an old store only after success."""
        try:
            os.rename(self._root, self._destination)  # atomic onto a missing or empty directory
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if not self._overwrite:  # a store appeared at the destination while this one was written
            raise FileExistsError(f"{self.root} already holds a store; pass overwrite")
        parent, name = os.path.split(self._destination)
        old = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:12]}.old")
        # Two renames, not one: POSIX has no atomic exchange of directories. In between, for a moment,
        # the destination is missing (a reader fails loudly, it never sees a mix of old and new).
        os.rename(self._destination, old)
        try:
            os.rename(self._root, self._destination)
        except BaseException:
            os.rename(old, self._destination)
            raise
        shutil.rmtree(old, ignore_errors=True)


def _missing_ancestors(directory: str) -> list[str]:
    """The directories ``os.makedirs(directory)`` would create, outermost first."""
    missing = []
    while directory and not os.path.lexists(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return missing[::-1]


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """Read and check a store's manifest.

    Args:
        root: A store directory, or a trajectory store's fsspec URL.

    Raises:
        DataError: the manifest is missing (an interrupted conversion), not JSON, or not this format.
    """
    fs, base = _filesystem(root)
    return _load_manifest(fs, f"{base}/{MANIFEST}")


def _filesystem(root: str | os.PathLike, storage_options: Mapping[str, Any] | None = None,
                ) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of a path or URL, and the store's path inside it (no trailing slash)."""
    fs, path = fsspec.core.url_to_fs(os.fspath(root), **dict(storage_options or {}))
    return fs, path.rstrip("/")


def _load_manifest(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any]:
    try:
        manifest = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        raise DataError("no manifest: not a guiagent store, or its conversion did not finish", file=path) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable manifest: {exc}", file=path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"not a {FORMAT} manifest", file=path)
    if manifest.get("version") != VERSION:
        raise DataError(f"store version {manifest.get('version')!r}, this guiagent reads {VERSION}", file=path)
    return manifest


def iter_json_lines(path: str | os.PathLike,
                    on_error: Callable[[DataError], None] | None = None) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed JSON) per non-empty line, streaming.

    Args:
        path: A JSONL file (UTF-8).
        on_error: Called with a line's DataError (not UTF-8, not JSON) instead of raising it; reading goes on.
    """
    path = Path(path)
    try:
        f = open(path, "rb")  # decoded line by line, so bytes that are not UTF-8 name their line
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", file=str(path)) from None
    with f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                error = DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path),
                                  record=lineno)
            except ValueError as exc:
                error = DataError(f"not JSON: {exc}", file=str(path), record=lineno)
            else:
                yield lineno, data
                continue
            if on_error is None:
                raise error
            on_error(error)


def iter_episodes(root: str | os.PathLike) -> Iterator[Trajectory]:
    """Stream the trajectories of a store: a converted dataset one line at a time, a trajectory store
    (a directory holding ``trajectories/``, or any URL) one episode file at a time, complete episodes only.

    Screenshot paths stay store-relative: ``step.observation.image(root=str(root))`` opens one in a local
    store; ``TrajectoryStore(url).iter_trajectories(with_images=True)`` reads them from a remote one.

    Raises:
        DataError: a line is not a valid trajectory or repeats an earlier line's episode id (``file`` =
            episodes.jsonl, ``record`` = line number), or a trajectory store's record is not valid (``file`` =
            the record, ``record`` = the episode id).
    """
    if "://" in os.fspath(root) or os.path.isdir(os.path.join(root, TRAJECTORIES)):
        yield from TrajectoryStore(root, create=False)  # one file per id: ids cannot repeat
        return
    path = Path(root) / EPISODES
    if not path.exists() and (Path(root) / MANIFEST).exists():
        return  # a finished store with zero episodes
    first_line: dict[str, int] = {}  # a store written before EpisodeWriter refused repeats may hold some
    for lineno, data in iter_json_lines(path):
        try:
            trajectory = Trajectory.from_json(data)
            _check_screenshot_paths(trajectory, root)
        except (ValueError, TypeError, KeyError) as exc:
            raise DataError(f"not a trajectory: {exc}", file=str(path), record=lineno) from None
        first = first_line.setdefault(trajectory.episode_id, lineno)
        if first != lineno:
            raise DataError(f"episode id {trajectory.episode_id!r} repeats line {first}; convert the dataset "
                            "again", file=str(path), record=lineno)
        yield trajectory


def iter_samples(root: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Stream the grounding samples of a store (dicts with every key of ``SAMPLE_FIELDS``).

    Raises:
        DataError: a line is not a valid sample or repeats an earlier line's ``sample_id`` (``file`` =
            samples.jsonl, ``record`` = line number).
    """
    path = Path(root) / SAMPLES
    if not path.exists() and (Path(root) / MANIFEST).exists():
        return
    first_line: dict[str, int] = {}
    for lineno, data in iter_json_lines(path):
        if not isinstance(data, dict) or set(data) != set(SAMPLE_FIELDS):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise DataError(f"a sample needs exactly the fields {list(SAMPLE_FIELDS)}, got {got}",
                            file=str(path), record=lineno)
        bbox = data["bbox_xyxy"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DataError(f"bbox_xyxy must be 4 numbers, got {bbox!r}", file=str(path), record=lineno)
        first = first_line.setdefault(str(data["sample_id"]), lineno)
        if first != lineno:
            raise DataError(f"sample id {str(data['sample_id'])!r} repeats line {first}; convert the dataset "
                            "again", file=str(path), record=lineno)
        yield data


def _episode_key(episode_id: str) -> str:
    """An episode id as one file-name component, reversibly (:func:`_episode_id` gives it back).

    Percent-encoding with ``~`` in place of ``%``: ``MobileSim/Wifi/3`` → ``MobileSim~2FWifi~2F3``. A ``%``
    in a screenshot path would be decoded by anything that takes the path as a URL (an HTML viewer).
    """
    if not isinstance(episode_id, str) or not episode_id:
        raise ValueError(f"an episode id must be a non-empty string, got {episode_id!r}")
    key = quote(episode_id, safe="").replace("~", "%7E").replace("%", "~")  # keeps A-Z a-z 0-9 _ . -
    if key.startswith("."):  # hidden names are the writers' temporary files
        key = "~2E" + key[1:]
    if len(key) > 200:  # file names are at most 255 bytes, with room for a temporary file's affixes
        raise ValueError(f"episode id {episode_id[:40]!r}... is too long for a file name ({len(key)} > 200)")
    return key


def _episode_id(key: str) -> str:
    return unquote(key.replace("~", "%"))


def _image_ext(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    return None


class TrajectoryStore:
    """The trajectory store: many writers at once, idempotent by ``episode_id``, readers see only complete
    episodes.

    Farm workers (on one host or several) write the episodes they run; trainers and evaluations read them
    while writers write. Addressed by a path or an fsspec URL: a local directory by default, ``file://``,
    ``memory://`` (one process: tests), ``s3://`` when workers run on several hosts (needs ``s3fs``)::

        store = TrajectoryStore("s3://rollouts/run-7", storage_options={"endpoint_url": url})
        store.put(trajectory)               # False: this episode_id is stored already
        for trajectory in store.iter_trajectories(with_images=True):
            ...

    How a write stays safe with concurrent writers:

    1. Screenshots carried as bytes go to image files first, each named by its step and a digest of its
       bytes (``images/<key>/<step>-<digest>.png``). Two runs of one episode (a redelivered task ran twice)
       therefore never overwrite each other's screenshots with different bytes, whichever record wins.
    2. The episode record (observations pointing at those files, ``screenshot=None``) is created only if
       its name is free, in one step. On a local filesystem it is written to a temporary file, fsynced, and
       hard-linked to its name: ``os.link`` fails when the name exists, it never replaces. On other
       filesystems it is fsspec's ``pipe_file(mode="create")`` (fsspec ≥ 2024.12): a conditional put where
       the backend has one (s3fs: ``If-None-Match: *``), else an exists-check before the put, which is best
       effort (two writers of one episode in the same instant may both write it, the later one winning).
    3. Readers list record files only, so an episode appears when its record does, and by then every image
       it names is written. A writer killed between 1 and 2 leaves image files no record names; no reader
       shows them, and the episode's retry still stores it.

    Args:
        url: A directory path or an fsspec URL.
        storage_options: Passed to the fsspec filesystem (credentials, endpoint, ...).
        create: Create the store (manifest, and for a local one its folders) if missing; False opens an
            existing store only (readers).
        dataset: The manifest's ``dataset`` when this call creates the store.

    Attributes:
        url: The store's address as given.
        fs: Its fsspec filesystem.
        manifest: Its manifest (``format``, ``version``, ``layout`` = ``"trajectories"``, ``dataset``).

    Raises:
        DataError: ``url`` holds something other than a trajectory store (a converted dataset, another
            manifest), or (``create=False``) no store at all.
    """

    def __init__(self, url: str | os.PathLike, storage_options: Mapping[str, Any] | None = None, *,
                 create: bool = True, dataset: str = "trajectories"):
        self.url = os.fspath(url)
        self.fs, self._base = _filesystem(self.url, storage_options)
        self._local = isinstance(self.fs, LocalFileSystem)
        manifest_path = self._path(MANIFEST)
        if create:  # never replaces a manifest, so a converted dataset is refused just below
            if self._local:
                os.makedirs(self._path(TRAJECTORIES), exist_ok=True)
            manifest = {"format": FORMAT, "version": VERSION, "layout": LAYOUT_TRAJECTORIES, "dataset": dataset}
            self._create(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
        self.manifest = _load_manifest(self.fs, manifest_path)
        if self.manifest.get("layout") != LAYOUT_TRAJECTORIES:
            raise DataError("a converted dataset's manifest, not a trajectory store's", file=manifest_path)

    def __repr__(self) -> str:
        return f"TrajectoryStore({self.url!r})"

    def _path(self, rel: str) -> str:
        return f"{self._base}/{rel}"

    def _record(self, episode_id: str) -> str:
        return self._path(f"{TRAJECTORIES}/{_episode_key(episode_id)}.json")

    def _exists(self, path: str) -> bool:
        self.fs.invalidate_cache(path.rpartition("/")[0])  # s3fs caches listings: ask the store itself
        return self.fs.exists(path)

    def _create(self, path: str, data: bytes) -> bool:
        """Write ``data`` at ``path`` unless the name is taken; True if this call wrote it."""
        if not self._local:
            try:
                self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            return True
        directory, name = os.path.split(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # the name must never point at data a crash can still lose
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        return True

    def put(self, trajectory: Trajectory) -> bool:
        """Store one episode, unless its ``episode_id`` is stored already.

        Screenshots carried as bytes (``Observation.screenshot``) are written to image files, and the stored
        observations point at them (store-relative ``screenshot_path``, ``screenshot=None``). Observations
        that carry only a ``screenshot_path`` are stored as they are.

        Returns:
            True if this call stored the episode; False if it was stored already (nothing changes).

        Raises:
            ValueError: the episode id is empty or too long for a file name, a screenshot is neither
                PNG nor JPEG, or a ``screenshot_path`` leaves the store (absolute, or through ``..``).
        """
        _check_screenshot_paths(trajectory, self.url)
        record = self._record(trajectory.episode_id)
        if self._exists(record):
            return False  # the common redelivery: do not write images that no record would name
        steps = []
        for step in trajectory.steps:
            data = step.observation.screenshot
            if data is not None:
                rel = self.put_image(trajectory.episode_id, step.index, data)
                observation = dataclasses.replace(step.observation, screenshot=None, screenshot_path=rel)
                step = dataclasses.replace(step, observation=observation)
            steps.append(step)
        stored = dataclasses.replace(trajectory, steps=tuple(steps))
        return self._create(record, (dumps(stored) + "\n").encode("utf-8"))

    def put_image(self, episode_id: str, step: int, data: bytes) -> str:
        """Write one screenshot of ``episode_id`` (named by its step and a digest of its bytes, so concurrent
        writers of one episode never overwrite each other's) and return its store-relative path.

        Raises:
            ValueError: the bytes are neither PNG nor JPEG.
        """
        ext = _image_ext(data)
        if ext is None:
            raise ValueError(f"episode {episode_id!r} step {step}: the screenshot bytes are neither PNG nor JPEG")
        rel = f"{IMAGES}/{_episode_key(episode_id)}/{step}-{hashlib.sha256(data).hexdigest()[:16]}.{ext}"
        self._create(self._path(rel), data)  # taken: the same bytes are there already
        return rel

    def get(self, episode_id: str, with_images: bool = False) -> Trajectory:
        """One stored episode.

        Args:
            episode_id: The episode's id.
            with_images: Also read each screenshot with a store-relative path into ``Observation.screenshot``
                (for readers that cannot open the store's files, e.g. an object store); paths stay as well.

        Raises:
            KeyError: no such episode (or it is not complete yet).
            DataError: the record, or with ``with_images`` one of its screenshots, is missing or corrupt (a
                screenshot path leaving the store included); ``file`` names the file, ``record`` the episode.
        """
        path = self._record(episode_id)
        try:
            trajectory = Trajectory.from_json(json.loads(self.fs.cat_file(path)))
            _check_screenshot_paths(trajectory, self.url)
        except FileNotFoundError:
            raise KeyError(episode_id) from None
        except OSError as exc:
            raise DataError(f"cannot read the episode record: {exc}", file=path, record=episode_id) from None
        # json's errors and UnicodeDecodeError are ValueErrors; nesting deeper than Python's stack is RecursionError
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise DataError(f"not a trajectory record: {exc}", file=path, record=episode_id) from None
        if trajectory.episode_id != episode_id:
            raise DataError(f"the record holds episode {trajectory.episode_id!r}", file=path, record=episode_id)
        if not with_images:
            return trajectory
        steps = []
        for step in trajectory.steps:
            observation = step.observation
            if observation.screenshot is None:
                data = self._read_image(observation.screenshot_path, record=episode_id)
                step = dataclasses.replace(step, observation=dataclasses.replace(observation, screenshot=data))
            steps.append(step)
        return dataclasses.replace(trajectory, steps=tuple(steps))

    def read_image(self, path: str) -> bytes:
        """The encoded bytes of a stored screenshot, by its store-relative path (``screenshot_path``).

        Raises:
            ValueError: the path leaves the store.
            DataError: no such image, or it cannot be read.
        """
        return self._read_image(path, record=None)

    def _read_image(self, rel: str, record: str | None) -> bytes:
        _check_relative(rel, self.url)
        path = self._path(rel)
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            raise DataError("the screenshot is missing", file=path, record=record) from None
        except OSError as exc:
            raise DataError(f"cannot read the screenshot: {exc}", file=path, record=record) from None

    def episode_ids(self) -> list[str]:
        """The ids of the complete episodes, ordered by record name."""
        folder = self._path(TRAJECTORIES)
        self.fs.invalidate_cache(folder)
        try:
            paths = self.fs.ls(folder, detail=False)
        except FileNotFoundError:  # an object store has no folder until its first record
            return []
        names = sorted(p.rpartition("/")[2] for p in paths)
        return [_episode_id(n[:-len(".json")]) for n in names if n.endswith(".json") and not n.startswith(".")]

    def iter_trajectories(self, with_images: bool = False) -> Iterator[Trajectory]:
        """Stream the complete episodes, one record at a time (see :meth:`get`)."""
        for episode_id in self.episode_ids():
            yield self.get(episode_id, with_images=with_images)

    def __iter__(self) -> Iterator[Trajectory]:
        return self.iter_trajectories()

    def __contains__(self, episode_id: object) -> bool:
        return isinstance(episode_id, str) and bool(episode_id) and self._exists(self._record(episode_id))

    def __len__(self) -> int:
        return len(self.episode_ids())
