"""Data files: every bad input is one line naming file, row and problem; good rows become TRL's
conversational formats."""

import json

import pytest

from assets import DATA_DIR
from engine.tasks.data import load_preferences, load_sft
from engine.record.errors import UserError

PAIR = {"prompt": "Add 2 and 2.", "chosen": "4", "rejected": "5"}


def _jsonl(*rows):
    return "\n".join(json.dumps(row) for row in rows).encode() + b"\n"


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


BAD_FILES = [
    # (file name, bytes, loader, expected message after the path)
    ("pairs.jsonl", None, load_preferences, ": no such file"),
    ("pairs.jsonl", b"", load_preferences, ": file is empty"),
    ("pairs.jsonl", b"\n  \n", load_preferences, ": file holds no rows"),
    ("pairs.csv", b"prompt,chosen\n", load_preferences, ": unsupported file type '.csv'; use .jsonl, .json or .parquet"),
    ("pairs.jsonl", _jsonl(PAIR) + b'{"prompt": "Add", "chosen": "4", "rej\n', load_preferences,
     ":2: malformed JSON (Unterminated string starting at column 34)"),
    ("pairs.jsonl", _jsonl(PAIR) + "{\"prompt\": \"caf\xe9\"}\n".encode("latin-1"), load_preferences,
     ":2: not UTF-8 text (byte 0xe9)"),
    ("pairs.jsonl", _jsonl(PAIR, {"prompt": "Add 1 and 1.", "chosen": "2"}), load_preferences,
     ":2: missing 'rejected' (a preference row needs prompt, chosen and rejected)"),
    ("pairs.jsonl", _jsonl({"chosen": "2", "rejected": "3"}), load_preferences,
     ":1: missing 'prompt' (a preference row needs prompt, chosen and rejected; found chosen, rejected)"),
    ("pairs.jsonl", _jsonl(PAIR, PAIR, {**PAIR, "chosen": "  "}), load_preferences, ":3: 'chosen' is empty"),
    ("pairs.jsonl", _jsonl({**PAIR, "rejected": "4"}), load_preferences, ":1: chosen and rejected are identical"),
    ("pairs.jsonl", _jsonl({**PAIR, "chosen": 4}), load_preferences, ":1: 'chosen' must be text, found int"),
    ("pairs.jsonl", _jsonl([1, 2]), load_preferences, ":1: expected an object, found list"),
    ("pairs.json", json.dumps([PAIR, PAIR], indent=1).encode()[:-8], load_preferences,
     ":10: malformed JSON (Expecting value at column 15)"),
    ("pairs.json", _jsonl(PAIR, PAIR), load_preferences,
     ":2: malformed JSON (Extra data at column 1) — is it JSON Lines? name it .jsonl"),
    ("pairs.json", json.dumps(PAIR).encode(), load_preferences, ": expected a JSON list of objects, found dict"),
    ("pairs.json", json.dumps([PAIR, {**PAIR, "rejected": ""}]).encode(), load_preferences,
     ": record 1: 'rejected' is empty"),
    ("pairs.parquet", b"PAR1 not really", load_preferences, ": not a readable Parquet file"),
    ("sft.jsonl", _jsonl({"prompt": "Hi"}), load_sft,
     ":1: missing 'completion' (an SFT row needs prompt and completion)"),
    ("sft.jsonl", _jsonl({"text": "Hi"}), load_sft,
     ":1: an SFT row needs prompt and completion, messages, or instruction and output (found text)"),
    ("sft.json", json.dumps([{"instruction": "Say hi", "input": "", "output": ""}]).encode(), load_sft,
     ": record 0: 'output' is empty"),
    ("sft.jsonl", _jsonl({"messages": [{"role": "user", "content": "Hi"}]}), load_sft,
     ":1: the last message of 'messages' must come from the assistant"),
    ("sft.jsonl", _jsonl({"messages": [{"role": "robot", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}),
     load_sft, ":1: messages[0] has role 'robot'; use one of user, human, assistant, gpt, system"),
    ("sft.jsonl", _jsonl({"messages": [{"role": "assistant", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}),
     load_sft, ":1: the prompt must end with a user message"),
]


@pytest.mark.parametrize("name,content,loader,expected", BAD_FILES, ids=[row[3].strip(": ")[:40] for row in BAD_FILES])
def test_each_bad_file_is_one_line_naming_file_row_and_problem(tmp_path, name, content, loader, expected):
    path = tmp_path / name
    if name.endswith(".parquet") and content is None:
        _parquet(path, [PAIR])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError) as error:
        loader(path)
    assert str(error.value) == f"{path}{expected}"


def test_parquet_rows_are_named_by_index(tmp_path):
    path = tmp_path / "pairs.parquet"
    _parquet(path, [PAIR, {**PAIR, "chosen": "5"}])
    with pytest.raises(UserError, match=r"pairs\.parquet: row 1: chosen and rejected are identical"):
        load_preferences(path)


def test_string_rows_become_conversational_records(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(_jsonl(
        PAIR,
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
         "chosen": [{"role": "assistant", "content": "4"}], "rejected": {"role": "assistant", "content": "22"}},
    ))
    first, second = load_preferences(path)
    assert first == {"prompt": [{"role": "user", "content": "Add 2 and 2."}],
                     "chosen": [{"role": "assistant", "content": "4"}],
                     "rejected": [{"role": "assistant", "content": "5"}]}
    assert [m["role"] for m in second["prompt"]] == ["system", "user"]
    assert second["rejected"] == [{"role": "assistant", "content": "22"}]


def test_sft_accepts_prompt_completion_and_messages(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_bytes(_jsonl(
        {"prompt": "Hi", "completion": "Hello!"},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"},
                      {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye!"}]},
    ))
    simple, chat = load_sft(path)
    assert simple == {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello!"}]}
    assert [m["content"] for m in chat["prompt"]] == ["Hi", "Hey", "Bye"]
    assert chat["completion"] == [{"role": "assistant", "content": "Bye!"}]


def test_vendored_alpaca_rows_normalise_with_their_input():
    rows = load_sft(DATA_DIR / "alpaca_en_demo.json")
    raw = json.loads((DATA_DIR / "alpaca_en_demo.json").read_text())
    assert len(rows) == len(raw) == 999
    with_input = next(i for i, r in enumerate(raw) if r["input"])
    assert rows[with_input]["prompt"] == [
        {"role": "user", "content": f"{raw[with_input]['instruction']}\n\n{raw[with_input]['input']}"}]
    assert rows[0]["prompt"] == [{"role": "user", "content": raw[0]["instruction"]}]
    assert rows[0]["completion"] == [{"role": "assistant", "content": raw[0]["output"]}]


def test_vendored_sharegpt_pairs_keep_history_and_system_in_the_prompt():
    rows = load_preferences(DATA_DIR / "dpo_en_demo.json")
    raw = json.loads((DATA_DIR / "dpo_en_demo.json").read_text())
    assert len(rows) == 300
    multi = next(i for i, r in enumerate(raw) if len(r["conversations"]) == 5)
    assert [m["role"] for m in rows[multi]["prompt"]] == ["user", "assistant", "user", "assistant", "user"]
    assert rows[multi]["prompt"][1]["content"] == raw[multi]["conversations"][1]["value"]
    assert rows[multi]["chosen"] == [{"role": "assistant", "content": raw[multi]["chosen"]["value"]}]
    system = next(i for i, r in enumerate(raw) if r["conversations"][0]["from"] == "system")
    assert [m["role"] for m in rows[system]["prompt"]] == ["system", "user"]
    assert all(len(r["chosen"]) == len(r["rejected"]) == 1 for r in rows)
