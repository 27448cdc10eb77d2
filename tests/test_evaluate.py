"""Evaluation on the real tiny Llama (4-bit and full precision): values checked against
transformers' own loss, a model's own generations and DPO's zero reward at the reference."""

import pytest

from engine.tasks import evaluate as evaluation
from engine.record.errors import UserError
from engine.tasks.evaluate import encode_answer, evaluate, generate
from engine.tasks.metrics import words
from engine.training.models import load_model
from engine.tasks.catalog import get_task, select


@pytest.fixture(scope="module")
def chat_eval():
    return select(get_task("chat_preference"), 0, 0, 16, seed=0).eval


@pytest.fixture(scope="module")
def gsm8k_eval():
    return select(get_task("gsm8k_math"), 0, 0, 16, seed=0).eval


@pytest.fixture(scope="module")
def scrambled(tiny_spec):
    """The tiny Llama in full precision with large random weights, so its greedy answers vary by prompt."""
    import torch

    model, tokenizer = load_model(tiny_spec, quant="none", device="cpu")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model, tokenizer


def test_preference_accuracy_on_4bit_is_a_deterministic_share(tiny_4bit, chat_eval):
    model, tokenizer = tiny_4bit
    first = evaluate(model, tokenizer, chat_eval, "preference_accuracy", batch_size=4)
    assert (first.metric, first.n) == ("preference_accuracy", 16)
    assert 0.0 <= first.value <= 1.0 and (first.value * 16).is_integer()
    assert first.extras["heldout_loss"] > 0
    assert evaluate(model, tokenizer, chat_eval, "preference_accuracy", batch_size=4) == first
    other_batching = evaluate(model, tokenizer, chat_eval, "preference_accuracy", batch_size=16)
    assert other_batching.value == first.value
    assert other_batching.extras["heldout_loss"] == pytest.approx(first.extras["heldout_loss"], rel=1e-6)


def test_a_policy_equal_to_its_reference_has_zero_reward_so_no_pair_wins(tiny_4bit, chat_eval):
    model, tokenizer = tiny_4bit
    result = evaluate(model, tokenizer, chat_eval[:6], "preference_accuracy", reference_model=model)
    assert result.value == 0.0


@pytest.mark.parametrize("trim_logits", [True, False], ids=["logits_to_keep", "full_logits"])
def test_heldout_loss_matches_transformers_own_loss(tiny_spec, gsm8k_eval, monkeypatch, trim_logits):
    import torch

    monkeypatch.setattr(evaluation, "_accepts_logits_to_keep", lambda model: trim_logits)
    model, tokenizer = load_model(tiny_spec, quant="none", device="cpu")
    examples = gsm8k_eval[:5]
    ours = evaluate(model, tokenizer, examples, "heldout_loss", batch_size=3, max_length=256).value
    total, tokens = 0.0, 0
    for example in examples:  # one unpadded sequence at a time, prompt tokens masked out of the labels
        ids, n_prompt = encode_answer(tokenizer, example["prompt"], example["completion"], 256)
        labels = torch.tensor([[-100] * n_prompt + ids[n_prompt:]])
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ids]), labels=labels).loss.item()
        total, tokens = total + loss * (len(ids) - n_prompt), tokens + len(ids) - n_prompt
    assert ours == pytest.approx(total / tokens, rel=1e-5)


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(scrambled, gsm8k_eval):
    model, tokenizer = scrambled
    prompts = [e["prompt"] for e in gsm8k_eval[:6]]
    assert len({len(p[0]["content"]) for p in prompts}) == 6  # different lengths, so padding matters
    batched = generate(model, tokenizer, prompts, batch_size=6, max_new_tokens=12)
    assert batched == [generate(model, tokenizer, [p], batch_size=1, max_new_tokens=12)[0] for p in prompts]
    assert len(set(batched)) > 1  # (text, new tokens): a row's count stops at its own end, whatever the batch
    assert all(1 <= answer.tokens <= 12 for answer in batched)
    assert all(answer.ended or answer.tokens == 12 for answer in batched)  # unended: cut at max_new_tokens
    assert (tokenizer.padding_side, tokenizer.truncation_side) == ("right", "right")  # restored


def test_generation_metrics_score_the_models_own_answers_as_perfect(scrambled, gsm8k_eval):
    model, tokenizer = scrambled
    answers = generate(model, tokenizer, [e["prompt"] for e in gsm8k_eval[:8]], max_new_tokens=16)
    assert all(words(a.text) for a in answers)
    examples = [{"prompt": e["prompt"], "completion": [{"role": "assistant", "content": a.text}]}
                for e, a in zip(gsm8k_eval[:8], answers)]
    assert evaluate(model, tokenizer, examples, "rouge_l", max_new_tokens=16).value == pytest.approx(1.0)
    shifted = [{**e, "completion": other["completion"]} for e, other in zip(examples, examples[1:] + examples[:1])]
    assert evaluate(model, tokenizer, shifted, "rouge_l", max_new_tokens=16).value < 0.5


def test_exact_match_on_gsm8k_is_deterministic_and_bounded(tiny_4bit, gsm8k_eval):
    model, tokenizer = tiny_4bit
    model.train()
    first = evaluate(model, tokenizer, gsm8k_eval, "exact_match", max_new_tokens=24)
    assert model.training  # evaluation mid-training hands the model back in training mode
    assert first.n == 16 and 0.0 <= first.value <= 1.0
    assert evaluate(model, tokenizer, gsm8k_eval, "exact_match", max_new_tokens=24) == first
    model.eval()


def test_long_examples_are_cut_to_max_length_keeping_answer_tokens(tiny_4bit, gsm8k_eval):
    _, tokenizer = tiny_4bit
    example = gsm8k_eval[0]
    full, n_full = encode_answer(tokenizer, example["prompt"], example["completion"], 10_000)
    ids, n_prompt = encode_answer(tokenizer, example["prompt"], example["completion"], 40)
    assert len(ids) == 40 and n_prompt < 40
    assert ids[n_prompt:] == full[n_full:n_full + 40 - n_prompt]


def test_nothing_to_evaluate_is_a_user_error(tiny_4bit):
    with pytest.raises(UserError, match="nothing to evaluate exact_match on"):
        evaluate(*tiny_4bit, [], "exact_match")
