"""Latent world model of SimDist: model, losses, pretraining, checkpoints and dynamics-only finetuning.

The entry `finetune(config, pretrained_dir, dataset, workdir, num_steps)` lives in `world_model.finetune` and is
not re-exported here, so that `from simdist_jax.world_model import finetune` keeps naming the module.
"""

from simdist_jax.world_model.checkpoint import CheckpointMismatchError, load
from simdist_jax.world_model.finetune import finetune_variables, merge_params, split_params
from simdist_jax.world_model.model import (Context, WorldModel, identity_scaler, make_scaler, make_world_model,
                                           param_counts)
from simdist_jax.world_model.train import NonFiniteLossError, SyntheticDataset, TrainResult, pretrain

__all__ = [
  "CheckpointMismatchError", "Context", "NonFiniteLossError", "SyntheticDataset", "TrainResult", "WorldModel",
  "finetune_variables", "identity_scaler", "load", "make_scaler", "make_world_model", "merge_params",
  "param_counts", "pretrain", "split_params",
]
