"""Past-run records: model-size parsing, the CSV/JSONL loaders and their one-line errors."""

import json
import math

import pytest

from advisor import AdvisorError, Run, load_runs, parse_params_b, shipped_runs

HEADER = "task,model,params_b,n_sft,n_pft,score,metric,confidence\n"


@pytest.mark.parametrize("name, size", [
    ("Llama-3.1-8B (base)", 8.0), ("SmolLM2-135M", 0.135), ("SmolLM2-135M-Instruct", 0.135),
    ("Qwen2.5-0.5B", 0.5), ("Qwen2.5-7B", 7.0), ("mistral-7b-v0.1", 7.0), ("gpt2", None), ("tiny", None),
])
def test_parse_params_b_reads_the_size_a_name_states(name, size):
    assert parse_params_b(name) == size


def test_shipped_runs_are_the_papers_209_runs_with_base_rows():
    runs = shipped_runs()
    assert len(runs) == 209
    panels = {(r.task, r.model) for r in runs}
    assert len(panels) == 7
    bases = [r for r in runs if r.n_sft == r.n_pft == 0]
    assert len(bases) == 7 and {(r.task, r.model) for r in bases} == panels
    llama_gsm = {(r.n_sft, r.n_pft): r.score for r in runs
                 if r.task == "gsm8k_math" and r.model == "Llama-3.1-8B (base)"}
    assert llama_gsm[(0, 0)] == 0.15 and llama_gsm[(5000, 15000)] == 0.70
    assert {r.confidence for r in runs} == {"high", "medium", "low"}
    assert runs[0].source == "paper_runs_digitized.csv:2"


def test_csv_loader_fills_size_from_the_name_and_source_from_file_and_line(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("task,model,n_sft,n_pft,score,extra\nqa,Qwen2.5-0.5B,100,0,0.4,ignored\nqa,Qwen2.5-0.5B,0,0,0.2,\n")
    runs = load_runs(path)
    assert runs == [
        Run("qa", "Qwen2.5-0.5B", 0.5, 100, 0, 0.4, "", "mine.csv:2"),
        Run("qa", "Qwen2.5-0.5B", 0.5, 0, 0, 0.2, "", "mine.csv:3"),
    ]


def test_jsonl_loader_reads_objects_and_skips_blank_lines(tmp_path):
    path = tmp_path / "runs.jsonl"
    rows = [{"task": "qa", "model": "m", "params_b": 1.5, "n_sft": 64, "n_pft": 32, "score": 0.5,
             "metric": "acc", "source": "store:abc", "confidence": "medium"}]
    path.write_text("\n" + json.dumps(rows[0]) + "\n\n")
    (run,) = load_runs(path)
    assert (run.params_b, run.n_sft, run.n_pft, run.score) == (1.5, 64, 32, 0.5)
    assert (run.metric, run.source, run.confidence) == ("acc", "store:abc", "medium")


@pytest.mark.parametrize("row, problem", [
    ("qa,m-1B,1,100,0,nan,acc,high", "score must be a finite number"),
    ("qa,m-1B,1,100,0,1.5,acc,high", "score must be between 0 and 1"),
    ("qa,m-1B,1,-5,0,0.5,acc,high", "n_sft must be 0 or more"),
    ("qa,m-1B,1,10.5,0,0.5,acc,high", "n_sft must be a whole number"),
    ("qa,m-1B,inf,10,0,0.5,acc,high", "params_b must be a finite number"),
    ("qa,m-1B,0,10,0,0.5,acc,high", "params_b must be greater than 0"),
    ("qa,gpt2,,10,0,0.5,acc,high", "states no size"),
    ("qa,m-1B,1,10,0,0.5,acc,sure", "confidence must be one of"),
    ("qa,m-1B,1,10,,0.5,acc,high", "missing n_pft"),
    ("qa,m-1B,1,ten,0,0.5,acc,high", "n_sft must be a number"),
    ("qa,m-1B,1,10,0,0.5,acc,high,surplus", "more values than the header"),
])
def test_a_bad_csv_row_is_one_error_naming_file_and_line(tmp_path, row, problem):
    path = tmp_path / "runs.csv"
    path.write_text(HEADER + "qa,m-1B,1,0,0,0.3,acc,high\n" + row + "\n")
    with pytest.raises(AdvisorError) as caught:
        load_runs(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:3: ") and problem in message and "\n" not in message


@pytest.mark.parametrize("line, problem", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"task": "qa", "model": "m-1B", "n_sft": 1, "n_pft": 0}', "missing score"),
    ('{"task": "qa", "model": "m-1B", "n_sft": true, "n_pft": 0, "score": 0.1}', "n_sft must be a number"),
])
def test_a_bad_jsonl_line_is_one_error_naming_file_and_line(tmp_path, line, problem):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"task": "qa", "model": "m-1B", "n_sft": 0, "n_pft": 0, "score": 0.2}\n' + line + "\n")
    with pytest.raises(AdvisorError, match=rf"^{path}:2: .*{problem}"):
        load_runs(path)


@pytest.mark.parametrize("name, text, problem", [
    ("empty.csv", "", "lacks column"),
    ("header.csv", HEADER, "holds no runs"),
    ("blank.jsonl", "\n\n", "holds no runs"),
    ("cols.csv", "task,model,score\nqa,m,0.5\n", "lacks column(s) n_sft, n_pft"),
    ("runs.txt", "whatever", "must end in .csv or .jsonl"),
])
def test_an_empty_or_malformed_file_is_refused(tmp_path, name, text, problem):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(AdvisorError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_runs(path)


def test_a_missing_or_undecodable_file_is_refused(tmp_path):
    with pytest.raises(AdvisorError, match="no such runs file"):
        load_runs(tmp_path / "nope.csv")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(AdvisorError, match="not UTF-8"):
        load_runs(binary)


def test_run_checks_its_own_fields():
    with pytest.raises(AdvisorError, match="task must be a non-empty name"):
        Run(" ", "m-1B", 1.0, 0, 0, 0.5, "", "x")
    with pytest.raises(AdvisorError, match="score must be a finite number"):
        Run("qa", "m-1B", 1.0, 0, 0, math.nan, "", "x")
    assert Run("qa", "m-1B", None, 10.0, 0, 0.5, None, "x").n_sft == 10


def test_model_key_pools_spellings_of_one_model():
    from advisor.records import model_key

    assert model_key("meta-llama/Llama-3.1-8B") == model_key("Llama-3.1-8B (base)") == "llama-3.1-8b"
    assert model_key("Qwen/Qwen2.5-7B") == model_key("qwen2.5-7b (Base)")
    assert model_key("SmolLM2-135M-Instruct") != model_key("SmolLM2-135M")
