"""C++ errors arrive as the right Python exception class with the C++ message unchanged."""
import json
import os

import numpy as np
import pytest

import groupmates


@pytest.mark.parametrize("code,cls,also", [
    ("invalid_config", groupmates.ConfigError, ValueError),
    ("io", groupmates.FileError, OSError),
    ("corrupt_data", groupmates.DataError, groupmates.GroupMatesError),
    ("out_of_vocab", groupmates.OutOfVocabError, groupmates.DataError),
    ("invalid_state", groupmates.StateError, ValueError),
    ("internal", groupmates.InternalError, groupmates.GroupMatesError),
    ("distributed", groupmates.DistributedError, RuntimeError),
    ("selection_failed", groupmates.SelectionError, RuntimeError),
])
def test_every_error_code_maps_to_its_class(testhooks, code, cls, also):
    # A groupmates::Error thrown in C++, translated by the package's extensions (the hooks install
    # no translator of their own).
    with pytest.raises(cls) as e:
        testhooks.raise_error(code, "some/file.bin:42", "what went wrong")
    assert type(e.value) is cls and isinstance(e.value, also) and isinstance(e.value, groupmates.GroupMatesError)
    assert str(e.value) == f"groupmates [{code}] some/file.bin:42: what went wrong"
    assert e.value.code == code and e.value.where == "some/file.bin:42"


def test_missing_file(tmp_path):
    path = str(tmp_path / "missing.bin")
    with pytest.raises(groupmates.FileError) as e:
        groupmates.GroupMatesLoader(sources=[path], sequence_length=16, batch_size=2)
    assert str(e.value).startswith(f"groupmates [io] {path}: cannot open for reading: No such file or directory")
    assert isinstance(e.value, OSError) and e.value.where == path


def test_out_of_vocab_token_is_reported_at_iteration(tmp_path):
    path = str(tmp_path / "tokens.bin")
    data = np.arange(64, dtype=np.uint16) % 50
    data[37] = 999
    data.tofile(path)
    loader = groupmates.GroupMatesLoader(sources=[path], sequence_length=16, batch_size=1, shuffle=False,
                                         vocab_size=50)
    next(loader)
    next(loader)  # windows 0 and 1 are fine; window 2 holds token 37
    with pytest.raises(groupmates.OutOfVocabError) as e:
        next(loader)
    msg = str(e.value)
    assert msg.startswith("groupmates [out_of_vocab] ")
    assert path in msg and "token id 999 is outside the vocabulary [0, 50)" in msg
    with pytest.raises(groupmates.OutOfVocabError):  # the failure is sticky
        next(loader)
    loader.close()


def test_bad_config_names_the_field(token_file):
    with pytest.raises(groupmates.ConfigError, match=r"LoaderConfig.sequence_length: is 0") as e:
        groupmates.GroupMatesLoader(sources=[token_file], sequence_length=0)
    assert isinstance(e.value, ValueError)
    with pytest.raises(ValueError, match=r"LoaderConfig.rank"):
        groupmates.GroupMatesLoader(sources=[token_file], sequence_length=8, rank=2, world_size=2)
    with pytest.raises(groupmates.ConfigError, match=r"sources\[0\].format: 'parquet' is not one of"):
        groupmates.GroupMatesLoader(sources=[{"paths": token_file, "format": "parquet"}], sequence_length=8)
    with pytest.raises(groupmates.ConfigError, match=r"batch_size: -1 is outside"):
        groupmates.GroupMatesLoader(sources=[token_file], sequence_length=8, batch_size=-1)
    with pytest.raises(groupmates.ConfigError, match=r"unknown LoaderConfig field"):
        groupmates.GroupMatesLoader(sources=[token_file], seq_len=8)
    with pytest.raises(groupmates.ConfigError, match=r"skip.n"):
        groupmates.GroupMatesLoader(sources=[token_file], sequence_length=8).skip(-1)


def test_bad_jsonl_record_names_file_and_line(corpus, tmp_path):
    path = str(tmp_path / "bad.jsonl")
    with open(path, "w") as f:
        f.write(json.dumps({"text": "A perfectly good first document. " * 20}) + "\n")
        f.write("{not json\n")
    src = groupmates.SourceConfig(paths=[path], format="jsonl", tokenizer_model=os.path.join(corpus, "austen.model"))
    with pytest.raises(groupmates.DataError) as e:
        list(groupmates.GroupMatesLoader(sources=[src], sequence_length=16, batch_size=2, shuffle=False))
    assert str(e.value).startswith(f"groupmates [corrupt_data] {path}:line 2")
    skipping = groupmates.GroupMatesLoader(sources=[src], sequence_length=16, batch_size=2, shuffle=False,
                                           bad_input="skip")
    assert len(list(skipping)) > 0
    assert sum(skipping.stats()["skipped"].values()) >= 1


def test_missing_tokenizer_model(tmp_path):
    path = str(tmp_path / "a.jsonl")
    with open(path, "w") as f:
        f.write('{"text": "hello"}\n')
    src = groupmates.SourceConfig(paths=[path], format="jsonl", tokenizer_model=str(tmp_path / "nope.model"))
    with pytest.raises(groupmates.GroupMatesError) as e:
        groupmates.GroupMatesLoader(sources=[src], sequence_length=16, batch_size=2)
    assert "nope.model" in str(e.value)


def test_closed_loader_raises(token_file):
    loader = groupmates.GroupMatesLoader(sources=[token_file], sequence_length=8)
    loader.close()
    loader.close()  # idempotent
    with pytest.raises(groupmates.GroupMatesError, match="closed"):
        next(loader)
    assert loader.state_dict()["batches"] == 0  # still available
