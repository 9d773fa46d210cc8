"""Convert any supported dataset into the episode store (:mod:`guiagent.data.store`).

:data:`DATASETS` names every reader; :func:`convert` streams one into an :class:`EpisodeWriter`, so a
conversion holds one episode (or one grounding sample) in memory at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from guiagent.data.aitw import read_aitw, read_aitw_seeclick
from guiagent.data.androidcontrol import read_androidcontrol
from guiagent.data.base import Skips
from guiagent.data.odyssey import read_odyssey
from guiagent.data.screenspot import read_screenspot
from guiagent.data.store import EpisodeWriter
from guiagent.data.uis1 import read_uis1
from guiagent.errors import DataError


@dataclass(frozen=True)
class DatasetReader:
    """One convertible dataset.

    Attributes:
        store_name: The ``dataset`` written to the manifest (what evaluation dispatches on).
        read: The reader generator.
        options: Which of ``split_file``, ``split``, ``images`` the reader takes.
        description: One line for ``--help``.
    """

    store_name: str
    read: Callable[..., Iterator[tuple[Any, dict[str, Any]]]]
    options: tuple[str, ...]
    description: str


DATASETS: dict[str, DatasetReader] = {
    "aitw": DatasetReader("aitw", read_aitw, ("split_file", "split"),
                          "AITW official GZIP TFRecords (+ official split JSON)"),
    "aitw_seeclick": DatasetReader("aitw", read_aitw_seeclick, ("images",),
                                   "AITW as SeeClick's instruction-wise split JSON + PNG screenshots"),
    "androidcontrol": DatasetReader("androidcontrol", read_androidcontrol, ("split_file", "split"),
                                    "AndroidControl GZIP TFRecords (+ splits.json)"),
    "odyssey": DatasetReader("odyssey", read_odyssey, ("split_file", "split", "images"),
                             "GUI-Odyssey annotations/ + screenshots/ (+ splits/*.json)"),
    "uis1": DatasetReader("uis1", read_uis1, ("images",), "UI-S1 trajectory JSONL (AndroidControl screenshots)"),
    **{
        name: DatasetReader("screenspot", partial(read_screenspot, benchmark=name), ("images",),
                            f"ScreenSpot{'-Pro' if name.endswith('pro') else ' ' + name[-2:]} JSON or HF parquet")
        for name in ("screenspot_v1", "screenspot_v2", "screenspot_pro")
    },
}


def convert(dataset: str, src: str | os.PathLike, dst: str | os.PathLike, *, split: str | None = None,
            split_file: str | None = None, images: str | None = None, skip_invalid: bool = False,
            limit: int | None = None, overwrite: bool = False,
            progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Convert ``src`` (in ``dataset``'s official format) into a store at ``dst``.

    The store is written beside ``dst`` and swapped in at the end (see :class:`EpisodeWriter`): a failed
    conversion leaves ``dst`` as it was.

    Args:
        dataset: A key of :data:`DATASETS`.
        src: The dataset's files, as its reader documents.
        dst: The store directory.
        split: Split name, recorded in the manifest. For datasets with split files it selects episodes and
            needs ``split_file``; for the others (SeeClick's AITW, UI-S1, ScreenSpot) it only labels the store.
        split_file: The dataset's split JSON (AITW, AndroidControl, GUI-Odyssey).
        images: Screenshot directory for the JSON-based datasets.
        skip_invalid: Skip corrupt records and count them in the manifest instead of failing. An episode (or
            sample) whose id an earlier one has is such a record: the first is kept, later ones are skipped.
        limit: Stop after this many episodes (or samples).
        overwrite: Replace an existing store at ``dst``, once the new conversion has succeeded.
        progress: Called after each unit with ``(units, steps)`` written so far.

    Returns:
        The manifest written, plus ``skipped_errors`` (the first skipped records' messages).

    Raises:
        DataError: a corrupt record or a repeated episode / sample id (without ``skip_invalid``), naming its
            file and record.
        ValueError: unknown dataset, an option this dataset does not take, or ``dst`` is (or contains) the
            source, its split file or its screenshots.
        FileExistsError: ``dst`` holds a store (without ``overwrite``) or files that are not a store.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    reader = DATASETS[dataset]
    if split is not None and split_file is None and "split_file" in reader.options:
        # A split name alone would only label the store; for these datasets it must select episodes.
        raise ValueError(f"{dataset}: --split needs --split-file, the split JSON that lists the split's episodes")
    given = {"split_file": split_file, "images": images}
    if split_file is not None:
        given["split"] = split
    kwargs = {k: v for k, v in given.items() if v is not None}
    unsupported = sorted(set(kwargs) - set(reader.options))
    if unsupported:
        raise ValueError(f"{dataset} takes no {', '.join(unsupported)}")
    destination = os.path.realpath(dst)
    for name, path in (("source", src), ("split file", split_file), ("screenshot directory", images)):
        # Replacing the destination deletes everything in it, the data being converted included.
        if path is not None and os.path.commonpath([destination, os.path.realpath(path)]) == destination:
            raise ValueError(f"the destination {dst} is or contains the {name} {path}; write the store elsewhere")
    skips = Skips(skip_invalid=skip_invalid)
    with EpisodeWriter(dst, reader.store_name, source=str(src), split=split, overwrite=overwrite) as writer:
        for item, files in reader.read(src, skips=skips, **kwargs):
            try:
                if isinstance(item, dict):
                    writer.add_sample(item, files)
                else:
                    writer.add(item, files)
            except DataError as exc:  # a repeated id: evaluation would score its predictions twice
                skips(exc)
                continue
            units = writer.samples or writer.episodes
            if progress is not None:
                progress(units, writer.steps)
            if limit is not None and units >= limit:
                break
        writer.skipped_invalid = skips.count
    return {**writer.manifest(), "skipped_errors": skips.errors}
