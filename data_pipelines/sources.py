"""Random-access sources of `SceneRecord`s (grain `RandomAccessDataSource` protocol).

All sources return `SceneRecord`s by integer index, deterministically:
- `SyntheticSource`: renders procedural scene `index` on the fly (no files needed; the default
  embedded dataset), optionally keeping the last `cache_size` scenes.
- `InMemorySource`: a list of records (tests, small converted datasets).
- `ArrayRecordSceneSource`: array_record files of `SceneRecord.to_bytes()` written by
  `data_pipelines.record.write_array_record` (re-exported here); reads through
  `grain.sources.ArrayRecordDataSource` and never imports TensorFlow.
- `TfdsSceneSource`: wraps the dict examples of `tfds.data_source(...)` (a TFDS builder with
  file_format array_record; see data_pipelines/tfds) into records.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Sequence

import grain
from etils import epath

from data_pipelines.record import SceneRecord, write_array_record
from data_pipelines.synthetic.render import render_scene
from data_pipelines.synthetic.scenes import SceneConfig

__all__ = ["ArrayRecordSceneSource", "InMemorySource", "SyntheticSource", "TfdsSceneSource",
           "write_array_record"]


class SyntheticSource(grain.sources.RandomAccessDataSource):
    """Procedural scenes rendered on demand: record i = render_scene(i, ...) (deterministic)."""

    def __init__(self, num_scenes: int, num_views: int = 8, height: int = 224, width: int = 224,
                 seed: int = 0, scene_config: SceneConfig | None = None, cache_size: int = 0,
                 dataset: str = "synthetic", start_index: int = 0):
        if num_scenes < 1:
            raise ValueError(f"num_scenes must be >= 1, got {num_scenes}")
        self.num_scenes, self.num_views = int(num_scenes), int(num_views)
        self.height, self.width, self.seed = int(height), int(width), int(seed)
        self.scene_config, self.dataset = scene_config, dataset
        self.start_index = int(start_index)
        self.cache_size = int(cache_size)
        self._cache: collections.OrderedDict[int, SceneRecord] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, index: int) -> SceneRecord:
        index = int(index)
        if not 0 <= index < self.num_scenes:
            raise IndexError(f"SyntheticSource index {index} out of range [0, {self.num_scenes})")
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
        rec = render_scene(self.start_index + index, self.num_views, self.height, self.width,
                           self.seed, self.scene_config, self.dataset)
        if self.cache_size:
            with self._lock:
                self._cache[index] = rec
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return rec

    def __getstate__(self):  # keep pickles (multiprocessing workers) small; locks don't pickle
        state = dict(self.__dict__)
        state["_cache"] = collections.OrderedDict()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"SyntheticSource(num_scenes={self.num_scenes}, num_views={self.num_views}, "
                f"hw=({self.height}, {self.width}), seed={self.seed})")


class InMemorySource(grain.sources.RandomAccessDataSource):
    """A fixed list of SceneRecords."""

    def __init__(self, records: Sequence[SceneRecord]):
        self.records = list(records)
        if not self.records:
            raise ValueError("InMemorySource needs at least one record")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> SceneRecord:
        return self.records[int(index)]


class ArrayRecordSceneSource(grain.sources.RandomAccessDataSource):
    """Records from array_record files written by `write_array_record` (no TensorFlow)."""

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike]):
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        self.paths = [str(p) for p in paths]
        for p in self.paths:
            if not epath.Path(p).is_file():  # local or remote (gs://, ...) through etils.epath
                raise ValueError(f"ArrayRecordSceneSource: file '{p}' does not exist")
        self._source = grain.sources.ArrayRecordDataSource(self.paths)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> SceneRecord:
        data = self._source[int(index)]
        try:
            return SceneRecord.from_bytes(data)
        except ValueError as e:
            raise ValueError(f"ArrayRecordSceneSource({self.paths}): record {index}: {e}") from e

    def __repr__(self) -> str:
        return f"ArrayRecordSceneSource({self.paths})"


class TfdsSceneSource(grain.sources.RandomAccessDataSource):
    """Wraps a `tfds.data_source(...)` (or any index -> example-dict source) into records."""

    def __init__(self, data_source):
        self._source = data_source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> SceneRecord:
        return SceneRecord.from_example(self._source[int(index)])

    def __repr__(self) -> str:
        return f"TfdsSceneSource({self._source!r})"
