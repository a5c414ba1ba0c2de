"""The software and hardware a run used, as a document with a stable id.

The document holds only what decides results (versions, devices), never what changes
from one start to the next (time, pid, host name, interpreter path), so runs on the same
machine and venv share one environment id and a changed id always means a real change.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

_SEPARATORS = re.compile(r"[-_.]+")
_CUDA_VERSION = re.compile(rb"CUDA Version:\s*([0-9][0-9.]*)")
_TIMEOUT = 10


def environment() -> dict[str, Any]:
    gpus, cuda = _nvidia()
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
        },
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
        },
        "cpu": {"model": _cpu_model(), "count": os.cpu_count()},
        "gpu": gpus,
        "cuda": cuda,
        "torch": _torch(),
        "packages": _packages(),
    }


def _packages() -> dict[str, str]:
    """Installed distributions; the first on sys.path wins, as it does for imports."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(_SEPARATORS.sub("-", name).lower(), dist.version)
    return dict(sorted(found.items()))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor()


def _nvidia() -> tuple[list[dict[str, str]], str | None]:
    """GPUs and the driver's CUDA version, asked of nvidia-smi so no GPU library loads."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], None
    query = "--query-gpu=name,driver_version,memory.total"
    table = _output([exe, query, "--format=csv,noheader"])
    gpus = []
    for line in (table or b"").decode("utf-8", "replace").splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 3:
            gpus.append({"name": fields[0], "driver": fields[1], "memory": fields[2]})
    found = _CUDA_VERSION.search(_output([exe]) or b"")
    return gpus, found.group(1).decode() if found else None


def _output(argv: list[str]) -> bytes | None:
    try:
        proc = subprocess.run(argv, capture_output=True, check=False, timeout=_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def _torch() -> dict[str, Any] | None:
    """Describe torch only if the program imported it: importing it costs seconds."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None

    def ask(question: Any) -> Any:
        try:
            return question()
        except Exception:  # a broken CUDA install must not stop a run from being recorded
            return None

    def devices() -> list[str]:
        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]

    return {
        "version": ask(lambda: str(torch.__version__)),
        "cuda": ask(lambda: torch.version.cuda),
        "cudnn": ask(lambda: torch.backends.cudnn.version()),
        "devices": ask(devices),
    }


def canonical_json(doc: Any) -> bytes:
    """The one serialisation that ids are computed from."""
    text = json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def environment_id(doc: Any) -> str:
    return str(blake3.blake3(canonical_json(doc)).hexdigest())


@dataclass(frozen=True, slots=True)
class EnvDiff:
    """What changed between two environments: the answer to "why did results move?"."""

    packages_added: tuple[tuple[str, str], ...]
    packages_removed: tuple[tuple[str, str], ...]
    packages_changed: tuple[tuple[str, str, str], ...]
    other: tuple[tuple[str, Any, Any], ...]

    @property
    def same(self) -> bool:
        return not (
            self.packages_added or self.packages_removed or self.packages_changed or self.other
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "same": self.same,
            "packages_added": [{"name": n, "version": v} for n, v in self.packages_added],
            "packages_removed": [{"name": n, "version": v} for n, v in self.packages_removed],
            "packages_changed": [{"name": n, "a": a, "b": b} for n, a, b in self.packages_changed],
            "other": [{"key": k, "a": a, "b": b} for k, a, b in self.other],
        }


def diff_environments(a: dict[str, Any], b: dict[str, Any]) -> EnvDiff:
    pa: dict[str, str] = a.get("packages") or {}
    pb: dict[str, str] = b.get("packages") or {}
    other: list[tuple[str, Any, Any]] = []
    _compare(
        {k: v for k, v in a.items() if k != "packages"},
        {k: v for k, v in b.items() if k != "packages"},
        "",
        other,
    )
    return EnvDiff(
        packages_added=tuple(sorted((n, pb[n]) for n in pb.keys() - pa.keys())),
        packages_removed=tuple(sorted((n, pa[n]) for n in pa.keys() - pb.keys())),
        packages_changed=tuple(
            sorted((n, pa[n], pb[n]) for n in pa.keys() & pb.keys() if pa[n] != pb[n])
        ),
        other=tuple(sorted(other, key=lambda item: item[0])),
    )


def _compare(a: Any, b: Any, key: str, out: list[tuple[str, Any, Any]]) -> None:
    """Descend while both sides are objects, so a diff names `os.release`, not `os`."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a.keys() | b.keys():
            _compare(a.get(k), b.get(k), f"{key}.{k}" if key else k, out)
    elif a != b:
        out.append((key, a, b))


# The libraries that decide a model's results, as `runs show` names them (the rest of
# the packages are in the full record: `runs show --env`, `env show`).
KEY_PACKAGES = (
    "torch",
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-macos",
    "jax",
    "jaxlib",
    "scikit-learn",
    "xgboost",
    "lightgbm",
    "numpy",
    "pandas",
    "transformers",
    "modelkeep",
)


def summarize(doc: dict[str, Any]) -> dict[str, Any]:
    """The few lines of an environment a reader wants first: Python, OS, the ML libraries
    present, and the GPUs with their driver (and CUDA) when the capture found any."""
    py = doc.get("python") or {}
    system = doc.get("os") or {}
    packages: dict[str, str] = doc.get("packages") or {}
    gpus = [
        {"name": g.get("name", ""), "driver": g.get("driver", ""), "memory": g.get("memory", "")}
        for g in doc.get("gpu") or []
    ]
    return {
        "python": " ".join(x for x in (py.get("implementation"), py.get("version")) if x),
        "os": " ".join(str(system[k]) for k in ("system", "release", "machine") if system.get(k)),
        "packages": {name: packages[name] for name in KEY_PACKAGES if name in packages},
        "gpus": gpus,
        "cuda": doc.get("cuda"),
        "package_count": len(packages),
    }
