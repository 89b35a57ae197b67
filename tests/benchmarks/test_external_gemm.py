"""The external-sgemm custom call of `benchmarks.external_gemm`: every transpose combination against numpy, its
VJP against autodiff of `jnp.dot`, and a routed Dense + scan (values and gradients) against XLA's own dots."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import external_gemm

pytestmark = pytest.mark.skipif(shutil.which('g++') is None and shutil.which('c++') is None,
                                reason='no C++ compiler to build the custom call')


@pytest.fixture(scope='module', params=sorted(external_gemm.sgemm_choices()))
def sgemm(request):
  return request.param


@pytest.mark.parametrize('trans_a, trans_b', [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_equals_numpy_for_every_transpose(sgemm, trans_a, trans_b):
  rng = np.random.default_rng(0)
  a, b = rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
  a_in, b_in = (a.T.copy() if trans_a else a), (b.T.copy() if trans_b else b)
  out = jax.jit(external_gemm.matmul, static_argnums=(2, 3, 4))(a_in, b_in, trans_a, trans_b, sgemm)
  np.testing.assert_allclose(np.asarray(out), a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('trans_a, trans_b', [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_gradients_equal_autodiff_of_dot(sgemm, trans_a, trans_b):
  rng = np.random.default_rng(1)
  a = jnp.asarray(rng.standard_normal((5, 3) if trans_a else (3, 5)), jnp.float32)
  b = jnp.asarray(rng.standard_normal((4, 5) if trans_b else (5, 4)), jnp.float32)
  weights = jnp.asarray(rng.standard_normal((3, 4)), jnp.float32)
  op = lambda x, t: x.T if t else x
  ours = jax.grad(lambda a, b: jnp.sum(external_gemm.matmul(a, b, trans_a, trans_b, sgemm) * weights), (0, 1))(a, b)
  ref = jax.grad(lambda a, b: jnp.sum(jnp.dot(op(a, trans_a), op(b, trans_b)) * weights), (0, 1))(a, b)
  for x, y in zip(ours, ref):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5)


def test_routed_scan_equals_xla_in_values_and_gradients(sgemm):
  rng = np.random.default_rng(2)
  w_in, w_h = (jnp.asarray(rng.standard_normal(s) * 0.3, jnp.float32) for s in ((6, 8), (8, 8)))
  x = jnp.asarray(rng.standard_normal((4, 3, 6)), jnp.float32)          # [T, B, d]

  def loss(w_in, w_h):
    gates = jnp.dot(x, w_in)                                             # batch-free 3-D x 2-D: routed
    h, hs = jax.lax.scan(lambda h, g: (jnp.tanh(g + h @ w_h),) * 2, jnp.zeros((3, 8)), gates)
    return jnp.sum(hs ** 2) + jnp.sum(jnp.einsum('bh,bh->b', h, h))     # a batched dot: left to XLA

  with external_gemm.routed_dot_general(sgemm):
    routed = jax.jit(jax.value_and_grad(loss, (0, 1))).lower(w_in, w_h).compile()
    jaxpr = str(jax.make_jaxpr(jax.grad(loss, (0, 1)))(w_in, w_h))
  assert 'external_gemm' in jaxpr and 'dot_general' in jaxpr              # routed dots and XLA's batched one
  value, grads = routed(w_in, w_h)                                        # compiled inside: still routed
  assert 'custom_call_target="external_gemm"' in routed.as_text()
  ref_value, ref_grads = jax.value_and_grad(loss, (0, 1))(w_in, w_h)      # traced after: XLA's dots only
  assert 'external_gemm' not in str(jax.make_jaxpr(loss)(w_in, w_h))
  np.testing.assert_allclose(float(value), float(ref_value), rtol=1e-5)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-4, atol=1e-5)


def test_unknown_sgemm_is_a_clear_error():
  with pytest.raises(ValueError, match='unknown sgemm'):
    external_gemm.load('no such blas')


def test_max_rows_routes_only_the_per_step_products(sgemm):
  x = jnp.ones((4, 3, 6))                                                # [T, B, d]: the input product has 12 rows
  w_in, w_h = jnp.ones((6, 8)), jnp.ones((8, 8))

  def forward(w_in, w_h):
    gates = jnp.dot(x, w_in)
    return jax.lax.scan(lambda h, g: (jnp.tanh(g + h @ w_h),) * 2, jnp.zeros((3, 8)), gates)[1]

  counts = {}
  for max_rows in (None, 3):
    with external_gemm.routed_dot_general(sgemm, max_rows=max_rows):
      counts[max_rows] = jax.jit(forward).lower(w_in, w_h).compile().as_text().count(
          'custom_call_target="external_gemm"')
  assert counts == {None: 2, 3: 1}                                       # the scan's [3, 8] x [8, 8] only


def test_main_rejects_an_unknown_sgemm_before_measuring(capsys):
  with pytest.raises(SystemExit) as exit_info:
    external_gemm.main(['--sgemm', 'no such blas', '--out', 'unused.json'])
  assert exit_info.value.code == 2
  assert "unknown --sgemm ['no such blas']" in capsys.readouterr().err
