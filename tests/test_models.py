"""Model objects: every format round-trips (the loaded model predicts what the original
did), loading never unpickles unless trusted, the card is assembled from the records, and
bad input is refused before anything is stored.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, text

import modelkeep as mk
from modelkeep.errors import (
    ArtifactNotFound,
    InvalidArgument,
    LibraryVersionWarning,
    MissingDependency,
    NotAModel,
    TypeMismatch,
    UnsupportedModel,
    UntrustedModel,
)
from modelkeep.formats import requirements
from tests.conftest import cli, jcli, ok, write

pytestmark = pytest.mark.usefixtures("outside_this_checkout")


def _forest(x: Any, y: Any) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=10, random_state=0)
    ).fit(x, y)


def _nothing_stored(repo: mk.Repo, name: str) -> None:
    with pytest.raises(ArtifactNotFound):
        repo.versions(name)
    assert repo.du().chunks == 0


# -- scikit-learn ------------------------------------------------------------------------


def test_sklearn_pipeline_round_trips_with_signature_and_requirements(
    backend_repo: mk.Repo, data: tuple[Any, Any]
) -> None:
    x, y = data
    clf = _forest(x, y)
    v = backend_repo.log_model(clf, "cancer", input_example=x[:3], message="screening")
    assert (v.ref, v.type, v.kind) == ("cancer:v1", "model", "dir")
    spec = backend_repo.model_spec("cancer:v1")
    assert spec.format == "skops"
    assert spec.object == "sklearn.pipeline.Pipeline"
    assert set(spec.libraries) == {"sklearn", "skops"}
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in spec.requirements
    assert spec.signature is not None and spec.signature["type"] == "table"
    assert spec.signature["columns"][0] == {"name": "mean radius", "dtype": "float64"}
    example = backend_repo.input_example("cancer:v1")  # a DataFrame again, dtypes and all
    assert list(example.columns) == list(x.columns)
    assert example.iloc[0].tolist() == [float(c) for c in x.iloc[0]]
    loaded = backend_repo.load_model("cancer:v1")
    assert (loaded.predict(x) == clf.predict(x)).all()
    assert np.array_equal(loaded.predict_proba(x), clf.predict_proba(x))
    names = sorted(f.path for f in backend_repo.files("cancer:v1"))
    assert names == ["MODEL.json", "input_example.json", "model.skops"]


def test_skops_refuses_untrusted_types_by_name(repo: mk.Repo, data: tuple[Any, Any]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from tests.model_classes import Doubler

    x, y = data
    clf = make_pipeline(Doubler(), StandardScaler(), LogisticRegression()).fit(x.values, y)
    repo.log_model(clf, "custom")
    with pytest.raises(UntrustedModel, match=r"tests\.model_classes\.Doubler") as info:
        repo.load_model("custom:v1")
    assert info.value.types == ("tests.model_classes.Doubler",)
    assert "trust=True" in str(info.value) and "trusted_types" in str(info.value)
    by_name = repo.load_model("custom:v1", trust=["tests.model_classes.Doubler"])
    assert (by_name.predict(x.values) == clf.predict(x.values)).all()
    assert repo.load_model("custom:v1", trust=True).predict(x.values[:5]).shape == (5,)
    config = repo.settings.control_dir / "config.toml"
    config.write_text('trusted_types = ["tests.model_classes.Doubler"]\n')
    with mk.open(repo.root) as again:
        assert (again.load_model("custom:v1").predict(x.values) == clf.predict(x.values)).all()


@pytest.mark.parametrize("fmt", ["pickle", "joblib"])
def test_pickle_formats_load_only_when_trusted(
    repo: mk.Repo, data: tuple[Any, Any], fmt: str
) -> None:
    x, y = data
    clf = _forest(x, y)
    repo.log_model(clf, "pickled", format=fmt)
    assert repo.model_spec("pickled:v1").format == fmt
    with pytest.raises(UntrustedModel, match="unpickling runs whatever code") as info:
        repo.load_model("pickled:v1")
    assert "trust=True" in str(info.value) and "trust_pickle" in str(info.value)
    assert (repo.load_model("pickled:v1", trust=True).predict(x) == clf.predict(x)).all()
    (repo.settings.control_dir / "config.toml").write_text("trust_pickle = true\n")
    with mk.open(repo.root) as again:
        assert (again.load_model("pickled:v1").predict(x) == clf.predict(x)).all()


def test_bad_trust_settings_are_errors(repo: mk.Repo) -> None:
    (repo.settings.control_dir / "config.toml").write_text('trust_pickle = "yes"\n')
    with pytest.raises(InvalidArgument, match="trust_pickle must be true or false"):
        mk.open(repo.root)
    (repo.settings.control_dir / "config.toml").write_text("trusted_types = 3\n")
    with pytest.raises(InvalidArgument, match="trusted_types must be a list"):
        mk.open(repo.root)


# -- PyTorch, arrays, ONNX -----------------------------------------------------------------


def test_torch_module_rebuilds_from_its_class_and_weights(repo: mk.Repo) -> None:
    import torch

    from tests.model_classes import TinyNet

    torch.manual_seed(0)
    net = TinyNet(4, hidden=16).eval()
    example = torch.randn(3, 4)
    repo.log_model(net, "net", init_kwargs={"n_in": 4, "hidden": 16}, input_example=example)
    spec = repo.model_spec("net:v1")
    assert spec.format == "torch"
    assert spec.info["class"] == "tests.model_classes:TinyNet"
    assert spec.signature == {"type": "tensor", "dtype": "float32", "shape": [-1, 4]}
    assert [f.path for f in repo.files("net:v1")] == [
        "MODEL.json",
        "input_example.json",
        "model.safetensors",
    ]
    loaded = repo.load_model("net:v1")
    assert isinstance(loaded, TinyNet) and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(example), net(example))


def test_torch_state_dict_round_trips(repo: mk.Repo) -> None:
    import torch

    from tests.model_classes import TinyNet

    state = TinyNet(3).state_dict()
    repo.log_model(state, "weights")
    loaded = repo.load_model("weights:v1")
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_torch_module_that_cannot_be_rebuilt_is_refused_before_storing(repo: mk.Repo) -> None:
    import torch

    from tests.model_classes import TinyNet

    with pytest.raises(InvalidArgument, match="init_kwargs"):
        repo.log_model(TinyNet(4), "net")  # n_in is required

    class Local(torch.nn.Module):
        pass

    with pytest.raises(InvalidArgument, match="cannot import"):
        repo.log_model(Local(), "net")
    _nothing_stored(repo, "net")


def test_numpy_arrays_round_trip_in_safetensors(repo: mk.Repo) -> None:
    rng = np.random.default_rng(0)
    single = rng.standard_normal((5, 3)).astype(np.float32)
    many = {"w": rng.standard_normal((4, 4)), "b": np.arange(4, dtype=np.int64)}
    repo.log_model(single, "arr")
    repo.log_model(many, "arrs", input_example={"x": single[:2]})
    assert repo.model_spec("arr:v1").format == "safetensors"
    assert np.array_equal(repo.load_model("arr:v1"), single)
    loaded = repo.load_model("arrs:v1")
    assert set(loaded) == {"w", "b"} and all(np.array_equal(loaded[k], many[k]) for k in many)
    sig = repo.model_spec("arrs:v1").signature
    assert sig == {
        "type": "tensors",
        "inputs": {"x": {"type": "tensor", "dtype": "float32", "shape": [-1, 3]}},
    }
    with pytest.raises(InvalidArgument, match="numeric arrays only"):
        repo.log_model(np.array(["a", "b"]), "words")
    _nothing_stored_name(repo, "words")


def _nothing_stored_name(repo: mk.Repo, name: str) -> None:
    with pytest.raises(ArtifactNotFound):
        repo.versions(name)


def _onnx_model() -> Any:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "w")
    b = numpy_helper.from_array(np.array([0.5, -1.0], dtype=np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_onnx_round_trips(repo: mk.Repo) -> None:
    import onnxruntime as ort

    model = _onnx_model()
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    repo.log_model(model, "affine", input_example=x)
    loaded = repo.load_model("affine:v1")
    assert loaded == model

    def run(m: Any) -> Any:
        return ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]

    assert np.array_equal(run(loaded), run(model))
    assert repo.model_spec("affine:v1").info == {"opset": [17]}


# -- gradient boosting -------------------------------------------------------------------------


def test_xgboost_estimator_and_booster_round_trip(repo: mk.Repo, data: tuple[Any, Any]) -> None:
    import xgboost as xgb

    x, y = data
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(x, y)
    repo.log_model(clf, "xgb")
    repo.log_model(clf.get_booster(), "xgb-booster")
    assert [f.path for f in repo.files("xgb:v1")] == ["MODEL.json", "model.json"]
    loaded = repo.load_model("xgb:v1")
    assert isinstance(loaded, xgb.XGBClassifier)
    assert np.array_equal(loaded.predict_proba(x), clf.predict_proba(x))
    booster = repo.load_model("xgb-booster:v1")
    assert np.array_equal(
        booster.predict(xgb.DMatrix(x)), clf.get_booster().predict(xgb.DMatrix(x))
    )


def test_lightgbm_round_trips_as_text(repo: mk.Repo, data: tuple[Any, Any]) -> None:
    import lightgbm as lgb

    x, y = data
    clf = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y)
    repo.log_model(clf.booster_, "lgb")
    repo.log_model(clf, "lgb-sk")
    assert np.array_equal(repo.load_model("lgb:v1").predict(x), clf.booster_.predict(x))
    as_booster = repo.load_model("lgb-sk:v1")  # a wrapper comes back as its booster
    assert isinstance(as_booster, lgb.Booster)
    proba: Any = clf.predict_proba(x)
    assert np.array_equal(as_booster.predict(x), proba[:, 1])
    with repo.open("lgb:v1", "model.txt") as f:
        assert f.read(5) == b"tree\n"


# -- Hugging Face, files -------------------------------------------------------------------


def _tiny_bert() -> Any:
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
    return model.eval()


def test_huggingface_model_and_folder_round_trip(repo: mk.Repo, tmp_path: Path) -> None:
    import torch

    model = _tiny_bert()
    ids = torch.tensor([[1, 5, 7, 2]])
    repo.log_model(model, "bert", input_example=ids)
    spec = repo.model_spec("bert:v1")
    assert (spec.format, spec.info["class"]) == ("huggingface", "BertForSequenceClassification")
    loaded = repo.load_model("bert:v1")
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits)
    folder = tmp_path / "pretrained"
    model.save_pretrained(folder)
    repo.log_model(str(folder), "bert-folder")  # a save_pretrained folder is detected
    assert repo.model_spec("bert-folder:v1").format == "huggingface"
    with torch.no_grad():
        assert torch.allclose(repo.load_model("bert-folder:v1")(ids).logits, model(ids).logits)


def test_huggingface_pickled_weights_need_trust(repo: mk.Repo, tmp_path: Path) -> None:
    import torch

    model = _tiny_bert()
    folder = tmp_path / "legacy"
    model.save_pretrained(folder)
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    repo.log_model(str(folder), "legacy")
    with pytest.raises(UntrustedModel, match=r"pickle-based files \(pytorch_model\.bin\)"):
        repo.load_model("legacy:v1")
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        trusted = repo.load_model("legacy:v1", trust=True)
        assert torch.allclose(trusted(ids).logits, model(ids).logits)


def test_files_and_folders_load_as_paths(repo: mk.Repo, tmp_path: Path) -> None:
    one = write(tmp_path / "weights.gguf", b"GGUF" + bytes(range(256)) * 100)
    folder = tmp_path / "bundle"
    write(folder / "a.bin", b"a" * 10)
    write(folder / "sub" / "b.txt", b"b")
    repo.log_model(one, "gguf")
    repo.log_model(folder, "bundle", format="files")
    path = repo.load_model("gguf:v1")
    assert isinstance(path, Path) and path.name == "weights.gguf"
    assert path.read_bytes() == one.read_bytes()
    restored = repo.load_model("bundle:v1")
    assert (restored / "sub" / "b.txt").read_bytes() == b"b"
    assert repo.load_model("gguf:v1") == path  # one copy per content, reused


# -- runs, registry, fresh process -------------------------------------------------------------


def test_run_log_model_links_the_run_and_loads_in_a_fresh_process(
    repo: mk.Repo, data: tuple[Any, Any], tmp_path: Path
) -> None:
    x, y = data
    clf = _forest(x, y)
    with mk.start_run(repo=repo, params={"n_estimators": 10}) as run:
        run.log_metric("auc", 0.97)
        v = run.log_model(clf, "cancer", input_example=x[:2], register=True)
    assert v.run_id == run.id and v.registered
    repo.promote(v.ref, "staging")
    repo.promote(v.ref, "production")
    x.iloc[:20].to_csv(tmp_path / "rows.csv", index=False)
    script = (
        "import sys, pandas as pd, modelkeep as mk\n"
        "m = mk.load_model('cancer@production', repo=sys.argv[1])\n"
        "print(','.join(str(int(p)) for p in m.predict(pd.read_csv(sys.argv[2]))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(repo.root), str(tmp_path / "rows.csv")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert out.stdout.strip() == ",".join(str(int(p)) for p in clf.predict(x.iloc[:20]))


def test_load_model_inside_a_run_records_the_input(repo: mk.Repo) -> None:
    repo.log_model(np.ones(3), "vec")
    with mk.start_run(repo=repo) as run:
        mk.load_model("vec:v1", repo=repo)
    assert repo.run(run.id).inputs == ("vec:v1",)


def test_major_library_mismatch_warns_naming_both(repo: mk.Repo) -> None:
    import safetensors

    repo.log_model(np.ones(3), "vec")
    engine = create_engine(repo.settings.database_url)
    with engine.begin() as c:
        doc = json.loads(c.execute(text("SELECT metadata_json FROM versions")).scalar_one())
        doc["model"]["libraries"]["safetensors"] = "7.0.0"
        c.execute(text("UPDATE versions SET metadata_json = :m"), {"m": json.dumps(doc)})
    engine.dispose()
    with pytest.warns(LibraryVersionWarning, match=f"safetensors 7.0.0; {safetensors.__version__}"):
        repo.load_model("vec:v1")
    assert requirements.mismatches({"numpy": np.__version__}) == []
    assert requirements.mismatches({"numpy": "0.9.0"}) == [("numpy", "0.9.0", np.__version__)]


# -- bad input ---------------------------------------------------------------------------------


def test_loading_a_dataset_says_it_is_not_a_model(repo: mk.Repo, tmp_path: Path) -> None:
    repo.add(write(tmp_path / "d.csv", b"a,b\n1,2\n"), "rows", type="dataset")
    with pytest.raises(NotAModel, match="rows:v1 is a dataset version, not a model"):
        repo.load_model("rows:v1")


def test_unsupported_object_names_formats_and_stores_nothing(repo: mk.Repo) -> None:
    with pytest.raises(UnsupportedModel) as info:
        repo.log_model(object(), "thing")
    message = str(info.value)
    assert "builtins.object" in message and "skops" in message and "files" in message
    assert "file or folder" in message
    _nothing_stored(repo, "thing")
    with pytest.raises(InvalidArgument, match="unknown model format 'keras'"):
        repo.log_model(np.ones(2), "thing", format="keras")


def test_missing_optional_dependency_names_the_extra(
    repo: mk.Repo, data: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = data
    clf = _forest(x, y)
    monkeypatch.setitem(sys.modules, "skops.io", None)  # as if skops were not installed
    with pytest.raises(MissingDependency, match=r"pip install 'modelkeep\[sklearn\]'"):
        repo.log_model(clf, "cancer")
    _nothing_stored(repo, "cancer")


@pytest.mark.parametrize(
    ("example", "why"),
    [
        (np.array([object(), object()]), "dtype object"),
        (np.array([1 + 2j]), "dtype complex128"),
        ({1: np.ones(2)}, "text keys"),
        ({"x": [[1, 2], [3]]}, "key 'x'"),
    ],
)
def test_unstorable_input_example_is_refused_before_storing(
    repo: mk.Repo, example: Any, why: str
) -> None:
    with pytest.raises(InvalidArgument, match="input_example cannot be stored") as info:
        repo.log_model(np.ones(3), "vec", input_example=example)
    assert why in str(info.value)
    _nothing_stored(repo, "vec")


def test_model_name_of_another_type_and_reserved_metadata_are_refused(
    repo: mk.Repo, tmp_path: Path
) -> None:
    repo.add(write(tmp_path / "d.csv", b"x\n"), "rows", type="dataset")
    with pytest.raises(TypeMismatch):
        repo.log_model(np.ones(3), "rows")
    with pytest.raises(InvalidArgument, match="'model' is modelkeep's own"):
        repo.log_model(np.ones(3), "vec", metadata={"model": 1})
    assert [v.ref for v in repo.versions("rows")] == ["rows:v1"]


# -- model card --------------------------------------------------------------------------------


def test_card_is_assembled_from_the_records(tmp_path: Path, data: tuple[Any, Any]) -> None:
    x, y = data
    root = tmp_path / "proj"
    with mk.init(root) as repo:
        x.iloc[:400].to_csv(tmp_path / "train.csv", index=False)
        x.iloc[400:].to_csv(tmp_path / "test.csv", index=False)
        repo.add(tmp_path / "train.csv", "cancer-train", type="dataset")
        repo.add(tmp_path / "test.csv", "cancer-test", type="dataset")
        with mk.start_run(repo=repo, name="train", params={"n_estimators": 10}) as run:
            run.use("cancer-train:v1")
            run.log_metric("auc", 0.991)
            run.log_model(_forest(x, y), "cancer", input_example=x[:2], message="flags tumours")
        with mk.start_run(repo=repo, name="evaluate") as ev:
            ev.use("cancer:v1")
            ev.use("cancer-test:v1")
        repo.register("cancer:v1", "cancer")
        repo.promote("cancer:v1", "staging", reason="looks good")
    r = ok("card", "cancer@staging", cwd=root)
    card = r.stdout
    assert card.startswith("# cancer v1\n\nflags tumours\n")
    for expected in (
        "| stage | staging (registered) |",
        "| format | skops (sklearn.pipeline.Pipeline) |",
        "none → staging",
        "looks good",
        "| auc | 0.991 |",
        "| n_estimators | 10 |",
        "- training: `cancer-train:v1`",
        "- evaluation: `cancer-test:v1` (run",
        "| mean radius | float64 |",
        "| 17.99 | 10.38 |",
        "## Requirements",
        "- `scikit-learn==",
        "## Environment",
        "- Python ",
    ):
        assert expected in card, expected
    out = root / "card.md"
    r = ok("card", "cancer:v1", "--output", str(out), cwd=root)
    assert out.read_text() == card and "wrote the card" in r.stdout
    doc = jcli("card", "cancer:v1", cwd=root)
    assert doc["version"] == "cancer:v1" and doc["card"] == card
    assert doc["model"]["format"] == "skops"


def test_card_failures_are_one_line_and_exit_1(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    with mk.init(root) as repo:
        repo.add(write(tmp_path / "d.csv", b"x\n"), "rows", type="dataset")
        repo.log_model(np.ones(2), "vec")
    for args, message in (
        (("card", "rows:v1"), "not a model"),
        (("card", "missing:v1"), "no artifact named 'missing'"),
        (("card", "vec@production"), "production"),
        (("card", "vec:v1", "--output", str(tmp_path / "no" / "such" / "card.md")), "cannot write"),
    ):
        r = cli(*args, cwd=root)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "no").exists()
