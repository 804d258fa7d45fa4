"""Caches of built objects (compiled simulators, sweep engines): bounded, least recently used
out first, and kept with the object they belong to, never keyed by ``id()``.

Two kinds:

- `LRU`: a bounded mapping from a hashable key (a content hash, a tuple of options) to a
  built object; the least recently used entry goes when it is full.
- `memo`: the `LRU` that lives on an object (e.g. a frozen `ModelSpec`), so what is built from
  that object dies with it; copies and pickles of the object start without it (the object's
  ``__getstate__`` drops the names that start with `MEMO_PREFIX`, see `without_memos`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

__all__ = ["LRU", "MEMO_PREFIX", "memo", "without_memos"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: attribute names of the caches that `memo` keeps on an object
MEMO_PREFIX = "_memo_"


class LRU(Generic[K, V]):
    """A mapping that keeps at most `maxsize` entries: setting one more drops the least
    recently used (read or set) entry, never all of them.

    Parameters
    ----------
    maxsize : int
        Number of entries kept (>= 1).

    Examples
    --------
    >>> cache = LRU(8)
    >>> sim = cache.get(key)
    >>> if sim is None:
    ...     sim = cache[key] = build()

    Notes
    -----
    Thread-safe: each read or write holds a lock; two threads that miss the same key at
    once may both build it (the later entry stays).
    """

    def __init__(self, maxsize: int):
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"LRU: maxsize = {maxsize!r}; expected a whole number >= 1")
        self.maxsize = maxsize
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, default: V | None = None) -> V | None:
        """The entry under `key` (now the most recently used), or `default`."""
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def __getitem__(self, key: K) -> V:
        with self._lock:
            self._items.move_to_end(key)  # KeyError when missing
            return self._items[key]

    def __setitem__(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def memo(owner: Any, name: str, maxsize: int) -> LRU[Any, Any]:
    """The cache called `name` that lives on `owner` (created on first use).

    Parameters
    ----------
    owner : object with a ``__dict__``
        Frozen dataclasses included (the cache is set with ``object.__setattr__``; it is no
        field, so equality, ``repr`` and ``dataclasses.replace`` do not see it).
    name : str
        Attribute name; starts with `MEMO_PREFIX`.
    maxsize : int
        Entries kept (see `LRU`).
    """
    if not name.startswith(MEMO_PREFIX):
        raise ValueError(f"memo: name {name!r} must start with {MEMO_PREFIX!r}")
    cache = owner.__dict__.get(name)
    if cache is None:
        cache = LRU(maxsize)
        object.__setattr__(owner, name, cache)
    return cache


def without_memos(state: dict[str, Any]) -> dict[str, Any]:
    """An object's ``__dict__`` without the caches of `memo` (for ``__getstate__``)."""
    return {k: v for k, v in state.items() if not k.startswith(MEMO_PREFIX)}
