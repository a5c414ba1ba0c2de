"""modelkeep end to end on the embedded default (SQLite + local store).

Creates a repository in a temporary folder, versions a generated model checkpoint and a
fine-tuned successor that changes 10% of its tensors, shows that the successor costs about
10% more storage, restores v1 byte for byte, and verifies the whole store. Then it records
a small pipeline as runs (a dataset, a preparation run in Python, a training script run
with `modelkeep run`) and prints the runs and the lineage graph.

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


TRAIN = """\
# A training script: `modelkeep run` starts it inside a run, which it joins.
import json
import modelkeep as mk

run = mk.current_run()
rows = [line.split(",") for line in open(run.use("features") / "features.csv").read().split()]
amounts = [(float(a), int(label)) for a, label in rows[1:]]
threshold = sorted(a for a, _ in amounts)[int(len(amounts) * 0.9)]
correct = sum((a >= threshold) == bool(label) for a, label in amounts)
run.log_metric("accuracy", correct / len(amounts))
with open("rules.json", "w") as f:
    json.dump({"flag_if_amount_at_least": threshold}, f)
run.log_artifact("rules.json", "fraud-rules", type="model")
"""


def pipeline(repo: mk.Repo, work: Path, rng: random.Random) -> None:
    step("version a dataset, prepare features in a run (Python)")
    data = work / "transactions.csv"
    lines = ["amount,label"]
    for _ in range(2000):
        amount = rng.expovariate(1 / 50)
        lines.append(f"{amount:.2f},{int(amount > 150 and rng.random() < 0.9)}")
    data.write_text("\n".join(lines) + "\n")
    print(repo.add(data, "transactions", type="dataset").version.ref)
    with mk.start_run(name="prepare", params={"columns": ["amount"]}, repo=repo) as run:
        source = run.use("transactions:v1")
        folder = work / "features"
        folder.mkdir()
        (folder / "features.csv").write_text(source.read_text())
        print(run.log_artifact(folder, "features", type="dataset").ref, "made by", run)

    step("train with `modelkeep run`: the script joins the run and logs to it")
    (work / "train.py").write_text(TRAIN)
    cli("run", "--name", "train", "-p", "quantile=0.9", "--", sys.executable, "train.py", cwd=work)
    cli("runs", cwd=work)

    step("lineage: what made the model, and what used the dataset")
    cli("lineage", "fraud-rules", "--upstream", cwd=work)
    cli("lineage", "transactions:v1", "--downstream", "--format", "mermaid", cwd=work)
    graph = repo.lineage("fraud-rules:v1")
    assert "transactions:v1" in graph.nodes, "the model's lineage misses its dataset"


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

        pipeline(repo, work, rng)
        repo.close()
        print("\ndemo finished: every step checked")


if __name__ == "__main__":
    main()
