"""PEP 517 build backend: setuptools, plus the man page and completions in editable installs.

setuptools leaves ``[tool.setuptools.data-files]`` out of editable wheels (its
``editable_wheel`` command asks the distribution for a ``has_data`` method that does not
exist, so ``install_data`` never runs). So ``pip install -e .`` into a virtual environment
where ``pip install .`` had put the man page and completion scripts in ``<venv>/share``
removes them (pip uninstalls the old files) and installs none. This backend runs setuptools
unchanged and adds those files to the editable wheel the standard way, as
``<name>-<version>.data/data/<target>/<file>`` entries listed in the wheel's RECORD
(PEP 427), so pip installs them and a later uninstall removes them. When setuptools puts data
files in the editable wheel itself, the wheel is left as it is.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 (every other hook is setuptools' own)


def build_editable(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    """setuptools' editable wheel, with the project's data files added (see the module doc)."""
    name = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    add_data_files(Path(wheel_directory) / name, Path.cwd())
    return name


def data_files(root: Path) -> dict[str, list[str]]:
    """``{target folder: [source files]}`` from ``[tool.setuptools.data-files]`` of ``root/pyproject.toml``."""
    with open(root / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)
    return project.get("tool", {}).get("setuptools", {}).get("data-files", {})


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def add_data_files(wheel: Path, root: Path) -> None:
    """Rewrite ``wheel`` with ``root``'s data files added under ``<name>.data/data/`` and in RECORD."""
    files = data_files(root)
    if not files:
        return
    with zipfile.ZipFile(wheel) as zin:
        names = zin.namelist()
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        data_prefix = record_name[: -len(".dist-info/RECORD")] + ".data/data/"
        if any(n.startswith(data_prefix) for n in names):
            return  # setuptools included them itself
        fd, tmp = tempfile.mkstemp(suffix=".whl", dir=wheel.parent)
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
                for info in zin.infolist():
                    if info.filename != record_name:
                        zout.writestr(info, zin.read(info))
                record = zin.read(record_name).decode("utf-8").splitlines()
                record = [line for line in record if line and not line.startswith(record_name + ",")]
                for target, sources in files.items():
                    for source in sources:
                        data = (root / source).read_bytes()
                        arcname = f"{data_prefix}{target.strip('/')}/{Path(source).name}"
                        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
                        info.external_attr = 0o644 << 16
                        info.compress_type = zipfile.ZIP_DEFLATED
                        zout.writestr(info, data)
                        record.append(f"{arcname},{_record_hash(data)},{len(data)}")
                record.append(f"{record_name},,")
                zout.writestr(record_name, "\n".join(record) + "\n")
            os.replace(tmp, wheel)
        except BaseException:
            os.unlink(tmp)
            raise
