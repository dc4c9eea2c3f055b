"""xraygan: GANs for X-ray images, with honest evaluation.

The command line (``xraygan``) is a thin layer over these functions, imported lazily so that
``import xraygan`` stays cheap:

- :func:`xraygan.prepare` -- turn a folder, CSV, DICOM set or MedMNIST npz into a prepared dataset.
- :class:`xraygan.Run` -- a trained run folder or shipped model: config, metrics, checkpoints, ``sample``.

Layers, lowest first (a module imports only from its own layer or lower; no import cycles;
``tests/test_architecture.py`` checks it, see ``docs/architecture.md``)::

    base (errors, options, presets, utils) < data < models < augment < training
      < run (pretrained, run, generate) < metrics < report < workflow < experiments
      < apps (demo, export) < commands < cli
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute"
_API = {
    "prepare": "xraygan.data.prepare:prepare",
    "open_image_set": "xraygan.data.sources:open_image_set",
    "sample_path": "xraygan.data.sample:sample_path",
    "PreparedDataset": "xraygan.data.dataset:PreparedDataset",
    "XrayDataset": "xraygan.data.torch_dataset:XrayDataset",
    "XrayganError": "xraygan.errors:XrayganError",
    "TrainConfig": "xraygan.training.config:TrainConfig",
    "config_from_options": "xraygan.training.config:config_from_options",
    "train": "xraygan.workflow:train",
    "resume_config": "xraygan.training.loop:resume_config",
    "generate": "xraygan.generate:generate",
    "load_generator": "xraygan.generate:load_generator",
    "Run": "xraygan.run:Run",
    "load_pretrained": "xraygan.pretrained:load_pretrained",
    "demo": "xraygan.demo:demo",
    "real_vs_synthetic_grid": "xraygan.demo:real_vs_synthetic_grid",
    "evaluate": "xraygan.metrics.evaluate:evaluate",
    "write_report": "xraygan.report.html:write_report",
    "write_model_card": "xraygan.report.model_card:write_model_card",
    "write_secondary_capture": "xraygan.export.dicom:write_secondary_capture",
    "Tracker": "xraygan.training.tracking:Tracker",
    "run_experiment": "xraygan.experiments.runner:run_experiment",
    "ExperimentConfig": "xraygan.experiments.config:ExperimentConfig",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        mod, attr = _API[name].split(":")
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'xraygan' has no attribute {name!r}")
