// The packed thin GEMM of decode steps (notebook 24 explains it). Compiled into folovllm._C at install (setup.py).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FOLO_AVX2 1
#endif

bool available() {
#ifdef FOLO_AVX2
  return true;
#else
  return false;
#endif
}

// W [N, K] → panels [N/16, K, 16]: panel n holds output columns 16n…16n+15, one row of 16 per k
at::Tensor pack16(at::Tensor w) {
  const int64_t N = w.size(0), K = w.size(1);
  TORCH_CHECK(N % 16 == 0, "pack16: out_features must be a multiple of 16");
  return w.contiguous().view({N / 16, 16, K}).transpose(1, 2).contiguous();
}

#ifdef FOLO_AVX2
// y[0:MR, 0:16] = x[0:MR, :] · panel, the MR × 16 block held in 2·MR registers over the whole K loop; with PF, each
// step k also asks for row k of the next panel (at next) to be brought into the L2 cache
template <int MR, bool PF>
static inline void micro(const float *x, int64_t ldx, const float *p, int64_t K, float *y, int64_t ldy, const float *next) {
  __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0, a4 = a0, b4 = a0, a5 = a0, b5 = a0;
  const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx, *x4 = x + 4 * ldx, *x5 = x + 5 * ldx;
  for (int64_t k = 0; k < K; ++k) {          // named registers, not arrays: arrays made GCC spill them every k
    const __m256 w0 = _mm256_loadu_ps(p + k * 16), w1 = _mm256_loadu_ps(p + k * 16 + 8);
    if constexpr (PF) _mm_prefetch(reinterpret_cast<const char *>(next + k * 16), _MM_HINT_T1);   // 16 floats: one line
    __m256 xb;
    xb = _mm256_broadcast_ss(x0 + k); a0 = _mm256_fmadd_ps(xb, w0, a0); b0 = _mm256_fmadd_ps(xb, w1, b0);
    if constexpr (MR > 1) { xb = _mm256_broadcast_ss(x1 + k); a1 = _mm256_fmadd_ps(xb, w0, a1); b1 = _mm256_fmadd_ps(xb, w1, b1); }
    if constexpr (MR > 2) { xb = _mm256_broadcast_ss(x2 + k); a2 = _mm256_fmadd_ps(xb, w0, a2); b2 = _mm256_fmadd_ps(xb, w1, b2); }
    if constexpr (MR > 3) { xb = _mm256_broadcast_ss(x3 + k); a3 = _mm256_fmadd_ps(xb, w0, a3); b3 = _mm256_fmadd_ps(xb, w1, b3); }
    if constexpr (MR > 4) { xb = _mm256_broadcast_ss(x4 + k); a4 = _mm256_fmadd_ps(xb, w0, a4); b4 = _mm256_fmadd_ps(xb, w1, b4); }
    if constexpr (MR > 5) { xb = _mm256_broadcast_ss(x5 + k); a5 = _mm256_fmadd_ps(xb, w0, a5); b5 = _mm256_fmadd_ps(xb, w1, b5); }
  }
  _mm256_storeu_ps(y, a0); _mm256_storeu_ps(y + 8, b0);
  if constexpr (MR > 1) { _mm256_storeu_ps(y + ldy, a1); _mm256_storeu_ps(y + ldy + 8, b1); }
  if constexpr (MR > 2) { _mm256_storeu_ps(y + 2 * ldy, a2); _mm256_storeu_ps(y + 2 * ldy + 8, b2); }
  if constexpr (MR > 3) { _mm256_storeu_ps(y + 3 * ldy, a3); _mm256_storeu_ps(y + 3 * ldy + 8, b3); }
  if constexpr (MR > 4) { _mm256_storeu_ps(y + 4 * ldy, a4); _mm256_storeu_ps(y + 4 * ldy + 8, b4); }
  if constexpr (MR > 5) { _mm256_storeu_ps(y + 5 * ldy, a5); _mm256_storeu_ps(y + 5 * ldy + 8, b5); }
}
#endif

// Y [M, NP·16] = X [M, K] · the NP packed panels P [NP, K, 16] (raw pointers: the compiled decode step calls it too).
// prefetch: from PREFETCH_MIN_ROWS rows on, the first row tile of each panel asks for the next panel as it goes, so the
// later tiles' arithmetic overlaps the next panel's trip from memory (false: to measure what that buys, notebook 24)
constexpr int64_t PREFETCH_MIN_ROWS = 4;   // below it a step is a pure read of the weights, and the extra stream slowed it
void gemm16_into(const float *X, int64_t M, int64_t K, const float *P, int64_t NP, float *Y, bool prefetch) {
#ifdef FOLO_AVX2
  const int64_t N = NP * 16;
  at::parallel_for(0, NP, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {                   // one panel, all row tiles while it is in cache
      const float *p = P + n * K * 16, *next = p + K * 16;
      float *yn = Y + n * 16;
      const bool pf = prefetch && M >= PREFETCH_MIN_ROWS && n + 1 < end;
      for (int64_t m = 0; m < M; m += 6) {                    // tiles of 6 rows, the last one what is left
        const float *x = X + m * K;
        float *y = yn + m * N;
        const bool tile_pf = pf && m == 0;
        switch (std::min<int64_t>(6, M - m)) {
#define TILE(R) case R: if (tile_pf) micro<R, true>(x, K, p, K, y, N, next); else micro<R, false>(x, K, p, K, y, N, next); break;
          TILE(6) TILE(5) TILE(4) TILE(3) TILE(2) TILE(1)
#undef TILE
        }
      }
    }
  });
#else
  TORCH_CHECK(false, "gemm16: built without AVX2/FMA");
#endif
}

// x [M, K] (contiguous float32) · packed [N/16, K, 16] → y [M, N]
at::Tensor gemm16(at::Tensor x, at::Tensor packed, bool prefetch) {
  TORCH_CHECK(available(), "gemm16: built without AVX2/FMA");
  TORCH_CHECK(x.scalar_type() == at::kFloat && packed.scalar_type() == at::kFloat && x.is_contiguous()
              && packed.is_contiguous() && x.dim() == 2 && packed.size(1) == x.size(1), "gemm16: bad inputs");
  const int64_t M = x.size(0), K = x.size(1), NP = packed.size(0);
  auto y = at::empty({M, NP * 16}, x.options());
  gemm16_into(x.data_ptr<float>(), M, K, packed.data_ptr<float>(), NP, y.data_ptr<float>(), prefetch);
  return y;
}
