// The 4-bit GPTQ GEMM (notebook 70 explains it). Compiled into folovllm._C at install (setup.py).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define FOLO_AVX2 1
#endif

// y[M, N] = x[M, K] W^T with W[n, k] = s[g, n] * (q[k, n] - z[g, n]) for input row k in group g (groups of gs rows,
// the last one may be shorter). codes int32 [N/16, K/8, 16]: the 8 nibbles of codes[t, r, c] are q[8r .. 8r+7, 16t + c]
// (GPTQ's qweight cut into tiles of 16 outputs). s, z: float16 [N/16, G, 16]. Per group: y += s * (sum q x - z * sum x).
template <int MB>   // activation rows per pass
static void tile_rows(const float* x, int64_t K, const float* xsum, int64_t G, int64_t gs, const int32_t* codes,
                      const at::Half* sc, const at::Half* zr, float* y, int64_t N) {
  float acc[MB][16] = {};
  for (int64_t g = 0; g < G; g++) {
    const int64_t r0 = g * gs / 8, r1 = std::min<int64_t>((g + 1) * gs, K) / 8;
    const at::Half* s = sc + g * 16; const at::Half* z = zr + g * 16;
#ifdef FOLO_AVX2
    constexpr int A = MB == 1 ? 4 : MB == 2 ? 2 : 1;      // independent FMA chains per output vector (hide FMA latency)
    __m256 ga[MB][2][A];
    for (int m = 0; m < MB; m++) for (int h = 0; h < 2; h++) for (int a = 0; a < A; a++) ga[m][h][a] = _mm256_setzero_ps();
    const __m256i mask = _mm256_set1_epi32(15);
    for (int64_t r = r0; r < r1; r++) {
      __m256i w0 = _mm256_loadu_si256((const __m256i*)(codes + r * 16));
      __m256i w1 = _mm256_loadu_si256((const __m256i*)(codes + r * 16 + 8));
      const float* xr = x + r * 8;
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++) {                         // nibble j of every code: input row 8r + j
        __m256 c0 = _mm256_cvtepi32_ps(_mm256_and_si256(w0, mask));
        __m256 c1 = _mm256_cvtepi32_ps(_mm256_and_si256(w1, mask));
        w0 = _mm256_srli_epi32(w0, 4); w1 = _mm256_srli_epi32(w1, 4);
        for (int m = 0; m < MB; m++) {
          __m256 xb = _mm256_broadcast_ss(xr + m * K + j);
          ga[m][0][j % A] = _mm256_fmadd_ps(c0, xb, ga[m][0][j % A]);
          ga[m][1][j % A] = _mm256_fmadd_ps(c1, xb, ga[m][1][j % A]);
        }
      }
    }
    const __m256 s0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)s)), s1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(s + 8)));
    const __m256 z0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)z)), z1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(z + 8)));
    for (int m = 0; m < MB; m++) {
      __m256 t0 = ga[m][0][0], t1 = ga[m][1][0];
      for (int a = 1; a < A; a++) { t0 = _mm256_add_ps(t0, ga[m][0][a]); t1 = _mm256_add_ps(t1, ga[m][1][a]); }
      const __m256 xs = _mm256_set1_ps(xsum[m * G + g]);
      _mm256_storeu_ps(acc[m], _mm256_fmadd_ps(s0, _mm256_fnmadd_ps(z0, xs, t0), _mm256_loadu_ps(acc[m])));
      _mm256_storeu_ps(acc[m] + 8, _mm256_fmadd_ps(s1, _mm256_fnmadd_ps(z1, xs, t1), _mm256_loadu_ps(acc[m] + 8)));
    }
#else
    float ga[MB][16] = {};
    for (int64_t r = r0; r < r1; r++)
      for (int c = 0; c < 16; c++) {
        uint32_t w = (uint32_t)codes[r * 16 + c];
        for (int j = 0; j < 8; j++, w >>= 4)
          for (int m = 0; m < MB; m++) ga[m][c] += (float)(w & 15u) * x[m * K + r * 8 + j];
      }
    for (int m = 0; m < MB; m++)
      for (int c = 0; c < 16; c++) acc[m][c] += (float)s[c] * (ga[m][c] - (float)z[c] * xsum[m * G + g]);
#endif
  }
  for (int m = 0; m < MB; m++) std::copy(acc[m], acc[m] + 16, y + m * N);
}

// y [M, T·16] = x [M, K] · the 4-bit weights above (raw pointers: the compiled decode step calls it too)
void int4_gemm_into(const float* xp, int64_t M, int64_t K, const int32_t* cp, const at::Half* sp, const at::Half* zp,
                    int64_t T, int64_t G, int64_t gs, float* yp) {
  const int64_t N = T * 16;
  std::vector<float> xsum(M * G);
  float* xs = xsum.data();
  for (int64_t m = 0; m < M; m++)                           // each group's activation sum, once per row
    for (int64_t g = 0; g < G; g++) {
      float s = 0.f;
      for (int64_t k = g * gs; k < std::min<int64_t>((g + 1) * gs, K); k++) s += xp[m * K + k];
      xs[m * G + g] = s;
    }
  at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {   // threads split the output tiles
    for (int64_t t = t0; t < t1; t++)
      for (int64_t m0 = 0; m0 < M; m0 += 4) {
        const int64_t mb = std::min<int64_t>(4, M - m0);
        const int32_t* ct = cp + t * (K / 8) * 16; const at::Half* st = sp + t * G * 16; const at::Half* zt = zp + t * G * 16;
        const float* xm = xp + m0 * K; const float* xsm = xs + m0 * G; float* ym = yp + m0 * N + t * 16;
        if (mb == 4) tile_rows<4>(xm, K, xsm, G, gs, ct, st, zt, ym, N);
        else if (mb == 3) tile_rows<3>(xm, K, xsm, G, gs, ct, st, zt, ym, N);
        else if (mb == 2) tile_rows<2>(xm, K, xsm, G, gs, ct, st, zt, ym, N);
        else tile_rows<1>(xm, K, xsm, G, gs, ct, st, zt, ym, N);
      }
  });
}

at::Tensor int4_gemm(at::Tensor x, at::Tensor codes, at::Tensor scales, at::Tensor zeros, int64_t gs) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(), "int4_gemm: x must be a contiguous float32 [M, K]");
  TORCH_CHECK(codes.scalar_type() == at::kInt && scales.scalar_type() == at::kHalf && zeros.scalar_type() == at::kHalf
              && codes.is_contiguous() && scales.is_contiguous() && zeros.is_contiguous(),
              "int4_gemm: codes must be contiguous int32, scales and zeros contiguous float16");
  const int64_t M = x.size(0), K = x.size(1), T = codes.size(0), N = T * 16, G = scales.size(1);
  TORCH_CHECK(codes.dim() == 3 && codes.size(1) * 8 == K && codes.size(2) == 16 && gs % 8 == 0 && K % 8 == 0
              && (G - 1) * gs < K && G * gs >= K && scales.size(0) == T && zeros.sizes() == scales.sizes(),
              "int4_gemm: shapes do not match");
  auto y = at::empty({M, N}, x.options());
  int4_gemm_into(x.data_ptr<float>(), M, K, codes.data_ptr<int32_t>(), scales.data_ptr<at::Half>(), zeros.data_ptr<at::Half>(),
                 T, G, gs, y.data_ptr<float>());
  return y;
}
