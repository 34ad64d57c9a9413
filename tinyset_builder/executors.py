"""Where build tasks run: in this process, a local process pool (default), or a Ray cluster.

An executor takes a function and a list of independent tasks and yields the function's return
values as tasks finish, in any order. Output never depends on that order: every task writes its
own files, and the build merges the committed result files in a fixed order afterwards, so the
bytes are the same for any executor and any number of workers.

At most a few tasks per worker are in flight at once, so the parent never holds the whole plan's
pending futures (and a worker's memory is that of one task at a time: one decoded image).

Ray is imported only when ``--executor ray`` is chosen. If Ray is already initialised (a script
connected to a cluster, or a test that started a local instance) it is used as is; otherwise
:class:`RayExecutor` starts a local instance with ``workers`` CPUs (``address`` connects to an
existing cluster instead). Every node must see ``RAW`` and ``OUT`` at the same paths (a shared
file system), as with any cluster build.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Literal, Protocol, TypeVar

from tinyset_builder._imports import require
from tinyset_builder.errors import TinysetError

T = TypeVar("T")
R = TypeVar("R")
ExecutorName = Literal["local", "ray"]
IN_FLIGHT_PER_WORKER = 4


class Executor(Protocol):
    """Runs ``fn`` over ``tasks``; yields results in completion order."""

    def map_unordered(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]: ...


class LocalExecutor:
    """In-process for one worker; a process pool for more.

    Start method: ``fork`` on Linux when the parent runs a single Python thread (fast, and a
    script calling the build needs no ``if __name__ == "__main__":`` guard); otherwise
    ``forkserver`` (``spawn`` where that does not exist), because a child forked from a process
    with other threads (rich's refresh thread when a progress bar is live in a terminal) can
    inherit a held lock and hang. ``forkserver`` imports the pipeline once in its server and
    forks each worker from that clean process; as with ``spawn``, the calling script then needs
    the ``__main__`` guard (the ``tinyset`` command has it).
    """

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise TinysetError(f"--workers must be >= 1, got {workers}")
        self.workers = workers

    def map_unordered(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        """Yield ``fn(task)`` for every task as each finishes."""
        if self.workers == 1 or len(tasks) <= 1:
            for t in tasks:
                yield fn(t)
            return
        ctx = _pool_context()
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx) as pool:
            pending: set[Future[R]] = set()
            it = iter(tasks)
            limit = self.workers * IN_FLIGHT_PER_WORKER
            while True:
                while len(pending) < limit:
                    t = next(it, None)
                    if t is None:
                        break
                    pending.add(pool.submit(fn, t))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()


def _pool_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context for the pool (see :class:`LocalExecutor`)."""
    methods = multiprocessing.get_all_start_methods()
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["tinyset_builder.pipeline"])
        return ctx
    return multiprocessing.get_context("spawn")


class RayExecutor:
    """Ray tasks (one CPU each); uses a running Ray instance or starts a local one."""

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        self.workers = workers
        self.address = address

    def map_unordered(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[R]:
        """Yield ``fn(task)`` for every task as each finishes."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        require("ray", extra="ray")
        import ray
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, object] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            elif self.workers:
                kwargs["num_cpus"] = self.workers
            ray.init(**kwargs)
            started = True
        try:
            remote = ray.remote(num_cpus=1, max_retries=2)(fn)
            cpus = int(ray.available_resources().get("CPU", 1)) or 1
            limit = max(1, cpus) * IN_FLIGHT_PER_WORKER
            it = iter(tasks)
            pending: list[object] = []
            while True:
                while len(pending) < limit:
                    t = next(it, None)
                    if t is None:
                        break
                    pending.append(remote.remote(t))
                if not pending:
                    return
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield ray.get(ref)
        finally:
            if started:
                ray.shutdown()


def make_executor(name: str, workers: int = 1, address: str | None = None) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``)."""
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(workers, address)
    raise TinysetError(f"unknown executor {name!r}; use 'local' or 'ray'")
