"""Config section `data` (owned by the data stage). `get(task, preset, dims)` returns a ConfigDict.

Data recipe: paper §2.3 (Algorithm 2) and the official `config/generate_data.yaml` (digest simdist_official_code.md
§5.7). Window padding rules: official `DataProcessor` (digest §1.2 step 4). Storage: simdist_jax/data/storage.py.

Per-task defaults for the action-corruption schedule (interval lengths are inclusive integer ranges [lo, hi]):
- quadruped (`go2`): sigma U[0.05, 2.5] per action dim, noisy U[1, 50], clean U[25, 500] (paper/official).
- manipulation (`peg_insertion`, `ur5e`): noisy U[1, 5], clean U[5, 10] (paper); sigma range not given, 0.05..1.0 here.
- CartPole (250-step episodes): noisy U[5, 30], clean U[5, 40], sigma U[0.2, 1.0] (actions live in [-1, 1]); about
  40 % of the steps are noised (the quadruped recipe gives ~15 % here), so the small world model sees how actions
  move the state (docs/results.md, "CartPole world model").
"""

import ml_collections

_QUADRUPED = ("go2", "quadruped")
_MANIPULATION = ("ur5e", "manipulation", "peg_insertion", "table_leg")


def get(task: str, preset: str, dims: dict) -> ml_collections.ConfigDict:
  """Returns the `data` section for `task` at `preset` (`small`, `paper` or `tiny`)."""
  if preset not in ("small", "paper", "tiny"):
    raise ValueError(f"unknown data preset {preset!r}; expected 'small', 'paper' or 'tiny'")
  del dims  # the layout comes from the task at generation time
  paper, tiny = preset == "paper", preset == "tiny"
  quad, manip = task in _QUADRUPED, task in _MANIPULATION
  c = ml_collections.ConfigDict()

  # --- Scale. transitions = num_envs * num_steps. ---
  # Parallel simulated envs (official: 4096).
  c.num_envs = 4096 if (paper and quad) else (1024 if paper else (8 if tiny else 256))
  # Control steps recorded per env (official: 25,000 -> 102.4M transitions). Must be a multiple of shard_steps.
  c.num_steps = 25_000 if (paper and quad) else (5000 if paper else (200 if tiny else 1000))
  # Steps per compiled lax.scan call; one call = one shard of [shard_steps, num_envs] transitions. Bounds memory
  # (host and device hold one shard) and is the unit of resumption.
  c.shard_steps = 250 if not tiny else 50

  # --- Policy mixture (paper step 2). ---
  # Probability that a (re)set env runs the expert (ladder id K-1); otherwise a non-expert checkpoint drawn
  # uniformly from ladder ids 0..K-2 (official: 0.5, 11 checkpoints).
  c.p_expert = 0.5

  # --- Action corruption (paper steps 1 and 3). ---
  # Per-env, per-action-dim noise std sigma ~ U[sigma_min, sigma_max], drawn once per env for the whole run
  # (official), in action units.
  c.sigma_min = 0.05 if (quad or manip) else 0.2
  c.sigma_max = 2.5 if quad else 1.0
  # Inclusive range [lo, hi] of noisy-interval lengths (steps).
  c.noisy_len = (1, 50) if quad else ((1, 5) if manip else (5, 30))
  # Inclusive range [lo, hi] of clean-interval lengths (steps).
  c.clean_len = (25, 500) if quad else ((5, 10) if manip else (5, 40))
  # Share of envs that are never noised (official 2.5%); drawn per env at the start.
  c.never_noised_frac = 0.025
  # Probability that an (eligible) env starts in a noisy interval (official 0.5).
  c.init_noisy_prob = 0.5
  # Applied actions (policy output + noise) are clipped to [-action_clip, action_clip] (the env's action bounds);
  # the clipped action is what is applied and stored, and the expert flag compares against the clipped expert action.
  c.action_clip = 1.0

  # --- Storage (simdist_jax/data/storage.py). ---
  # On-disk dtypes per observation key ("float16" or "float32"). float16 keeps ~3 significant digits; its round-trip
  # error is measured per feature and recorded in manifest.json. Actions, rewards and values are always float32.
  c.proprio_dtype = "float16"
  c.extero_dtype = "float16"
  c.command_dtype = "float16"
  # Largest acceptable float16 round-trip error as a fraction of the feature's std; larger errors are flagged in
  # the manifest and printed as a warning (switch that key to float32).
  c.float16_max_rel_error = 0.01
  # Std floor of the scaler (official 1e-4).
  c.std_floor = 1e-4

  # --- Windows (simdist_jax/data/windows.py). H and T come from config.model.history/horizon. ---
  # Front-pad sim windows as deployment pads the controller's history (H copies of o_0, zero actions, mask 0), so
  # episode starts are current steps too. False = the official rule, under which the earliest current step is
  # H + window_start_margin steps into the episode: the states the controller starts from are never trained on.
  c.front_pad = not paper
  # Without front padding: sim windows start at least this many steps after their episode's first step (official
  # beg_pad 5). With front padding: the earliest current step is this many steps into the episode (0: the first).
  c.window_start_margin = 5 if paper else 0
  # Sim windows end at least this many steps before their episode's last step (official end_pad 5).
  c.window_end_margin = 5
  # Share of episodes held out for evaluation (split by episode, never by window).
  c.eval_fraction = 0.1
  # How training reads the windows (simdist_jax/data/stream.py): "memory" loads every shard into host memory and
  # onto the device and samples inside the compiled training scan; "stream" memory-maps the shards and gathers
  # each batch on the host (host and device memory of a batch, not the dataset). Same batches for the same seed,
  # so it is in no stage's fingerprint.
  c.loading = "memory"
  return c
