"""Models that predict safely: the input example comes back as the type it was logged as
(and a crafted one is refused in one line), predict checks its input against the
signature, and retraining the same model makes no new version.
"""

from __future__ import annotations

import json
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sqlalchemy import create_engine, text

import modelkeep as mk
from modelkeep.errors import (
    ExtraInputColumns,
    InputExampleInvalid,
    InputSchemaError,
    InputShapeMismatch,
    InputTypeMismatch,
    MissingInputColumn,
    ModelUnchanged,
    UncheckableInput,
)
from modelkeep.formats import examples, signature
from modelkeep.formats.schema import CheckedModel
from tests.conftest import write

pytestmark = pytest.mark.usefixtures("outside_this_checkout")


def _forest(x: Any, y: Any, seed: int = 0) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=5, random_state=seed).fit(x, y)


def _frame() -> pd.DataFrame:
    """One column of every dtype an example keeps, and a named integer index."""
    return pd.DataFrame(
        {
            "i": np.array([1, 2, 3], dtype="int32"),
            "f": [1.5, np.nan, 3.0],
            "b": [True, False, True],
            "s": ["a", "b", None],
            "c": pd.Categorical(["x", "y", "x"], categories=["y", "x", "z"], ordered=True),
            "d": pd.to_datetime(
                ["2020-01-01 00:00:00.123456789", "2021-02-03", None], format="ISO8601"
            ),
            "dz": pd.to_datetime(["2020-01-01", "2021-02-03", "2022-01-01"]).tz_localize(
                "Europe/Paris"
            ),
            "n": pd.array([1, None, 3], dtype="Int64"),
            7: [1, 2, 3],
        },
        index=pd.Index([10, 20, 30], name="id"),
    )


# -- input examples come back as what was given --------------------------------------------


def test_dataframe_example_round_trips_with_dtypes_and_index(repo: mk.Repo) -> None:
    frame = _frame()
    repo.log_model(np.ones(2), "frame", input_example=frame)
    back = repo.input_example("frame:v1")
    pd.testing.assert_frame_equal(back, frame)  # values, dtypes, column names, index
    assert repo.model_spec("frame:v1").signature == {
        "type": "table",
        "columns": [{"name": str(n), "dtype": str(d)} for n, d in frame.dtypes.items()],
    }
    series = pd.Series([1.5, 2.5], name="x", index=pd.RangeIndex(5, 7))
    repo.log_model(np.ones(2), "series", input_example=series)
    pd.testing.assert_series_equal(repo.input_example("series:v1"), series)
    timed = pd.DataFrame({"a": [1, 2]}, index=pd.to_datetime(["2020-01-01", "2020-01-02"]))
    repo.log_model(np.ones(2), "timed", input_example=timed)
    pd.testing.assert_frame_equal(repo.input_example("timed:v1"), timed)


def test_arrays_dicts_lists_and_text_round_trip_as_themselves(repo: mk.Repo) -> None:
    import torch

    cube = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    cases: list[tuple[str, Any]] = [
        ("cube", cube),
        ("ints", np.array([[1, 2], [3, 4]], dtype=np.int16)),
        ("flags", np.array([True, False])),
        ("words", np.array(["ab", "c"])),
        ("scalar", np.float64(2.5)),
        ("arrays", {"x": cube[:1], "mask": np.array([[1, 0]], dtype=np.uint8)}),
        ("rows", [[1.0, 2.0], [3.0, 4.0]]),
        ("text", ["a sentence", "another"]),
        ("tensor", torch.arange(6, dtype=torch.bfloat16).reshape(2, 3)),
    ]
    for name, example in cases:
        repo.log_model(np.ones(2), name, input_example=example)
        back = repo.input_example(f"{name}:v1")
        if isinstance(example, dict):
            assert set(back) == set(example)
            for k in example:
                assert back[k].dtype == example[k].dtype and np.array_equal(back[k], example[k])
        elif isinstance(example, torch.Tensor):
            assert isinstance(back, torch.Tensor) and back.dtype == example.dtype
            assert torch.equal(back, example)
        elif isinstance(example, list):
            assert back == example and isinstance(back, list)
        else:
            assert isinstance(back, np.ndarray), name
            assert (back.dtype, back.shape) == (np.asarray(example).dtype, np.shape(example))
            assert np.array_equal(back, example)


@given(
    hnp.arrays(
        st.sampled_from([np.bool_, np.int8, np.int64, np.uint32, np.float32, np.float64]),
        hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
    )
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_numeric_array_round_trips_through_json(array: np.ndarray) -> None:
    sig, doc = signature.describe(array)
    back = examples.decode(json.loads(json.dumps(doc)), sig, "a:v1", "input_example.json")
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array, equal_nan=array.dtype.kind == "f")


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )


@given(st.sampled_from(["frame", "array", "dict"]), st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_tampered_example_is_refused_in_one_line_or_read(kind: str, draw: st.DataObject) -> None:
    """Any field replaced by any JSON value: decoding either succeeds or raises
    InputExampleInvalid, never another exception."""
    example: Any = {
        "frame": _frame(),
        "array": np.arange(6.0).reshape(2, 3),
        "dict": {"x": np.arange(3)},
    }[kind]
    sig, doc = signature.describe(example)
    doc = json.loads(json.dumps(doc))
    path = draw.draw(st.lists(st.integers(0, 50), min_size=1, max_size=4))
    _replace(doc, path, draw.draw(_json_values()))
    try:
        examples.decode(doc, sig, "m:v1", "input_example.json")
    except InputExampleInvalid as exc:
        assert "\n" not in str(exc) and "m:v1" in str(exc)


def _replace(doc: Any, path: list[int], value: Any) -> None:
    """Replace the value reached by following path (indices into keys or items)."""
    for step in path:
        keys = list(doc) if isinstance(doc, dict) else list(range(len(doc)))
        if not keys:
            return
        key = keys[step % len(keys)]
        if not isinstance(doc[key], dict | list) or step == path[-1]:
            doc[key] = value
            return
        doc = doc[key]


# -- examples written before the type was recorded, and crafted ones --------------------------


def _set_record(repo: mk.Repo, ref: str, doc: Any) -> None:
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


def _with_example(repo: mk.Repo, where: Path, name: str, example: bytes, like: str) -> str:
    """A model version like `like` whose input_example.json holds example."""
    folder = where / "planted" / name
    write(folder / "arrays.safetensors", b"x")
    write(folder / "input_example.json", example)
    ref = repo.add(folder, name, type="model").version.ref
    _set_record(repo, ref, repo.show(like).metadata["model"])
    return ref


def test_examples_stored_by_older_versions_still_read(repo: mk.Repo, tmp_path: Path) -> None:
    repo.log_model(np.ones(2), "table", input_example=pd.DataFrame({"a": [1.5], "b": [2]}))
    repo.log_model(np.ones(2), "array", input_example=np.zeros((2, 3), dtype=np.float32))
    old_table = {  # what log_model wrote before the type was recorded
        "signature": repo.model_spec("table:v1").signature,
        "data": {"columns": ["a", "b"], "data": [[1.5, 2], [0.5, 3]]},
    }
    table = _with_example(repo, tmp_path, "old-table", json.dumps(old_table).encode(), "table:v1")
    expected = pd.DataFrame({"a": [1.5, 0.5], "b": [2, 3]})
    pd.testing.assert_frame_equal(repo.input_example(table), expected)  # dtypes: the signature's
    assert "| 1.5 | 2 |" in repo.card(table)
    old_array = {"signature": repo.model_spec("array:v1").signature, "data": [[0.0] * 3] * 2}
    ref = _with_example(repo, tmp_path, "old-array", json.dumps(old_array).encode(), "array:v1")
    back = repo.input_example(ref)
    assert back.dtype == np.float32 and back.shape == (2, 3)


CRAFTED: list[tuple[str, Any, str]] = [
    (
        "huge shape",
        {"type": "ndarray", "dtype": "float64", "shape": [10**12, 10**6], "data": [1.0]},
        "shape",
    ),
    ("void dtype", {"type": "ndarray", "dtype": "V1000000000", "data": [1]}, "dtype"),
    ("object dtype", {"type": "ndarray", "dtype": "object", "data": [1]}, "dtype"),
    ("text as floats", {"type": "ndarray", "dtype": "float64", "data": ["1"]}, "not float64"),
    ("ragged", {"type": "ndarray", "dtype": "float64", "data": [[1.0], [1.0, 2.0]]}, "ragged"),
    (
        "short row",
        {
            "type": "DataFrame",
            "dtypes": ["float64", "int64"],
            "data": {"columns": ["a", "b"], "data": [[1.0, 2], [1.0]]},
        },
        "2 values",
    ),
    (
        "dtype count",
        {
            "type": "DataFrame",
            "dtypes": ["float64"],
            "data": {"columns": ["a", "b"], "data": [[1.0, 2]]},
        },
        "one dtype",
    ),
    (
        "unknown dtype",
        {
            "type": "DataFrame",
            "dtypes": ["float64", "pickle"],
            "data": {"columns": ["a", "b"], "data": [[1.0, 2]]},
        },
        "'pickle'",
    ),
    (
        "text in ints",
        {
            "type": "DataFrame",
            "dtypes": ["float64", "int64"],
            "data": {"columns": ["a", "b"], "data": [[1.0, "2"]]},
        },
        "int64",
    ),
    (
        "null in ints",
        {
            "type": "DataFrame",
            "dtypes": ["float64", "int64"],
            "data": {"columns": ["a", "b"], "data": [[1.0, None]]},
        },
        "missing",
    ),
    (
        "not a category",
        {
            "type": "DataFrame",
            "dtypes": ["category"],
            "categories": {"0": {"values": ["x"], "ordered": False}},
            "data": {"columns": ["a"], "data": [["y"]]},
        },
        "categories",
    ),
    (
        "bad tz",
        {
            "type": "DataFrame",
            "dtypes": ["datetime64[ns, Mars/Olympus]"],
            "data": {"columns": ["a"], "data": [["2020-01-01T00:00:00"]]},
        },
        "datetime64",
    ),
    (
        "huge range",
        {
            "type": "DataFrame",
            "dtypes": ["float64"],
            "index": {"range": [0, 10**15, 1]},
            "data": {"columns": ["a"], "data": [[1.0]]},
        },
        "index range",
    ),
    (
        "wide text",  # numpy would give each of the million "" the long one's width: 4 TB
        {"type": "ndarray", "dtype": "str", "data": ["x" * 1_000_000] + [""] * 1_000_000},
        "would take",
    ),
    ("unknown type", {"type": "Pickle", "data": "gASV"}, "unknown example type"),
    ("no data", {"type": "ndarray", "dtype": "float64"}, "no 'data'"),
]


@pytest.mark.parametrize(("case", "doc", "says"), CRAFTED, ids=[c[0] for c in CRAFTED])
def test_a_crafted_example_is_refused_in_one_line(
    repo: mk.Repo, tmp_path: Path, case: str, doc: Any, says: str
) -> None:
    repo.log_model(np.ones(2), "real", input_example=np.zeros((1, 2)))
    ref = _with_example(repo, tmp_path, "crafted", json.dumps(doc).encode(), "real:v1")
    tracemalloc.start()
    try:
        with pytest.raises(InputExampleInvalid) as info:
            repo.input_example(ref)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "\n" not in message and ref in message and says in message, message
    assert peak < 50 * 2**20, peak  # nothing was allocated from a declared size


def test_unreadable_and_oversized_example_files_are_refused(
    repo: mk.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.log_model(np.ones(2), "real", input_example=np.zeros((1, 2)))
    deep = b"[" * 100_000 + b"]" * 100_000
    for i, raw in enumerate([b"\xff{ not json", deep, b'{"data": 1, "type": "ndarray"}']):
        ref = _with_example(repo, tmp_path, f"bad{i}", raw, "real:v1")
        with pytest.raises(InputExampleInvalid, match=ref):
            repo.input_example(ref)
    monkeypatch.setattr(examples, "FILE_LIMIT", 1000)
    ref = _with_example(repo, tmp_path, "big", b" " * 2000 + b"{}", "real:v1")
    with pytest.raises(InputExampleInvalid, match="over"):
        repo.input_example(ref)


# -- predict checks its input against the signature --------------------------------------------


def test_predict_checks_columns_dtypes_and_shapes(repo: mk.Repo, data: tuple[Any, Any]) -> None:
    x, y = data
    clf = _forest(x, y)
    repo.log_model(clf, "cancer", input_example=x[:3])
    model = repo.load_model("cancer:v1")
    assert isinstance(model, CheckedModel) and model.native.__class__ is clf.__class__
    assert (model.predict(x) == clf.predict(x)).all()
    assert np.array_equal(model.predict_proba(x), clf.predict_proba(x))
    assert list(model.classes_) == list(clf.classes_)  # everything else is the model's own

    with pytest.raises(MissingInputColumn, match="'mean radius'") as missing:
        model.predict(x.drop(columns=["mean radius"]))
    assert missing.value.names == ("mean radius",) and "\n" not in str(missing.value)

    texts = x.assign(**{"mean area": x["mean area"].astype(str)})
    with pytest.raises(InputTypeMismatch) as wrong:
        model.predict_proba(texts)  # predict_proba is checked as well
    assert (wrong.value.column, wrong.value.expected, wrong.value.given) == (
        "column 'mean area'",
        "float64",
        "str",
    )
    assert "'mean area'" in str(wrong.value) and "float64" in str(wrong.value)

    with pytest.raises(InputShapeMismatch, match=r"\(N, 30\).*|.*\(569, 5\)") as shape:
        model.predict(x.to_numpy()[:, :5])
    assert (shape.value.expected, shape.value.given) == ("(N, 30)", "(569, 5)")
    with pytest.raises(UncheckableInput, match="set"):
        model.predict({1, 2})
    assert isinstance(shape.value, InputSchemaError)


def test_extra_columns_warn_and_are_dropped_order_is_the_signatures(
    repo: mk.Repo, data: tuple[Any, Any]
) -> None:
    x, y = data
    clf = _forest(x, y)
    repo.log_model(clf, "cancer", input_example=x[:3])
    model = repo.load_model("cancer:v1")
    shuffled = x[list(reversed(x.columns))].assign(patient_id=range(len(x)))
    with pytest.warns(ExtraInputColumns, match="'patient_id'"):
        predicted = model.predict(shuffled)
    assert (predicted == clf.predict(x)).all()


@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True),
    st.sampled_from(["int8", "int64", "float32", "float64", "bool", "str"]),
)
@settings(max_examples=100, deadline=None)
def test_conform_gives_the_signatures_columns_in_order_or_refuses(
    names: list[str], dtype: str
) -> None:
    """Whatever columns come, in whatever order and dtype: exactly the signature's columns
    in its order and dtypes, or an InputSchemaError; extras always warned about."""
    from modelkeep.formats.schema import conform

    sig = {"type": "table", "columns": [{"name": n, "dtype": "float64"} for n in "abc"]}
    values = ["x", "y"] if dtype == "str" else [1, 0]
    frame = pd.DataFrame({n: pd.Series(values, dtype=dtype) for n in names})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = conform(sig, frame, "m:v1")
        except MissingInputColumn as exc:
            assert set(exc.names) == {"a", "b", "c"} - set(names)
            return
        except InputTypeMismatch as exc:
            assert dtype == "str" and exc.given == "str"  # numbers and bools widen safely
            return
    assert list(out.columns) == ["a", "b", "c"]
    assert all(str(t) == "float64" for t in out.dtypes)
    extras = set(names) - {"a", "b", "c"}
    assert bool(extras) == any(issubclass(w.category, ExtraInputColumns) for w in caught)


def test_safe_widening_is_converted_and_narrowing_refused(repo: mk.Repo) -> None:
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": np.array([1, 0, 1], dtype=np.int64)})
    target = [1.0, 2.0, 3.5]
    reg = LinearRegression().fit(frame, target)
    repo.log_model(reg, "reg", input_example=frame)
    model = repo.load_model("reg:v1")
    ints = frame.assign(a=np.array([1, 2, 3], dtype=np.int32), b=frame.b.astype(np.int32))
    assert np.allclose(model.predict(ints), reg.predict(frame))  # int → float, int32 → int64
    nullable = frame.assign(a=pd.array([1, 2, 3], dtype="Int64"))
    assert np.allclose(model.predict(nullable), reg.predict(frame))
    narrowing = r"'b' of the input to reg:v1 is float64, but its signature wants int64"
    with pytest.raises(InputTypeMismatch, match=narrowing):
        model.predict(frame.assign(b=[1.0, 0.0, 1.0]))  # float → int loses
    with pytest.raises(InputTypeMismatch, match="missing values"):
        model.predict(frame.assign(b=pd.array([1, None, 1], dtype="Int64")))
    assert np.allclose(model.predict([[1, 1], [2, 0]]), reg.predict(frame[:2]))  # named too
    assert not hasattr(model, "predict_proba")  # only what the model has


def test_arrays_are_checked_against_a_tensor_signature(
    repo: mk.Repo, data: tuple[Any, Any]
) -> None:
    x, y = data
    arr = x.to_numpy(dtype=np.float32)
    clf = _forest(arr, y)
    repo.log_model(clf, "arr", input_example=arr[:2])
    model = repo.load_model("arr:v1")
    assert (model.predict(arr.astype(np.float16)) == clf.predict(arr)).all()  # widened
    with pytest.raises(InputShapeMismatch, match=r"\(N, 30\)"):
        model.predict(arr[:, :29])
    with pytest.raises(InputTypeMismatch, match=r"is float64, but its signature wants float32"):
        model.predict(arr.astype(np.float64))  # narrowing is not safe
    with pytest.raises(InputTypeMismatch, match=r"^the input to arr:v1 is <U32, but .* float32"):
        model.predict(arr.astype(str))


def test_native_and_checked_false_bypass_and_no_signature_is_unwrapped(
    repo: mk.Repo, data: tuple[Any, Any]
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    x, y = data
    clf = _forest(x, y)
    repo.log_model(clf, "with", input_example=x[:2])
    repo.log_model(clf, "without")
    assert isinstance(repo.load_model("without:v1"), RandomForestClassifier)
    assert isinstance(repo.load_model("with:v1", checked=False), RandomForestClassifier)
    assert isinstance(mk.load_model("with:v1", repo=repo, checked=False), RandomForestClassifier)
    model = repo.load_model("with:v1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's own "X has no feature names"
        assert (model.native.predict(x.to_numpy()) == clf.predict(x)).all()


# -- unchanged retrains -----------------------------------------------------------------------


def test_the_same_training_twice_makes_one_version(
    backend_repo: mk.Repo, data: tuple[Any, Any]
) -> None:
    x, y = data
    first = backend_repo.log_model(_forest(x, y), "cancer", input_example=x[:3])
    with pytest.warns(ModelUnchanged, match="equals cancer:v1, the latest"):
        again = backend_repo.log_model(_forest(x, y), "cancer", input_example=x[:3])
    assert again.ref == first.ref == "cancer:v1"
    changed = backend_repo.log_model(_forest(x, y, seed=1), "cancer", input_example=x[:3])
    assert changed.ref == "cancer:v2"
    with pytest.warns(ModelUnchanged, match="equals cancer:v1, an older version"):
        back = backend_repo.log_model(_forest(x, y), "cancer", input_example=x[:3])
    assert back.ref == "cancer:v1"
    assert [v.ref for v in backend_repo.versions("cancer")] == ["cancer:v1", "cancer:v2"]
    assert (backend_repo.load_model("cancer:v1").predict(x) == _forest(x, y).predict(x)).all()


def test_a_pipeline_retrained_in_another_process_is_the_same_bytes(
    repo: mk.Repo, data: tuple[Any, Any]
) -> None:
    """skops names arrays after memory addresses, which differ between processes most."""
    import subprocess
    import sys

    x, _ = data
    script = (
        "import modelkeep as mk, sys\n"
        "sys.path.insert(0, '.')\n"
        "from sklearn.datasets import load_breast_cancer\n"
        f"from tests.test_predict_safely import _pipeline\n"
        "x, y = load_breast_cancer(return_X_y=True, as_frame=True)\n"
        f"print(mk.open({str(repo.root)!r}).log_model(_pipeline(x, y), 'hgb',"
        " input_example=x[:2]).ref)\n"
    )
    root = Path(__file__).resolve().parent.parent
    made = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=root
    )
    assert made.stdout.strip() == "hgb:v1"
    with pytest.warns(ModelUnchanged):
        assert repo.log_model(_pipeline(*data), "hgb", input_example=x[:2]).ref == "hgb:v1"


def _pipeline(x: Any, y: Any) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = RandomForestClassifier(n_estimators=3, random_state=0)
    return make_pipeline(StandardScaler(), model).fit(x, y)


def test_through_a_server_the_example_and_the_check_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: tuple[Any, Any]
) -> None:
    """The server sends the example's JSON (input_example_doc); the client rebuilds it."""
    from tests import mkserve

    x, y = data
    served = mkserve.start(tmp_path / "store")
    try:
        mkserve.with_accounts(served, {"alice": "admin"})
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        with mk.open(served.url, token=served.tokens["alice"]) as remote:
            remote.log_model(_forest(x, y), "cancer", input_example=x[:3])
            pd.testing.assert_frame_equal(remote.input_example("cancer:v1"), x[:3])
            doc = remote.input_example_doc("cancer:v1")
            assert doc is not None and doc["type"] == "DataFrame"
            with pytest.raises(MissingInputColumn, match="'mean radius'"):
                remote.load_model("cancer:v1").predict(x.drop(columns=["mean radius"]))
    finally:
        served.stop()
