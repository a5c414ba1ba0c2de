"""modelkeep end to end on the embedded default (SQLite + local store).

Creates a repository in a temporary folder, versions a generated model checkpoint and a
fine-tuned successor that changes 10% of its tensors, shows that the successor costs about
10% more storage, restores v1 byte for byte, and verifies the whole store.

Run it with `make demo` (or `python examples/demo.py` in the project's venv).
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import modelkeep as mk

TENSORS = 64
TENSOR_BYTES = 1 << 20  # 64 tensors of 1 MiB: a 64 MiB checkpoint


def write_checkpoint(path: Path, tensors: list[bytes]) -> None:
    """A safetensors-layout file: a JSON header, then the raw float32 tensor data."""
    header: dict[str, object] = {}
    offset = 0
    for i, t in enumerate(tensors):
        header[f"layer{i}.weight"] = {
            "dtype": "F32",
            "shape": [len(t) // 4],
            "data_offsets": [offset, offset + len(t)],
        }
        offset += len(t)
    blob = json.dumps(header).encode()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for t in tensors:
            f.write(t)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def step(text: str) -> None:
    print(f"\n== {text}")


def cli(*args: str, cwd: Path) -> None:
    """Show the same through the command line."""
    print(f"$ modelkeep {' '.join(args)}")
    exe = Path(sys.executable).with_name("modelkeep")
    subprocess.run([str(exe), *args], cwd=cwd, check=True)


def main() -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="modelkeep-demo-") as tmp:
        work = Path(tmp)
        step(f"init a repository in {work}")
        repo = mk.init(work)

        step("version a 64 MiB checkpoint")
        tensors = [rng.randbytes(TENSOR_BYTES) for _ in range(TENSORS)]
        model = work / "model.safetensors"
        write_checkpoint(model, tensors)
        v1 = repo.add(
            model, "fraud-detector", type="model", message="baseline", metadata={"lr": 0.01}
        )
        print(f"{v1.version.ref}  {v1.version.short_digest}  {v1.new_bytes:,} bytes new")
        original = sha256(model)

        step("fine-tune: re-randomise 10% of the tensors, add the successor")
        for i in rng.sample(range(TENSORS), TENSORS // 10):
            tensors[i] = rng.randbytes(TENSOR_BYTES)
        write_checkpoint(model, tensors)
        v2 = repo.add(model, "fraud-detector", message="fine-tuned")
        share = v2.new_bytes / v2.version.size
        print(
            f"{v2.version.ref}  {v2.new_bytes:,} bytes new, {v2.reused_bytes:,} reused "
            f"({share:.0%} of the file stored again)"
        )

        step("storage: two versions for about 1.1 copies")
        usage = repo.du()
        print(
            f"logical {usage.logical_bytes:,} B, stored {usage.stored_bytes:,} B "
            f"(dedup {usage.dedup_ratio:.2f}x)"
        )
        cli("du", cwd=work)
        cli("versions", "fraud-detector", cwd=work)

        step("restore v1 and check it byte for byte")
        out = repo.get("fraud-detector:v1", work / "restored" / "model.safetensors")
        assert sha256(out) == original, "restored bytes differ"
        print(f"{out} matches the original (sha256 {original[:16]}…)")

        step("verify every object in the store")
        report = repo.fsck()
        assert report.ok, report.problems
        cli("fsck", cwd=work)
        repo.close()
        print("\ndemo finished: every step checked")


if __name__ == "__main__":
    main()
