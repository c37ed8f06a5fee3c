"""``speechssl pretrain`` / ``speechssl export``: SSL pretraining of any registered method with the
one Trainer, and export of the inference-only upstream.

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

from speechssl.config import to_dict
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


def build_pretraining_model(cfg: PretrainConfig, labels: str | os.PathLike | None = None):
    """The method's model from preset + ``cfg.model``; a label-driven method (HuBERT) takes
    ``num_classes`` and ``label_rate`` from the labels' ``labels.yaml`` unless set."""
    method = get_method(cfg.method)
    values = dict(cfg.model)
    names = {f.name for f in dataclasses.fields(method.config_cls)}
    if labels is not None and "num_classes" in names:
        meta = label_meta(labels)
        values.setdefault("num_classes", int(meta["clusters"]))
        values.setdefault("label_rate", float(meta["rate"]))
    if method.make_config is not None:
        model_cfg = method.make_config(cfg.preset, **values)
    else:
        model_cfg = method.config_cls(**values)
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


def export(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the inference-only upstream (encoder weights + config) of a training checkpoint."""
    from speechssl.upstream import load_upstream, save_upstream

    return save_upstream(load_upstream(checkpoint).export(), out)
