"""Loading trusts types, not names.

Each test crafts what an attacker with write access to the database or the bucket would
plant (a skops schema, a class path in the model record, a pickle beside safetensors, a
malformed record) and drives `mk.load_model` or the real CLI: the outcome is a one-line
refusal, no command run and no module imported; what the user lists by name still loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, text

import modelkeep as mk
from modelkeep.errors import (
    InvalidArgument,
    ModelkeepError,
    ModelLoadFailed,
    ModelSpecInvalid,
    UntrustedModel,
)
from tests.conftest import cli, ok, write

pytestmark = pytest.mark.usefixtures("outside_this_checkout")


# -- planting what an attacker would -------------------------------------------------------


def _set_record(repo: mk.Repo, ref: str, doc: Any) -> None:
    """Write the version's `model` record straight into the database, as an edited row."""
    name, _, number = ref.partition(":v")
    engine = create_engine(repo.settings.database_url)
    with engine.begin() as c:
        c.execute(
            text(
                "UPDATE versions SET metadata_json = :m WHERE number = :n AND artifact_id = "
                "(SELECT id FROM artifacts WHERE name = :a)"
            ),
            {"m": json.dumps({"model": doc}), "n": int(number), "a": name},
        )
    engine.dispose()


def _plant(repo: mk.Repo, where: Path, name: str, files: dict[str, bytes], spec: Any) -> str:
    """A model version whose stored folder holds files and whose record says spec."""
    folder = where / "crafted" / name
    for path, data in files.items():
        write(folder / path, data)
    write(folder / "MODEL.json", json.dumps(spec).encode())
    ref = repo.add(folder, name, type="model").version.ref
    _set_record(repo, ref, spec)
    return ref


def _spec(fmt: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"format": fmt, "path": path, "object": "x", "libraries": {}, "requirements": []} | (
        extra
    )


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and message, message
    return message


def _json_node(value: Any) -> dict[str, Any]:
    return {
        "__class__": type(value).__name__,
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
    }


def _skops_file(root: dict[str, Any]) -> bytes:
    """A .skops archive whose schema.json is root, written by hand (no skops.dump)."""
    import io

    import skops.io as sio

    protocol = json.loads(zipfile.ZipFile(io.BytesIO(sio.dumps(1))).read("schema.json"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        doc = root | {"protocol": protocol["protocol"], "_skops_version": "0.16.0"}
        archive.writestr("schema.json", json.dumps(doc))
    return buffer.getvalue()


_COMMAND = ["sh", "-c", "id > PWNED"]
_ARGS = {
    "__class__": "tuple",
    "__module__": "builtins",
    "__loader__": "TupleNode",
    "content": [
        {
            "__class__": "list",
            "__module__": "builtins",
            "__loader__": "ListNode",
            "content": [_json_node(a) for a in _COMMAND],
        }
    ],
}


# -- skops: exact types and node kinds, never a prefix ------------------------------------


@pytest.mark.parametrize(
    ("module", "cls", "loader"),
    [
        # the reported exploit: skops calls check_output(["sh", "-c", "id > PWNED"])
        ("sklearn.utils._testing", "check_output", "ConstructorFromReduceNode"),
        # a real estimator class, but in a node kind that calls it with the file's arguments
        ("sklearn.linear_model._logistic", "LogisticRegression", "ConstructorFromReduceNode"),
        # a function named as if it were an object to build
        ("sklearn.utils._testing", "check_output", "ObjectNode"),
        # a module outside sklearn is never imported to find out
        ("subprocess", "check_output", "ConstructorFromReduceNode"),
    ],
)
def test_skops_reduce_on_an_sklearn_function_is_refused_and_runs_nothing(
    repo: mk.Repo, tmp_path: Path, module: str, cls: str, loader: str
) -> None:
    node = {"__class__": cls, "__module__": module, "__loader__": loader, "content": _ARGS}
    ref = _plant(
        repo, tmp_path, "evil", {"model.skops": _skops_file(node)}, _spec("skops", "model.skops")
    )
    with pytest.raises(UntrustedModel) as info:
        mk.load_model(ref, repo=repo.root)
    assert f"{module}.{cls}" in _one_line(info.value)
    assert info.value.types == (f"{module}.{cls}",)
    assert not (tmp_path / "PWNED").exists()
    assert not any(tmp_path.rglob("PWNED"))


def test_skops_internals_are_trusted_only_in_their_own_node_kind(
    repo: mk.Repo, tmp_path: Path
) -> None:
    """sklearn.tree._tree.Tree is trusted as a TreeNode (fixed constructor), not when a
    ConstructorFromReduceNode would call it with arguments of the file's choosing."""
    node = {
        "__class__": "Tree",
        "__module__": "sklearn.tree._tree",
        "__loader__": "ConstructorFromReduceNode",
        "content": _ARGS,
    }
    ref = _plant(
        repo, tmp_path, "tree", {"model.skops": _skops_file(node)}, _spec("skops", "model.skops")
    )
    with pytest.raises(UntrustedModel, match=r"sklearn\.tree\._tree\.Tree"):
        repo.load_model(ref)


def test_fitted_sklearn_models_still_load_without_trust(repo: mk.Repo) -> None:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = make_classification(n_samples=60, n_features=4, random_state=0)
    models = {
        "forest": make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3)),
        "boosted": GradientBoostingClassifier(n_estimators=3),
        "hist": HistGradientBoostingClassifier(max_iter=3),
    }
    for name, model in models.items():
        model.fit(x, y)
        repo.log_model(model, name)
        assert (repo.load_model(f"{name}:v1").predict(x) == model.predict(x)).all(), name


def test_a_broken_skops_file_is_one_line(repo: mk.Repo, tmp_path: Path) -> None:
    cases = {
        "notzip": b"this is not a zip archive",
        "noschema": _zip({"other.json": b"{}"}),
        "badjson": _zip({"schema.json": b"{not json"}),
    }
    for name, data in cases.items():
        ref = _plant(repo, tmp_path, name, {"model.skops": data}, _spec("skops", "model.skops"))
        with pytest.raises(ModelLoadFailed) as info:
            repo.load_model(ref)
        assert ref in _one_line(info.value), name


def _zip(members: dict[str, bytes]) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# -- torch: nothing named by the record is imported -------------------------------------------

_EVILMOD = """
import pathlib, torch
pathlib.Path("IMPORTED").write_text("evilmod ran")

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(2, 1)
"""

_LOADER = """
import sys, modelkeep as mk
trust = {trust}
{before}
try:
    m = mk.load_model("net:v1", repo=sys.argv[1], trust=trust)
    print("loaded", type(m).__module__, type(m).__name__)
except mk.errors.ModelkeepError as exc:
    print("refused", type(exc).__name__, "evilmod" in sys.modules)
    print(exc)
"""


def _torch_plant(repo: mk.Repo, tmp_path: Path) -> Path:
    """A torch version whose record names evilmod:Net; evilmod.py sits in the working
    folder of the process that loads, and writes IMPORTED when imported."""
    import torch
    from safetensors.torch import save_model

    work = tmp_path / "work"
    write(work / "evilmod.py", textwrap.dedent(_EVILMOD).encode())
    weights = tmp_path / "w.safetensors"
    layer = torch.nn.Module()  # the same parameters as evilmod.Net
    layer.w = torch.nn.Linear(2, 1)
    save_model(layer, str(weights))
    spec = _spec("torch", "model.safetensors", info={"class": "evilmod:Net", "init_kwargs": {}})
    _plant(repo, tmp_path, "net", {"model.safetensors": weights.read_bytes()}, spec)
    return work


def _load_in(work: Path, repo: mk.Repo, trust: str, before: str = "") -> list[str]:
    script = _LOADER.format(trust=trust, before=before)
    out = subprocess.run(
        [sys.executable, "-c", script, str(repo.root)],
        capture_output=True,
        text=True,
        cwd=work,
        check=False,
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    return out.stdout.splitlines()


def test_torch_record_cannot_make_load_model_import_a_module(repo: mk.Repo, tmp_path: Path) -> None:
    work = _torch_plant(repo, tmp_path)
    lines = _load_in(work, repo, "False")
    assert lines[0] == "refused UntrustedModel False", lines
    assert len(lines) == 2 and "evilmod.Net" in lines[1] and 'trust=["evilmod.Net"]' in lines[1]
    assert not (work / "IMPORTED").exists()
    # listed by name, the user's choice: it is imported and built
    assert _load_in(work, repo, '["evilmod.Net"]') == ["loaded evilmod Net"]
    assert (work / "IMPORTED").exists()


def test_torch_class_already_imported_by_the_program_loads(repo: mk.Repo, tmp_path: Path) -> None:
    work = _torch_plant(repo, tmp_path)
    assert _load_in(work, repo, "False", before="import evilmod") == ["loaded evilmod Net"]


@pytest.mark.parametrize(
    ("cls", "error"),
    [
        ("os:system", InvalidArgument),  # imported already, but no nn.Module
        ("torch.nn:__class__", InvalidArgument),  # dunder walks are refused
        ("../evil:Net", InvalidArgument),
        (5, ModelSpecInvalid),
    ],
)
def test_torch_class_path_must_name_an_nn_module(
    repo: mk.Repo, tmp_path: Path, cls: Any, error: type[Exception]
) -> None:
    from safetensors.torch import save_file

    save_file({}, str(tmp_path / "e.safetensors"))
    spec = _spec("torch", "model.safetensors", info={"class": cls})
    ref = _plant(
        repo, tmp_path, "n", {"model.safetensors": (tmp_path / "e.safetensors").read_bytes()}, spec
    )
    with pytest.raises(error) as info:
        repo.load_model(ref)
    _one_line(info.value)


# -- Hugging Face: any pickle anywhere needs trust ----------------------------------------------


def _tiny_bert_folder(folder: Path) -> Any:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    model: Any = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    return model.eval()


class _Payload:
    def __reduce__(self) -> Any:
        return (subprocess.check_output, (_COMMAND,))


@pytest.mark.parametrize(
    "extra", ["pytorch_model.bin", "sub/deeper/evil.pt", "optimizer.PTH", "state.pkl"]
)
def test_huggingface_pickle_beside_safetensors_needs_trust(
    repo: mk.Repo, tmp_path: Path, extra: str
) -> None:
    import pickle

    folder = tmp_path / "hf"
    _tiny_bert_folder(folder)
    write(folder / extra, pickle.dumps(_Payload()))
    repo.log_model(str(folder), "bert")
    assert repo.model_spec("bert:v1").format == "huggingface"
    with pytest.raises(UntrustedModel) as info:
        mk.load_model("bert:v1", repo=repo.root)
    assert extra in _one_line(info.value) and "pickle-based" in str(info.value)
    assert not any(tmp_path.rglob("PWNED"))


def test_huggingface_safetensors_only_loads_and_trust_allows_pickles(
    repo: mk.Repo, tmp_path: Path
) -> None:
    import torch

    folder = tmp_path / "hf"
    model = _tiny_bert_folder(folder)
    repo.log_model(str(folder), "clean")
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        assert torch.allclose(repo.load_model("clean:v1")(ids).logits, model(ids).logits)
    torch.save({"step": 1}, folder / "training_state.pt")
    repo.log_model(str(folder), "clean")
    with pytest.raises(UntrustedModel, match=r"training_state\.pt"):
        repo.load_model("clean:v2")
    with torch.no_grad():
        assert torch.allclose(
            repo.load_model("clean:v2", trust=True)(ids).logits, model(ids).logits
        )


def test_huggingface_remote_code_is_never_run(repo: mk.Repo, tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    _tiny_bert_folder(folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "evil-arch"  # no class in transformers: only the remote code
    config["auto_map"] = {"AutoModel": "evil_code.EvilModel", "AutoConfig": "evil_code.Cfg"}
    (folder / "config.json").write_text(json.dumps(config))
    write(folder / "evil_code.py", b"import pathlib\npathlib.Path('IMPORTED').write_text('x')\n")
    spec = _spec("huggingface", "model", info={"class": "AutoModel"})
    files = {f"model/{p.name}": p.read_bytes() for p in folder.iterdir()}
    ref = _plant(repo, tmp_path, "remote", files, spec)
    with pytest.raises(ModelkeepError) as info:
        repo.load_model(ref)
    _one_line(info.value)
    assert not any(tmp_path.rglob("IMPORTED"))
    assert "evil_code" not in sys.modules


# -- the model record: reserved on add, schema-checked on read --------------------------------


def test_model_metadata_key_is_reserved_on_add(repo: mk.Repo, tmp_path: Path) -> None:
    data = write(tmp_path / "w.bin", b"weights")
    with pytest.raises(InvalidArgument, match="'model' is modelkeep's own"):
        repo.add(data, "w", metadata={"model": {"format": "pickle", "path": "w.bin"}})
    r = cli("add", str(data), "--name", "w", "--meta", 'model={"format":"pickle"}', cwd=repo.root)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "'model' is modelkeep's own" in r.stderr
    with pytest.raises(ModelkeepError):
        repo.versions("w")
    repo.log_model(np.ones(2), "vec", metadata={"team": "a"})  # log_model still writes it
    assert repo.show("vec:v1").metadata["team"] == "a"
    assert repo.model_spec("vec:v1").format == "safetensors"


_BAD_RECORDS: list[tuple[Any, str]] = [
    ("a string", "the record is a text"),
    ({}, "format is missing"),
    (_spec("skops", "model.skops") | {"format": 5}, "format is a number"),
    (_spec("keras", "model.skops"), "'keras' is not one of"),
    (_spec("skops", "/etc/passwd"), "not a path inside"),
    (_spec("skops", "../../model.skops"), "not a path inside"),
    (_spec("skops", "model.skops") | {"libraries": [1]}, "libraries is a list"),
    (_spec("skops", "model.skops") | {"requirements": [1]}, "requirements[0] is a number"),
    (_spec("skops", "model.skops") | {"signature": {"type": "table"}}, "columns is missing"),
    (
        _spec("skops", "model.skops") | {"signature": {"type": "tensor", "dtype": 1}},
        "signature.dtype is a number",
    ),
    (_spec("skops", "model.skops") | {"info": []}, "info is a list"),
]


def test_malformed_model_records_are_one_line_in_card_and_load(
    repo: mk.Repo, tmp_path: Path
) -> None:
    """Rows edited straight in SQLite: `card` (real CLI) and load_model each say which
    field is wrong in one line; neither shows a traceback."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    repo.log_model(clf, "m")
    for i, (record, why) in enumerate(_BAD_RECORDS):
        _set_record(repo, "m:v1", record)
        r = cli("card", "m:v1", cwd=repo.root)
        assert r.returncode == 1, (i, r.stdout)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, (i, r.stderr)
        assert "model record of m:v1 is malformed" in r.stderr and why in r.stderr, (i, r.stderr)
        with pytest.raises(ModelSpecInvalid) as info:
            mk.load_model("m:v1", repo=repo.root)
        assert why in _one_line(info.value), i


def test_loader_failures_are_one_line(repo: mk.Repo, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({}, str(tmp_path / "e.safetensors"))
    weights = (tmp_path / "e.safetensors").read_bytes()
    cases: list[tuple[dict[str, bytes], dict[str, Any]]] = [
        ({}, _spec("skops", "model.skops")),  # the file the record names is not stored
        ({"arrays.safetensors": b"\xff" * 40}, _spec("safetensors", "arrays.safetensors")),
        ({"model.onnx": b"not protobuf"}, _spec("onnx", "model.onnx")),
        (
            {"model.safetensors": weights},
            _spec("torch", "model.safetensors", info={"class": "torch.nn:Linear"}),
        ),  # Linear() without its arguments
        (
            {"model.safetensors": weights},
            _spec(
                "torch",
                "model.safetensors",
                info={"class": "torch.nn:Identity", "init_kwargs": [1]},
            ),
        ),
        ({"model.json": b"{bad"}, _spec("xgboost", "model.json")),
    ]
    for i, (files, spec) in enumerate(cases):
        ref = _plant(repo, tmp_path, f"bad{i}", files, spec)
        with pytest.raises(ModelkeepError) as info:
            mk.load_model(ref, repo=repo.root)
        assert ref in _one_line(info.value), (i, info.value)


def test_card_degrades_when_the_input_example_is_unreadable(repo: mk.Repo, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    repo.log_model(clf, "m", input_example=np.array([[0.5]]))
    record = repo.show("m:v1").metadata["model"]
    files = {"model.skops": b"x", "input_example.json": b"\xff{ not json"}
    ref = _plant(repo, tmp_path, "shown", files, record)
    r = ok("card", ref, cwd=repo.root)
    assert "The input example cannot be read" in r.stdout and "Traceback" not in r.stderr
