"""Datasets: official split sizes, fixed label ids, the csv loader, source resolution and bad input."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from emolab.data import dataset_config, list_datasets, load_dataset
from emolab.data import sources
from emolab.data.stats import dataset_stats, policy_drops
from emolab.errors import DataError, EmolabError


def test_registry_lists_names():
    assert {"emotion", "goemotions", "sst2", "csv"} <= set(list_datasets())
    with pytest.raises(EmolabError, match="choose one of: csv, emotion"):
        load_dataset(dataset_config("emotions"))


def test_emotion_official_splits(shared_data):
    ds = load_dataset(dataset_config("emotion"))
    assert ds.labels.names == ("sadness", "joy", "love", "anger", "fear", "surprise")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 16000, "validation": 2000, "test": 2000}
    assert np.bincount(ds.split("test").labels).tolist() == [581, 695, 159, 275, 224, 66]
    assert ds.info["checksums_verified"]


@pytest.mark.parametrize("taxonomy,k", [("original", 28), ("ekman", 7), ("sentiment", 4)])
def test_goemotions_taxonomies(shared_data, taxonomy, k):
    ds = load_dataset(dataset_config("goemotions", taxonomy=taxonomy, multi_label_policy="multi_label"))
    assert len(ds.labels) == k and ds.labels.multi_label
    assert {s: len(v) for s, v in ds.splits.items()} == {"train": 43410, "validation": 5426, "test": 5427}
    assert ds.labels.names[-1] == "neutral"
    assert ds.split("train").labels.shape == (43410, k)


def test_goemotions_policies(shared_data):
    drops = policy_drops(dataset_config("goemotions", taxonomy="ekman"))
    assert drops["multi_label"]["train"]["dropped"] == 0 and drops["first"]["train"]["dropped"] == 0
    assert drops["drop"]["train"] == {"kept": 39555, "dropped": 3855}
    first = load_dataset(dataset_config("goemotions", taxonomy="ekman", multi_label_policy="first"))
    assert first.split("train").labels.ndim == 1 and len(first.split("train")) == 43410


def test_sst2_uses_dev_as_test_and_a_seeded_stratified_validation(shared_data):
    a = load_dataset(dataset_config("sst2"), seed=1)
    b = load_dataset(dataset_config("sst2"), seed=1)
    assert len(a.split("test")) == 872
    assert len(a.split("train")) + len(a.split("validation")) == 67349
    assert list(a.split("validation").ids[:20]) == list(b.split("validation").ids[:20])
    share = lambda s: s.labels.mean()  # noqa: E731
    assert abs(share(a.split("validation")) - share(a.split("train"))) < 0.005


def test_subsampling_is_stratified_and_seeded(shared_data):
    ds = load_dataset(dataset_config("emotion", max_train_examples=600, max_eval_examples=100), seed=3)
    assert len(ds.split("train")) == 600 and len(ds.split("test")) == 100
    assert len(np.unique(ds.split("train").labels)) == 6


def test_stats(shared_data):
    stats = dataset_stats(load_dataset(dataset_config("emotion")))
    assert stats["splits"]["train"]["class_counts"]["joy"] == 5362
    assert stats["splits"]["test"]["words_percentiles"]["p50"] > 5
    assert "train&test" in stats["cross_split_duplicates"]


# --- the csv loader ---------------------------------------------------------------------------------------


def test_csv_infers_and_freezes_labels_and_splits_by_ratio(tiny_csv):
    cfg = dataset_config("csv", path=str(tiny_csv), text_column="sentence", label_column="emotion",
                     validation_ratio=0.2, test_ratio=0.25)
    ds = load_dataset(cfg, seed=0)
    assert ds.labels.names == ("anger", "fear", "joy")  # sorted, not file order (joy comes first there)
    assert len(ds.split("test")) == 30 and len(ds.split("validation")) == 18 and len(ds.split("train")) == 72
    again = load_dataset(cfg, seed=0)
    assert list(again.split("test").ids) == list(ds.split("test").ids)


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl", ".parquet"])
def test_other_formats_and_given_split_files(tmp_path, suffix):
    from tests.conftest import make_texts

    for split, n in (("train", 30), ("dev", 9), ("test", 9)):
        texts, ys = make_texts(n, seed=len(split))
        df = pd.DataFrame({"text": texts, "label": ys})
        path = tmp_path / f"{split}{suffix}"
        if suffix == ".tsv":
            df.to_csv(path, sep="\t", index=False)
        elif suffix == ".jsonl":
            df.to_json(path, orient="records", lines=True)
        else:
            df.to_parquet(path)
    ds = load_dataset(dataset_config("csv", path=str(tmp_path), train_file=f"train{suffix}",
                                 validation_file=f"dev{suffix}", test_file=f"test{suffix}"))
    assert [len(ds.split(s)) for s in ("train", "validation", "test")] == [30, 9, 9]


def _csv(tmp_path, body: bytes, name="bad.csv"):
    p = tmp_path / name
    p.write_bytes(body)
    return p


@pytest.mark.parametrize("body,expected", [
    (b"text,label\nhello,joy\n,anger\n", r"bad.csv:3: empty text"),
    (b"text,label\nhello,joy\nbye \xff\xfe,anger\n", r"bad.csv:3: bytes that are not UTF-8"),
    (b"text,label\nhello,joy\nbye,\n", r"bad.csv:3: empty label"),
    (b"sentence,label\nhello,joy\n", r"(?s)no column 'text'.*columns in the file: sentence, label"),
    (b'text,label\n"hello,joy\nbye,anger\n', r"malformed CSV"),
])
def test_csv_bad_input_names_file_and_line(tmp_path, body, expected):
    with pytest.raises(DataError, match=expected):
        load_dataset(dataset_config("csv", path=str(_csv(tmp_path, body))))


def test_csv_label_not_in_given_label_set(tmp_path):
    p = _csv(tmp_path, b"text,label\nhello,joy\nbye,anger\nugh,disgust\n")
    with pytest.raises(DataError, match=r"bad.csv:4: label 'disgust' is not in data.labels"):
        load_dataset(dataset_config("csv", path=str(p), labels=["joy", "anger"]))


def test_csv_label_column_that_is_not_labels(tmp_path):
    texts = "\n".join(f"text {i},{i}" for i in range(50))
    p = _csv(tmp_path, f"text,label\n{texts}\n".encode())
    with pytest.raises(DataError, match=r"label '0' is not in data.labels \(joy, anger\)"):
        load_dataset(dataset_config("csv", path=str(p), labels=["joy", "anger"]))


def test_emotion_file_errors(tmp_path):
    good = "i feel fine;joy\n" * 3
    for body, expected in [(good + "no separator here\n", r"train.txt:4: expected 'text;label'"),
                           (good + "i feel odd;bored\n", r"train.txt:4: unknown label 'bored'"),
                           (good + " ;joy\n", r"train.txt:4: empty text")]:
        (tmp_path / "train.txt").write_text(body)
        (tmp_path / "val.txt").write_text(good)
        (tmp_path / "test.txt").write_text(good)
        with pytest.raises(DataError, match=expected):
            load_dataset(dataset_config("emotion", path=str(tmp_path)))


# --- source resolution and download -----------------------------------------------------------------------


def _source(tmp_path, content=b"a;joy\n", wrong=False):
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    (upstream / "f.txt").write_bytes(content)
    digest = hashlib.sha256(b"other" if wrong else content).hexdigest()
    return sources.Source("toy", sha256={"f.txt": digest}, urls={"f.txt": (upstream / "f.txt").as_uri()})


def test_download_verifies_and_caches(tmp_path, monkeypatch):
    monkeypatch.delenv("EMOLAB_DATA_DIR", raising=False)
    folder = sources.resolve(_source(tmp_path))
    assert folder == sources.cache_dir() / "toy" and (folder / "f.txt").read_bytes() == b"a;joy\n"


def test_download_checksum_mismatch_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("EMOLAB_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="checksum mismatch for f.txt"):
        sources.resolve(_source(tmp_path, wrong=True))
    assert not (sources.cache_dir() / "toy" / "f.txt").exists()


def test_offline_error_says_which_files_go_where(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOLAB_DATA_DIR", str(tmp_path / "data"))
    src = sources.Source("toy", sha256={"f.txt": None}, urls={"f.txt": "http://127.0.0.1:9/f.txt"})
    with pytest.raises(DataError) as info:
        sources.resolve(src)
    msg = str(info.value)
    assert "download failed" in msg and "put f.txt in" in msg and str(tmp_path / "data" / "toy") in msg


def test_explicit_path_missing_files(tmp_path):
    with pytest.raises(DataError, match="lacks train.txt, val.txt, test.txt"):
        load_dataset(dataset_config("emotion", path=str(tmp_path)))


def test_an_empty_csv_and_a_csv_without_rows_get_clear_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: the file is empty") as info:
        load_dataset(dataset_config("csv", path=str(empty)))
    assert "header row" in str(info.value) and "JSONL" not in str(info.value).split("fix:")[0]
    header = tmp_path / "header.csv"
    header.write_text("text,label\n")
    with pytest.raises(DataError, match="header.csv: no examples") as info:
        load_dataset(dataset_config("csv", path=str(header)))
    assert "add one row per example" in str(info.value)
