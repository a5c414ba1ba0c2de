"""The wheel a user installs: it builds, and with none of the extras it runs the CLI.

The fresh environment gets the built wheel and exactly the distributions that modelkeep's
core requirements pull in (linked from this venv, so nothing is downloaded): a model
library or cloud SDK imported at start-up would fail here.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _core_closure() -> list[md.Distribution]:
    """The distributions modelkeep needs with no extras, found through their metadata."""
    seen: dict[str, md.Distribution] = {}
    todo = ["modelkeep"]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        dist = md.distribution(name)
        seen[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    del seen["modelkeep"]
    return list(seen.values())


def _link_core(into: Path) -> None:
    """Link each core distribution's top-level files and metadata folder into `into`."""
    into.mkdir()
    for dist in _core_closure():
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (into / top).exists():
                (into / top).symlink_to(source)


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MODELKEEP_REPO")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_wheel_installs_and_runs_with_no_extras(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = _run(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", dist, ROOT,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("modelkeep-*.whl")

    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    python = venv / "bin" / "python"
    installed = _run(
        sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel
    )
    assert installed.returncode == 0, installed.stderr
    site = Path(_run(python, "-c", "import site; print(site.getsitepackages()[0])").stdout.strip())
    _link_core(tmp_path / "core")
    (site / "modelkeep-core.pth").write_text(f"{tmp_path / 'core'}\n")

    # The environment really lacks the extras: no model library, no cloud SDK.
    for extra in ("sklearn", "torch", "s3fs", "psycopg"):
        assert _run(python, "-c", f"import {extra}").returncode != 0, extra

    cli = venv / "bin" / "modelkeep"
    helped = _run(cli, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "Usage:" in helped.stdout

    project = tmp_path / "proj"
    project.mkdir()
    (project / "weights.bin").write_bytes(os.urandom(300_000))
    assert _run(cli, "init", cwd=project).returncode == 0
    added = _run(cli, "add", "weights.bin", "--name", "w", cwd=project)
    assert added.returncode == 0, added.stderr
    listed = _run(cli, "ls", cwd=project)
    assert listed.returncode == 0 and "w" in listed.stdout, listed.stderr
    # The installed package is the wheel, not this checkout.
    where = _run(python, "-c", "import modelkeep; print(modelkeep.__file__)").stdout
    assert str(site) in where
    # The web UI's pages, scripts and vendored libraries (with their licences) ship inside.
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    ui = "modelkeep/server/ui/"
    for part in ("static/app.js", "static/app.css", "templates/shell.html"):
        assert ui + part in names, part
    assert any(n.startswith(ui + "static/vendor/uplot-") and n.endswith("LICENSE") for n in names)
    assert any(n.startswith(ui + "static/vendor/cytoscape-") for n in names)
