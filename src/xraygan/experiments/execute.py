"""Where the experiment's jobs run: in this process, in local worker processes, or as Ray tasks.

An experiment is a list of *groups*, one per fold (whatever the runner calls a fold: a repeat x
fold, or a repeat x fold x fraction): an optional GAN job (train the fold's GAN, or find it
finished) that must end before the group's *units* (one classifier each) start. Groups are
independent of each other, so the GAN jobs of different folds run side by side.

Three backends, each on an existing engine; none schedules anything itself beyond "a fold's units
after its GAN job":

- sequential (``--workers 1``): this process, one job after the other;
- local processes (``--workers N``): :class:`concurrent.futures.ProcessPoolExecutor` with the
  ``spawn`` start method; a GAN job's units are submitted when its future is done;
- Ray (``--ray [ADDRESS]``, the optional ``ray`` extra): one Ray task per job, each declaring one CPU
  (and one GPU when the experiment's device is CUDA); a unit task takes its fold's GAN task as an
  argument, so Ray itself starts it only after that GAN task finished. Without ADDRESS a local
  cluster is started (``--workers N`` caps its CPUs); with one, an existing cluster is joined.

Every job runs on one torch thread in every backend (one CPU slot per job, and the floating-point
reductions of a job do not depend on where it ran), so the three give identical unit files.
Workers receive only the small :class:`Jobs` object and the fold's row indices; each worker
process loads the prepared images once itself (:meth:`Jobs.context`, cached per process). Only the
coordinator holds OUT's lock; workers write their unit files inside OUT, each atomically, and a
unit file that exists is never run again, whichever backend wrote it (resume).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from xraygan.errors import XrayganError

log = logging.getLogger(__name__)


class Jobs(Protocol):
    """What a worker needs to run an experiment's jobs; small and picklable (a config, not data)."""

    def key(self) -> str: ...  # identifies the context, e.g. OUT + the unit fingerprint

    def context(self) -> Any: ...  # loads what every job of this experiment needs (dataset, images)

    def gan(self, ctx: Any, fold: Any) -> None: ...  # train (or find) the fold's GAN

    def unit(self, ctx: Any, fold: Any, seed: int, label: tuple) -> dict: ...  # run one unit, write its file


@dataclass
class Group:
    """One fold's work: its GAN job (when it needs one) and its pending units (seed, label tuple)."""

    fold: Any
    needs_gan: bool
    units: list[tuple[int, tuple]] = field(default_factory=list)
    jobs: Any = None  # this group's Jobs when groups of several configs (e.g. real fractions) run together


@dataclass(frozen=True)
class Backend:
    """``workers`` local processes (1: this process), or Ray at ``ray`` ('local' or an address)."""

    workers: int = 1
    ray: str | None = None
    num_gpus: float = 0.0  # per Ray task (1 when the experiment runs on CUDA)

    @property
    def name(self) -> str:
        if self.ray:
            return "ray (local cluster)" if self.ray == "local" else f"ray ({self.ray})"
        return "sequential" if self.workers <= 1 else f"{self.workers} local processes"


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one torch thread (restored after): the same arithmetic in every backend."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_groups(jobs: Jobs, groups: list[Group], backend: Backend, on_unit: Callable[[dict], None],
               on_gan: Callable[[Any], None] = lambda fold: None, ctx: Any = None) -> None:
    """Run every group's GAN job and units on ``backend``; ``on_unit(result)`` after each unit,
    ``on_gan(fold)`` after each GAN job (in this process). ``ctx``: this process's already loaded
    context for the sequential backend."""
    groups = [g for g in groups if g.units]
    if not groups:
        return
    if backend.ray:
        _run_ray(jobs, groups, backend, on_unit, on_gan)
    elif backend.workers > 1:
        _run_local(jobs, groups, backend.workers, on_unit, on_gan)
    else:
        _run_sequential(jobs, groups, on_unit, on_gan, ctx if ctx is not None else jobs.context())


def run_with_progress(jobs: Jobs, groups: list[Group], backend: Backend, total: int, done_before: int,
                      progress: bool = True, ctx: Any = None) -> None:
    """:func:`run_groups` with one bar for the units (done of ``total``, ETA; the last finished unit
    beside it) and one for the fold GANs while they train; without bars (``--quiet``, no terminal)
    each finished unit is one log line. A unit's result holds ``line`` (what it says) and ``wall_s``."""
    from xraygan.utils.progress import bar, enabled

    n_gans = sum(g.needs_gan for g in groups if g.units)
    units_bar = bar(total=total, initial=done_before, desc="units", unit="unit", position=0, leave=True, disable=not progress)
    gans_bar = bar(total=n_gans, desc="fold GANs", unit="GAN", position=1, disable=not progress or not n_gans)
    if n_gans:
        gans_bar.set_postfix_str(f"training {n_gans} fold GAN(s) first")
    draws = progress and enabled()

    def on_unit(r: dict) -> None:
        units_bar.update(1)
        units_bar.set_postfix_str("last: " + " ".join(r["line"].split()))
        if progress and not draws:
            log.info("%s  (%.1fs)", r["line"], r["wall_s"])

    try:
        run_groups(jobs, groups, backend, on_unit, on_gan=lambda fold: gans_bar.update(1), ctx=ctx)
    finally:
        gans_bar.close()
        units_bar.close()


# --- sequential --------------------------------------------------------------------------------
def _run_sequential(jobs: Jobs, groups: list[Group], on_unit, on_gan, ctx) -> None:
    with one_thread():
        for g in groups:
            gj = g.jobs or jobs
            if g.needs_gan:
                gj.gan(ctx, g.fold)
                on_gan(g.fold)
            for seed, label in g.units:
                on_unit(gj.unit(ctx, g.fold, seed, label))


# --- worker side (local processes and Ray tasks) --------------------------------------------------
_CONTEXTS: dict[str, Any] = {}  # per worker process: the loaded context of the experiment it serves


def _context(jobs: Jobs) -> Any:
    key = jobs.key()
    if key not in _CONTEXTS:
        _CONTEXTS.clear()  # one experiment's images at a time
        _CONTEXTS[key] = jobs.context()
    return _CONTEXTS[key]


def _worker_setup(level: int) -> None:
    """A worker logs warnings only and draws no bars: the coordinator reports the progress."""
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("xraygan").setLevel(max(level, logging.WARNING))


def _worker_gan(jobs: Jobs, fold: Any, level: int = logging.WARNING) -> None:
    _worker_setup(level)
    with one_thread():
        jobs.gan(_context(jobs), fold)


def _worker_unit(jobs: Jobs, fold: Any, seed: int, label: tuple, level: int = logging.WARNING, *after: Any) -> dict:
    _worker_setup(level)
    with one_thread():
        return jobs.unit(_context(jobs), fold, seed, label)


def _level() -> int:
    return logging.getLogger("xraygan").getEffectiveLevel()


# --- local processes -----------------------------------------------------------------------------
def _run_local(jobs: Jobs, groups: list[Group], workers: int, on_unit, on_gan) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    level = _level()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint)
    running: dict = {}

    def submit_units(g: Group) -> None:  # a task carries the Jobs (a config: small) and the fold's rows
        for seed, label in g.units:
            running[pool.submit(_worker_unit, g.jobs or jobs, g.fold, seed, label, level)] = ("unit", g)

    try:
        for g in groups:
            if g.needs_gan:
                running[pool.submit(_worker_gan, g.jobs or jobs, g.fold, level)] = ("gan", g)
            else:
                submit_units(g)
        while running:
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                kind, g = running.pop(fut)
                result = fut.result()  # a worker's error (XrayganError included) is raised here
                if kind == "gan":
                    on_gan(g.fold)
                    submit_units(g)
                else:
                    on_unit(result)
    except BaseException as err:
        from xraygan.utils.locks import Terminated

        if isinstance(err, Exception) and not isinstance(err, Terminated):
            pool.shutdown(wait=True, cancel_futures=True)  # a unit failed: running ones finish (and are kept), the rest never start
        else:  # Ctrl-C or SIGTERM: stop the workers now (a training worker checkpoints on SIGTERM), never wait on them
            _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def _ignore_sigint() -> None:
    """Pool workers leave Ctrl-C to the coordinator, which stops them with SIGTERM (see _stop_workers);
    a training run installs its own graceful handler on top."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(pool, grace: float = 30.0) -> None:
    """Cancel what has not started, send SIGTERM to every worker process (training checkpoints and
    stops; finished units are already written), wait at most ``grace`` seconds, then kill."""
    import time

    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)


# --- Ray -------------------------------------------------------------------------------------------
def import_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray  # noqa: PLC0415 - optional extra
    except ImportError:
        raise XrayganError("--ray: Ray is not installed; install the extra with pip install 'xraygan[ray]' "
                           "(or pip install 'ray>=2.9'), or use --workers N for local processes") from None
    return ray


def _run_ray(jobs: Jobs, groups: list[Group], backend: Backend, on_unit, on_gan) -> None:
    ray = import_ray()
    started = _ray_connect(ray, backend)
    try:
        _ray_submit_and_wait(ray, jobs, groups, backend, on_unit, on_gan)
    finally:
        if started:
            ray.shutdown()


def _ray_connect(ray, backend: Backend) -> bool:
    """Join the cluster (or start a local one); True when this call connected (and must disconnect)."""
    if ray.is_initialized():
        return False
    kw: dict = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": _level() <= logging.INFO}
    if backend.ray == "local":
        kw["address"] = "local"
        if backend.workers > 1:
            kw["num_cpus"] = backend.workers
    else:
        kw["address"] = backend.ray
        if backend.workers > 1:
            log.warning("--workers %d is ignored with --ray %s: the cluster's CPUs decide", backend.workers, backend.ray)
    try:
        ray.init(**kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise XrayganError(f"--ray {backend.ray}: cannot start or join the Ray cluster ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return True


def _ray_submit_and_wait(ray, jobs: Jobs, groups: list[Group], backend: Backend, on_unit, on_gan) -> None:
    opts = {"num_cpus": 1, "num_gpus": backend.num_gpus, "max_retries": 0}
    gan_task = ray.remote(**opts)(_worker_gan)
    unit_task = ray.remote(**opts)(_worker_unit)
    level = _level()
    refs: dict[int, Any] = {}  # one object-store copy of each Jobs
    pending: dict = {}
    for g in groups:
        gj = g.jobs or jobs
        if id(gj) not in refs:
            refs[id(gj)] = ray.put(gj)
        jobs_ref = refs[id(gj)]
        gan_ref = gan_task.remote(jobs_ref, g.fold, level) if g.needs_gan else None
        if gan_ref is not None:
            pending[gan_ref] = ("gan", g)
        after = (gan_ref,) if gan_ref is not None else ()  # Ray starts the unit only after its fold's GAN task
        for seed, label in g.units:
            pending[unit_task.remote(jobs_ref, g.fold, seed, label, level, *after)] = ("unit", g)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                kind, g = pending.pop(ref)
                result = _ray_get(ray, ref)
                on_gan(g.fold) if kind == "gan" else on_unit(result)
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        raise


def _ray_get(ray, ref):
    """``ray.get``, with a task's XrayganError raised as itself (one line, no remote traceback)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, XrayganError):
            raise cause from None
        raise
