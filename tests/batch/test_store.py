"""darkcsp.batch.store: append, resume, torn-line repair, one record per input, one writer."""
from __future__ import annotations

import json

import pytest

from darkcsp.batch import ResultsStore
from darkcsp.errors import ResourceError


def rec(name, n=0):
    return {"image": name, "width": 10, "height": 20, "detections": [{"class_id": n}]}


def test_append_resume_and_no_duplicates(tmp_path):
    out = tmp_path / "sub" / "r.jsonl"
    with ResultsStore(out) as store:
        assert store.append(rec("a")) and store.append({"image": "b", "error": {"message": "x"}})
        assert not store.append(rec("a", 1))  # the same input again (a retried task): refused, nothing written
        # written at once, not at close (a killed job keeps every finished record)
        assert out.read_text().count("\n") == 2
    with ResultsStore(out) as store:
        assert "a" in store and "b" in store and "c" not in store and len(store) == 2
        assert store.missing(["c", "a", "d", "b"]) == ["c", "d"]
        assert store.errors(["a", "b", "c"]) == ["b"]
        assert not store.append(rec("a", 2))
        assert store.append(rec("c"))
    lines = out.read_text().splitlines()
    assert [json.loads(x)["image"] for x in lines] == ["a", "b", "c"]
    assert json.loads(lines[0]) == rec("a")


@pytest.mark.parametrize("tail", [b'{"image": "c", "width": 1', b'{"image": "c"', b"{", b'{"image": "c"}\x00\x00'])
def test_torn_last_line_is_repaired(tmp_path, tail, caplog):
    out = tmp_path / "r.jsonl"
    good = (json.dumps(rec("a")) + "\n" + json.dumps(rec("b")) + "\n").encode()
    out.write_bytes(good + tail)
    with ResultsStore(out) as store:
        assert set(store.recorded) == {"a", "b"} and store.repaired_bytes == len(tail)
        assert out.read_bytes() == good
        store.append(rec("c"))
    assert out.read_bytes() == good + (json.dumps(rec("c")) + "\n").encode()
    assert "cut short" in caplog.text


def test_complete_but_garbled_last_line_is_repaired(tmp_path):
    out = tmp_path / "r.jsonl"
    good = json.dumps(rec("a")) + "\n"
    out.write_text(good + '{"image": "b", "wi\n')
    with ResultsStore(out) as store:
        assert list(store.recorded) == ["a"]
    assert out.read_text() == good


def test_garbage_inside_or_another_kind_of_file_is_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    text = json.dumps(rec("a")) + "\nnot json\n" + json.dumps(rec("b")) + "\n"
    out.write_text(text)
    with pytest.raises(ResourceError, match="line 2 is not a JSON record"):
        ResultsStore(out).open()
    assert out.read_text() == text  # nothing repaired or lost
    out.write_text('[{"image": "a"}]\n')  # `detect --json` output is not a results file to append to
    with pytest.raises(ResourceError, match="line 1 is not a darkcsp batch record"):
        ResultsStore(out).open()
    with pytest.raises(ResourceError, match="is a folder"):
        ResultsStore(tmp_path).open()


def test_duplicates_in_the_file_count_once(tmp_path, caplog):
    out = tmp_path / "r.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in [rec("a"), rec("b"), rec("a", 5)]))
    with ResultsStore(out) as store:
        assert list(store.recorded) == ["a", "b"] and store.duplicates_in_file == 1
    assert "1 duplicate" in caplog.text


def test_one_writer_at_a_time(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultsStore(out):
        with pytest.raises(ResourceError, match="another darkcsp batch job"):
            ResultsStore(out).open()
    with ResultsStore(out):  # released at close
        pass


def test_a_new_file_without_records_is_not_left_behind(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultsStore(out):
        assert out.exists()
    assert not out.exists()  # e.g. a run interrupted before its first record
    out.write_text("")
    with ResultsStore(out):
        pass
    assert out.exists()  # a file the user had is never removed
