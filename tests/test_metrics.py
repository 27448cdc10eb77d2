"""Metrics on hand-made cases whose values are known."""

from decimal import Decimal

import pytest

from engine.record.errors import UserError
from engine.tasks.metrics import (METRICS, Scored, final_number, get_metric, lcs_length, metric, rouge_l_f1)


@pytest.mark.parametrize("text,number", [
    ("She sells 9 * 2 = 18 eggs.\n#### 18", "18"),
    ("#### 1,234", "1234"),
    ("Total 5,000 then #### -10", "-10"),
    ("So 3 + 4 = 7 and the answer is 1,450,000.", "1450000"),
    ("The Answer is $12.50, I think 3 more", "12.50"),
    ("first 4 then 5 then 6.", "6"),
    ("#### 18.0", "18"),
    ("no numbers at all", None),
])
def test_final_number(text, number):
    assert final_number(text) == (None if number is None else Decimal(number))


def test_exact_match_compares_final_numbers_against_gsm8k_references():
    score = get_metric("exact_match").score
    reference = "Janet sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $18.\n#### 1,800"
    assert score([("so #### 1800", reference)]) == 1.0
    assert score([("the answer is 1,800.", reference)]) == 1.0
    assert score([("I got 1800 then 18", reference)]) == 0.0
    assert score([("#### 1800", reference), ("#### 18", reference), ("", reference), ("1800", reference)]) == 0.5


def test_rouge_l_known_values():
    assert lcs_length("a b c d e".split(), "a x c y e".split()) == 3
    # LCS "the cat on the mat" = 5 of 6 words each way: P = R = F1 = 5/6
    assert rouge_l_f1("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    # LCS 2 ("a c"): P = 2/2, R = 2/4, F1 = 2PR/(P+R) = 2/3
    assert rouge_l_f1("a c", "a b c d") == pytest.approx(2 / 3)
    assert rouge_l_f1("", "anything") == 0.0
    assert get_metric("rouge_l").score([("a c", "a b c d"), ("x", "y")]) == pytest.approx(1 / 3)


def test_preference_accuracy_uses_implicit_reward_when_a_reference_is_given():
    score = get_metric("preference_accuracy").score
    # without a reference: raw log-probs decide
    assert score([(Scored(-5.0, 3), Scored(-7.0, 3)), (Scored(-9.0, 3), Scored(-7.0, 3))]) == 0.5
    # with one: chosen logπ−logπ_ref = -5−(-1) = -4 < rejected -7−(-9) = 2, though raw logπ is higher
    assert score([(Scored(-5.0, 3, -1.0), Scored(-7.0, 3, -9.0))]) == 0.0
    assert score([(Scored(-5.0, 3, -5.0), Scored(-7.0, 3, -7.0))]) == 0.0  # a tie is not a win


def test_heldout_loss_is_token_weighted_mean_nll():
    loss = get_metric("heldout_loss")
    assert loss.kind == "scoring" and loss.higher_is_better is False
    assert loss.score([Scored(-6.0, 2), Scored(-4.0, 8)]) == pytest.approx(1.0)


def test_kinds_and_directions():
    assert {name: (m.kind, m.higher_is_better) for name, m in METRICS.items()} == {
        "exact_match": ("generation", True), "rouge_l": ("generation", True),
        "preference_accuracy": ("scoring", True), "heldout_loss": ("scoring", False)}


def test_adding_a_metric_is_one_decorated_function(monkeypatch):
    monkeypatch.setattr("engine.tasks.metrics.METRICS", dict(METRICS))

    @metric("length_ratio", needs="text")
    def length_ratio(items):
        """Generated length over reference length."""
        return sum(len(p) / len(r) for p, r in items) / len(items)

    registered = get_metric("length_ratio")
    assert (registered.kind, registered.description) == ("generation", "Generated length over reference length.")
    assert registered.score([("ab", "abcd")]) == 0.5


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(UserError, match=r"^unknown metric 'rouge'; known: exact_match, heldout_loss, "
                                        r"preference_accuracy, rouge_l \(did you mean 'rouge_l'\?\)$"):
        get_metric("rouge")


@pytest.mark.parametrize("prediction,reference,same", [
    ("The ratio is 6:1.", "#### 6:1", True),
    ("#### 12:2", "#### 6:1", False),  # a ratio is compared as written
    ("so the answer is -1/3", "#### -1/3", True),
    ("#### -2/6", "#### -1/3", True),  # fractions by value
    ("#### 0.5", "#### 1/2", True),
    ("#### 1/3", "#### -1/3", False),
    ("They meet at 5:45 pm.", "5:45", True),
    ("They meet at 5:54 pm.", "5:45", False),
    ("Bryan", "Bryan", True),
    ("The answer is bryan.", "Bryan", True),
    ("Bryan, with 3 apples", "Bryan", False),
    ("Alice", "Bryan", False),
    ("#### 18.0", "#### 18", True),
    ("anything", "", False),
])
def test_exact_match_normalises_fractions_ratios_times_and_text(prediction, reference, same):
    assert get_metric("exact_match").score([(prediction, reference)]) == float(same)


def test_final_answer_kinds():
    from fractions import Fraction

    from engine.tasks.metrics import Answer, final_answer

    assert final_answer("#### 1,234.5") == Answer("number", Fraction("1234.5"))
    assert final_answer("x 3:4") == Answer("ratio", (Fraction(3), Fraction(4)))
    assert final_answer("Mrs. Smith!") == Answer("text", "mrs smith")
    assert final_answer("  ") is None


def test_exact_match_warns_about_references_it_reads_as_text_or_not_at_all():
    from engine.tasks.metrics import exact_match_warnings

    assert exact_match_warnings(["#### 5", "6:1", "-1/3"]) == []
    warnings = exact_match_warnings(["#### 5", "Bryan", "", "Alice"])
    assert warnings == [
        "1 of 4 references have no answer exact_match can read; every generation for them scores 0 (e.g. '')",
        "2 of 4 references have no number; exact_match compares them as text, ignoring case and punctuation "
        "(e.g. 'Bryan')",
    ]
