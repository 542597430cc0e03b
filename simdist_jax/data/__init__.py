"""Stage 2: mixed-quality dataset generation, sharded storage, scaler and window sampling (docs/data.md).

- `generate`: `run_stage(cfg, workdir)`, `generate(...)`, `make_generator(...)` (Algorithm 2, one lax.scan per shard).
- `storage`: sharded `.npy` format with `manifest.json`, checksums, float16 observations; `MappedShards` (memory
  maps), `write_dataset` (a dataset from arrays).
- `scaler`: streaming per-feature mean/std (Chan merge).
- `windows`: `WindowDataset`, `load_dataset`, `load_from_config`, `from_episodes` (the world model's sampler).
- `stream`: `StreamWindowDataset`, the same windows over memory-mapped shards (`data.loading = "stream"`).
- `report`: `run_stage(cfg, workdir)` for `simdist-jax data-report`.
"""

from simdist_jax.data.windows import WindowDataset, from_episodes, load_dataset, load_from_config

__all__ = ["WindowDataset", "from_episodes", "load_dataset", "load_from_config"]
