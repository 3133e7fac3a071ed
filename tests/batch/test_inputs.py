"""darkcsp.batch.inputs: folders (recursive), globs, @list files."""
from __future__ import annotations

import os

import pytest

from darkcsp.batch import list_inputs, read_list_file
from darkcsp.errors import ImageError


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for f in ["a/x.jpg", "a/Y.PNG", "a/notes.txt", "a/b/z.jpg", "a/b/c/w.bmp", "a/.hidden/v.jpg", "c.jpg"]:
        os.makedirs(os.path.dirname(f) or ".", exist_ok=True)
        open(f, "wb").close()
    return tmp_path


def test_folder_is_recursive_sorted_and_filtered(tree):
    open("a/._x.jpg", "wb").close()  # macOS metadata, not an image: hidden entries are skipped, as glob does
    assert list_inputs(["a"]) == ["a/Y.PNG", "a/b/c/w.bmp", "a/b/z.jpg", "a/x.jpg"]
    assert list_inputs(["a"], recursive=False) == ["a/Y.PNG", "a/x.jpg"]
    assert list_inputs(["a/"]) == list_inputs(["a"])  # the same keys however the folder is spelt


def test_globs_files_and_duplicates(tree):
    assert list_inputs(["a/**/*.jpg"]) == ["a/b/z.jpg", "a/x.jpg"]
    # each input once, in first-listed order
    assert list_inputs(["c.jpg", "a/*.jpg", "c.jpg", "a/x.jpg"]) == ["c.jpg", "a/x.jpg"]


def test_list_file(tree):
    (tree / "list.txt").write_text("# photos\nc.jpg\n\n  a/x.jpg  \nmissing.jpg\nc.jpg\n")
    assert read_list_file("list.txt") == ["c.jpg", "a/x.jpg", "missing.jpg", "c.jpg"]
    # listed paths are taken as they are (a missing one becomes an error record when it is read)
    assert list_inputs(["@list.txt", "a/b"]) == ["c.jpg", "a/x.jpg", "missing.jpg", "a/b/c/w.bmp", "a/b/z.jpg"]


@pytest.mark.parametrize("arg,message", [("nothing", "input not found"), ("a/*.gif", "no file matches"),
                                         ("@nolist.txt", "list file not found"), ("@a", "is a directory"),
                                         ("empty", "folder has no image files"), ("@blank.txt", "no paths")])
def test_bad_inputs_are_image_errors(tree, arg, message):
    (tree / "empty").mkdir()
    (tree / "empty" / "readme.txt").write_text("x")
    (tree / "blank.txt").write_text("\n# nothing\n")
    with pytest.raises(ImageError, match=message) as e:
        list_inputs([arg])
    assert e.value.file is not None
