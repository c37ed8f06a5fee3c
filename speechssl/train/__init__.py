"""The one Trainer of the toolkit (see ``trainer.py``) and what it reads and writes."""

from speechssl.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from speechssl.train.config import TrainerConfig
from speechssl.train.protocol import ModelOutput, TrainableModel
from speechssl.train.trainer import Trainer, TrainingError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "ModelOutput",
    "TrainableModel",
    "Trainer",
    "TrainerConfig",
    "TrainingError",
    "load_checkpoint",
    "load_latest_checkpoint",
    "save_checkpoint",
]
