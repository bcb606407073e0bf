"""Guards and partitions: pure functions, no model needed."""

from __future__ import annotations

import pytest

from llm_cache.errors import ConfigurationError
from llm_cache.keys import cache_key_hex, messages_prompt
from llm_cache.semantic.guards import (
    DEFAULT_GUARDS,
    AntonymGuard,
    EditGuard,
    EntityGuard,
    NegationGuard,
    NumberGuard,
    OrderGuard,
    QuestionGuard,
    analyse,
    first_rejection,
    resolve_guards,
)
from llm_cache.semantic.partition import split_prompt


def rejects(guard: object, a: str, b: str) -> bool:
    return guard(analyse(a), analyse(b)) is not None and guard(analyse(b), analyse(a)) is not None  # type: ignore[operator]


def accepts(guard: object, a: str, b: str) -> bool:
    return guard(analyse(a), analyse(b)) is None and guard(analyse(b), analyse(a)) is None  # type: ignore[operator]


@pytest.mark.parametrize(
    "a, b",
    [
        ("How much is a 23kg checked bag?", "How much is a 32kg checked bag?"),
        ("Remind me at 7am", "Remind me at 7pm"),
        ("Who won the World Cup in 2014?", "Who won the World Cup in 2018?"),
        ("What was my bill in January?", "What was my bill in June?"),
        ("What's the price for cleaning a two-bed flat?", "How much to clean a five-bedroom house?"),
        ("Can I return it after 14 days?", "Can I return it?"),
        ("What time does the post office close today?", "What time does the post office close tomorrow?"),
        ("Convert 100 USD to GBP", "Convert 1000 USD to GBP"),
    ],
)
def test_number_guard_rejects_different_numbers_and_dates(a: str, b: str) -> None:
    assert rejects(NumberGuard(), a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("Remind me at 7am", "Set a reminder for seven in the morning"),
        ("What's 15% of 200?", "Calculate fifteen percent of 200"),
        ("What will my electricity cost if I use 2,700 kWh?", "Cost of 2700 kWh of electricity?"),
        ("What time does the leisure centre open on Mondays?", "What time does the leisure center open on Mondys?"),
        ("Which one should I buy?", "Which should I buy?"),  # "one" is not a number
        ("May I pay by card?", "Can I pay by card?"),  # "May" starting a sentence is a verb
    ],
)
def test_number_guard_accepts_the_same_numbers_written_differently(a: str, b: str) -> None:
    assert accepts(NumberGuard(), a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("Which items can be recycled?", "Which items can't be recycled?"),
        ("What happens if I pay my bill on time?", "What happens if I don't pay my bill on time?"),
        ("Cancel my subscription", "Don't cancel my subscription"),
        ("How do I lock my debit card?", "How do I unlock my debit card?"),
        ("Is the deposit refundable?", "Is the deposit non-refundable?"),
        ("Is ibuprofen safe with alcohol?", "Is ibuprofen unsafe with alcohol?"),
    ],
)
def test_negation_guard(a: str, b: str) -> None:
    assert rejects(NegationGuard(), a, b)


def test_negation_guard_accepts_both_negated() -> None:
    assert accepts(NegationGuard(), "Why won't my laptop connect to the printer?", "Why doesn't my laptop connect to the printer?")
    assert accepts(NegationGuard(), "How do I install the app?", "How can I install the app?")


@pytest.mark.parametrize(
    "a, b",
    [
        ("How do I increase the font size?", "How do I decrease the font size?"),
        ("How do I turn on two-factor authentication?", "How do I turn off two-factor authentication?"),
        ("How do I opt in to the pension?", "How do I opt out of the pension?"),
        ("How do I add a user to the workspace?", "How do I remove a user from the workspace?"),
        ("Which dishes are spicy?", "Which dishes are mild?"),
    ],
)
def test_antonym_guard(a: str, b: str) -> None:
    assert rejects(AntonymGuard(), a, b)


def test_antonym_guard_ignores_words_on_both_sides() -> None:
    assert accepts(AntonymGuard(), "Should I turn it on or off?", "Should I switch it on or off?")


@pytest.mark.parametrize(
    "a, b",
    [
        ("Who is the CEO of Microsoft?", "Who is the CEO of Apple?"),
        ("How do I install Python on Windows?", "How do I install Python on macOS?"),
        ("What's the baggage allowance on easyJet?", "What's the baggage allowance on Ryanair?"),
        ("What's the legal drinking age in the UK?", "What's the legal drinking age in the US?"),
    ],
)
def test_entity_guard_rejects_other_names(a: str, b: str) -> None:
    assert rejects(EntityGuard(), a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("Do you accept Apple Pay?", "Do You Accept Apple Pay?"),
        ("What is the tallest mountain in the UK?", "um what is the tallest mountain in the uk"),
        ("How do I connect my GitHub repository?", "How do I link a github repo?"),
        ("How DO I prepare for the exam?", "How do I prepare for the exam?"),
    ],
)
def test_entity_guard_accepts_case_and_spacing_changes(a: str, b: str) -> None:
    assert accepts(EntityGuard(), a, b)


def test_edit_guard_rejects_a_swapped_or_added_content_word() -> None:
    guard = EditGuard()
    assert rejects(guard, "Does the hotel have a pool?", "Does the hotel have a gym?")
    assert rejects(guard, "What are the symptoms of flu?", "What are the symptoms of flu in babies?")
    assert accepts(guard, "How do I report a missed bin collection?", "How do I report a missed bin colection?")
    assert accepts(guard, "How do I fix a dripping tap?", "okay so how do i fix a dripping tap")
    assert accepts(guard, "How do I cancel my plan?", "How can I cancel my plan?")
    # Reworded pairs are left to the embedding.
    assert accepts(guard, "What are your opening hours?", "When are you open?")


@pytest.mark.parametrize(
    "a, b",
    [
        ("How do I get from Paris to London by train?", "How do I get from London to Paris by train?"),
        ("Convert 5 miles to kilometers", "Convert 5 kilometers to miles"),
        ("How to convert miles to kilometers?", "How to convert kilometers to miles?"),
        ("Is Python faster than Java?", "Is Java faster than Python?"),
        ("Translate 'good morning' from English to French", "Translate 'good morning' from French to English"),
        ("Can Iran win against Bosnia?", "Can Bosnia win against Iran?"),
    ],
)
def test_order_guard_rejects_words_that_trade_sides(a: str, b: str) -> None:
    assert rejects(OrderGuard(), a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        # The phrase moves with its preposition: the same request.
        ("How do I transfer money from PayPal to my bank?", "How do I transfer money to my bank from PayPal?"),
        # Symmetric words ("between", "and", "or") are not directional.
        ("Who won the match between Spain and Italy?", "Who won the match between Italy and Spain?"),
        ("Is it better to rent or buy a house?", "Is it better to buy or rent a house?"),
        # Reordered without a directional word.
        ("What are the beauty standards in the Philippines?", "What is the standard of beauty in the Philippines?"),
        ("What is the best way to learn Python quickly?", "How to quickly learn Python?"),
    ],
)
def test_order_guard_accepts_reordered_paraphrases(a: str, b: str) -> None:
    assert accepts(OrderGuard(), a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("Why did God create the universe?", "How did God create the universe?"),
        ("When did rap music start?", "Who started rap music?"),
        ("Where is Sonia Gandhi?", "Who is Sonia Gandhi?"),
        ("Hi! So why is my train late?", "How late is my train? And where is it now?"),
    ],
)
def test_question_guard_rejects_different_questions(a: str, b: str) -> None:
    assert rejects(QuestionGuard(), a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("How can I see who is connected to my WiFi?", "How do I find out who is on my WiFi?"),
        ("How much does a passport cost?", "What is the price of a passport?"),
        ("How come the sky is blue?", "Why is the sky blue?"),
        ("Why does my mouse keep freezing?", "Why does my mouse keep freezing? How can I fix it?"),
        ("When does the shop open?", "What time does the shop open?"),
        ("I want to know why the sky is blue", "Why is the sky blue?"),
    ],
)
def test_question_guard_accepts_the_same_question(a: str, b: str) -> None:
    assert accepts(QuestionGuard(), a, b)


def test_resolve_guards() -> None:
    assert [g.name for g in resolve_guards("default")] == list(DEFAULT_GUARDS)  # type: ignore[union-attr]
    assert resolve_guards(None) == () and resolve_guards("none") == ()
    assert [g.name for g in resolve_guards("numbers,edits")] == ["numbers", "edits"]  # type: ignore[union-attr]

    def no_swearing(query: object, cached: object) -> str | None:
        return None

    assert resolve_guards(["numbers", no_swearing])[1] is no_swearing
    with pytest.raises(ConfigurationError, match="unknown guard"):
        resolve_guards(["nope"])
    assert first_rejection(resolve_guards("default"), "Remind me at 7am", "Remind me at 7pm")[0] == "numbers"  # type: ignore[index]
    assert first_rejection(resolve_guards("default"), "Remind me at 7am", "Please remind me at 7am") is None


# ---------------------------------------------------------------------- partitions

LLM = '{"model":"m"}'


def test_completion_prompt_is_embedded_whole() -> None:
    sk = split_prompt("How do I learn Python?", LLM)
    assert sk.text == "How do I learn Python?" and sk.key == cache_key_hex("How do I learn Python?", LLM)
    assert split_prompt("How can I learn Python?", LLM).partition == sk.partition
    assert split_prompt("How can I learn Python?", '{"model":"n"}').partition != sk.partition


def test_chat_embeds_only_the_last_user_message() -> None:
    def chat(system: str, question: str) -> str:
        return messages_prompt([{"role": "system", "content": system}, {"role": "user", "content": question}])

    a = split_prompt(chat("Be terse.", "Capital of France?"), LLM)
    b = split_prompt(chat("Be terse.", "What is France's capital?"), LLM)
    c = split_prompt(chat("Be verbose.", "Capital of France?"), LLM)
    assert a.text == "Capital of France?" and a.partition == b.partition != c.partition
    assert a.key != b.key
    # The completion prompt with the same text is another partition.
    assert split_prompt("Capital of France?", LLM).partition != a.partition
    # A user message name or later assistant turn is part of the context.
    named = messages_prompt([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Capital of France?", "name": "bob"}])
    assert split_prompt(named, LLM).partition != a.partition


def test_chat_with_parts_embeds_text_parts_and_keeps_images_in_the_partition() -> None:
    def chat(url: str, text: str) -> str:
        return messages_prompt(
            [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}]
        )

    a = split_prompt(chat("http://x/cat.png", "What is this?"), LLM)
    assert a.text == "What is this?"
    assert split_prompt(chat("http://x/cat.png", "What's this?"), LLM).partition == a.partition
    assert split_prompt(chat("http://x/dog.png", "What is this?"), LLM).partition != a.partition


def test_chat_without_user_text_is_alone_in_its_partition() -> None:
    prompt = messages_prompt([{"role": "system", "content": "Say hi."}])
    sk = split_prompt(prompt, LLM)
    assert sk.text is None
    other = split_prompt(messages_prompt([{"role": "system", "content": "Say hello."}]), LLM)
    assert other.partition != sk.partition


def test_json_looking_completion_prompt() -> None:
    assert split_prompt('[{"not": "a chat"}]', LLM).text == '[{"not": "a chat"}]'
    assert split_prompt("[{broken", LLM).text == "[{broken"
