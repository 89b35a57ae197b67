// An XLA FFI custom call: C[M, N] = op(A) op(B) for row-major float32 matrices, computed by a Fortran-interface
// sgemm (MKL's, OpenBLAS's, ...) whose address and integer width come as attributes. Built and registered by
// benchmarks/external_gemm.py.
#include <cstdint>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

template <typename Int>
using Sgemm = void (*)(const char*, const char*, const Int*, const Int*, const Int*, const float*, const float*,
                       const Int*, const float*, const Int*, const float*, float*, const Int*);

template <typename Int>
static void Call(int64_t sgemm, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float* c) {
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands, keep each's transpose.
  const char tb = trans_b ? 'T' : 'N', ta = trans_a ? 'T' : 'N';
  const Int M = n, N = m, K = k, LDB = ldb, LDA = lda, LDC = n;
  const float one = 1.0f, zero = 0.0f;
  reinterpret_cast<Sgemm<Int>>(sgemm)(&tb, &ta, &M, &N, &K, &one, b, &LDB, a, &LDA, &zero, c, &LDC);
}

static ffi::Error Gemm(ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> c,
                       int64_t sgemm, int32_t int64, int32_t trans_a, int32_t trans_b) {
  if (sgemm == 0) return ffi::Error::InvalidArgument("external_gemm: sgemm address is 0");
  auto ad = a.dimensions(), bd = b.dimensions();
  if (ad.size() != 2 || bd.size() != 2) return ffi::Error::InvalidArgument("external_gemm: 2-D operands only");
  const int64_t m = trans_a ? ad[1] : ad[0], k = trans_a ? ad[0] : ad[1], n = trans_b ? bd[0] : bd[1];
  if ((trans_b ? bd[1] : bd[0]) != k) return ffi::Error::InvalidArgument("external_gemm: contracted sizes differ");
  if (m == 0 || n == 0) return ffi::Error::Success();
  if (k == 0) {
    for (int64_t i = 0; i < m * n; ++i) c->typed_data()[i] = 0.0f;
    return ffi::Error::Success();
  }
  if (int64) {
    Call<int64_t>(sgemm, trans_a, trans_b, m, n, k, a.typed_data(), ad[1], b.typed_data(), bd[1], c->typed_data());
  } else {
    Call<int32_t>(sgemm, trans_a, trans_b, m, n, k, a.typed_data(), ad[1], b.typed_data(), bd[1], c->typed_data());
  }
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(ExternalGemm, Gemm,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("sgemm")
                                  .Attr<int32_t>("int64")
                                  .Attr<int32_t>("trans_a")
                                  .Attr<int32_t>("trans_b"));
