"""Real data that ships inside installed packages, usable as ``demo:NAME`` wherever a source goes.

Nothing here downloads: each demo names files an installed package (or Debian package) carries, and a
missing one is an error that says what to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.errors import DataError


def _package_dir(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the demo data needs the Python package {package!r}", f"pip install {install}"
        )
    return Path(spec.submodule_search_locations[0])


@dataclass(frozen=True, slots=True)
class Demo:
    description: str
    options: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return _RESOLVERS[name]()


def _mni152() -> Path:
    return (
        _package_dir("nilearn", "nilearn")
        / "datasets"
        / "data"
        / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    )


def _mni152_masks() -> list[str]:
    data = _package_dir("nilearn", "nilearn") / "datasets" / "data"
    return [str(data / f"mni_icbm152_{t}_tal_nlin_sym_09a_converted.nii.gz") for t in ("gm", "wm")]


def _chest_dicom() -> Path:
    # the pydicom-data distribution installs its files as the top-level package `data_store`
    return _package_dir("data_store", "pydicom-data") / "data" / "RG1_UNCR.dcm"


def _fashion_mnist() -> Path:
    path = Path("/usr/share/datasets/fashion-mnist")
    if not path.is_dir():
        raise DataError(f"{path} does not exist", "apt-get install dataset-fashion-mnist (Debian)")
    return path


_RESOLVERS = {"mni152": _mni152, "chest-dicom": _chest_dicom, "fashion-mnist": _fashion_mnist}

DEMOS: dict[str, Demo] = {
    "mni152": Demo(
        "MNI152 2009 T1 brain template with grey/white-matter masks (nilearn), sliced to 2D",
        {"format": "nifti", "mask_names": ["background", "gm", "wm"]},
    ),
    "chest-dicom": Demo(
        "a real PA chest CR, 15-bit MONOCHROME1 DICOM (pydicom-data RG1_UNCR.dcm)",
        {"format": "dicom"},
    ),
    "fashion-mnist": Demo(
        "Fashion-MNIST 60k+10k 28x28 IDX files (Debian dataset-fashion-mnist)", {"format": "idx"}
    ),
}


def resolve_source(source: str) -> tuple[Path, dict[str, Any]]:
    """A source argument as a path, plus option defaults when it names a demo (``demo:NAME``)."""
    if not source.startswith("demo:"):
        return Path(source), {}
    name = source.removeprefix("demo:")
    if name not in DEMOS:
        raise DataError(
            f"unknown demo {name!r}", f"use one of: {', '.join('demo:' + d for d in DEMOS)}"
        )
    options = dict(DEMOS[name].options)
    if name == "mni152":
        options["mask"] = _mni152_masks()
    return DEMOS[name].path(name), options
