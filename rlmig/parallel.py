"""Independent jobs fanned out to this process, to local processes, or to Ray.

One mechanism serves every offline fan-out (evaluation cells, oracle labelling): `fan_out(fn, jobs)`
yields ``fn(job)`` for each job, in the order of `jobs`, whichever engine runs them:

- nothing asked: in this process, one job after the other;
- ``workers`` > 1: that many spawned processes on this machine (`concurrent.futures`);
- ``ray``: each job a Ray task (https://docs.ray.io), on an embedded local Ray (``"local"``) or on the
  cluster at an address (``"auto"``, ``"ray://HOST:10001"``, ``"HOST:6379"``). Ray is the optional
  ``distributed`` extra (``pip install 'rlmig[distributed]'``); the cluster's workers need rlmig
  installed at the same version (the image of deploy/ray/).

`fn` must be a module-level function and the jobs picklable. A job's result depends on the job alone,
so the results do not depend on the engine.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from rlmig.errors import RlmigError

J = TypeVar("J")
R = TypeVar("R")

LOCAL = "local"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RlmigError("--ray needs Ray: pip install 'rlmig[distributed]'") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Connect to Ray for the duration of the block (None: nothing to do). ``"local"`` starts an
    embedded Ray on this machine and stops it after; another address connects to that cluster."""
    if address is None:
        yield
        return
    ray = _ray()
    if ray.is_initialized():
        yield
        return
    _reachable(address)
    try:
        if address == LOCAL:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError... by cause
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RlmigError(f"--ray {address}: cannot start or reach Ray: {first[:160]}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _reachable(address: str) -> None:
    """A HOST:PORT address (or ray://HOST:PORT) must accept a connection within 5 s: Ray itself waits
    much longer before it gives up on an address where nothing listens."""
    if address in (LOCAL, "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RlmigError(f"--ray {address[:80]}: expected local, auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise RlmigError(f"--ray {address}: nothing answers there ({exc.strerror or exc})") from None


def fan_out(
    fn: Callable[[J], R], jobs: Sequence[J], *, workers: int = 1, ray: str | None = None
) -> Iterator[R]:
    """``fn(job)`` for every job, in order (see the module docstring). With `ray`, Ray is connected
    for the call unless a `ray_session` is already open."""
    if ray is not None:
        with ray_session(ray):
            api = _ray()
            task = api.remote(fn)
            refs = [task.remote(job) for job in jobs]
            for ref in refs:
                yield api.get(ref)
        return
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield fn(job)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch's threads
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
        yield from pool.map(fn, jobs)
