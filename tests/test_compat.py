"""`simdist_jax.compat`: the `jax.device_put_replicated` fallback (brax 0.14.2 PPO on JAX >= 0.10)."""

import os
import subprocess
import sys
import textwrap
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from simdist_jax import compat


def _tree():
  return {"w": jnp.arange(6.0).reshape(2, 3), "b": (jnp.int32(7), np.float32([1.5, -2.0]))}


def test_fallback_replicates_a_pytree_with_a_leading_device_axis():
  devices = jax.local_devices()
  out = compat.device_put_replicated(_tree(), devices)
  assert out["w"].shape == (len(devices), 2, 3) and out["b"][0].shape == (len(devices),)
  for leaf, ref in zip(jax.tree.leaves(out), jax.tree.leaves(_tree()), strict=False):
    for d in range(len(devices)):
      np.testing.assert_array_equal(np.asarray(leaf)[d], np.asarray(ref))
    assert {s.device for s in leaf.addressable_shards} == set(devices)
    assert all(s.data.shape == (1,) + np.shape(ref) for s in leaf.addressable_shards)


def test_same_result_as_the_original_where_available():
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    original = getattr(jax, "device_put_replicated", None)
  if original is None or original is compat.device_put_replicated:
    return  # JAX >= 0.10: nothing to compare with (the first test checks the layout)
  devices = jax.local_devices()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    want = original(_tree(), devices)
  got = compat.device_put_replicated(_tree(), devices)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=False):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_install_only_fills_a_missing_attribute():
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    native = getattr(jax, "device_put_replicated", None)
  if native is not None:
    assert compat.install() is False  # the original is kept
  new_jax = types.SimpleNamespace()  # a JAX >= 0.10 without the attribute
  assert compat.install(new_jax) is True
  assert new_jax.device_put_replicated is compat.device_put_replicated
  assert compat.install(new_jax) is False  # idempotent


def test_two_host_devices_match_the_original():
  """In a fresh process with 2 CPU devices, the fallback matches the original on every shard."""
  code = textwrap.dedent("""
      import warnings, jax, jax.numpy as jnp, numpy as np
      from simdist_jax import compat
      devs = jax.local_devices()
      assert len(devs) == 2, devs
      x = {"a": jnp.arange(3.0), "s": jnp.float32(2.0)}
      got = compat.device_put_replicated(x, devs)
      for leaf in jax.tree.leaves(got):
        assert leaf.shape[0] == 2 and {s.device for s in leaf.addressable_shards} == set(devs)
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        orig = getattr(jax, "device_put_replicated", None)
      if orig is not None:
        with warnings.catch_warnings():
          warnings.simplefilter("ignore")
          want = orig(x, devs)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
          np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
          for sa, sb in zip(sorted(a.addressable_shards, key=lambda s: s.device.id),
                            sorted(b.addressable_shards, key=lambda s: s.device.id)):
            assert sa.device == sb.device
            np.testing.assert_array_equal(np.asarray(sa.data), np.asarray(sb.data))
      print("ok")
  """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
