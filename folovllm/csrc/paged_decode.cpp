// Paged decode attention over the block pool (notebook 40 explains it). Compiled into folovllm._C at install (setup.py).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FOLO_AVX2 1
#endif

#ifdef FOLO_AVX2
static inline float hsum8(__m256 v) {                      // the sum of 8 lanes
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
static inline __m256 hsum8x8(const __m256 *a) {            // lane j = the sum of a[j]'s 8 lanes
  const __m256 t0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 t1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20), _mm256_permute2f128_ps(t0, t1, 0x31));
}
static inline __m256 exp8(__m256 x) {                      // e^x for x <= 0: 2^k · e^r with |r| <= ln2/2, Taylor to r^6
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693145751953125f), x);          // ln 2 split in two: k·hi is exact
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 p = _mm256_set1_ps(1.f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
__m256 exp8_nonpos(__m256 x) { return exp8(x); }      // exp8 for the other kernel files (decode_step.cpp's SiLU)
// Read a sequence's first n positions of K and V once, front to back, one load per 64-byte line, before the two passes
// work on them: the CPU's own prefetcher follows this sequential read and runs ahead of it, while the passes' strided
// reads (8 positions of one head at a time) leave it idle and wait on each line in turn (notebook 40 measures both).
static inline void stream_in(const float *K, const float *V, const int64_t *bt, int64_t n, int64_t bs, int64_t row) {
  __m256 z = _mm256_setzero_ps();
  for (int64_t p0 = 0; p0 < n; p0 += bs) {
    const float *kb = K + bt[p0 / bs] * bs * row, *vb = V + bt[p0 / bs] * bs * row;
    for (int64_t i = 0, end = std::min(bs, n - p0) * row; i < end; i += 16)
      z = _mm256_add_ps(z, _mm256_add_ps(_mm256_loadu_ps(kb + i), _mm256_loadu_ps(vb + i)));
  }
  volatile float sink = hsum8(z);                                  // keeps the loads
  (void)sink;
}
// scores of one query row q [D] against 8 consecutive positions of a block (rows `row` floats apart) → 8 lanes
static inline __m256 dots8(const float *q, const float *k, int64_t row, int64_t D) {
  __m256 a[8];
  for (int j = 0; j < 8; ++j) a[j] = _mm256_setzero_ps();
  for (int64_t d = 0; d < D; d += 8) {
    const __m256 qv = _mm256_loadu_ps(q + d);
    for (int j = 0; j < 8; ++j) a[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + j * row + d), a[j]);
  }
  return hsum8x8(a);
}
// acc[g][d0:d0+8·NV] += Σ_t w[g][t] · v_t[d0:...] over cnt positions, the accumulators held in registers
template <int NG, int NV>
static inline void wsum(const float *w, int64_t wstride, const float *v, int64_t row, int64_t cnt, float *acc, int64_t D) {
  __m256 c[NG][NV];
  for (int g = 0; g < NG; ++g) for (int j = 0; j < NV; ++j) c[g][j] = _mm256_loadu_ps(acc + g * D + 8 * j);
  for (int64_t t = 0; t < cnt; ++t) {
    __m256 vv[NV];
    for (int j = 0; j < NV; ++j) vv[j] = _mm256_loadu_ps(v + t * row + 8 * j);
    for (int g = 0; g < NG; ++g) {
      const __m256 wg = _mm256_broadcast_ss(w + g * wstride + t);
      for (int j = 0; j < NV; ++j) c[g][j] = _mm256_fmadd_ps(wg, vv[j], c[g][j]);
    }
  }
  for (int g = 0; g < NG; ++g) for (int j = 0; j < NV; ++j) _mm256_storeu_ps(acc + g * D + 8 * j, c[g][j]);
}
template <int NG>
static inline void wsum_head(const float *w, int64_t wstride, const float *v, int64_t row, int64_t cnt, float *acc, int64_t D) {
  int64_t d = 0;
  for (; d + 16 <= D; d += 16) wsum<NG, 2>(w, wstride, v + d, row, cnt, acc + d, D);
  if (d < D) wsum<NG, 1>(w, wstride, v + d, row, cnt, acc + d, D);
}
#endif

// Sequence b's decode over KV heads [h0, h1): scores of every (query head, position), softmax, weighted sum of values.
static void decode_one(const float *Q, const float *K, const float *V, const int64_t *bt, int64_t n, float *O,
                       int64_t h0, int64_t h1, int64_t H, int64_t Hkv, int64_t D, int64_t bs, float sc,
                       bool stream, std::vector<float> &qs, std::vector<float> &s, std::vector<float> &acc) {
  const int64_t G = H / Hkv, R = (h1 - h0) * G;                    // R query heads, rows of s and acc
  qs.resize(R * D); s.resize(R * n); acc.assign(R * D, 0.f);
  for (int64_t i = 0; i < R * D; ++i) qs[i] = Q[h0 * G * D + i] * sc;    // pre-scaled queries [R, D]
  const int64_t row = Hkv * D;                                     // floats per position in a block
#ifdef FOLO_AVX2
  const bool vec = D % 8 == 0;
#else
  const bool vec = false;
#endif
#ifdef FOLO_AVX2
  if (stream && vec && h0 == 0 && h1 == Hkv) stream_in(K, V, bt, n, bs, row);   // a whole sequence: its blocks into cache first
#endif
  for (int64_t p0 = 0; p0 < n; p0 += bs) {                         // pass 1: scores, one block at a time
    const int64_t cnt = std::min(bs, n - p0);
    const float *kb = K + bt[p0 / bs] * bs * row;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t r = (h - h0) * G; r < (h - h0 + 1) * G; ++r) {
        const float *q = qs.data() + r * D;
        float *sr = s.data() + r * n + p0;
        int64_t t = 0;
#ifdef FOLO_AVX2
        if (vec) for (; t + 8 <= cnt; t += 8) _mm256_storeu_ps(sr + t, dots8(q, kb + t * row + h * D, row, D));
#endif
        for (; t < cnt; ++t) {
          const float *k = kb + t * row + h * D;
          float dot = 0.f;
          for (int64_t d = 0; d < D; ++d) dot += q[d] * k[d];
          sr[t] = dot;
        }
      }
  }
  std::vector<float> inv(R);
  for (int64_t r = 0; r < R; ++r) {                                // softmax of each row (normalised at the end)
    float *sr = s.data() + r * n, m = -INFINITY, sum = 0.f;
    for (int64_t p = 0; p < n; ++p) m = std::max(m, sr[p]);
    int64_t p = 0;
#ifdef FOLO_AVX2
    __m256 vs = _mm256_setzero_ps();
    for (; p + 8 <= n; p += 8) {
      const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sr + p), _mm256_set1_ps(m)));
      _mm256_storeu_ps(sr + p, e); vs = _mm256_add_ps(vs, e);
    }
    sum = hsum8(vs);
#endif
    for (; p < n; ++p) { sr[p] = std::exp(sr[p] - m); sum += sr[p]; }
    inv[r] = 1.f / sum;
  }
  for (int64_t p0 = 0; p0 < n; p0 += bs) {                         // pass 2: Σ p · v, one block at a time
    const int64_t cnt = std::min(bs, n - p0);
    const float *vb = V + bt[p0 / bs] * bs * row;
    for (int64_t h = h0; h < h1; ++h) {
      const float *vh = vb + h * D;
      int64_t r = (h - h0) * G, rend = r + G;
#ifdef FOLO_AVX2
      if (vec) {
        for (; r + 4 <= rend; r += 4) wsum_head<4>(s.data() + r * n + p0, n, vh, row, cnt, acc.data() + r * D, D);
        switch (rend - r) {
          case 3: wsum_head<3>(s.data() + r * n + p0, n, vh, row, cnt, acc.data() + r * D, D); r += 3; break;
          case 2: wsum_head<2>(s.data() + r * n + p0, n, vh, row, cnt, acc.data() + r * D, D); r += 2; break;
          case 1: wsum_head<1>(s.data() + r * n + p0, n, vh, row, cnt, acc.data() + r * D, D); r += 1; break;
        }
      }
#endif
      for (; r < rend; ++r)
        for (int64_t t = 0; t < cnt; ++t) {
          const float w = s[r * n + p0 + t];
          for (int64_t d = 0; d < D; ++d) acc[r * D + d] += w * vh[t * row + d];
        }
    }
  }
  for (int64_t r = 0; r < R; ++r)
    for (int64_t d = 0; d < D; ++d) O[h0 * G * D + r * D + d] = acc[r * D + d] * inv[r];
}

// O [B, H, D] = attention of Q [B, H, D] over the paged K, V [num_blocks, bs, Hkv, D] of each sequence b: its first L[b]
// positions, through block table row BT[b·W …] (raw pointers: the compiled decode step calls it too). stream: read each
// whole-sequence task's blocks front to back first (false: the two passes alone, to measure what that read buys)
void paged_decode_into(const float *Q, const float *K, const float *V, const int64_t *BT, int64_t W, const int64_t *L,
                       int64_t B, int64_t H, int64_t Hkv, int64_t D, int64_t bs, float sc, float *O, bool stream) {
  const int64_t threads = at::get_num_threads();
  // A task is a sequence with all its heads (each block then read once, front to back) when there are enough
  // sequences to go round; else a (sequence, KV head) pair. Contexts differ in length, so threads take tasks from
  // a shared counter rather than a fixed share.
  const int64_t split = B >= 4 * threads ? 1 : Hkv, tasks = B * split;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min(threads, tasks), 1, [&](int64_t, int64_t) {
    std::vector<float> qs, s, acc;
    for (int64_t t = next++; t < tasks; t = next++) {
      const int64_t b = t / split, h0 = (t % split) * (Hkv / split), h1 = h0 + Hkv / split;
      decode_one(Q + b * H * D, K, V, BT + b * W, L[b], O + b * H * D, h0, h1, H, Hkv, D, bs, sc, stream, qs, s, acc);
    }
  });
}

// q [B, H, D]; k_cache, v_cache [num_blocks, block_size, Hkv, D]; block_tables [B, W]; seq_lens [B] → out [B, H, D]
at::Tensor paged_decode(at::Tensor q, at::Tensor k_cache, at::Tensor v_cache, at::Tensor block_tables,
                           at::Tensor seq_lens, double scale, bool stream) {
  TORCH_CHECK(q.scalar_type() == at::kFloat && k_cache.scalar_type() == at::kFloat, "paged_decode: float32 only");
  TORCH_CHECK(q.is_contiguous() && k_cache.is_contiguous() && v_cache.is_contiguous() && block_tables.is_contiguous()
              && seq_lens.is_contiguous(), "paged_decode: contiguous tensors only");
  auto out = at::empty_like(q);
  paged_decode_into(q.data_ptr<float>(), k_cache.data_ptr<float>(), v_cache.data_ptr<float>(), block_tables.data_ptr<int64_t>(),
                    block_tables.size(1), seq_lens.data_ptr<int64_t>(), q.size(0), q.size(1), k_cache.size(2), q.size(2),
                    k_cache.size(1), static_cast<float>(scale), out.data_ptr<float>(), stream);
  return out;
}
