"""Read a user's data file and bring every row into TRL's conversational formats, or stop with
one line naming the file, the row and the problem — before any model is loaded.

Files: JSON Lines (`.jsonl`, `.ndjson`; rows named by line), JSON holding a list of objects
(`.json`; rows named by record index) and Parquet (`.parquet`; rows named by index).

Rows become
- SFT: `{"prompt": [messages], "completion": [{"role": "assistant", ...}]}`, from
  `{prompt, completion}` (strings or message lists), `{messages}` (the last message, from the
  assistant, is the completion), Alpaca `{instruction, input?, output, system?, history?}` or
  ShareGPT `{conversations}` whose last turn is from `gpt`;
- preferences: `{"prompt": [messages], "chosen": [assistant msg], "rejected": [assistant msg]}`,
  from `{prompt, chosen, rejected}` (strings or message lists) or ShareGPT
  `{conversations, chosen: {from, value}, rejected: {from, value}}` (earlier turns stay in the prompt).
"""

from __future__ import annotations

import json
from pathlib import Path

from advisor.safe_files import BadFile, check_regular_file, loads, read_text, text_lines
from engine.record.errors import UserError, first_line

ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
         "system": "system"}
ALPACA_NEEDS = "an Alpaca row needs instruction and output"
ROW_KEYS = {"prompt", "completion", "messages", "conversations", "instruction", "input", "output", "system",
            "history", "chosen", "rejected"}  # every key a row format reads


def read_rows(path: str | Path) -> list[tuple[str, object]]:
    """(where, row) for each row of a .jsonl/.json/.parquet file; `where` names file and line/record."""
    path = Path(path)
    try:
        size = check_regular_file(path).st_size
    except BadFile as exc:
        raise UserError(str(exc)) from None
    if size == 0:
        raise UserError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = _read_jsonl(path)
    elif suffix == ".json":
        rows = _read_json(path)
    elif suffix == ".parquet":
        rows = _read_parquet(path)
    else:
        raise UserError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .jsonl, .json or .parquet")
    if not rows:
        raise UserError(f"{path}: file holds no rows")
    return rows


def _text(path: Path) -> str:
    try:
        return read_text(path)
    except BadFile as exc:
        raise UserError(str(exc)) from None


def _read_jsonl(path: Path) -> list[tuple[str, object]]:
    rows = []
    for number, line in enumerate(text_lines(_text(path)), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{number}", loads(line)))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: {_malformed(exc)}") from None
        except BadFile as exc:
            raise UserError(f"{path}:{number}: {exc}") from None
    return rows


def _read_json(path: Path) -> list[tuple[str, object]]:
    try:
        data = loads(_text(path))
    except json.JSONDecodeError as exc:
        hint = " — is it JSON Lines? name it .jsonl" if exc.msg == "Extra data" else ""
        raise UserError(f"{path}:{exc.lineno}: {_malformed(exc)}{hint}") from None
    except BadFile as exc:
        raise UserError(f"{path}: {exc}") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of objects, found {type(data).__name__}")
    return [(f"{path}: record {index}", row) for index, row in enumerate(data)]


def _malformed(exc: json.JSONDecodeError) -> str:
    where = "" if exc.msg.endswith(" at") else " at"
    return f"malformed JSON ({exc.msg}{where} column {exc.colno})"


def _read_parquet(path: Path) -> list[tuple[str, object]]:
    """Rows of a Parquet file. Only the columns a row format can use are converted to Python:
    a column of another kind (say a timestamp of 2**62 ms) must not stop the file being read."""
    import pyarrow
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pyarrow.ArrowException, OSError):
        raise UserError(f"{path}: not a readable Parquet file") from None
    columns = {}
    for name in table.column_names:
        try:
            columns[name] = table.column(name).to_pylist()
        except (pyarrow.ArrowException, ValueError, OverflowError) as exc:
            if name in ROW_KEYS:
                raise UserError(f"{path}: column {name!r} cannot be read ({first_line(exc)})") from None
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())] if columns else []
    return [(f"{path}: row {index}", row) for index, row in enumerate(rows)]


def load_sft(path: str | Path) -> list[dict]:
    """Every row of an SFT file as `{prompt, completion}` messages."""
    return [to_sft(row, where) for where, row in read_rows(path)]


def load_preferences(path: str | Path) -> list[dict]:
    """Every row of a preference file as `{prompt, chosen, rejected}` messages."""
    return [to_preference(row, where) for where, row in read_rows(path)]


def to_sft(row: object, where: str) -> dict:
    row = _object(row, where)
    if "messages" in row or "conversations" in row:
        key = "messages" if "messages" in row else "conversations"
        messages = _messages(row[key], where, key)
        if messages[-1]["role"] != "assistant":
            raise UserError(f"{where}: the last message of '{key}' must come from the assistant")
        prompt, completion = messages[:-1], messages[-1:]
    elif "instruction" in row:
        prompt = _alpaca_prompt(row, where)
        completion = [{"role": "assistant", "content": _string(row, "output", where, ALPACA_NEEDS)}]
    elif "prompt" in row or "completion" in row:
        prompt = _prompt(row, where)
        completion = _reply(row, "completion", where, "an SFT row needs prompt and completion")
    else:
        raise UserError(f"{where}: an SFT row needs prompt and completion, messages, or instruction and output"
                        f" (found {_keys(row)})")
    _ends_with_user(prompt, where)
    return {"prompt": prompt, "completion": completion}


def to_preference(row: object, where: str) -> dict:
    row = _object(row, where)
    need = "a preference row needs prompt, chosen and rejected"
    if "conversations" in row:
        prompt = _messages(row["conversations"], where, "conversations")
    elif "prompt" in row:
        prompt = _prompt(row, where)
    else:
        raise UserError(f"{where}: missing 'prompt' ({need}; found {_keys(row)})")
    _ends_with_user(prompt, where)
    chosen = _reply(row, "chosen", where, need)
    rejected = _reply(row, "rejected", where, need)
    if chosen == rejected:
        raise UserError(f"{where}: chosen and rejected are identical")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _object(row: object, where: str) -> dict:
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected an object, found {type(row).__name__}")
    return row


def _keys(row: dict) -> str:
    return ", ".join(map(str, row)) or "no fields"


def _string(row: dict, key: str, where: str, need: str) -> str:
    if key not in row or row[key] is None:
        raise UserError(f"{where}: missing '{key}' ({need})")
    value = row[key]
    if not isinstance(value, str):
        raise UserError(f"{where}: '{key}' must be text, found {type(value).__name__}")
    if not value.strip():
        raise UserError(f"{where}: '{key}' is empty")
    return value


def _message(role: str, content: object, where: str, field: str) -> dict:
    if not isinstance(content, str):
        raise UserError(f"{where}: {field} must be text, found {type(content).__name__}")
    if not content.strip():
        raise UserError(f"{where}: {field} is empty")
    return {"role": role, "content": content}


def _messages(value: object, where: str, key: str) -> list[dict]:
    """A list of {role, content} or ShareGPT {from, value} turns as {role, content} messages."""
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: '{key}' must be a non-empty list of messages")
    return [_turn(turn, where, f"{key}[{index}]") for index, turn in enumerate(value)]


def _turn(turn: object, where: str, field: str) -> dict:
    if not isinstance(turn, dict):
        raise UserError(f"{where}: {field} must be a message object, found {type(turn).__name__}")
    role_key, content_key = ("from", "value") if "from" in turn else ("role", "content")
    role = turn.get(role_key)
    if role not in ROLES:
        raise UserError(f"{where}: {field} has role {role!r}; use one of {', '.join(ROLES)}")
    return _message(ROLES[role], turn.get(content_key), where, f"{field}.{content_key}")


def _prompt(row: dict, where: str) -> list[dict]:
    value = row.get("prompt")
    if isinstance(value, list):
        return _messages(value, where, "prompt")
    return [_message("user", _string(row, "prompt", where, "every row needs a prompt"), where, "'prompt'")]


def _reply(row: dict, key: str, where: str, need: str) -> list[dict]:
    """The assistant answer under `key`: text, one {from, value}/{role, content} turn, or a list of them."""
    value = row.get(key)
    if isinstance(value, dict):
        messages = [_turn(value, where, f"'{key}'")]
    elif isinstance(value, list):
        messages = _messages(value, where, key)
    else:
        messages = [_message("assistant", _string(row, key, where, need), where, f"'{key}'")]
    if any(message["role"] != "assistant" for message in messages):
        raise UserError(f"{where}: '{key}' must hold only assistant messages")
    return messages


def _alpaca_prompt(row: dict, where: str) -> list[dict]:
    instruction = _string(row, "instruction", where, ALPACA_NEEDS)
    extra = row.get("input") or ""
    if not isinstance(extra, str):
        raise UserError(f"{where}: 'input' must be text, found {type(extra).__name__}")
    prompt = []
    if row.get("system"):
        prompt.append(_message("system", row["system"], where, "'system'"))
    for index, pair in enumerate(row.get("history") or []):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise UserError(f"{where}: history[{index}] must be a [question, answer] pair")
        prompt.append(_message("user", pair[0], where, f"history[{index}][0]"))
        prompt.append(_message("assistant", pair[1], where, f"history[{index}][1]"))
    prompt.append({"role": "user", "content": f"{instruction}\n\n{extra}" if extra.strip() else instruction})
    return prompt


def _ends_with_user(prompt: list[dict], where: str) -> None:
    if not prompt:
        raise UserError(f"{where}: there is no user message before the answer")
    if prompt[-1]["role"] != "user":
        raise UserError(f"{where}: the prompt must end with a user message")
