"""Export a trained generator to formats other tools load (``xraygan export``).

Three formats, all of the EMA generator of a run's checkpoint (or of a shipped pretrained model):

- ``safetensors``: the generator's weights and buffers (its ``state_dict``, bit for bit) plus
  metadata strings: ``format`` ("xraygan-generator"), ``model``, ``n_classes``, ``classes`` (JSON),
  ``size``, ``latent_dim``, ``step``, ``config`` (JSON of the run's options, without local paths). Rebuild the network
  with :func:`xraygan.training.families.get_family` and load the tensors with
  ``safetensors.torch.load_file``. Needs the ``safetensors`` package (extra ``export``).
- ``onnx``: a graph ``images = G(z[, labels])`` for onnxruntime and other ONNX tools (extra
  ``export``: onnx, onnxscript, onnxruntime).
- ``pt2``: a ``torch.export`` ExportedProgram saved with :func:`torch.export.save`; load it with
  ``torch.export.load(FILE).module()(z, labels)``.

The ONNX and pt2 graphs take ``z`` (N, latent_dim) float32 standard normal latents and, for a
conditional model, ``labels`` (N,) int64 class indices (the order of ``classes`` in the metadata /
the run's ``config.yaml``); unconditional models take ``z`` only. They return images
(N, 1, S, S) float32 in [-1, 1], the same numbers :meth:`xraygan.generate.Sampler.sample_seeds`
produces for the same latents: StyleGAN2's noise inputs are the model's constant noise buffers (as
``xraygan generate`` uses), and PGGAN's stage and fade-in are those of the checkpoint. The batch
size N is dynamic.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xraygan.errors import UsageError, XrayganError

FORMATS = ("safetensors", "onnx", "pt2")
EXTENSIONS = {".safetensors": "safetensors", ".onnx": "onnx", ".pt2": "pt2"}
METADATA_FORMAT = "xraygan-generator"
EXTRA_HINT = "pip install 'xraygan[export]'"
_LOCAL_PATHS = ("data", "out", "resume", "vgg_weights")  # config keys that hold this machine's paths


class ExportableGenerator(nn.Module):
    """``images = G(z, labels)`` (conditional) as one module: what the ONNX and pt2 files hold."""

    def __init__(self, sampler: Any) -> None:
        super().__init__()
        self.generator = sampler.generator
        self._family = sampler.family  # plain attribute: sampling code (noise mode, PGGAN stage), not a submodule

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self._family.sample(self.generator, z, labels, None).clamp(-1, 1)


class ExportableUnconditionalGenerator(ExportableGenerator):
    """``images = G(z)`` for an unconditional model."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self._family.sample(self.generator, z, None, None).clamp(-1, 1)


def wrap(sampler: Any) -> nn.Module:
    """The export module of ``sampler`` (conditional: inputs z and labels; else z only), in eval mode."""
    cls = ExportableGenerator if sampler.n_classes else ExportableUnconditionalGenerator
    return cls(sampler).eval()


def example_inputs(sampler: Any, n: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Inputs of the exported graph: (z,) or (z, labels), ``n`` per batch, on the sampler's device."""
    fam = sampler.family
    z = fam.latent(n, torch.Generator().manual_seed(seed))
    if not sampler.n_classes:
        return (z,)
    return z, (torch.arange(n) % sampler.n_classes).to(device=z.device, dtype=torch.long)


def _require(module: str, fmt: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise XrayganError(f"--format {fmt} needs the '{module}' package, which is not installed; "
                           f"install the export extra: {EXTRA_HINT}") from None


def metadata(sampler: Any) -> dict[str, str]:
    """The string metadata stored in a safetensors export."""
    cfg = sampler.family.cfg
    options = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
    options = {k: v for k, v in options.items() if k not in _LOCAL_PATHS}  # no local paths in a shared file
    return {"format": METADATA_FORMAT, "format_version": "1", "model": str(cfg.model),
            "n_classes": str(sampler.n_classes), "classes": json.dumps(list(sampler.classes)),
            "size": str(sampler.size), "latent_dim": str(sampler.family.latent_dim), "step": str(sampler.step),
            "config": json.dumps(options, default=str)}


def safetensors_bytes(sampler: Any) -> bytes:
    """The generator's state dict (bitwise) and :func:`metadata` as safetensors bytes."""
    st = _require("safetensors.torch", "safetensors")
    state = {k: v.detach().cpu().contiguous().clone() for k, v in sampler.generator.state_dict().items()}
    return st.save(state, metadata=metadata(sampler))


def _dynamic_batch(inputs: tuple[torch.Tensor, ...]) -> tuple[dict, ...]:
    batch = torch.export.Dim("batch", min=1, max=65536)
    return tuple({0: batch} for _ in inputs)


def exported_program(sampler: Any) -> "torch.export.ExportedProgram":
    """The generator as a ``torch.export`` program with a dynamic batch size."""
    module, inputs = wrap(sampler), example_inputs(sampler)
    with torch.no_grad():
        try:
            return torch.export.export(module, inputs, dynamic_shapes=_dynamic_batch(inputs))
        except Exception as e:  # noqa: BLE001 -- torch.export raises many kinds; the message says which
            raise XrayganError(f"torch.export could not export this {sampler.family.cfg.model} generator: "
                               f"{type(e).__name__}: {' '.join(str(e).split())[:400]}") from None


def pt2_bytes(sampler: Any) -> bytes:
    """A ``torch.export.save`` archive of :func:`exported_program`."""
    buf = io.BytesIO()
    torch.export.save(exported_program(sampler), buf)
    return buf.getvalue()


def onnx_bytes(sampler: Any, opset: int | None = None, program: "torch.export.ExportedProgram | None" = None) -> bytes:
    """The generator as an ONNX model (inputs ``z`` [and ``labels``], output ``images``; dynamic batch).

    ``program``: the :func:`exported_program` of ``sampler`` when already made (it is what the ONNX
    exporter translates; passing it saves exporting twice)."""
    _require("onnx", "onnx")
    _require("onnxscript", "onnx")
    program = program if program is not None else exported_program(sampler)
    names = ["z", "labels"][: 2 if sampler.n_classes else 1]
    with tempfile.TemporaryDirectory(prefix="xraygan-onnx-") as tmp, torch.no_grad():
        path = Path(tmp) / "model.onnx"
        try:
            onnx_program = torch.onnx.export(program, dynamo=True, input_names=names, output_names=["images"],
                                             opset_version=opset, external_data=False, verbose=False)
            onnx_program.save(str(path), external_data=False)
        except Exception as e:  # noqa: BLE001 -- the exporter raises many kinds; the message says which
            raise XrayganError(f"ONNX export of this {sampler.family.cfg.model} generator failed: "
                               f"{type(e).__name__}: {' '.join(str(e).split())[:400]}") from None
        return path.read_bytes()


def check_output_file(out: str | Path, force: bool, protected: list[Path], inside_run: bool = False) -> Path:
    """Refuse an ``out`` that exists (unless ``force``; never a folder or a link), or that lies inside one of
    ``protected`` (the run folder, the checkpoint) unless ``inside_run``."""
    out = Path(out)
    if out.is_symlink():
        raise UsageError(f"--out {out} is a symbolic link; refusing to write through it; choose another path")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as {out / 'generator.onnx'}")
    if out.exists():
        if not force:
            raise UsageError(f"--out {out} already exists; choose another path or pass --force to replace it")
        if not out.is_file():
            raise UsageError(f"--out {out} is not a regular file; refusing to replace it even with --force")
    target = out.resolve()
    for p in protected:
        p = p.resolve()
        if target == p:
            raise UsageError(f"--out {out} is the input {p}; xraygan never writes over its inputs")
        if p in target.parents and not inside_run:
            raise UsageError(f"--out {out} is inside the run folder {p}; write it elsewhere, or pass --inside-run "
                             "to put the export in the run folder on purpose")
    return out


def export_generator(run: str | Path | None, out: str | Path, fmt: str | None = None, checkpoint: str = "latest",
                     pretrained: str | None = None, force: bool = False, inside_run: bool = False,
                     opset: int | None = None) -> Path:
    """Write the (EMA) generator of ``run`` (or shipped model ``pretrained``) to ``out`` as ``fmt``.

    ``fmt`` None: from the extension of ``out`` (``.safetensors``, ``.onnx``, ``.pt2``). ``out`` is
    written atomically; an existing file is refused unless ``force``, and a path inside the run folder
    unless ``inside_run``. Returns ``out``.
    """
    from xraygan.run import Run

    fmt = resolve_format(fmt, out)
    if (run is None) == (pretrained is None):
        raise UsageError("export: give either a RUN folder or --pretrained NAME (see `xraygan pretrained`), "
                         + ("not both" if run is not None else "none was given"))
    if pretrained is not None and str(checkpoint) != "latest":
        raise UsageError(f"--checkpoint {checkpoint} applies to a RUN folder; a --pretrained model has a single "
                         "checkpoint, so drop --checkpoint")
    protected = [Path(run)] if run is not None else []
    out = check_output_file(out, force, protected, inside_run)
    for module in {"safetensors": ["safetensors.torch"], "onnx": ["onnx", "onnxscript"], "pt2": []}[fmt]:
        _require(module, fmt)  # before loading anything: a missing extra fails fast
    if pretrained is not None:
        sampler = Run.pretrained(pretrained).sampler(device="cpu")
    else:
        sampler = Run(run).sampler(checkpoint, "cpu")
    if protected:
        check_output_file(out, force, [*protected, Path(sampler.checkpoint)], inside_run)
    data = {"safetensors": safetensors_bytes, "onnx": lambda s: onnx_bytes(s, opset), "pt2": pt2_bytes}[fmt](sampler)
    from xraygan.utils.fs import atomic_write_bytes

    if out.exists() and not force:  # appeared while exporting
        raise XrayganError(f"--out {out} was created by another process while exporting; nothing written")
    atomic_write_bytes(out, data)
    return out


def resolve_format(fmt: str | None, out: str | Path) -> str:
    """``fmt``, or the format named by ``out``'s extension; a clear UsageError otherwise."""
    if fmt is None:
        ext = os.path.splitext(str(out))[1].lower()
        if ext not in EXTENSIONS:
            raise UsageError(f"--out {out}: cannot tell the format from the extension; pass --format "
                             f"{'|'.join(FORMATS)} (or name the file .safetensors, .onnx or .pt2)")
        return EXTENSIONS[ext]
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose {', '.join(FORMATS)}")
    return fmt
