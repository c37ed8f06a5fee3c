"""A small English sentence grammar over the package word lists.

``Grammar.sentence(rng)`` draws one sentence from weighted templates (declaratives in several
tenses, yes/no and wh- questions, commands, relative clauses, coordination, numbers, dates and
clock times). It returns the *display* form with capitals and punctuation, which is what the
synthesizers read (a question mark gives question intonation); ``normalize_text`` turns it into
the transcript form (lower-case letters, apostrophe and single spaces).
"""

from __future__ import annotations

import numpy as np

from speechssl.data.synth.lexicon import (
    Lexicon,
    Noun,
    Verb,
    load_lexicon,
    spell_number,
    spell_ordinal,
    spell_year,
)
from speechssl.data.text import normalize_text

# Closed-class words the templates use besides the word lists.
FUNCTION_WORDS = set(
    """a an the this that these those my your his her our their its every some many few several
    all no i you he she we they me him us them it there here who which what where when why how
    is are was were am be been being will would can could should must might may do does did have
    has had not don't doesn't didn't isn't aren't wasn't can't won't i'm it's let's that's there's
    and but or because so if while after before until than then very really quite too also just
    in on at near with without behind under over into onto from to of for about across through
    between beside above below around past please yesterday today tomorrow o'clock half quarter
    oh dollars minutes hours times years old number room floor page born ago more most of
    whose whom as soon once again never always every""".split()
)

_PRONOUNS = {  # subject: (object, person)
    "I": ("me", "1sg"),
    "you": ("you", "2"),
    "he": ("him", "3sg"),
    "she": ("her", "3sg"),
    "we": ("us", "pl"),
    "they": ("them", "pl"),
}
_TENSES = ("past", "past", "present", "progressive", "future", "perfect", "modal")
_MODALS = ("can", "could", "should", "must", "might", "will", "would")
_AN_EXCEPTIONS = {"useful": "a", "usual": "a", "unicorn": "a", "uniform": "a", "one": "a"}


def article(word: str) -> str:
    """ "a" or "an" for the word that follows (by spelling, with a few exceptions)."""
    if word.lower() in _AN_EXCEPTIONS:
        return _AN_EXCEPTIONS[word.lower()]
    if word.lower().startswith(("hour", "honest")):
        return "an"
    return "an" if word[0].lower() in "aeiou" else "a"


def render(tokens: list[str], end: str) -> str:
    """Join tokens into display text: capital first letter, commas attached, final punctuation."""
    text = " ".join(tokens).replace(" ,", ",")
    return text[0].upper() + text[1:] + end


class Grammar:
    """Sentence generator. All randomness comes from the ``numpy.random.Generator`` passed in."""

    def __init__(self, lexicon: Lexicon | None = None):
        self.lex = lexicon or load_lexicon()
        self._templates = [
            (self._declarative, 6.0),
            (self._intransitive, 3.0),
            (self._copula, 2.0),
            (self._comparison, 1.0),
            (self._yes_no_question, 2.0),
            (self._wh_question, 2.0),
            (self._command, 2.0),
            (self._relative_clause, 2.0),
            (self._coordination, 1.5),
            (self._numbers, 2.0),
            (self._date_time, 1.0),
            (self._there_is, 1.0),
        ]
        weights = np.array([w for _, w in self._templates])
        self._weights = weights / weights.sum()

    # -- public -------------------------------------------------------------------------------
    def sentence(self, rng: np.random.Generator, max_words: int | None = None) -> str:
        """One display sentence; with ``max_words``, redraw until the transcript is that short."""
        for _ in range(1000):
            template = self._templates[rng.choice(len(self._templates), p=self._weights)][0]
            display = template(rng)
            if max_words is None or len(normalize_text(display).split()) <= max_words:
                return display
        raise RuntimeError(f"no sentence of at most {max_words} words in 1000 draws")

    def vocabulary(self) -> set[str]:
        """Every word the grammar can produce (transcript form)."""
        words = self.lex.content_words() | FUNCTION_WORDS
        words |= {f"{name}'s" for name in self.lex.names}
        return {normalize_text(w) for w in words}

    def single_words(self) -> list[str]:
        """Common single words (for keyword-spotting "unknown" clips), sorted."""
        nouns = self.lex.people + self.lex.animals + self.lex.things
        words = {n.singular for n in nouns} | {v.base for v in self.lex.intransitive}
        return sorted(w for w in words if w.isalpha())

    # -- phrases ------------------------------------------------------------------------------
    @staticmethod
    def _pick(rng: np.random.Generator, items):
        return items[int(rng.integers(len(items)))]

    def _adjective(self, rng) -> str:
        return self._pick(rng, self.lex.adjectives).base

    def _noun_phrase(self, rng, pool: tuple[Noun, ...], plural: bool | None = None) -> list[str]:
        noun = self._pick(rng, pool)
        plural = bool(rng.random() < 0.3) if plural is None else plural
        adjs = [self._adjective(rng)] if rng.random() < 0.35 else []
        if adjs and rng.random() < 0.15:
            adjs.insert(0, self._adjective(rng))
        words = adjs + [noun.plural if plural else noun.singular]
        if plural:
            roll = rng.random()
            if roll < 0.25:
                return spell_number(int(rng.integers(2, 13)), self.lex) + words
            det = self._pick(rng, ("the", "some", "these", "those", "many", "my", "our", "their"))
            return [det] + words
        det = self._pick(rng, ("the", "the", "a", "a", "this", "that", "my", "your", "his", "her"))
        if rng.random() < 0.08:
            return [self._pick(rng, self.lex.names) + "'s"] + words
        return [article(words[0]) if det == "a" else det] + words

    def _subject(self, rng) -> tuple[list[str], str]:
        """(tokens, person) with person in {"1sg", "2", "3sg", "pl"}."""
        roll = rng.random()
        if roll < 0.2:
            pronoun = self._pick(rng, tuple(_PRONOUNS))
            return [pronoun], _PRONOUNS[pronoun][1]
        if roll < 0.45:
            return [self._pick(rng, self.lex.names)], "3sg"
        pool = self.lex.people if rng.random() < 0.7 else self.lex.animals
        plural = bool(rng.random() < 0.3)
        return self._noun_phrase(rng, pool, plural), "pl" if plural else "3sg"

    def _object(self, rng) -> list[str]:
        roll = rng.random()
        if roll < 0.1:
            return [self._pick(rng, ("me", "him", "her", "us", "them", "it"))]
        if roll < 0.2:
            return [self._pick(rng, self.lex.names)]
        if roll < 0.3:
            return [self._pick(rng, ("some", "the", "no")), self._pick(rng, self.lex.mass)]
        pool = self.lex.things if roll < 0.8 else self.lex.people + self.lex.animals
        return self._noun_phrase(rng, pool)

    def _place(self, rng) -> list[str]:
        roll = rng.random()
        if roll < 0.5:
            prep = self._pick(rng, ("in", "at", "near", "behind", "outside"))
            return [prep, "the"] + self._pick(rng, self.lex.places).split()
        if roll < 0.75:
            return [self._pick(rng, ("in", "to", "from", "near")), self._pick(rng, self.lex.cities)]
        prep = self._pick(rng, ("under", "on", "beside", "behind", "near", "with"))
        return [prep] + self._noun_phrase(rng, self.lex.things)

    def _be(self, person: str, past: bool) -> str:
        if past:
            return "were" if person in ("2", "pl") else "was"
        return {"1sg": "am", "3sg": "is"}.get(person, "are")

    def _verb(self, rng, verb: Verb, person: str, tense: str | None = None) -> list[str]:
        tense = tense or self._pick(rng, _TENSES)
        if tense == "past":
            return [verb.past]
        if tense == "present":
            return [verb.third if person == "3sg" else verb.base]
        if tense == "progressive":
            return [self._be(person, bool(rng.random() < 0.4)), verb.gerund]
        if tense == "future":
            return ["will", verb.base]
        if tense == "perfect":
            return ["has" if person == "3sg" else "have", verb.participle]
        return [self._pick(rng, _MODALS), verb.base]

    def _maybe(self, rng, p: float, phrase) -> list[str]:
        return phrase(rng) if rng.random() < p else []

    # -- templates ----------------------------------------------------------------------------
    def _declarative(self, rng) -> str:
        subj, person = self._subject(rng)
        words = subj + self._verb(rng, self._pick(rng, self.lex.transitive), person)
        words += self._object(rng) + self._maybe(rng, 0.4, self._place)
        words += self._maybe(rng, 0.2, lambda r: [self._pick(r, self.lex.adverbs)])
        return render(words, ".")

    def _intransitive(self, rng) -> str:
        subj, person = self._subject(rng)
        words = subj + self._verb(rng, self._pick(rng, self.lex.intransitive), person)
        words += self._maybe(rng, 0.5, lambda r: [self._pick(r, self.lex.adverbs)])
        return render(words + self._maybe(rng, 0.5, self._place), ".")

    def _copula(self, rng) -> str:
        subj, person = self._subject(rng)
        be = self._be(person, bool(rng.random() < 0.5))
        adj = [self._adjective(rng)]
        if rng.random() < 0.3:
            adj += ["and", self._adjective(rng)]
        elif rng.random() < 0.3:
            adj = [self._pick(rng, ("very", "really", "quite", "too"))] + adj
        return render(subj + [be] + adj + self._maybe(rng, 0.3, self._place), ".")

    def _comparison(self, rng) -> str:
        adj = self._pick(rng, self.lex.adjectives)
        left = self._noun_phrase(rng, self.lex.things + self.lex.animals, plural=False)
        if adj.superlative and rng.random() < 0.4:
            place = self._pick(rng, self.lex.places).split()
            return render(left + ["is", "the", adj.superlative, "one", "in", "the"] + place, ".")
        more = [adj.comparative] if adj.comparative else ["more", adj.base]
        right = self._noun_phrase(rng, self.lex.things + self.lex.animals, plural=False)
        return render(left + [self._pick(rng, ("is", "was"))] + more + ["than"] + right, ".")

    def _yes_no_question(self, rng) -> str:
        subj, person = self._subject(rng)
        roll = rng.random()
        if roll < 0.4:
            verb = self._pick(rng, self.lex.transitive)
            aux = "did" if rng.random() < 0.6 else ("does" if person == "3sg" else "do")
            return render([aux] + subj + [verb.base] + self._object(rng), "?")
        if roll < 0.7:
            aux = self._pick(rng, ("can", "will", "should", "could"))
            verb = self._pick(rng, self.lex.intransitive)
            return render([aux] + subj + [verb.base] + self._maybe(rng, 0.5, self._place), "?")
        be = self._be(person, bool(rng.random() < 0.5))
        if person == "1sg":  # "am I" reads oddly in templates; use the past
            be = "was"
        return render([be] + subj + [self._adjective(rng)], "?")

    def _wh_question(self, rng) -> str:
        subj, person = self._subject(rng)
        verb = self._pick(rng, self.lex.transitive)
        roll = rng.random()
        if roll < 0.3:
            wh = self._pick(rng, ("where", "why", "when", "how"))
            return render([wh, "did"] + subj + [verb.base] + self._object(rng), "?")
        if roll < 0.5:
            return render(["who", verb.past] + self._object(rng), "?")
        if roll < 0.7:
            return render(
                ["what", "did"] + subj + [verb.base] + self._maybe(rng, 0.5, self._place), "?"
            )
        if roll < 0.85:
            noun = self._pick(rng, self.lex.things + self.lex.animals).plural
            return render(["how", "many", noun, "did"] + subj + [verb.base], "?")
        noun = self._noun_phrase(rng, self.lex.things, plural=False)
        return render(["why", "is"] + noun + ["so", self._adjective(rng)], "?")

    def _command(self, rng) -> str:
        verb = self._pick(rng, self.lex.transitive)
        head = self._pick(rng, ([], ["please"], ["don't"], ["let's"], ["always"], ["never"]))
        words = head + [verb.base] + self._object(rng) + self._maybe(rng, 0.4, self._place)
        words += self._maybe(rng, 0.3, lambda r: [self._pick(r, self.lex.adverbs)])
        return render(words, "!" if rng.random() < 0.2 else ".")

    def _relative_clause(self, rng) -> str:
        if rng.random() < 0.5:
            thing = self._noun_phrase(rng, self.lex.things, plural=False)
            subj, person = self._subject(rng)
            verb = self._pick(rng, self.lex.transitive)
            rel = self._pick(rng, ("that", "which"))
            words = thing + [rel] + subj + self._verb(rng, verb, person, "past")
            return render(words + ["was", self._adjective(rng)], ".")
        subj, person = self._subject(rng)
        meet = self._pick(rng, self.lex.transitive)
        who = self._noun_phrase(rng, self.lex.people, plural=False)
        inner = self._pick(rng, self.lex.transitive)
        words = subj + self._verb(rng, meet, person, "past") + who + ["who", inner.past]
        return render(words + self._object(rng), ".")

    def _clause(self, rng) -> list[str]:
        subj, person = self._subject(rng)
        if rng.random() < 0.5:
            return subj + self._verb(rng, self._pick(rng, self.lex.intransitive), person, "past")
        verb = self._pick(rng, self.lex.transitive)
        return subj + self._verb(rng, verb, person, "past") + self._object(rng)

    def _coordination(self, rng) -> str:
        conj = self._pick(rng, ("and", "but", "because", "so", "while", "after", "before"))
        left, right = self._clause(rng), self._clause(rng)
        if conj in ("because", "while", "after", "before") and rng.random() < 0.4:
            return render([conj] + right + [","] + left, ".")
        return render(left + ([","] if conj in ("but", "so") else []) + [conj] + right, ".")

    def _numbers(self, rng) -> str:
        lex = self.lex
        roll = rng.random()
        if roll < 0.3:
            subj, person = self._subject(rng)
            verb = self._pick(rng, lex.transitive)
            count = spell_number(int(rng.integers(2, 1000)), lex)
            noun = self._pick(rng, lex.things + lex.animals).plural
            return render(subj + self._verb(rng, verb, person, "past") + count + [noun], ".")
        if roll < 0.5:
            price = spell_number(int(rng.integers(2, 5000)), lex)
            noun = self._noun_phrase(rng, lex.things, plural=False)
            return render(["I", "paid"] + price + ["dollars", "for"] + noun, ".")
        if roll < 0.7:
            age = spell_number(int(rng.integers(2, 100)), lex)
            return render([self._pick(rng, lex.names), "is"] + age + ["years", "old"], ".")
        if roll < 0.85:
            room = spell_number(int(rng.integers(1, 1000)), lex)
            floor = spell_ordinal(int(rng.integers(1, 40)), lex)
            return render(["room", "number"] + room + ["is", "on", "the"] + floor + ["floor"], ".")
        year = spell_year(int(rng.integers(1900, 2030)), lex)
        return render([self._pick(rng, lex.names), "was", "born", "in"] + year, ".")

    def _clock(self, rng) -> list[str]:
        hour = spell_number(int(rng.integers(1, 13)), self.lex)
        minute = int(rng.integers(0, 12)) * 5
        if minute == 0:
            return hour + ["o'clock"]
        if minute == 30 and rng.random() < 0.5:
            return ["half", "past"] + hour
        if minute in (15, 45) and rng.random() < 0.5:
            return ["a", "quarter", "past" if minute == 15 else "to"] + hour
        return hour + (["oh"] if minute < 10 else []) + spell_number(minute, self.lex)

    def _date_time(self, rng) -> str:
        lex = self.lex
        if rng.random() < 0.5:
            what = self._pick(
                rng, ("the train leaves", "the meeting starts", "the shop opens", "we eat")
            )
            return render(what.split() + ["at"] + self._clock(rng), ".")
        day = spell_ordinal(int(rng.integers(1, 29)), lex)
        month = self._pick(rng, lex.months)
        subj, person = self._subject(rng)
        verb = self._verb(rng, self._pick(rng, lex.intransitive), person, "past")
        prefix = (
            ["on", self._pick(rng, lex.days)]
            if rng.random() < 0.5
            else ["on", "the"] + day + ["of", month]
        )
        return render(prefix + [","] + subj + verb + self._maybe(rng, 0.5, self._place), ".")

    def _there_is(self, rng) -> str:
        place = ["in", "the"] + self._pick(rng, self.lex.places).split()
        if rng.random() < 0.5:
            noun = self._noun_phrase(rng, self.lex.things + self.lex.animals, plural=False)
            if noun[0] in ("the", "this", "that") or noun[0].endswith("'s"):
                noun = [article(noun[1])] + noun[1:]
            return render(["there", "is"] + noun + place, ".")
        count = spell_number(int(rng.integers(2, 60)), self.lex)
        noun = self._pick(rng, self.lex.things + self.lex.animals).plural
        return render(["there", "are"] + count + [noun] + place, ".")
