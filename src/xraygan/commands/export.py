"""Export a trained generator for other tools: safetensors weights, ONNX, or a torch.export program.

Exports the EMA generator of RUN's checkpoint (--checkpoint latest, best or a path) or of a model
shipped in the package (--pretrained NAME, as `xraygan generate` takes it):

  safetensors  the generator's weights, bit for bit, with metadata (model, classes, size, latent
               size, step, config as JSON)
  onnx         images = G(z, labels) for onnxruntime and other ONNX tools
  pt2          the same graph as a torch.export ExportedProgram (torch.export.save); load it with
               torch.export.load(FILE).module()

The onnx and pt2 graphs take z (N, latent_dim) float32 and, for a conditional model, labels (N,)
int64 class indices; they return images (N, 1, S, S) float32 in [-1, 1], equal (within float
rounding) to what `xraygan generate` computes for the same latents. StyleGAN2's noise inputs are
the model's constant noise; the batch size N is dynamic. onnx, pt2's loader and safetensors need
the `export` extra: pip install 'xraygan[export]'.

FILE is written atomically; an existing FILE is refused unless --force, and a FILE inside RUN
unless --inside-run. The format follows from FILE's extension (.safetensors, .onnx, .pt2) when
--format is not given.

Examples:
  xraygan export runs/cxr --format onnx --out cxr-generator.onnx
  xraygan export runs/cxr --checkpoint best --out cxr-best.safetensors
  xraygan export --pretrained pediatric-cxr-64 --format pt2 --out pediatric.pt2
"""
from __future__ import annotations

import argparse

from xraygan.options import arg, integer

HELP = "export a trained generator as safetensors, ONNX or a torch.export program"
FORMATS = ("safetensors", "onnx", "pt2")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `xraygan export`."""
    p.add_argument("run", nargs="?", help="run folder written by `xraygan train` (or give --pretrained instead)")
    p.add_argument("--pretrained", metavar="NAME", help="export a model shipped in the package instead of a RUN (see `xraygan pretrained`)")
    p.add_argument("--format", choices=FORMATS, help="output format; default: from the extension of --out")
    p.add_argument("--out", required=True, metavar="FILE", help="output file (refused if it exists, unless --force)")
    p.add_argument("--checkpoint", default="latest", help="latest, best (needs training with --eval-every) or a checkpoint path")
    p.add_argument("--opset", type=arg(integer(18, 99)), help="ONNX opset version (default: the exporter's)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--inside-run", action="store_true", help="allow --out inside the RUN folder")


def run(args: argparse.Namespace) -> int:
    """Call xraygan.export.generator.export_generator with the options."""
    from xraygan.export.generator import export_generator, resolve_format

    fmt = resolve_format(args.format, args.out)
    if args.opset is not None and fmt != "onnx":
        from xraygan.errors import UsageError

        raise UsageError(f"--opset applies to --format onnx, not {fmt}")
    out = export_generator(args.run, args.out, fmt, checkpoint=args.checkpoint, pretrained=args.pretrained,
                           force=args.force, inside_run=args.inside_run, opset=args.opset)
    print(f"wrote {fmt} generator to {out}")
    return 0
