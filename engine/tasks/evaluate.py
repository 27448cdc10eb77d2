"""Score a model on held-out examples with a task's metric (see `engine.tasks.metrics`).

Generation metrics: batched greedy decoding of the chat-formatted prompt (left padding, prompt
truncated from the left, at most `max_new_tokens`). Scoring metrics: one forward pass per batch
summing the log-probs of the answer tokens after the chat-formatted prompt, the
same tokens DPO scores. preference_accuracy compares DPO's implicit reward (logπ − logπ_ref)
when a reference model is given, else the plain log-probs; it also reports the held-out loss of
the chosen answers in `extras`, from the same forward passes.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from engine.record.errors import UserError
from engine.tasks.metrics import Metric, Scored, exact_match_warnings, get_metric, heldout_loss


class Answer(NamedTuple):
    """A generated answer, how many new tokens it took (its end-of-turn token included) and
    whether it ended (else it was cut: at max_new_tokens, or by a stopping criterion)."""

    text: str
    tokens: int
    ended: bool


@dataclass
class EvalResult:
    """A metric's value, plus for generation metrics what the model wrote: one
    {prompt, output, reference, score, tokens} per example, so a score of 0 can be looked into."""

    metric: str
    value: float
    n: int
    extras: dict[str, float] = field(default_factory=dict)
    generations: list[dict] = field(default_factory=list)


def reference_warnings(examples: list[dict], metric: Metric) -> list[str]:
    """What the user should hear before `metric` scores these examples' references."""
    if metric.name != "exact_match":
        return []
    return exact_match_warnings([_text(_answer(example)) for example in examples])


def evaluate(model, tokenizer, examples: list[dict], metric: Metric | str, *, batch_size: int = 8,
             max_new_tokens: int = 128, reference_model=None, max_length: int = 1024) -> EvalResult:
    """`examples` are SFT-shaped ({prompt, completion}) or pairs ({prompt, chosen, rejected});
    generation metrics and heldout_loss use the completion (or chosen) answer as reference."""
    import torch

    metric = get_metric(metric) if isinstance(metric, str) else metric
    if not examples:
        raise UserError(f"nothing to evaluate {metric.name} on: the evaluation set is empty")
    extras, samples = {}, []
    with eval_mode(model), eval_mode(reference_model), torch.inference_mode():
        prompts = [example["prompt"] for example in examples]
        if metric.needs == "text":
            answers = generate(model, tokenizer, prompts, batch_size=batch_size,
                               max_new_tokens=max_new_tokens, max_length=max_length)
            items = [(answer.text, _text(_answer(example))) for answer, example in zip(answers, examples)]
            samples = [{"prompt": _text(example["prompt"]), "output": output, "reference": reference,
                        "score": float(metric.score([(output, reference)])), "tokens": answer.tokens}
                       for example, answer, (output, reference) in zip(examples, answers, items)]
        elif metric.needs == "pairs":
            chosen = _score(model, tokenizer, prompts, [_pair(e)[0] for e in examples], reference_model,
                            batch_size, max_length)
            rejected = _score(model, tokenizer, prompts, [_pair(e)[1] for e in examples], reference_model,
                              batch_size, max_length)
            items = list(zip(chosen, rejected))
            extras["heldout_loss"] = heldout_loss(chosen)
        else:
            items = _score(model, tokenizer, prompts, [_answer(e) for e in examples], reference_model,
                           batch_size, max_length)
    return EvalResult(metric=metric.name, value=float(metric.score(items)), n=len(examples), extras=extras,
                      generations=samples)


@contextmanager
def eval_mode(model):
    """Dropout off while scoring; a model evaluated mid-training goes back to training after."""
    was_training = model is not None and model.training
    if model is not None:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _answer(example: dict) -> list[dict]:
    return example.get("completion") or example["chosen"]


def _pair(example: dict) -> tuple[list[dict], list[dict]]:
    if "chosen" not in example or "rejected" not in example:
        raise UserError("preference_accuracy needs preference pairs (prompt, chosen, rejected) to evaluate on")
    return example["chosen"], example["rejected"]


def _text(messages: list[dict]) -> str:
    return "\n".join(message["content"] for message in messages)


def generate(model, tokenizer, prompts: list[list[dict]], *, batch_size: int = 8,
             max_new_tokens: int = 128, max_length: int = 1024, min_new_tokens: int = 0,
             logits_processor=None, stopping_criteria=None) -> list[Answer]:
    """Greedy answers to chat prompts, decoded without special tokens (`min_new_tokens` > 0 makes
    every answer at least that long, `logits_processor` sees each new token and `stopping_criteria`
    may end a batch early: the calibration times generation). A batch generates until its longest
    answer ends."""
    from transformers import GenerationConfig

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    stops = _stop_tokens(model, tokenizer)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens or None, do_sample=False, use_cache=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=stops,
    )
    stops = {stops} if isinstance(stops, int) else set(stops or ())
    sides = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = tokenizer.truncation_side = "left"
    answers = []
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              truncation=True, max_length=max(1, max_length - max_new_tokens),
                              add_special_tokens=False).to(model.device)
            output = model.generate(**batch, generation_config=config, logits_processor=logits_processor,
                                    stopping_criteria=stopping_criteria)
            new_tokens = output[:, batch["input_ids"].shape[1]:]
            for row, text in zip(new_tokens.tolist(), tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                ended = next((i + 1 for i, token in enumerate(row) if token in stops), None)
                answers.append(Answer(text, ended or len(row), ended is not None))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = sides
    return answers


def _stop_tokens(model, tokenizer):
    """The model's own end-of-turn ids (some chat models list several), else the tokenizer's eos."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    return tokenizer.eos_token_id if configured is None else configured


def _score(model, tokenizer, prompts, answers, reference_model, batch_size, max_length) -> list[Scored]:
    encoded = [encode_answer(tokenizer, p, a, max_length) for p, a in zip(prompts, answers)]
    policy = answer_logps(model, tokenizer, encoded, batch_size)
    if reference_model is None:
        return [Scored(logp, n) for logp, n in policy]
    reference = answer_logps(reference_model, tokenizer, encoded, batch_size)
    return [Scored(logp, n, ref) for (logp, n), (ref, _) in zip(policy, reference)]


def encode_answer(tokenizer, prompt: list[dict], answer: list[dict], max_length: int) -> tuple[list[int], int]:
    """(token ids of prompt + answer, number of prompt tokens), rendered by the chat template;
    over `max_length` the answer is cut at its end, then the prompt from its start."""
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise UserError("the model's chat template does not render the prompt as the start of the conversation")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    answer_ids = answer_ids[: max(1, max_length - len(prompt_ids))]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(answer_ids) - max_length):]
    return prompt_ids + answer_ids, len(prompt_ids)


def answer_logps(model, tokenizer, encoded: list[tuple[list[int], int]], batch_size: int) -> list[tuple[float, int]]:
    """(summed log-prob of the answer tokens, number of answer tokens) for each encoded sequence.

    Sequences are batched by length and left-padded, so every answer ends at the right edge and
    only the last `longest answer + 1` positions need the vocabulary projection — most tokens of
    a multi-turn prompt never pay for it."""
    import torch

    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    trim = _accepts_logits_to_keep(model)
    results: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(encoded[i][0]) for i in rows)
        answer_lengths = torch.tensor([len(encoded[i][0]) - encoded[i][1] for i in rows])
        keep = int(answer_lengths.max()) + 1
        input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for row, i in enumerate(rows):
            ids = encoded[i][0]
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        input_ids, attention, positions = (t.to(model.device) for t in (input_ids, attention, positions))
        extra = {"logits_to_keep": keep} if trim else {}
        logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, **extra).logits
        logits = logits[:, -keep:-1].float()
        targets = input_ids[:, width - keep + 1:]
        token_logps = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
        mask = torch.arange(keep - 1, device=model.device) >= (keep - 1) - answer_lengths.to(model.device)[:, None]
        sums = torch.where(mask, token_logps, 0.0).sum(-1)
        for i, total, n in zip(rows, sums.tolist(), answer_lengths.tolist()):
            results[i] = (total, n)
    return results


def _accepts_logits_to_keep(model) -> bool:
    """Library models do; older remote-code models may not, and then get full logits."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters
