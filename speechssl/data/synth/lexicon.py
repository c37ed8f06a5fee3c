"""The word lists behind the sentence grammar (package data under ``wordlists/``).

Each file holds one entry a line; ``#`` lines are comments. Inflected forms are spelled out in the
files (nouns: ``singular plural``; verbs: ``base third past past-participle present-participle``;
adjectives: ``base [comparative superlative]``), so the grammar needs no morphology rules.
Numbers are spelled out from ``numbers.txt`` (the corpus text never contains digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

LEXICON_DIR = Path(__file__).with_name("wordlists")


@dataclass(frozen=True)
class Noun:
    singular: str
    plural: str


@dataclass(frozen=True)
class Verb:
    base: str
    third: str  # third person singular present: "eats"
    past: str
    participle: str  # past participle: "eaten"
    gerund: str  # present participle: "eating"


@dataclass(frozen=True)
class Adjective:
    base: str
    comparative: str | None = None  # None: use "more <base>"
    superlative: str | None = None


@dataclass(frozen=True)
class Lexicon:
    people: tuple[Noun, ...]
    animals: tuple[Noun, ...]
    things: tuple[Noun, ...]
    mass: tuple[str, ...]
    places: tuple[str, ...]
    names: tuple[str, ...]
    cities: tuple[str, ...]
    days: tuple[str, ...]
    months: tuple[str, ...]
    transitive: tuple[Verb, ...]
    intransitive: tuple[Verb, ...]
    adjectives: tuple[Adjective, ...]
    adverbs: tuple[str, ...]
    cardinals: dict[int, str]
    ordinals: dict[int, str]

    def content_words(self) -> set[str]:
        """Every word form the lists can contribute, lower-cased."""
        words: set[str] = set()
        for noun in self.people + self.animals + self.things:
            words.update((noun.singular, noun.plural))
        for verb in self.transitive + self.intransitive:
            words.update((verb.base, verb.third, verb.past, verb.participle, verb.gerund))
        for adj in self.adjectives:
            words.update(w for w in (adj.base, adj.comparative, adj.superlative) if w)
        for entry in self.mass + self.places + self.names + self.cities + self.days + self.months:
            words.update(entry.lower().split())
        words.update(self.adverbs)
        words.update(self.cardinals.values())
        words.update(self.ordinals.values())
        return words


def _lines(name: str, directory: Path) -> list[list[str]]:
    path = directory / name
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not all(c.isalpha() or c in " '" for c in line):
            raise ValueError(
                f"{path}:{lineno}: only letters, spaces and apostrophes allowed: {line!r}"
            )
        rows.append(line.split())
    return rows


def _nouns(name: str, directory: Path) -> tuple[Noun, ...]:
    return tuple(Noun(*row) for row in _lines(name, directory))


def _verbs(name: str, directory: Path) -> tuple[Verb, ...]:
    return tuple(Verb(*row) for row in _lines(name, directory))


def _entries(name: str, directory: Path) -> tuple[str, ...]:
    return tuple(" ".join(row) for row in _lines(name, directory))


def _numbers(directory: Path) -> tuple[dict[int, str], dict[int, str]]:
    cardinals, ordinals = {}, {}
    path = directory / "numbers.txt"
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            value, cardinal, ordinal = line.split()
            cardinals[int(value)] = cardinal
            ordinals[int(value)] = ordinal
    return cardinals, ordinals


@lru_cache(maxsize=4)
def load_lexicon(directory: str | Path = LEXICON_DIR) -> Lexicon:
    directory = Path(directory)
    cardinals, ordinals = _numbers(directory)
    return Lexicon(
        people=_nouns("nouns_people.txt", directory),
        animals=_nouns("nouns_animals.txt", directory),
        things=_nouns("nouns_things.txt", directory),
        mass=_entries("nouns_mass.txt", directory),
        places=_entries("places.txt", directory),
        names=_entries("names.txt", directory),
        cities=_entries("cities.txt", directory),
        days=_entries("days.txt", directory),
        months=_entries("months.txt", directory),
        transitive=_verbs("verbs_transitive.txt", directory),
        intransitive=_verbs("verbs_intransitive.txt", directory),
        adjectives=tuple(Adjective(*row) for row in _lines("adjectives.txt", directory)),
        adverbs=_entries("adverbs.txt", directory),
        cardinals=cardinals,
        ordinals=ordinals,
    )


def spell_number(n: int, lexicon: Lexicon) -> list[str]:
    """Cardinal ``0 <= n < 1_000_000`` in words, US style without "and": 342 -> three hundred
    forty two."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"spell_number: {n} out of range [0, 1000000)")
    card = lexicon.cardinals
    if n < 20:
        return [card[n]]
    if n < 100:
        return [card[n - n % 10]] + (spell_number(n % 10, lexicon) if n % 10 else [])
    if n < 1000:
        head = [card[n // 100], card[100]]
        return head + (spell_number(n % 100, lexicon) if n % 100 else [])
    head = spell_number(n // 1000, lexicon) + [card[1000]]
    return head + (spell_number(n % 1000, lexicon) if n % 1000 else [])


def spell_ordinal(n: int, lexicon: Lexicon) -> list[str]:
    """Ordinal ``1 <= n < 100``: 21 -> twenty first."""
    if not 1 <= n < 100:
        raise ValueError(f"spell_ordinal: {n} out of range [1, 100)")
    if n < 20 or n % 10 == 0:
        return [lexicon.ordinals[n]]
    return [lexicon.cardinals[n - n % 10], lexicon.ordinals[n % 10]]


def spell_year(year: int, lexicon: Lexicon) -> list[str]:
    """1984 -> nineteen eighty four; 2007 -> two thousand seven; 1900 -> nineteen hundred."""
    if 2000 <= year < 2010:
        return spell_number(year, lexicon)
    hi, lo = divmod(year, 100)
    if lo == 0:
        return spell_number(hi, lexicon) + [lexicon.cardinals[100]]
    tail = ["oh", lexicon.cardinals[lo]] if lo < 10 else spell_number(lo, lexicon)
    return spell_number(hi, lexicon) + tail
