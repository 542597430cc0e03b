"""World-model checkpoints: a corrupt latest step falls back to the previous kept step (warning naming its path);
an explicit bad step and a directory where no step restores raise errors naming the path; save_config is atomic
and follows the umask."""

import os
import shutil

import jax
import numpy as np
import pytest

from simdist_jax.world_model import checkpoint as ckpt_lib
from simdist_jax.world_model import model as model_lib
from simdist_jax.world_model import train
from tests.world_model import tiny_config

H = T = 4


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """A checkpoints/ folder with steps 10, 20, 30 whose params differ (params * step), built once."""
  data = train.SyntheticDataset(H, T, seed=1)
  cfg = tiny_config(data.dims)
  wm = model_lib.make_world_model(cfg.model, data.dims)
  base = wm.with_scaler(jax.jit(wm.init)(jax.random.key(0)), data.stats)
  root = tmp_path_factory.mktemp("wm") / "run"
  ck = ckpt_lib.Checkpointer(str(root / "checkpoints"), keep=3)
  for step in (10, 20, 30):
    v = {"params": jax.tree.map(lambda x, s=step: x * s, base["params"]), "scaler": base["scaler"]}
    ck.save(step, v, cfg.model, data.dims)
  ck.close()
  return root, base


def _copy(saved, tmp_path):
  root, base = saved
  dst = tmp_path / "run"
  shutil.copytree(root, dst)
  return dst, base


def _scale(variables, base):
  """The factor `step` that the saved params carry (params = base * step)."""
  a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(variables["params"])])
  b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(base["params"])])
  i = int(np.argmax(np.abs(b)))
  return float(a[i] / b[i])


def _data_files(step_dir):
  """The tensorstore (OCDBT) data files of the variables item: `.../d/<hash>`."""
  return sorted(os.path.join(d, f) for d, _, files in os.walk(step_dir / "variables")
                for f in files if os.path.basename(d) == "d")


def test_intact_latest_loads_without_warning(saved, tmp_path, recwarn):
  run, base = _copy(saved, tmp_path)
  variables, _, _ = ckpt_lib.load(str(run))
  assert _scale(variables, base) == pytest.approx(30.0)
  assert not [w for w in recwarn if "falling back" in str(w.message)]


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "no_meta"])
def test_corrupt_latest_falls_back_to_previous_step(saved, tmp_path, damage):
  run, base = _copy(saved, tmp_path)
  step_dir = run / "checkpoints" / "30"
  if damage == "no_meta":
    shutil.rmtree(step_dir / "meta")
  else:
    files = _data_files(step_dir)
    assert files, f"no data files under {step_dir}"
    for f in files:
      raw = bytearray(open(f, "rb").read())
      if damage == "truncate":
        raw = raw[: len(raw) // 3]
      else:
        for i in range(len(raw) // 4, len(raw), max(len(raw) // 64, 1)):
          raw[i] ^= 0xFF
      open(f, "wb").write(bytes(raw))
  with pytest.warns(RuntimeWarning, match=f"'{step_dir}' is corrupt or incomplete; falling back to step 20"):
    variables, _, _ = ckpt_lib.load(str(run))
  assert _scale(variables, base) == pytest.approx(20.0)
  # An explicitly requested step is never substituted: its error names the step's path.
  ck = ckpt_lib.Checkpointer(str(run / "checkpoints"), create=False)
  abstract = jax.eval_shape(lambda: variables)
  with pytest.raises(ckpt_lib.CorruptCheckpointError, match=str(step_dir)):
    ck.restore(30, abstract)
  # A resuming trainer discards the bad step, so latest_step() and new saves no longer meet it.
  with pytest.warns(RuntimeWarning):
    step, restored, _ = ck.restore_latest(abstract, discard_corrupt=True)
  assert step == 20 and ck.latest_step() == 20 and ck.all_steps() == [10, 20]
  assert _scale(restored, base) == pytest.approx(20.0)
  assert len(os.listdir(run / "checkpoints_corrupt")) == 1
  ck.close()


def test_no_restorable_step_names_the_directory(saved, tmp_path):
  run, _ = _copy(saved, tmp_path)
  for step in (10, 20, 30):
    shutil.rmtree(run / "checkpoints" / str(step) / "meta")
  with pytest.raises(ckpt_lib.CorruptCheckpointError,
                     match=f"no kept world-model checkpoint in '{run / 'checkpoints'}' can be restored"):
    ckpt_lib.load(str(run))


def test_mismatched_abstract_discards_nothing(saved, tmp_path):
  run, base = _copy(saved, tmp_path)
  ck = ckpt_lib.Checkpointer(str(run / "checkpoints"), create=False)
  wrong = {"params": {"nope": jax.ShapeDtypeStruct((3,), np.float32)}}
  with pytest.raises(ckpt_lib.CorruptCheckpointError):
    ck.restore_latest(wrong, discard_corrupt=True)
  assert ck.all_steps() == [10, 20, 30] and not (run / "checkpoints_corrupt").exists()
  ck.close()


def test_save_config_is_atomic_and_follows_umask(tmp_path):
  old = os.umask(0o022)
  try:
    ckpt_lib.save_config(str(tmp_path / "wd"), {"a": 1, "b": (1, 2)})
  finally:
    os.umask(old)
  p = tmp_path / "wd" / "config.json"
  assert oct(p.stat().st_mode & 0o777) == oct(0o644)
  assert p.read_text().startswith("{") and '"b": [\n    1,' in p.read_text()
  assert [x.name for x in (tmp_path / "wd").iterdir()] == ["config.json"]
