"""modelkeep end to end on the embedded default (SQLite + local store).

Creates a repository in a temporary folder, versions a generated model checkpoint and a
fine-tuned successor that changes 10% of its tensors, shows that the successor costs about
10% more storage, restores v1 byte for byte, and verifies the whole store. Then it records
a small pipeline as runs (a dataset, a preparation run in Python, a training script run
with `modelkeep run`), prints the runs and the lineage graph, registers the model,
promotes it through a metric gate, promotes a better one, sees a worse one refused, rolls
back, and verifies the audit log.

Run it with `make demo` (or `python examples/demo.py` in the project's venv).
"""

from __future__ import annotations

import hashlib
import json
import os
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


def cli(*args: str, cwd: Path, refused: bool = False) -> None:
    """Show the same through the command line; refused: the command must exit 1."""
    print(f"$ modelkeep {' '.join(args)}", flush=True)
    exe = Path(sys.executable).with_name("modelkeep")
    done = subprocess.run([str(exe), *args], cwd=cwd, check=not refused)
    assert not refused or done.returncode == 1, f"expected a refusal, got {done.returncode}"


TRAIN = """\
# A training script: `modelkeep run` starts it inside a run, which it joins.
import json
import modelkeep as mk

run = mk.current_run()
quantile = run.info().params["quantile"]
rows = [line.split(",") for line in open(run.use("features") / "features.csv").read().split()]
amounts = [(float(a), int(label)) for a, label in rows[1:]]
threshold = sorted(a for a, _ in amounts)[int(len(amounts) * quantile)]
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


POLICY = """\
[policy.default.production]
require_stage = "staging"
gates = ["accuracy >= 0.9", "accuracy >= production.accuracy"]
"""


def registry(repo: mk.Repo, work: Path) -> None:
    step("register the model and promote it through the policy's gates")
    (work / "modelkeep.toml").write_text(POLICY)
    print(POLICY)
    cli("register", "fraud-rules:v1", "--as", "fraud-detector", cwd=work)
    cli("promote", "fraud-detector:v1", "production", cwd=work, refused=True)
    cli("promote", "fraud-detector:v1", "staging", "--reason", "offline eval", cwd=work)
    cli("promote", "fraud-detector:v1", "production", "--reason", "first release", cwd=work)

    step("train a better one (a higher threshold) and promote it")
    cli("run", "--name", "train", "-p", "quantile=0.95", "--", sys.executable, "train.py", cwd=work)
    cli("register", "fraud-rules:v2", "--as", "fraud-detector", cwd=work)
    cli("promote", "fraud-detector:v2", "staging", cwd=work)
    cli("promote", "fraud-detector:v2", "production", "--reason", "higher accuracy", cwd=work)
    cli("models", cwd=work)

    step("a worse model is refused by the champion gate")
    cli("run", "--name", "train", "-p", "quantile=0.5", "--", sys.executable, "train.py", cwd=work)
    cli("register", "fraud-rules:v3", "--as", "fraud-detector", cwd=work)
    cli("promote", "fraud-detector:v3", "staging", cwd=work)
    cli("promote", "fraud-detector:v3", "production", cwd=work, refused=True)

    step("roll back production, then look at the audit log")
    cli("rollback", "fraud-detector", "--reason", "alert on false positives", cwd=work)
    assert repo.show("fraud-detector@production").number == 1, "rollback did not restore v1"
    cli("history", "fraud-detector", cwd=work)
    cli("audit", "--verify", cwd=work)


def main() -> None:
    os.environ.setdefault("MODELKEEP_USER", "alice")  # who acts; default: Git's identity
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="modelkeep-demo-") as tmp:
        work = Path(tmp)
        step(f"init a repository in {work}")
        repo = mk.init(work)

        step("version a 64 MiB checkpoint")
        tensors = [rng.randbytes(TENSOR_BYTES) for _ in range(TENSORS)]
        model = work / "model.safetensors"
        write_checkpoint(model, tensors)
        v1 = repo.add(model, "checkpoint", type="model", message="baseline", metadata={"lr": 0.01})
        print(f"{v1.version.ref}  {v1.version.short_digest}  {v1.new_bytes:,} bytes new")
        original = sha256(model)

        step("fine-tune: re-randomise 10% of the tensors, add the successor")
        for i in rng.sample(range(TENSORS), TENSORS // 10):
            tensors[i] = rng.randbytes(TENSOR_BYTES)
        write_checkpoint(model, tensors)
        v2 = repo.add(model, "checkpoint", message="fine-tuned")
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
        cli("versions", "checkpoint", cwd=work)

        step("restore v1 and check it byte for byte")
        out = repo.get("checkpoint:v1", work / "restored" / "model.safetensors")
        assert sha256(out) == original, "restored bytes differ"
        print(f"{out} matches the original (sha256 {original[:16]}…)")

        step("verify every object in the store")
        report = repo.fsck()
        assert report.ok, report.problems
        cli("fsck", cwd=work)

        pipeline(repo, work, rng)
        registry(repo, work)
        repo.close()
        print("\ndemo finished: every step checked")


if __name__ == "__main__":
    main()
