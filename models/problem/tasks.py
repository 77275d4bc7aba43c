"""Independent tasks, run in this process or on Ray: each outcome as it finishes, a failure as a value.

`run_tasks(task, shared, items, engine)` calls `task(shared, item)` for every item
and yields `(position of the item, outcome)` as each call finishes, where the
outcome is the task's return value or a `Failure` with its one-line reason.

* `local` runs the tasks one after another in this process, in the items' order,
  and needs nothing beyond the package.
* `ray` runs one Ray task per item. `ray.init()` starts a local Ray unless one is
  running already (then it is used as it is); an `address` joins an existing
  cluster. `shared` goes into the object store once (`ray.put`) and every task
  reads it from there. Outcomes come in the order the tasks finish.

Ctrl-C (KeyboardInterrupt) or `Interrupted` stops the run: Ray tasks not yet
finished are cancelled (`ray.cancel(force=True)`: a running task's worker exits
at once) and the interrupt propagates. Close the generator (`contextlib.closing`)
when stopping early, so that its tasks are cancelled too.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from models.problem.interrupts import Interrupted

ENGINES = ("local", "ray")
WAIT_SECONDS = 0.5  # Ray: the longest wait for results before Python checks Ctrl-C again
CONNECT_SECONDS = 5.0  # Ray: how long a cluster's address may take to accept a connection


class EngineError(Exception):
    """The engine cannot run: Ray is not installed, or the cluster cannot be reached."""


@dataclass(frozen=True)
class Engine:
    """Where tasks run: `local` (in process) or `ray` (at `address`; None: a local Ray, started if none runs)."""

    name: str = "local"
    address: str | None = None


@dataclass(frozen=True)
class Failure:
    """A task that raised: `TypeName: message`, first line only."""

    reason: str


def failure(err: BaseException) -> Failure:
    message = str(err).strip().splitlines()
    return Failure(f"{type(err).__name__}: {message[0]}" if message else type(err).__name__)


def attempt(task: Callable, *args) -> Any:
    """`task(*args)`, or the `Failure` of its exception (an interrupt is not a failure: it propagates)."""
    try:
        return task(*args)
    except (KeyboardInterrupt, Interrupted):
        raise
    except Exception as err:  # the task's own failure, reported as its outcome
        return failure(err)


def run_tasks(task: Callable, shared: Any, items: Iterable, engine: Engine = Engine()) -> Iterator[tuple[int, Any]]:
    """`(position, task(shared, item) or Failure)` for every item, as each finishes (module docstring).
    The Ray engine connects at once (`EngineError` if it cannot); the tasks start on the first `next`."""
    if engine.name == "ray":
        connect_ray(engine.address)
        return run_on_ray(task, shared, list(items))
    return ((position, attempt(task, shared, item)) for position, item in enumerate(items))


def ray_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("ray") is not None


def connect_ray(address: str | None) -> None:
    """Join the Ray at `address`, or start a local one; nothing if this process is connected already."""
    if not ray_installed():
        raise EngineError("Ray is not installed (pip install 'routerplan[ray]')")
    import ray

    if ray.is_initialized():
        return
    if address and ":" in address:
        check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, ValueError, RuntimeError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise EngineError(f"cannot start or join {where}: {failure(err).reason}") from None


def check_reachable(address: str) -> None:
    """A TCP connection to `[ray://]HOST:PORT` opens (Ray itself would retry an unreachable one for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except ValueError:
        raise EngineError(f"the Ray address {address!r} is not HOST:PORT") from None
    except OSError as err:
        raise EngineError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None


def run_on_ray(task: Callable, shared: Any, items: list) -> Iterator[tuple[int, Any]]:
    """One Ray task per item on the connected Ray, `shared` put in the object store once; outcomes as the
    tasks finish."""
    import ray

    remote = ray.remote(task)
    shared_ref = ray.put(shared)
    position_of = {remote.remote(shared_ref, item): position for position, item in enumerate(items)}
    pending = list(position_of)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=WAIT_SECONDS)
            for ref in ready:
                yield position_of[ref], ray_outcome(ref)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def ray_outcome(ref) -> Any:
    """The finished task's value, or the `Failure` of what it raised (or of the worker's loss)."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        return failure(err.cause if err.cause is not None else err)
    except ray.exceptions.RayError as err:
        return failure(err)
