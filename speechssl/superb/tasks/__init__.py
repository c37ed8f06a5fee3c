"""SUPERB tasks by name. Modules import lazily, so a task's dependencies (e.g. PESQ for SE)
load only when it is used."""

from __future__ import annotations

import importlib

from speechssl.superb.tasks.base import ProbeBatch, Task

# task name -> "module:class"; if the class is not there, the module's Task subclass whose
# ``name`` matches is used
TASKS = {
    "pr": "speechssl.superb.tasks.pr:PhonemeRecognition",
    "ks": "speechssl.superb.tasks.ks:KeywordSpotting",
    "ic": "speechssl.superb.tasks.ic:IntentClassification",
    "sid": "speechssl.superb.tasks.sid:SpeakerIdentification",
    "er": "speechssl.superb.tasks.er:EmotionRecognition",
    "asr": "speechssl.superb.tasks.asr:SpeechRecognition",
    "se": "speechssl.superb.tasks.se:SpeechEnhancement",
    "sv": "speechssl.superb.tasks.sv:SpeakerVerification",
}


def get_task(name: str, **options) -> Task:
    """A task instance by name; ``options`` go to its constructor (e.g. ``hidden_size``)."""
    if name not in TASKS:
        raise KeyError(f"unknown SUPERB task {name!r}; known: {', '.join(TASKS)}")
    module_name, cls_name = TASKS[name].split(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, cls_name, None)
    if cls is None:
        found = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, Task) and getattr(v, "name", None) == name
        ]
        if not found:
            raise KeyError(f"{module_name}: no Task subclass with name = {name!r}")
        cls = found[0]
    return cls(**options)


__all__ = ["TASKS", "ProbeBatch", "Task", "get_task"]
