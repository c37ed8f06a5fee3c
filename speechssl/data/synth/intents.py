"""Spoken commands with Fluent-Speech-Commands labels: (action, object, location).

The 31 intents are FSC's: actions activate / deactivate / change_language / increase / decrease /
bring; objects music lights volume heat lamp newspaper juice socks shoes chinese korean english
german none; locations kitchen bedroom washroom none. Each intent has several phrasings;
``{loc}`` is filled with a way of saying the location ("kitchen", "bedroom", "washroom" or
"bathroom" for washroom).
"""

from __future__ import annotations

import numpy as np

ACTIONS = ("activate", "deactivate", "change_language", "increase", "decrease", "bring")
OBJECTS = (
    "music", "lights", "volume", "heat", "lamp", "newspaper", "juice", "socks", "shoes",
    "chinese", "korean", "english", "german", "none",
)  # fmt: skip
LOCATIONS = ("kitchen", "bedroom", "washroom", "none")
_LOCATION_WORDS = {
    "kitchen": ("kitchen",),
    "bedroom": ("bedroom",),
    "washroom": ("washroom", "bathroom"),
}

_LIGHTS_ON = (
    "Turn on the lights",
    "Switch on the lights",
    "Lights on",
    "Turn the lights on",
    "Switch the lights on",
)
_LIGHTS_OFF = (
    "Turn off the lights",
    "Switch off the lights",
    "Lights off",
    "Turn the lights off",
    "Kill the lights",
)
_LIGHTS_ON_AT = (
    "Turn on the lights in the {loc}",
    "Switch on the {loc} lights",
    "{Loc} lights on",
    "Turn the {loc} lights on",
)
_LIGHTS_OFF_AT = (
    "Turn off the lights in the {loc}",
    "Switch off the {loc} lights",
    "{Loc} lights off",
    "Turn the {loc} lights off",
)
_HEAT_UP = (
    "Turn up the heat",
    "Increase the temperature",
    "Make it warmer",
    "Heat up",
    "Turn the heating up",
    "It's too cold in here",
)
_HEAT_DOWN = (
    "Turn down the heat",
    "Decrease the temperature",
    "Make it cooler",
    "Turn the heating down",
    "It's too hot in here",
)
_HEAT_UP_AT = (
    "Turn up the heat in the {loc}",
    "Make the {loc} warmer",
    "Increase the temperature in the {loc}",
    "{Loc} heat up",
)
_HEAT_DOWN_AT = (
    "Turn down the heat in the {loc}",
    "Make the {loc} cooler",
    "Decrease the temperature in the {loc}",
    "{Loc} heat down",
)

PHRASES: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("change_language", "none", "none"): (
        "Change language",
        "Switch the language",
        "Change the language",
        "Language settings",
    ),
    ("activate", "music", "none"): (
        "Play music",
        "Put on some music",
        "Start the music",
        "Play some music",
        "Music on",
    ),
    ("deactivate", "music", "none"): (
        "Stop the music",
        "Pause the music",
        "Turn off the music",
        "Music off",
    ),
    ("activate", "lights", "none"): _LIGHTS_ON,
    ("deactivate", "lights", "none"): _LIGHTS_OFF,
    ("increase", "volume", "none"): (
        "Turn up the volume",
        "Louder please",
        "Increase the volume",
        "Make it louder",
        "Volume up",
        "I can't hear that",
    ),
    ("decrease", "volume", "none"): (
        "Turn down the volume",
        "Quieter please",
        "Decrease the volume",
        "Make it quieter",
        "Volume down",
        "That's too loud",
    ),
    ("increase", "heat", "none"): _HEAT_UP,
    ("decrease", "heat", "none"): _HEAT_DOWN,
    ("activate", "lamp", "none"): (
        "Turn on the lamp",
        "Switch on the lamp",
        "Lamp on",
        "Turn the lamp on",
    ),
    ("deactivate", "lamp", "none"): (
        "Turn off the lamp",
        "Switch off the lamp",
        "Lamp off",
        "Turn the lamp off",
    ),
    ("bring", "newspaper", "none"): (
        "Bring me the newspaper",
        "Get me the newspaper",
        "Fetch the newspaper",
        "I need the newspaper",
        "Go get the newspaper",
    ),
    ("bring", "juice", "none"): (
        "Bring me some juice",
        "Get me a juice",
        "Fetch me the juice",
        "I need some juice",
        "Go get the juice",
    ),
    ("bring", "socks", "none"): (
        "Bring me my socks",
        "Get me my socks",
        "Fetch my socks",
        "I need my socks",
        "Go get the socks",
    ),
    ("bring", "shoes", "none"): (
        "Bring me my shoes",
        "Get me my shoes",
        "Fetch my shoes",
        "I need my shoes",
        "Go get the shoes",
    ),
}
for _lang in ("chinese", "korean", "english", "german"):
    _Lang = _lang.capitalize()
    PHRASES[("change_language", _lang, "none")] = (
        f"Switch to {_Lang}", f"Set the language to {_Lang}", f"Change the language to {_Lang}",
        f"Use {_Lang}", f"{_Lang} please",
    )  # fmt: skip
for _loc in ("kitchen", "bedroom", "washroom"):
    PHRASES[("activate", "lights", _loc)] = _LIGHTS_ON_AT
    PHRASES[("deactivate", "lights", _loc)] = _LIGHTS_OFF_AT
    PHRASES[("increase", "heat", _loc)] = _HEAT_UP_AT
    PHRASES[("decrease", "heat", _loc)] = _HEAT_DOWN_AT

INTENTS: tuple[tuple[str, str, str], ...] = tuple(PHRASES)
assert len(INTENTS) == 31, len(INTENTS)  # FSC's intent count


def intent_label(intent: tuple[str, str, str]) -> str:
    """``utt2intent`` value: ``action object location``."""
    return " ".join(intent)


def intent_utterance(intent: tuple[str, str, str], rng: np.random.Generator) -> str:
    """One display phrasing of the intent (with punctuation), drawn with ``rng``."""
    phrases = PHRASES[intent]
    phrase = phrases[int(rng.integers(len(phrases)))]
    location = intent[2]
    if "{loc}" in phrase.lower():
        words = _LOCATION_WORDS[location]
        word = words[int(rng.integers(len(words)))]
        phrase = phrase.replace("{loc}", word).replace("{Loc}", word.capitalize())
    return phrase + ("." if rng.random() < 0.7 else "!")
