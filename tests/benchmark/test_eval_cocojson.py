"""The msgspec COCO reader gives exactly what ``json`` + ``float()`` give, piece by piece."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eval_oracle import random_case

from benchmark.evaluate import cocojson, evaluate, evaluate_arrays, inputs
from benchmark.evaluate.inputs import load_dt, load_gt
from tinyset_builder.errors import TinysetError


def _number_texts(rng: np.random.Generator, n: int) -> list[str]:
    """Number texts as files hold them: 17-digit reprs, float32 outputs, exponents, extremes."""
    texts = [repr(float(v)) for v in rng.uniform(-2000, 2000, n)]
    texts += [repr(float(struct.unpack("f", struct.pack("f", v))[0]))
              for v in rng.uniform(0, 1024, n)]
    texts += [repr(float(v)) for v in rng.uniform(0, 1, n) * 10.0 ** rng.integers(-300, 300, n)]
    # 17 random significant digits, not necessarily the shortest repr of any double
    texts += [f"{rng.integers(10**16, 10**17)}e{e}" for e in rng.integers(-345, 291, n)]
    texts += [f"{d / 10**k:.{k}f}" for d, k in zip(rng.integers(0, 10**9, n),
                                                   rng.integers(0, 9, n), strict=True)]
    texts += ["0", "-0", "-0.0", "0.0", "1", "1.0", "1E+2", "1e-2", "5E-1", "2.5e0", "-3E2",
              "9007199254740993", "9007199254740993.0", "18446744073709551615",
              "100000000000000000000000000000001", "1e22", "1e23", "0.1", "0.30000000000000004",
              "5e-324", "2.4703282292062327e-324", "2.2250738585072011e-308",
              "1.7976931348623157e308", "123456789.125", "4.9406564584124654e-324",
              "0.000000000000000000000000000001", "1.00000000000000011102230246251565404",
              "2.4703282292062328e-324", "1e-400"]
    return texts


def test_floats_equal_float_of_their_text(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    texts = _number_texts(rng, 2000)
    recs = [f'{{"image_id": 1, "category_id": 2, "bbox": [{t}, {t}, 1, {t}], "score": {t}}}'
            for t in texts]
    (tmp_path / "dt.json").write_text("[" + ",\n".join(recs) + "]")
    pieces = list(cocojson.read_results(tmp_path / "dt.json", _no_slow, chunk_bytes=50_000))
    assert len(pieces) > 3  # several pieces, each decoded by msgspec alone
    score = np.concatenate([p["score"] for p in pieces])
    box = np.concatenate([p["bbox"] for p in pieces])
    # What pycocotools computes with: json's value (an int for an integer literal, so "-0" is 0)
    want = np.array([json.loads(t) for t in texts], np.float64)
    assert score.tobytes() == want.tobytes()  # bit-identical, signed zeros included
    assert box[:, 0].tobytes() == want.tobytes() and box[:, 3].tobytes() == want.tobytes()
    assert (box[:, 2] == 1).all()
    # and float() of the text itself, for every text with a fraction or an exponent
    frac = np.array([any(c in t for c in ".eE") for t in texts])
    floats = np.array([float(t) for t in texts])
    assert score[frac].tobytes() == floats[frac].tobytes()


def test_out_of_range_numbers_are_json_infinities(tmp_path: Path) -> None:
    # msgspec refuses 1e309; the piece goes through json, which reads inf, and the check names it
    (tmp_path / "dt.json").write_text('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], '
                                      '"score": 0.5}, {"image_id": 1, "category_id": 1, '
                                      '"bbox": [0, 0, 1, 1], "score": -1e309}]')
    g = load_gt({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": []})
    with pytest.raises(TinysetError, match="detection #1: score is -inf"):
        load_dt(tmp_path / "dt.json", g)


def _no_slow(recs: list[Any], base: int) -> dict[str, Any]:
    raise AssertionError(f"the json path was taken for the piece at #{base}")


def _cols_equal(a: Any, b: Any, fields: tuple[str, ...]) -> None:
    for f in fields:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), f


GT_FIELDS = ("image_ids", "cat_ids", "img", "cat", "box", "area", "crowd", "ann_id")
DT_FIELDS = ("img", "cat", "box", "score", "area")


@pytest.mark.parametrize("chunk", [None, 700])
def test_files_and_dicts_build_the_same_columns(tmp_path: Path, chunk: int | None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cocojson, "CHUNK_BYTES", chunk or cocojson.CHUNK_BYTES)
    gt, dt = random_case(6)
    gt["annotations"][3].pop("area")  # absent area: w * h
    gt["annotations"][4]["iscrowd"] = True
    (tmp_path / "gt.json").write_text(json.dumps(gt, indent=None if chunk else 1))
    (tmp_path / "dt.json").write_text(json.dumps(dt, indent=1 if chunk else None))
    g_file, g_dict = load_gt(tmp_path / "gt.json"), load_gt(gt)
    _cols_equal(g_file, g_dict, GT_FIELDS)
    assert g_file.image_fields == g_dict.image_fields
    assert g_file.area[3] == g_file.box[3, 2] * g_file.box[3, 3] and g_file.crowd[4]
    _cols_equal(load_dt(tmp_path / "dt.json", g_file), load_dt(dt, g_dict), DT_FIELDS)
    (tmp_path / "wrapped.json").write_text(json.dumps({"info": {}, "annotations": dt}))
    _cols_equal(load_dt(tmp_path / "wrapped.json", g_file), load_dt(dt, g_dict), DT_FIELDS)


def test_cuts_inside_records_and_odd_layouts(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Extra fields holding '}, {' (in lists and strings) make some cuts fall inside a record:
    # such a piece does not parse and grows to the next cut.
    monkeypatch.setattr(cocojson, "CHUNK_BYTES", 300)
    dets = []
    for i in range(60):
        d: dict[str, Any] = {"image_id": 1, "category_id": 1, "bbox": [i, 0.5, 3, 4],
                             "score": 1 - i / 100}
        if i % 3 == 0:
            d["extra"] = [{"a": 1}, {"b": [{"c": "}, {"}]}]
        if i % 4 == 0:
            d["note"] = 'x"}, {"y'
        if i % 5 == 0:
            d["score"], d["score "] = 0.25, 7  # duplicate-looking keys: the real one wins
        dets.append(d)
    seps = [", ", ",", " ,\n\t", "\n,\n"]
    text = "[" + "".join(seps[i % 4] * (i > 0) + json.dumps(d) for i, d in enumerate(dets))
    text += "]\n"
    (tmp_path / "dt.json").write_text(text)
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]}
    g = load_gt(gt)
    _cols_equal(load_dt(tmp_path / "dt.json", g), load_dt(json.loads(text), g), DT_FIELDS)


def test_duplicate_keys_last_wins_as_json(tmp_path: Path) -> None:
    text = ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1e1, 10], "score": 1, '
            '"score": 0.25}]')
    (tmp_path / "dt.json").write_text(text)
    g = load_gt({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": []})
    assert load_dt(tmp_path / "dt.json", g).score.tolist() == [0.25]


def test_python_json_extensions_go_through_json(tmp_path: Path) -> None:
    gt = {"images": [{"id": 1, "width": float("nan")}], "categories": [{"id": 1}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                           "area": 25, "note": float("inf")}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))  # NaN / Infinity literals
    dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5,
           "logit": float("-inf")}]
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    assert evaluate(tmp_path / "gt.json", tmp_path / "dt.json")["AP50"] == pytest.approx(1.0)
    dt.append({"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": float("nan")})
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    with pytest.raises(TinysetError, match=r"dt\.json: detection #1: score is nan"):
        evaluate(tmp_path / "gt.json", tmp_path / "dt.json")


BAD_PIECES = {
    "string score": ({"score": "0.5"}, "detection #{i}: score: Expected `float`, got `str`"),
    "missing score": ({"score": None}, "detection #{i}: score must be a number, got None"),
    "int as float id": ({"image_id": 1.0}, "detection #{i}: image_id must be an integer"),
    "short box": ({"bbox": [0, 0, 1]}, "detection #{i}: bbox must be [x, y, w, h]"),
    "huge id": ({"image_id": 2**64}, "detection #{i}: image_id 18446744073709551616 is out"),
    "bool category": ({"category_id": True}, "detection #{i}: category_id: Expected `int`, got"),
}


@pytest.mark.parametrize("case", sorted(BAD_PIECES))
def test_errors_name_the_record_in_any_piece(tmp_path: Path, case: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cocojson, "CHUNK_BYTES", 400)
    change, expected = BAD_PIECES[case]
    dets = [{"image_id": 1, "category_id": 1, "bbox": [i, 0, 3, 4], "score": 0.5}
            for i in range(50)]
    dets[37].update(change)
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    g = load_gt({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": []})
    with pytest.raises(TinysetError) as e:
        load_dt(tmp_path / "dt.json", g)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'dt.json'}: ") and expected.format(i=37) in msg
    assert "\n" not in msg


@pytest.mark.parametrize("text, expected", [
    ('{"x": 1}', "detections must be a JSON list"),
    ('"a"', "detections must be a JSON list"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}', "not valid JSON"),
    ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}] x',
     "not valid JSON"),
])
def test_malformed_result_files(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "dt.json").write_text(text)
    g = load_gt({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": []})
    with pytest.raises(TinysetError, match=expected):
        load_dt(tmp_path / "dt.json", g)


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    gt, dt = random_case(1)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    with pytest.raises(TinysetError, match=r"nope\.json: file not found"):
        evaluate(tmp_path / "nope.json", tmp_path / "dt.json")
    with pytest.raises(TinysetError, match=r"nope\.npz: file not found"):
        evaluate(tmp_path / "gt.json", tmp_path / "nope.npz")
    with pytest.raises(TinysetError, match="cannot be read"):
        evaluate(tmp_path / "gt.json", tmp_path)
    (tmp_path / "bad.json").write_text('{"images": [}')
    with pytest.raises(TinysetError, match=r"bad\.json:1: invalid JSON"):
        evaluate(tmp_path / "bad.json", tmp_path / "dt.json")


def test_gt_file_errors_name_the_record(tmp_path: Path) -> None:
    gt, _ = random_case(2)
    gt["annotations"][5]["bbox"] = [0, 0, "w", 3]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with pytest.raises(TinysetError, match=r"gt\.json: annotation #5: bbox must be"):
        load_gt(tmp_path / "gt.json")
    gt["annotations"][5]["bbox"] = [0, 0, 1, 3]
    gt["images"][1].pop("id")
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with pytest.raises(TinysetError, match=r"gt\.json: image #1 .* lacks key 'id'"):
        load_gt(tmp_path / "gt.json")
    (tmp_path / "gt.json").write_text(json.dumps({**gt, "annotations": {"a": 1}}))
    with pytest.raises(TinysetError, match="lacks the 'annotations' list"):
        load_gt(tmp_path / "gt.json")


def test_concurrent_reading_gives_the_same_arrays_and_gt_errors_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gt, dt = random_case(4)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    seq = evaluate_arrays(tmp_path / "gt.json", tmp_path / "dt.json")
    forks = []
    real_fork = inputs.os.fork

    def fork() -> int:
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(inputs, "_can_fork", lambda gt, dt: True)
    monkeypatch.setattr(inputs.os, "fork", fork)
    par = evaluate_arrays(tmp_path / "gt.json", tmp_path / "dt.json")
    assert forks
    for name in ("precision", "recall", "scores"):
        assert getattr(par, name).tobytes() == getattr(seq, name).tobytes()
    gt["annotations"][2]["score"] = 1
    gt["annotations"][2].pop("bbox")
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text("[{]")
    with pytest.raises(TinysetError, match=r"gt\.json: annotation #2 .*lacks key 'bbox'"):
        evaluate_arrays(tmp_path / "gt.json", tmp_path / "dt.json")
