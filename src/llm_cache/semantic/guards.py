"""Guards: cheap lexical checks that veto a semantic match the embedding got wrong.

Sentence embeddings place look-alike questions close together even when they need
different answers: "How do I turn on two-factor authentication?" and "... turn off ..."
are 0.97 apart in all-MiniLM-L6-v2, closer than most true paraphrases. No single cosine
threshold separates them (see docs/semantic.md). A guard looks at the two *texts* of a
candidate match and rejects it when they differ in a way that changes the answer:

* :class:`NumberGuard` (``"numbers"``): different numbers, times, dates, months or weekdays
  ("a 2kg chicken" / "a 1kg chicken", "at 7am" / "at 7pm", "in January" / "in June").
* :class:`NegationGuard` (``"negation"``): one text is negated and the other is not
  ("can be recycled" / "can't be recycled"), or a word against its negated form
  ("lock" / "unlock", "refundable" / "non-refundable").
* :class:`AntonymGuard` (``"antonyms"``): a word on one side, its opposite on the other
  ("increase" / "decrease", "turn on" / "turn off", "before" / "after").
* :class:`EntityGuard` (``"entities"``): a name, acronym or brand on one side that the
  other does not mention ("CEO of Microsoft" / "CEO of Apple").
* :class:`OrderGuard` (``"order"``): words trade sides of a directional word
  ("from Paris to London" / "from London to Paris", "Is Python faster than Java?" /
  "Is Java faster than Python?").
* :class:`QuestionGuard` (``"questions"``): the sentences open with different question
  words ("Why did God create the universe?" / "How did God create the universe?").
* :class:`EditGuard` (``"edits"``, opt-in): the two texts are the same sentence except for a
  content word swapped, added or dropped ("Does the hotel have a pool?" / "... a gym?",
  "symptoms of flu" / "symptoms of flu in babies"); typos and fillers ("um", "Hi,") do
  not count. Heavily reworded pairs are left to the embedding.

Every guard is a pure function of the two texts (no I/O, no model), so the sync and async
lookup paths and every store share them. Text analysis is memoised per text.

A guard returns ``None`` to let a candidate through or a short reason string (shown in
:class:`~llm_cache.semantic.cache.SemanticMatch` diagnostics and in evaluation reports).
Which guards the cache uses by default, and why, is measured in docs/semantic.md.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable, Protocol, Sequence, Union, runtime_checkable

from ..errors import ConfigurationError

__all__ = [
    "Guard",
    "TextFeatures",
    "analyse",
    "NumberGuard",
    "NegationGuard",
    "AntonymGuard",
    "EntityGuard",
    "OrderGuard",
    "QuestionGuard",
    "EditGuard",
    "GUARDS",
    "DEFAULT_GUARDS",
    "resolve_guards",
    "first_rejection",
]


# --------------------------------------------------------------------------- lexicons
# General English, not fitted to any data set: function words, chat fillers, number
# words, calendar words, negation cues and common antonym pairs.

_STOPWORDS = frozenset(
    """
    a an the this that these those some any each every all both either
    i me my mine myself we us our ours you your yours yourself he him his she her hers it its
    they them their theirs one ones someone somebody something anyone anybody anything
    is am are was were be been being do does did done doing have has had having
    can could will would shall should may might must need ought get got gets
    to of in on at by for with from into onto about as than then so such too very really
    and or but if because while also just only even still yet already
    there here what's that's it's there's
    how what why when where who whom whose which
    up out off over under again further once
    please thanks thank
    """.split()
)

# Words that give the words on their two sides different roles: "from A to B", "A than B",
# "A against B". Symmetric ones ("and", "or", "between", "with") are left out on purpose.
_DIRECTIONAL = frozenset(
    "from to into onto than vs versus against toward towards before after".split()
)

# The question a sentence asks, from its first word: "why" and "how come" ask for a reason,
# "how" for a way, ... "What"/"which" can ask any of them ("what is the reason ...") and
# "how much/many/long/..." asks for a quantity a "what" question asks too: neither counts.
_QUESTION_WORDS = {"why": "why", "how": "how", "where": "where", "when": "when", "who": "who", "whom": "who", "whose": "who"}
_HOW_QUANTITIES = frozenset(
    "much many long often far old big large tall fast soon high deep heavy".split()
)
_CLAUSE_END = re.compile(r"[.!?;:\n]+")
_LEADING_CONJUNCTIONS = frozenset({"and", "but", "also", "then", "or"})

# Words people add to a question without changing it (greetings, hedges, hesitation).
_FILLERS = frozenset(
    """
    um uh erm er hmm ok okay so like yeah yes well hi hello hey morning afternoon evening
    sorry bother silly quick question pls please thanks cheers just actually basically
    dear kindly there tell know wonder wondering want wanted
    """.split()
)

_NUMBER_WORDS = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000, "million": 1_000_000,
    "billion": 1_000_000_000, "dozen": 12, "half": 0.5, "quarter": 0.25,
    # "one" is left out on purpose: "which one", "one of", "no one" are not numbers.
}

_MONTHS = {
    name: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
            ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
            ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for name in names
}
_WEEKDAYS = {
    name: i
    for i, names in enumerate(
        [
            ("monday", "mon"), ("tuesday", "tue", "tues"), ("wednesday", "wed"),
            ("thursday", "thu", "thur", "thurs"), ("friday", "fri"), ("saturday", "sat"),
            ("sunday", "sun"),
        ]
    )
    for name in names
}
# Relative days: "today" and "tomorrow" ask different things.
_RELATIVE_DAYS = frozenset({"today", "tonight", "tomorrow", "yesterday"})

_NEGATION_WORDS = frozenset(
    """
    not no never nothing none nobody nowhere neither nor without cannot cant dont doesnt
    didnt isnt arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt
    neednt aint
    """.split()
)

# Pairs of opposites common in questions to assistants. Either order counts.
_ANTONYM_PAIRS = [
    ("increase", "decrease"), ("increase", "reduce"), ("raise", "lower"), ("higher", "lower"),
    ("high", "low"), ("more", "less"), ("more", "fewer"), ("most", "least"), ("max", "min"),
    ("maximum", "minimum"), ("larger", "smaller"), ("bigger", "smaller"), ("large", "small"),
    ("big", "small"), ("long", "short"), ("longer", "shorter"), ("fast", "slow"),
    ("faster", "slower"), ("early", "late"), ("earlier", "later"), ("before", "after"),
    ("over", "under"), ("above", "below"), ("within", "after"), ("first", "last"),
    ("start", "stop"), ("start", "end"), ("begin", "end"), ("open", "close"),
    ("opening", "closing"), ("on", "off"), ("in", "out"), ("into", "out"), ("up", "down"),
    ("add", "remove"), ("add", "delete"), ("add", "take"), ("include", "exclude"),
    ("included", "excluded"), ("includes", "excludes"), ("accept", "decline"),
    ("accept", "reject"), ("approve", "reject"), ("approved", "rejected"), ("allow", "ban"),
    ("allowed", "banned"), ("allowed", "prohibited"), ("allow", "block"), ("enable", "disable"),
    ("enabled", "disabled"), ("lock", "unlock"), ("buy", "sell"), ("buying", "selling"),
    ("import", "export"), ("upload", "download"), ("send", "receive"), ("pay", "receive"),
    ("deposit", "withdraw"), ("join", "leave"), ("enrol", "withdraw"), ("enroll", "withdraw"),
    ("subscribe", "unsubscribe"), ("pause", "resume"), ("win", "lose"), ("won", "lost"),
    ("pass", "fail"), ("hot", "cold"), ("warm", "cool"), ("heavy", "light"), ("spicy", "mild"),
    ("compulsory", "optional"), ("mandatory", "optional"), ("required", "optional"),
    ("eat", "avoid"), ("take", "avoid"), ("use", "avoid"), ("safe", "dangerous"),
    ("legal", "illegal"), ("best", "worst"), ("better", "worse"), ("good", "bad"),
    ("cheap", "expensive"), ("cheapest", "dearest"), ("cheapest", "most"),
    ("positive", "negative"), ("pros", "cons"), ("advantages", "disadvantages"),
    ("benefits", "drawbacks"), ("full", "part"), ("men", "women"), ("men's", "women's"),
    ("male", "female"), ("boys", "girls"), ("husband", "wife"), ("son", "daughter"),
    ("landlord", "tenant"), ("employer", "employee"), ("buyer", "seller"), ("import", "export"),
    ("north", "south"), ("east", "west"), ("left", "right"), ("inside", "outside"),
    ("internal", "external"), ("domestic", "international"), ("online", "offline"),
    ("public", "private"), ("new", "old"), ("young", "old"), ("senior", "junior"),
    ("minimum", "maximum"), ("arrive", "depart"), ("arrival", "departure"),
    ("arrivals", "departures"), ("inbound", "outbound"), ("incoming", "outgoing"),
    ("true", "false"), ("yes", "no"), ("always", "never"), ("all", "none"), ("same", "different"),
    ("easy", "hard"), ("easy", "difficult"), ("easiest", "hardest"), ("rich", "poor"),
    ("love", "hate"), ("like", "dislike"), ("pro", "anti"), ("for", "against"),
    ("increased", "decreased"), ("rise", "fall"), ("grow", "shrink"), ("gain", "lose"),
    ("strengths", "weaknesses"), ("success", "failure"), ("sunrise", "sunset"),
]
_ANTONYMS: dict[str, frozenset[str]] = {}
for _a, _b in _ANTONYM_PAIRS:
    _ANTONYMS[_a] = _ANTONYMS.get(_a, frozenset()) | {_b}
    _ANTONYMS[_b] = _ANTONYMS.get(_b, frozenset()) | {_a}
del _a, _b

_NEGATING_PREFIXES = ("non", "un", "dis", "in", "im", "ir", "il", "anti")

_CONTRACTIONS = {
    "n't": " not", "'re": " are", "'ve": " have", "'ll": " will", "'d": " would", "'m": " am",
}
_SPECIAL_CONTRACTIONS = {"won't": "will not", "can't": "can not", "cannot": "can not", "shan't": "shall not"}

_TOKEN = re.compile(
    r"\d+(?:[.,:/]\d+)*(?:st|nd|rd|th)?(?:\s?(?:am|pm)\b)?"  # 2,700 / 9:15 / 2025/26 / 7pm / 1st
    r"|[^\W\d_]+(?:['’-][^\W\d_]+)*"  # words, with inner apostrophes and hyphens
)
_SENTENCE_END = re.compile(r"[.!?:;]\s+|\n")


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class TextFeatures:
    """What the guards need to know about one text, computed once per text."""

    text: str
    words: tuple[str, ...]  # lowercase tokens, contractions expanded, fillers kept
    core: tuple[str, ...]  # ``words`` without fillers: what an edit is measured on
    word_set: frozenset[str]
    squashed: str  # lowercase text with non-alphanumerics removed: "pay-as-you-go" -> "payasyougo"
    numbers: tuple[str, ...]  # sorted canonical numeric values, times, dates
    negated: bool  # odd number of negation cues
    entities: frozenset[str]  # lowercase names, acronyms, brands
    questions: frozenset[str]  # what its sentences ask: "why", "how", "where", "when", "who"


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("’", "'").replace("‘", "'")
    return text


def _expand(word: str) -> list[str]:
    if word in _SPECIAL_CONTRACTIONS:
        return _SPECIAL_CONTRACTIONS[word].split()
    for suffix, expansion in _CONTRACTIONS.items():
        if word.endswith(suffix) and len(word) > len(suffix):
            return [word[: -len(suffix)], *expansion.split()]
    if word.endswith("'s") and len(word) > 2:
        return [word[:-2]]  # possessive or "is": the noun is what matters
    if word.endswith("s'") and len(word) > 2:
        return [word[:-1]]  # plural possessive ("residents'")
    return [word]


def _number_value(token: str, following: str | None) -> str | None:
    """Canonical form of a numeric token (``None`` if it is not one)."""
    if not token[0].isdigit():
        return None
    body = token.replace(" ", "")
    meridiem = None
    for suffix in ("am", "pm"):
        if body.endswith(suffix):
            meridiem, body = suffix, body[: -len(suffix)]
    if following in ("am", "pm", "a.m", "p.m"):
        meridiem = following[0] + "m"
    body = re.sub(r"(st|nd|rd|th)$", "", body)
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", body):
        body = body.replace(",", "")  # thousands separators: 2,700 == 2700
    if meridiem is not None and re.fullmatch(r"\d{1,2}(:\d\d)?", body):
        hour, _, minute = body.partition(":")
        hour_value = int(hour) % 12 + (12 if meridiem == "pm" else 0)
        # "7am" == "seven (in the morning)" == 7; "7pm" == 19
        return str(hour_value) if minute in ("", "00") else f"{hour_value}:{minute}"
    try:
        value = float(body)
    except ValueError:
        return body  # 9:15, 2025/26: compare as written
    return f"{value:g}"


def _one_edit_variants(word: str) -> set[str]:
    """Every string one deletion, insertion, substitution or transposition away."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    return (
        {a + b[1:] for a, b in splits if b}
        | {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
        | {a + c + b[1:] for a, b in splits if b for c in letters}
        | {a + c + b for a, b in splits for c in letters}
    )


def _typo_table(vocabulary: dict[str, int]) -> dict[str, int]:
    """Typos of the long names (and their plurals) -> value, built once at import so that
    recognising "Mondys" is a dict lookup, not an edit-distance loop."""
    table: dict[str, int] = {}
    for name, value in vocabulary.items():
        if len(name) >= 6:
            for form in (name, name + "s"):
                for variant in _one_edit_variants(form):
                    if len(variant) >= 5:
                        table.setdefault(variant, value)
    table.update(vocabulary)  # exact names always win
    return table


_TYPO_TABLES: dict[int, dict[str, int]] = {}


def _near(word: str, vocabulary: dict[str, int]) -> int | None:
    """Vocabulary value of ``word`` or of a one-edit typo of a long vocabulary word."""
    table = _TYPO_TABLES.get(id(vocabulary))
    if table is None:  # built on first use (~20 ms), not at import
        table = _TYPO_TABLES[id(vocabulary)] = _typo_table(vocabulary)
    return table.get(word)


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance, giving up (returning ``limit + 1``) once it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def _entities(text: str) -> frozenset[str]:
    """Names, acronyms and brands: capitalised words that do not start a sentence,
    all-capital words and words with inner capitals (iPhone, macOS, easyJet)."""
    found: set[str] = set()
    for sentence in _SENTENCE_END.split(text):
        tokens = re.findall(r"[^\W_]+(?:['’][^\W_]+)?", sentence)
        for position, token in enumerate(tokens):
            letters = re.sub(r"[^A-Za-z]", "", token)
            if not letters or token in ("I", "I'm", "I've", "I'd", "I'll", "OK"):
                continue
            acronym = len(letters) >= 2 and letters.isupper()
            inner_caps = any(c.isupper() for c in token[1:]) and any(c.islower() for c in token)
            capitalised = token[0].isupper() and position > 0
            word = _expand(token.lower().replace("’", "'"))[0]
            if word in _STOPWORDS and word != "us":  # "How DO I", "Why": not names; "US" is
                continue
            if acronym or inner_caps or capitalised or (any(c.isdigit() for c in token) and letters):
                found.add(word)
    return frozenset(found)


def _questions(lower: str) -> frozenset[str]:
    """The question words that open the text's sentences (after fillers and "and", "so")."""
    found = set()
    for sentence in _CLAUSE_END.split(lower):
        words = [w for w in _TOKEN.findall(sentence) if w not in _FILLERS and w not in _LEADING_CONJUNCTIONS]
        kind = _QUESTION_WORDS.get(words[0]) if words else None
        if kind == "how" and len(words) > 1:
            if words[1] == "come":
                kind = "why"
            elif words[1] in _HOW_QUANTITIES:
                kind = None
        if kind is not None:
            found.add(kind)
    return frozenset(found)


@lru_cache(maxsize=8192)
def analyse(text: str) -> TextFeatures:
    """Tokens, numbers, negation and entities of ``text`` (memoised)."""
    folded = _fold(text)
    lower = folded.lower()
    raw = [m.group(0) for m in _TOKEN.finditer(lower)]
    words: list[str] = []
    for token in raw:
        words.extend(_expand(token) if not token[0].isdigit() else [token])
    numbers: list[str] = []
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else None
        value = _number_value(word, following)
        if value is not None:
            numbers.append(value)
            continue
        for part in word.split("-"):  # "two-bed", "five-bedroom"
            if part in _NUMBER_WORDS:
                numbers.append(f"{_NUMBER_WORDS[part]:g}")
            elif (month := _near(part, _MONTHS)) is not None and part not in ("may", "mar", "sat", "sun"):
                numbers.append(f"month:{month}")
            elif (day := _near(part, _WEEKDAYS)) is not None and part not in ("sat", "sun", "wed", "mon"):
                numbers.append(f"weekday:{day}")
            elif part.rstrip("s") in _WEEKDAYS and len(part) > 4:
                numbers.append(f"weekday:{_WEEKDAYS[part.rstrip('s')]}")
            elif part in _RELATIVE_DAYS:
                numbers.append(f"day:{'today' if part == 'tonight' else part}")
    # "May" is a month only when capitalised mid-sentence ("may" is a verb); the short
    # weekday forms (sat, sun, wed, mon) are too ambiguous to count at all.
    for _ in re.findall(r"(?<=[a-z,] )May\b", folded):
        numbers.append("month:5")
    negations = sum(1 for w in words if w in _NEGATION_WORDS)
    core = tuple(w for w in words if w not in _FILLERS)
    return TextFeatures(
        text=text,
        words=tuple(words),
        core=core,
        word_set=frozenset(words),
        squashed=re.sub(r"[\W_]+", "", lower),
        numbers=tuple(sorted(numbers)),
        negated=negations % 2 == 1,
        entities=_entities(folded),
        questions=_questions(lower),
    )


# --------------------------------------------------------------------------- guards


@runtime_checkable
class Guard(Protocol):
    """Vetoes a candidate match: ``None`` lets it through, a string says why not."""

    name: str

    def __call__(self, query: TextFeatures, cached: TextFeatures) -> str | None: ...


class NumberGuard:
    """Reject when the two texts mention different numbers, times or dates.

    Digits, number words ("five"), times with am/pm (7pm == 19:00), months, weekdays and
    today/tomorrow/yesterday are compared as multisets. A number present on one side only
    also rejects: "Can I return it after 14 days?" is not "Can I return it?".
    """

    name = "numbers"

    def __call__(self, query: TextFeatures, cached: TextFeatures) -> str | None:
        if query.numbers != cached.numbers:
            return f"numbers differ: {list(query.numbers)} vs {list(cached.numbers)}"
        return None


class NegationGuard:
    """Reject when one text is negated and the other is not, or a word meets its
    negated form ("lock"/"unlock", "refundable"/"non-refundable")."""

    name = "negation"

    def __call__(self, query: TextFeatures, cached: TextFeatures) -> str | None:
        if query.negated != cached.negated:
            return "one text is negated, the other is not"
        only_query = query.word_set - cached.word_set
        only_cached = cached.word_set - query.word_set
        for left, right in ((only_query, cached.word_set), (only_cached, query.word_set)):
            for word in left:
                for prefix in _NEGATING_PREFIXES:
                    if word.startswith(prefix) and len(word) - len(prefix) >= 3:
                        stem = word[len(prefix):].lstrip("-")
                        if stem in right:
                            return f"negated form: {word!r} vs {stem!r}"
        return None


class AntonymGuard:
    """Reject when a word on one side only has its opposite on the other side only."""

    name = "antonyms"

    def __call__(self, query: TextFeatures, cached: TextFeatures) -> str | None:
        only_query = query.word_set - cached.word_set
        if not only_query:
            return None
        only_cached = cached.word_set - query.word_set
        for word in only_query:
            opposites = _ANTONYMS.get(word)
            if opposites and not opposites.isdisjoint(only_cached):
                return f"opposites: {word!r} vs {sorted(opposites & only_cached)[0]!r}"
        return None


class EntityGuard:
    """Reject when a name, acronym or brand of one text is absent from the other.

    "Absent" is case-insensitive and ignores spacing and punctuation, so "Apple Pay" /
    "apple pay" and "GitHub" / "Github" agree; "Microsoft" / "Apple" do not.
    """

    name = "entities"

    def __call__(self, query: TextFeatures, cached: TextFeatures) -> str | None:
        for entities, other in ((query.entities, cached), (cached.entities, query)):
            for entity in entities:
                if entity not in other.word_set and re.sub(r"[\W_]+", "", entity) not in other.squashed:
                    return f"entity {entity!r} only on one side"
        return None


class QuestionGuard:
    """Reject when the two texts ask different kinds of question: "Why did God create the
    universe?" / "How did God create the universe?", "When did rap music start?" / "Who
    started rap music?". Only the word opening each sentence counts, so "how can I see who
    is connected" asks "how"; "what"/"which" and "how much/many/long" ask nothing in
    particular, and a text asking several things passes if one of them is shared.
    """

    name = "questions"

    def __call__(self, query: TextFeatures, cached: TextFeatures) -> str | None:
        if query.questions and cached.questions and query.questions.isdisjoint(cached.questions):
            return f"different questions: {'/'.join(sorted(query.questions))} vs {'/'.join(sorted(cached.questions))}"
        return None


class OrderGuard:
    """Reject when words trade sides of a directional word.

    "from Paris to London" / "from London to Paris", "5 miles to km" / "5 km to miles",
    "Is Python faster than Java?" / "Is Java faster than Python?" embed almost identically
    (cosine 0.99) but need different answers. The texts' n-th occurrences of the same
    directional word are compared: a content word left of it in one text and right of it
    in the other, *and* another one moving the opposite way, reject. A phrase that moves
    with its preposition ("to my bank from PayPal" / "from PayPal to my bank") keeps its
    words on their side of that preposition, so reordered paraphrases pass.
    """

    name = "order"

    def __call__(self, query: TextFeatures, cached: TextFeatures) -> str | None:
        for marker in _DIRECTIONAL & query.word_set & cached.word_set:
            query_at = [i for i, w in enumerate(query.core) if w == marker]
            cached_at = [i for i, w in enumerate(cached.core) if w == marker]
            if len(query_at) != len(cached_at):
                continue  # not the same construction on both sides
            for i, j in zip(query_at, cached_at):
                query_left, query_right = _sides(query.core, i)
                cached_left, cached_right = _sides(cached.core, j)
                went_right = query_left & cached_right
                went_left = query_right & cached_left
                if went_right and went_left:
                    return f"{min(went_right)!r} and {min(went_left)!r} swap sides of {marker!r}"
        return None


def _sides(words: tuple[str, ...], at: int) -> tuple[set[str], set[str]]:
    """Content words left and right of ``words[at]``; a word on both sides is on neither."""
    left = {w for w in words[:at] if w not in _STOPWORDS}
    right = {w for w in words[at + 1 :] if w not in _STOPWORDS}
    return left - right, right - left


def _same_word(a: str, b: str) -> bool:
    """Spelling variants and inflections count as the same word."""
    if a == b:
        return True
    shorter, longer = sorted((a, b), key=len)
    if len(shorter) >= 4 and longer.startswith(shorter[:-1]) and len(longer) - len(shorter) <= 3:
        return True  # agent/agency, refund/refunds, wait/waiting
    if len(shorter) >= 3:
        limit = 1 if len(shorter) < 7 else 2
        return _edit_distance(a, b, limit) <= limit  # typos: colection, perscription
    return False


class EditGuard:
    """Reject a near-identical pair whose difference is a content word.

    The texts are aligned word by word (fillers and contractions normalised). When at
    least ``min_shared`` of the longer text's words are shared in order — the same
    sentence with a small edit — every changed word must be a function word or a
    spelling variant of a word on the other side; a swapped, added or dropped content
    word ("pool"/"gym", "flu" / "flu in babies") rejects. Reworded pairs share fewer
    words and are left to the embedding.
    """

    name = "edits"

    def __init__(self, min_shared: float = 0.6, additions: bool = True) -> None:
        self.min_shared = min_shared
        self.additions = additions  # False: only a swapped word rejects, not an added one

    def __call__(self, query: TextFeatures, cached: TextFeatures) -> str | None:
        a, b = query.core, cached.core
        if a == b or not a or not b:
            return None
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        shared = sum(block.size for block in matcher.get_matching_blocks())
        if shared < self.min_shared * max(len(a), len(b)):
            return None  # reworded: not an edit of the same sentence
        removed: list[str] = []
        added: list[str] = []
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag != "equal":
                removed.extend(a[i1:i2])
                added.extend(b[j1:j2])
        removed_content = [w for w in removed if w not in _STOPWORDS]
        added_content = [w for w in added if w not in _STOPWORDS]
        if not self.additions and not (removed_content and added_content):
            return None
        for word in removed_content:
            if not any(_same_word(word, other) for other in added + list(b)):
                return f"content word {word!r} only in one text"
        for word in added_content:
            if not any(_same_word(word, other) for other in removed + list(a)):
                return f"content word {word!r} only in one text"
        return None


GuardLike = Union[Guard, Callable[[TextFeatures, TextFeatures], "str | None"]]

#: Every built-in guard by name.
GUARDS: dict[str, Callable[[], Guard]] = {
    "numbers": NumberGuard,
    "negation": NegationGuard,
    "antonyms": AntonymGuard,
    "entities": EntityGuard,
    "edits": EditGuard,
    "order": OrderGuard,
    "questions": QuestionGuard,
}

#: The guards ``SemanticCache(guards="default")`` uses (chosen in docs/semantic.md).
DEFAULT_GUARDS: tuple[str, ...] = ("numbers", "negation", "antonyms", "entities", "order", "questions")


def resolve_guards(guards: "str | Iterable[str | GuardLike] | None") -> tuple[GuardLike, ...]:
    """Turn ``"default"``, ``None``/``"none"``, a comma-separated string of names, or a
    list of names and guard objects into a tuple of guards."""
    if guards is None:
        return ()
    if isinstance(guards, str):
        if guards in ("none", ""):
            return ()
        names: Iterable[str | GuardLike] = DEFAULT_GUARDS if guards == "default" else guards.split(",")
    else:
        names = guards
    resolved: list[GuardLike] = []
    for item in names:
        if isinstance(item, str):
            key = item.strip()
            if key == "default":
                resolved.extend(GUARDS[n]() for n in DEFAULT_GUARDS)
                continue
            if key not in GUARDS:
                raise ConfigurationError(
                    f"unknown guard {key!r}: choose from {', '.join(GUARDS)}, 'default' or 'none'"
                )
            resolved.append(GUARDS[key]())
        elif callable(item):
            resolved.append(item)
        else:
            raise ConfigurationError(f"a guard must be a name or a callable, not {item!r:.60}")
    return tuple(resolved)


def guard_name(guard: GuardLike) -> str:
    """The name a guard reports under (its ``name`` attribute, else its function name)."""
    return str(getattr(guard, "name", getattr(guard, "__name__", type(guard).__name__)))


def first_rejection(guards: Sequence[GuardLike], query: str, cached: str) -> tuple[str, str] | None:
    """``(guard name, reason)`` of the first guard that rejects the pair, or ``None``."""
    if not guards:
        return None
    a, b = analyse(query), analyse(cached)
    for guard in guards:
        reason = guard(a, b)
        if reason:
            return guard_name(guard), reason
    return None
