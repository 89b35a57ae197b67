"""Small parameter leaves packed into one vector for the optimizer, so that their update compiles once.

XLA compiles an elementwise update (Adam's moments and step, the clipping scale, the non-finite guard's select, the
squares of the gradient norm) as kernels for each distinct leaf shape: a GRU's per-gate kernels and biases, the
attention's matrices, embeddings and layer biases give a small model a dozen shapes or more, and the update, a few
elementwise passes over the parameters, took about 40% of the default config's step compilation on AMD EPYC
(BENCHMARKS.md section 4). Packed, the float32 leaves of at most MAX_PACKED_LEAF_SIZE elements are raveled into
one vector in tree order, and the optimizer's state for them (Adam's moments) is kept as that one vector; larger
leaves, and leaves of other dtypes, are left as they are, since copying large leaves in and out of a vector would
cost their step more than their kernels cost its compilation.

    optimizer = pack_small_leaves(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)))
    grad_norm = global_norm(grads)        # the norm of the same packing

The inner transformation sees a `PackedLeaves` instead of the parameter tree: the packed leaves are one 1-D leaf
to it. Elementwise transformations (Adam, AdamW without a mask, SGD, clipping by the global norm) give the same
values as on the tree, except that a sum over all leaves (the global norm) adds in another order, so it agrees to
float32 rounding. Transformations that look at leaves one by one do not go inside: a weight-decay mask (a
parameter-shaped tree or a callable, which would see the packed vector as one 1-D leaf), per-leaf reductions
(`scale_by_trust_ratio`, LAMB, Adafactor's factored moments). Parameters and gradients must have the same dtypes.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

# Leaves with at most this many elements are packed (64 KiB of float32): every leaf of the default config's model
# (the largest, the attention's key matrix, is 128 x 128), the biases and small matrices of larger ones.
MAX_PACKED_LEAF_SIZE = 16_384


class PackedLeaves(NamedTuple):
  """A parameter-shaped tree as the optimizer sees it: small [N] (the packed leaves raveled and concatenated in
  tree order; float32) and large (the other leaves, in tree order)."""
  small: Array
  large: tuple


def _packed(leaf, max_leaf_size: int) -> bool:
  """Whether a leaf (an array or a ShapeDtypeStruct) goes into the packed vector."""
  return math.prod(leaf.shape) <= max_leaf_size and leaf.dtype == jnp.float32


def pack(tree: Any, max_leaf_size: int = MAX_PACKED_LEAF_SIZE) -> PackedLeaves:
  """A tree of arrays -> PackedLeaves (see the module docstring)."""
  leaves = jax.tree.leaves(tree)
  small = [jnp.ravel(leaf) for leaf in leaves if _packed(leaf, max_leaf_size)]
  large = tuple(leaf for leaf in leaves if not _packed(leaf, max_leaf_size))
  return PackedLeaves(jnp.concatenate(small) if small else jnp.zeros((0,), jnp.float32), large)


def unpack(packed: PackedLeaves, like: Any, max_leaf_size: int = MAX_PACKED_LEAF_SIZE) -> Any:
  """PackedLeaves -> a tree with the structure, shapes and dtypes of `like` (arrays or ShapeDtypeStructs)."""
  leaves, treedef = jax.tree.flatten(like)
  sizes = [math.prod(leaf.shape) if _packed(leaf, max_leaf_size) else None for leaf in leaves]
  packed_size = sum(size for size in sizes if size is not None)
  if packed_size != packed.small.shape[0] or sizes.count(None) != len(packed.large):
    raise ValueError(f'The packed leaves ({packed.small.shape[0]} packed elements, {len(packed.large)} other '
                     f'leaves) do not come from a tree like the given one ({packed_size} packed elements, '
                     f'{sizes.count(None)} other leaves).')
  large = iter(packed.large)
  out, offset = [], 0
  for leaf, size in zip(leaves, sizes):
    if size is None:
      out.append(next(large))
    else:
      out.append(jax.lax.slice_in_dim(packed.small, offset, offset + size).reshape(leaf.shape))
      offset += size
  return treedef.unflatten(out)


def global_norm(tree: Any, max_leaf_size: int = MAX_PACKED_LEAF_SIZE) -> Array:
  """The L2 norm of all of a tree's entries, [] float32, summed over the packed vector and the other leaves."""
  return optax.tree.norm(pack(tree, max_leaf_size))


def pack_small_leaves(inner: optax.GradientTransformation,
                      max_leaf_size: int = MAX_PACKED_LEAF_SIZE) -> optax.GradientTransformation:
  """`inner` applied to the parameters, gradients and updates packed (see the module docstring); the updates it
  returns are unpacked into the gradients' tree, so the result drops into `optax.apply_updates` as before."""

  def init_fn(params):
    return inner.init(pack(params, max_leaf_size))

  def update_fn(updates, state, params=None):
    packed_params = None if params is None else pack(params, max_leaf_size)
    packed_updates, state = inner.update(pack(updates, max_leaf_size), state, packed_params)
    return unpack(packed_updates, updates, max_leaf_size), state

  return optax.GradientTransformation(init_fn, update_fn)
