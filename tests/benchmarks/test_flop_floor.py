"""The matmul-FLOP counter behind benchmarks/flop_floor.py, against hand-derived counts."""

import jax
import jax.numpy as jnp
import pytest

from benchmarks import flop_floor


def count(fn, *args) -> int:
  return flop_floor.matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def test_counts_matmuls_batches_and_scans():
  x, w = jnp.ones((2, 3)), jnp.ones((3, 4))
  assert count(jnp.matmul, x, w) == 2 * 2 * 3 * 4
  # A batched einsum: batch 5, contraction 3, free 2 and 4.
  batched = lambda a, b: jnp.einsum('bij,bjk->bik', a, b)
  assert count(batched, jnp.ones((5, 2, 3)), jnp.ones((5, 3, 4))) == 2 * 5 * 2 * 3 * 4

  def scanned(x, w):
    square = jnp.ones((4, 3))

    def body(carry, _):
      return (carry @ w) @ square, None          # [2, 3] @ [3, 4] @ [4, 3] per iteration
    return jax.lax.scan(body, x, None, length=7)[0]

  per_iteration = 2 * 2 * 3 * 4 + 2 * 2 * 4 * 3
  assert count(scanned, x, w) == 7 * per_iteration
  # Inside jit and under grad: the backward pass of y = x @ w needs dx = dy w^T and dw = x^T dy (2x forward).
  loss = lambda x, w: jnp.sum(jax.jit(jnp.matmul)(x, w))
  assert count(jax.grad(loss, argnums=(0, 1)), x, w) == 3 * 2 * 2 * 3 * 4
  assert count(jax.grad(loss, argnums=1), x, w) == 2 * 2 * 2 * 3 * 4      # x constant: no dx


def test_while_loops_are_refused():
  fn = lambda x: jax.lax.while_loop(lambda c: c[0, 0] < 10, lambda c: c @ jnp.eye(3) + 1, x)
  with pytest.raises(ValueError, match='no static trip count'):
    count(fn, jnp.ones((3, 3)))
