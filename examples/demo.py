"""modelkeep end to end on the embedded default (SQLite + local store).

Creates a repository in a temporary folder, versions a generated model checkpoint and a
fine-tuned successor that changes 10% of its tensors, shows that the successor costs about
10% more storage, restores v1 byte for byte, and verifies the whole store.

Then the model story, on scikit-learn's bundled breast-cancer data (nothing downloaded):
version the dataset; train a classifier in a run (`modelkeep run`) that logs params,
metrics and the model object; register it and promote it through metric gates; train a
better one and promote it; see a worse one refused; roll back; load the production model
in a fresh process and predict; print the lineage, the model card and the audit log.

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


def export_dataset(folder: Path) -> None:
    """scikit-learn's bundled breast-cancer data as train/test CSVs: nothing is downloaded."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    train, test = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame.target)
    folder.mkdir()
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)


TRAIN = """\
# Training: `modelkeep run` starts this script inside a run, which it joins.
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, roc_auc_score

import modelkeep as mk

run = mk.current_run()
params = run.info().params
data = run.use("breast-cancer")  # recorded as an input of this run
train, test = pd.read_csv(data / "train.csv"), pd.read_csv(data / "test.csv")
x, y = train.drop(columns="target"), train.target
clf = RandomForestClassifier(
    n_estimators=params["n_estimators"], max_depth=params["max_depth"], random_state=0
).fit(x, y)
scores = clf.predict_proba(test.drop(columns="target"))[:, 1]
run.log_metric("auc", roc_auc_score(test.target, scores))
run.log_metric("accuracy", accuracy_score(test.target, scores > 0.5))
v = run.log_model(
    clf,
    "cancer-classifier",
    input_example=x.head(3),
    message="Flags malignant tumours from 30 cell-nucleus measurements",
)
print(f"logged {v.ref}: auc {run.info().metrics['auc']:.4f}")
"""

PREDICT = """\
# Serving, in a fresh process: load whatever is in production, by its stage, and predict.
import pandas as pd

import modelkeep as mk

model = mk.load_model("cancer-classifier@production")
test = pd.read_csv(mk.current_run().use("breast-cancer") / "test.csv")
predicted = model.predict(test.drop(columns="target"))
accuracy = float((predicted == test.target).mean())
mk.current_run().log_metric("accuracy", accuracy)
print(f"{type(model).__name__} from production: {len(test)} predictions, accuracy {accuracy:.3f}")
print("first ten:", predicted[:10].tolist())
"""

POLICY = """\
[policy.default.production]
require_stage = "staging"
gates = ["auc >= 0.95", "auc >= production.auc"]
"""


def train(work: Path, n_estimators: int, max_depth: int) -> None:
    cli(
        "run", "--name", "train", "-p", f"n_estimators={n_estimators}",
        "-p", f"max_depth={max_depth}", "--", sys.executable, "train.py", cwd=work,
    )  # fmt: skip


def story(repo: mk.Repo, work: Path) -> None:
    step("version the dataset (scikit-learn's bundled breast-cancer data)")
    export_dataset(work / "breast-cancer")
    print(repo.add(work / "breast-cancer", "breast-cancer", type="dataset").version.ref)

    step("train in a run that logs params, metrics and the model itself")
    (work / "train.py").write_text(TRAIN)
    (work / "predict.py").write_text(PREDICT)
    train(work, n_estimators=10, max_depth=2)
    cli("runs", cwd=work)

    step("register it and promote it through the policy's metric gates")
    (work / "modelkeep.toml").write_text(POLICY)
    print(POLICY)
    cli("register", "cancer-classifier:v1", "--as", "cancer-classifier", cwd=work)
    cli("promote", "cancer-classifier:v1", "staging", "--reason", "offline eval", cwd=work)
    cli("promote", "cancer-classifier:v1", "production", "--reason", "first release", cwd=work)

    step("train a better one and promote it")
    train(work, n_estimators=200, max_depth=8)
    cli("register", "cancer-classifier:v2", "--as", "cancer-classifier", cwd=work)
    cli("promote", "cancer-classifier:v2", "staging", cwd=work)
    cli("promote", "cancer-classifier:v2", "production", "--reason", "higher auc", cwd=work)

    step("a worse one is refused by the champion gate")
    train(work, n_estimators=3, max_depth=1)
    cli("register", "cancer-classifier:v3", "--as", "cancer-classifier", cwd=work)
    cli("promote", "cancer-classifier:v3", "staging", cwd=work)
    cli("promote", "cancer-classifier:v3", "production", cwd=work, refused=True)
    cli("models", cwd=work)

    step("roll back production to v1")
    cli("rollback", "cancer-classifier", "--reason", "alert on false negatives", cwd=work)
    assert repo.show("cancer-classifier@production").number == 1, "rollback did not restore v1"

    step("load the production model in a fresh process and predict")
    cli("run", "--name", "predict", "--", sys.executable, "predict.py", cwd=work)

    step("lineage: what made the production model, and who used it")
    cli("lineage", "cancer-classifier@production", cwd=work)
    graph = repo.lineage("cancer-classifier:v1")
    assert "breast-cancer:v1" in graph.nodes, "the model's lineage misses its dataset"

    step("the model card, assembled from what was recorded")
    cli("card", "cancer-classifier@production", cwd=work)
    card = repo.card("cancer-classifier@production")
    assert "- training: `breast-cancer:v1`" in card and "| auc |" in card, card

    step("history and a verified audit log")
    cli("history", "cancer-classifier", cwd=work)
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

        story(repo, work)
        repo.close()
        print("\ndemo finished: every step checked")


if __name__ == "__main__":
    main()
