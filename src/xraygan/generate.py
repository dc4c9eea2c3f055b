"""Generate labelled synthetic X-rays from a trained run (``xraygan generate``).

Two ways in:

- :func:`generate` writes PNGs to ``DIR/<label>/synthetic_000000.png`` (so ``DIR`` is a valid
  ``prepare``/``evaluate`` input) and ``DIR/manifest.csv`` (file, label, seed, run, checkpoint;
  its format version is in ``DIR/.xraygan``: :func:`xraygan.utils.formats.generated_set_marker`).
  The folder name is the label made safe (:func:`xraygan.utils.paths.safe_component`: a label such
  as ``../x`` or ``a/b`` never leaves ``DIR``); the manifest keeps the label's own text.
- :func:`load_generator` returns a :class:`Sampler` for code that wants tensors::

      s = load_generator("runs/cxr", checkpoint="latest")
      x = s.sample(16, labels="PNEUMONIA", seed=0)      # (16, 1, S, S) float in [-1, 1], CPU
      x = s.sample(100)                                  # classes in equal shares (i % n_classes)

Seeds: image ``i`` of a call with seed ``S`` uses its own ``torch.Generator`` seeded with
:func:`image_seed` ``(S, i)`` for its latent, and (without a fixed label) label ``i % n_classes``,
so the first 37 images of ``n=100`` are the images of ``n=37``. The EMA generator is used when the
run has one; it is evaluated in eval mode with BatchNorm statistics recomputed at save time.
"""
from __future__ import annotations

import csv
import io
import threading
from pathlib import Path

import numpy as np

from xraygan.errors import UsageError
from xraygan.run import Run
from xraygan.training.sampler import UNCONDITIONAL_FOLDER, Sampler, image_seed, save_grid, to_uint8
from xraygan.utils.fs import locked_output
from xraygan.utils.runtime import make_module_callable

__all__ = ["UNCONDITIONAL_FOLDER", "Sampler", "generate", "image_seed", "load_generator", "save_grid", "to_uint8"]


def load_generator(run: str | Path, checkpoint: str | Path = "latest", device: str = "auto", ema: bool = True) -> Sampler:
    """Load the (EMA) generator of ``run`` from ``checkpoint`` (``latest``, ``best`` or a path); see :class:`xraygan.run.Run`."""
    return Run(run).sampler(checkpoint, device, ema)


def _png_bytes(img: np.ndarray, meta: dict[str, str]) -> bytes:
    """An 8-bit grayscale PNG of ``img`` (H, W) uint8 with ``meta`` as text chunks (Pillow writes
    tEXt, or iTXt for text beyond Latin-1). Called on the writer thread: Pillow's encoder releases
    the GIL, so encoding overlaps with sampling the next batch."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in meta.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _open_sampler(run: str | Path | None, pretrained: str | None, checkpoint: str | Path,
                  device: str) -> tuple[Sampler, str, str]:
    """(sampler, run column, checkpoint column) for a run folder or a shipped pretrained model."""
    if (run is None) == (pretrained is None):
        raise UsageError("generate: give either a RUN folder or --pretrained NAME (see `xraygan pretrained`), "
                           + ("not both" if run is not None else "none was given"))
    if pretrained is not None:
        if str(checkpoint) != "latest":
            raise UsageError(f"generate: --checkpoint {checkpoint} applies to a RUN folder; a --pretrained model "
                               "has a single checkpoint, so drop --checkpoint")
        sampler = Run.pretrained(pretrained).sampler(device=device)
        return sampler, str(sampler.run), str(sampler.checkpoint)
    sampler = load_generator(run, checkpoint, device)
    return sampler, str(Path(run).resolve()), str(Path(sampler.checkpoint).resolve())


@locked_output("out", inputs=lambda a: [a["run"]])  # one writer per output folder (lock beside it: see xraygan.utils.fs)
def generate(run: str | Path | None, n: int, out: str | Path, label: str | int | None = None, seed: int = 0,
             checkpoint: str | Path = "latest", truncation: float | None = None, force: bool = False,
             device: str = "auto", batch: int = 64, fmt: str = "png", pretrained: str | None = None) -> Path:
    """Write ``n`` synthetic images of ``run`` to ``out`` (see the module docstring); returns ``out``.

    ``fmt="dicom"`` writes Secondary Capture DICOM files marked synthetic instead of PNGs
    (:mod:`xraygan.export.dicom`; needs the ``dicom`` extra). ``pretrained=NAME`` (with ``run=None``)
    samples a model shipped in the package (:mod:`xraygan.pretrained`); the manifest's run column
    then reads ``pretrained:NAME``.
    """
    from xraygan import __version__
    from xraygan.utils.formats import generated_set_marker
    from xraygan.utils.fs import check_output_dir, staged_output_dir

    if n < 1:
        raise UsageError(f"--n {n}: must be at least 1")
    if fmt not in ("png", "dicom"):
        raise UsageError(f"--format {fmt}: choose png or dicom")
    inputs = [run] if run is not None else []
    check_output_dir(out, force, kind="generated", inputs=inputs)
    sampler, run_s, ckpt_s = _open_sampler(run, pretrained, checkpoint, device)
    labels = sampler.labels_for(n, label)
    names = sampler.label_names
    from xraygan.utils.paths import path_under, unique_components

    folders = unique_components(names)  # label -> safe, distinct folder name
    dicom = None
    if fmt == "dicom":  # created before any image: fails early when pydicom is missing
        from xraygan.export.dicom import SyntheticDicomWriter

        dicom = SyntheticDicomWriter(run_name=Path(run_s).name, checkpoint=Path(ckpt_s).name)
    with staged_output_dir(out, force, kind="generated", inputs=inputs, marker=generated_set_marker()) as stage:
        dirs = {}  # label -> its folder, checked to stay inside the output once
        for i in sorted({labels[i] for i in range(n)}):
            dirs[i] = path_under(stage, folders[names[i]], what="generate")
            dirs[i].mkdir(exist_ok=True)
        rows = _sample_and_write(sampler, labels, seed, truncation, batch, dirs, dicom,
                                 {"run": run_s, "checkpoint": ckpt_s, "software": f"xraygan {__version__}"}, folders)
        with open(stage / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["file", "label", "seed", "run", "checkpoint"])
            w.writeheader()
            w.writerows(rows)
    return Path(out)


def _sample_and_write(sampler: Sampler, labels: list[int], seed: int, truncation: float | None, batch: int,
                      dirs: dict[int, Path], dicom, meta: dict[str, str], folders: dict[str, str]) -> list[dict]:
    """Sample batch after batch while a writer thread converts, encodes and writes the previous
    batches (numpy, zlib and DICOM encoding release the GIL), at most ``_AHEAD`` batches behind;
    returns the manifest rows. The sampling thread does nothing per image but name it.

    A failed write stops the generation with its error; any error here (SIGTERM too) stops the
    writer after its current image (the staging folder is then removed).
    """
    from xraygan.utils.progress import bar

    n, names, rows = len(labels), sampler.label_names, []
    ext = "dcm" if dicom is not None else "png"
    writer = _Writer(threaded=_spare_core())
    try:
        with bar(total=n, desc="generate", unit="img") as pb:
            for lo in range(0, n, batch):
                idx = range(lo, min(n, lo + batch))
                seeds = [image_seed(seed, i) for i in idx]
                x = sampler.sample_seeds(seeds, [labels[i] for i in idx], truncation, batch).numpy()  # (b, 1, S, S) float32
                jobs = []
                for i, s in zip(idx, seeds):
                    name, fname = names[labels[i]], f"synthetic_{i:06d}.{ext}"
                    jobs.append((dirs[labels[i]] / fname, name, s))
                    rows.append({"file": f"{folders[name]}/{fname}", "label": name, "seed": s, **{k: meta[k] for k in ("run", "checkpoint")}})
                writer.put((x, jobs, dicom, {**meta, "step": str(sampler.step)}))
                pb.update(len(jobs))
            writer.finish()
    except BaseException:
        writer.abort()
        raise
    return rows


_AHEAD = 2  # batches the writer may lag behind the sampler (bounded memory)


def _spare_core() -> bool:
    """Whether a writer thread has a core of its own. When torch's threads already take every core
    (2 threads on 2 cores), a writer thread preempts one of them and the whole forward pass waits at
    its next barrier: measured on 2 cores, writing inline was faster (benchmarks/generate_speed.py)."""
    import os

    import torch

    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) > torch.get_num_threads()


class _Writer:
    """One daemon thread running :func:`_write_batch` on queued batches, in order; or, without a
    spare core (``threaded=False``), the same work done inline in :meth:`put`."""

    def __init__(self, threaded: bool = True) -> None:
        import queue

        self.queue: queue.Queue = queue.Queue(maxsize=_AHEAD)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="xraygan-write", daemon=True)
        self.threaded = threaded
        if threaded:
            self.thread.start()

    def _run(self) -> None:
        while (job := self.queue.get()) is not None:
            if self.error is None and not self.stop.is_set():
                try:
                    _write_batch(*job, self.stop)
                except BaseException as e:  # noqa: BLE001 -- handed to the sampling thread
                    self.error = e

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    # The sampling thread waits in short slices: a signal (SIGTERM) the kernel hands to another
    # thread is only acted on when the main thread runs Python code again.
    def put(self, job: tuple | None) -> None:
        import queue

        if not self.threaded:
            if job is not None and not self.stop.is_set():
                _write_batch(*job, self.stop)
            return
        while True:
            self._check()
            try:
                return self.queue.put(job, timeout=0.1)  # waits while _AHEAD batches are queued
            except queue.Full:
                pass

    def finish(self) -> None:
        self.put(None)
        if not self.threaded:
            return
        while self.thread.is_alive():
            self.thread.join(0.1)
        self._check()

    def abort(self) -> None:
        """Stop after the current image; wait for it a little (an encode takes milliseconds), never hang."""
        self.stop.set()
        if not self.threaded:
            return
        try:
            self.queue.put_nowait(None)
        except Exception:  # noqa: BLE001 -- a full queue: the stop flag ends the thread's work anyway
            pass
        self.thread.join(timeout=5.0)


def _write_batch(x: np.ndarray, jobs: list, dicom, meta: dict[str, str], stop: threading.Event) -> None:
    """Convert one batch to uint8 (numpy, the same rounding as :func:`to_uint8`) and write it: PNG
    with text metadata (synthetic, run, checkpoint, label, seed, step, software) or DICOM."""
    from xraygan.utils import pixels

    for (target, name, s), im in zip(jobs, pixels.to_uint8(x)[:, 0]):
        if stop.is_set():
            return
        if dicom is not None:
            dicom.write(im, target, label=name, seed=s)
        else:
            target.write_bytes(_png_bytes(im, {"synthetic": "true", "run": meta["run"], "checkpoint": meta["checkpoint"], "label": name,
                                               "seed": str(s), "step": meta["step"], "software": meta["software"]}))


make_module_callable(__name__, generate)
