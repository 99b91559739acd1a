"""Order-preserving parallel map with a bounded number of results in flight."""

import collections
import concurrent.futures
import os
from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
  """All the cores this process may use."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *,
                workers: Optional[int] = None) -> Iterator[R]:
  """Yields `fn(item)` for each item, in input order, computed on `workers` threads.

  Threads, not processes: PIL decoding and NumPy release the GIL, and threads need no pickling
  or re-import of TensorFlow in children. Unlike `Executor.map`, at most a few results per
  worker wait in memory, so a slow consumer (the TFRecord writer) never holds the whole
  dataset decoded.
  """
  workers = workers or default_workers()
  window = 4 * workers
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) >= window:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()
