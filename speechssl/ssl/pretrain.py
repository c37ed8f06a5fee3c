"""``speechssl pretrain``: SSL pretraining of any registered method with the one Trainer.
(``speechssl export`` of the inference-only upstream is :func:`speechssl.upstream.export_checkpoint`.)

A pretraining YAML holds values only::

    method: wav2vec2          # a name in speechssl.ssl's registry
    preset: tiny              # the method's preset the ``model`` values start from
    model: {num_layers: 3}    # fields of the method's config (override the preset)
    trainer: {max_updates: 400, lr: 5.0e-4, ...}   # speechssl.train.TrainerConfig
    data: {max_samples: 160000, crop: random}
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechssl.config import ConfigError, from_dict, load_config, to_dict
from speechssl.data.dataset import AudioDataset
from speechssl.ssl import build_model, get_method
from speechssl.train import Trainer, TrainerConfig
from speechssl.train.rng import seed_everything


@dataclass
class PretrainDataConfig:
    max_samples: int | None = 250000  # crop longer utterances to this many samples
    crop: str = "random"  # "random" | "start" offset of the crop (batches crop to their shortest)
    label_rate: float | None = (
        None  # labels per second of the label file (HuBERT); None: from labels.yaml
    )


@dataclass
class PretrainConfig:
    method: str = "wav2vec2"
    preset: str = "base"
    model: dict[str, Any] = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)


def label_meta(label_file: str | os.PathLike) -> dict[str, Any]:
    """``labels.yaml`` beside a label file (written by the k-means dump): rate, clusters, ..."""
    import yaml

    meta = Path(label_file).parent / "labels.yaml"
    if not meta.is_file():
        raise FileNotFoundError(
            f"{label_file}: no labels.yaml beside it to give the label rate and number of "
            "classes; dump labels with `speechssl kmeans dump/merge` or set data.label_rate"
        )
    return yaml.safe_load(meta.read_text())


def model_config(cfg: PretrainConfig, labels: str | os.PathLike | None = None, where=None):
    """The method's config: preset + ``cfg.model``, type-checked (an unknown or mistyped field
    is a ConfigError naming it and ``where``); a label-driven method (HuBERT) takes
    ``num_classes`` and ``label_rate`` from the labels' ``labels.yaml`` unless set."""
    method = get_method(cfg.method, f"{where or 'pretrain config'}: method")
    values = dict(cfg.model)
    names = {f.name for f in dataclasses.fields(method.config_cls)}
    if labels is not None and "num_classes" in names:
        meta = label_meta(labels)
        values.setdefault("num_classes", int(meta["clusters"]))
        values.setdefault("label_rate", float(meta["rate"]))
    if cfg.preset not in method.presets:
        raise ConfigError(
            f"{where or 'pretrain config'}: preset {cfg.preset!r} is not one of {cfg.method}'s "
            f"presets {sorted(method.presets)}"
        )
    base = from_dict(method.config_cls, method.presets[cfg.preset], f"{cfg.method} preset")
    return from_dict(
        method.config_cls, {**dataclasses.asdict(base), **values}, f"{where or 'config'}: model"
    )


def load_pretrain_config(
    path: str | os.PathLike | None, overrides: list[str] | None = None
) -> PretrainConfig:
    """A pretraining YAML + ``--set`` overrides, the ``model`` section checked against the
    method's config class and its values stored with their types (``1e-1`` -> 0.1)."""
    cfg = load_config(PretrainConfig, path, overrides)
    typed = model_config(cfg, where=str(path or "PretrainConfig"))
    cfg.model = {k: getattr(typed, k) for k in cfg.model}
    return cfg


def build_pretraining_model(cfg: PretrainConfig, labels: str | os.PathLike | None = None):
    """The method's pretraining model and its config (see :func:`model_config`)."""
    model_cfg = model_config(cfg, labels)
    return build_model(cfg.method, model_cfg), model_cfg


def _dataset(cfg: PretrainConfig, model, data_dir, label_file) -> AudioDataset:
    kwargs: dict[str, Any] = {}
    if label_file is not None:
        label_file = Path(label_file)
        rate = cfg.data.label_rate or float(label_meta(label_file)["rate"])
        kwargs = dict(label_file=label_file, label_rate=rate)
    elif hasattr(model.cfg, "num_classes"):
        raise ValueError(f"{cfg.method} pretraining needs frame labels (--labels); run k-means")
    return AudioDataset(data_dir, max_samples=cfg.data.max_samples, crop=cfg.data.crop, **kwargs)


def pretrain(
    cfg: PretrainConfig,
    data_dir: str | os.PathLike,
    exp_dir: str | os.PathLike,
    valid_dir: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    valid_labels: str | os.PathLike | None = None,
    resume: bool = True,
) -> dict[str, Any]:
    """Train ``cfg.method`` on the data dir; checkpoints under ``exp_dir/checkpoints``."""
    seed_everything(cfg.trainer.seed)  # the initial weights depend on the seed only
    model, model_cfg = build_pretraining_model(cfg, labels)
    train_set = _dataset(cfg, model, data_dir, labels)
    valid_set = None
    if valid_dir is not None:
        valid_set = _dataset(cfg, model, valid_dir, valid_labels if labels else None)
    config = {
        "method": cfg.method,
        "model": dataclasses.asdict(model_cfg),
        "data": to_dict(cfg.data),
        "preset": cfg.preset,
    }
    trainer = Trainer(
        model, train_set, cfg.trainer, exp_dir, valid_dataset=valid_set, config=config
    )
    return trainer.train(resume=resume)
