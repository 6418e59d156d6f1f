// A whole decode step of a Llama / Qwen decoder in one call: every layer, no Python in between (notebook 26 explains it).
// Compiled into folovllm._C at install (setup.py). The matmuls and the attention are the other files' kernels; this
// file adds the small per-layer ops (RMSNorm, RoPE, the K/V write, SiLU·mul, the residual adds) as plain loops.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FOLO_AVX2 1
__m256 exp8_nonpos(__m256 x);                                          // paged_decode.cpp
#endif

void gemm16_into(const float *X, int64_t M, int64_t K, const float *P, int64_t NP, float *Y, bool prefetch);  // thin_gemm.cpp
void int4_gemm_into(const float *x, int64_t M, int64_t K, const int32_t *codes, const at::Half *scales,
                    const at::Half *zeros, int64_t T, int64_t G, int64_t gs, float *y);           // int4_gemm.cpp
void paged_decode_into(const float *Q, const float *K, const float *V, const int64_t *BT, int64_t W, const int64_t *L,
                       int64_t B, int64_t H, int64_t Hkv, int64_t D, int64_t bs, float sc, float *O, bool stream);  // paged_decode.cpp

// Rows [0, B) split over the threads only when there are enough of them to pay for it.
template <class F> static void rows(int64_t B, F f) { at::parallel_for(0, B, 8, [&](int64_t b0, int64_t b1) { for (int64_t b = b0; b < b1; ++b) f(b); }); }

// y [M, N] = x [M, K] · W^T (+ bias), W given as the thin GEMM's float32 panels [N/16, K, 16] (scales empty) or
// the 4-bit kernel's codes [N/16, K/8, 16] with float16 scales, zeros [N/16, G, 16] in groups of gs inputs, its
// inputs taken in the order perm (GPTQ's act-order; empty: as they are).
struct Lin { at::Tensor w, scales, zeros, bias, perm; int64_t gs; };
static void linear(const Lin &l, const float *x, int64_t M, int64_t K, float *y, std::vector<float> &xp) {
  const int64_t T = l.w.size(0), N = T * 16;
  if (l.perm.numel()) {
    const int64_t *p = l.perm.data_ptr<int64_t>();
    xp.resize(M * K);
    for (int64_t m = 0; m < M; ++m) for (int64_t k = 0; k < K; ++k) xp[m * K + k] = x[m * K + p[k]];
    x = xp.data();
  }
  if (l.scales.numel() == 0) gemm16_into(x, M, K, l.w.data_ptr<float>(), T, y, true);
  else int4_gemm_into(x, M, K, l.w.data_ptr<int32_t>(), l.scales.data_ptr<at::Half>(), l.zeros.data_ptr<at::Half>(), T,
                      l.scales.size(1), l.gs, y);
  if (l.bias.numel()) { const float *b = l.bias.data_ptr<float>(); for (int64_t m = 0; m < M; ++m) for (int64_t n = 0; n < N; ++n) y[m * N + n] += b[n]; }
}

// out[0:n] = x · rsqrt(mean(x²) + eps) · w
static void rms_norm(const float *x, const float *w, int64_t n, float eps, float *out) {
  float ss = 0.f;
  int64_t i = 0;
#ifdef FOLO_AVX2
  __m256 a = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) { const __m256 v = _mm256_loadu_ps(x + i); a = _mm256_fmadd_ps(v, v, a); }
  float t[8]; _mm256_storeu_ps(t, a);
  for (float v : t) ss += v;
#endif
  for (; i < n; ++i) ss += x[i] * x[i];
  const float r = 1.f / std::sqrt(ss / n + eps);
  for (i = 0; i < n; ++i) out[i] = x[i] * r * w[i];
}

// x[h, :] for each of nh heads of D: (x1, x2) → (x1 cos − x2 sin, x2 cos + x1 sin); cos, sin [D] as rope_cos_sin makes them
static void rope(float *x, int64_t nh, int64_t D, const float *cos, const float *sin) {
  const int64_t h2 = D / 2;
  for (int64_t h = 0; h < nh; ++h) {
    float *v = x + h * D;
    for (int64_t d = 0; d < h2; ++d) {
      const float a = v[d], b = v[d + h2];
      v[d] = b * sin[d] + a * cos[d];
      v[d + h2] = a * sin[d + h2] + b * cos[d + h2];
    }
  }
}

// out[0:n] = silu(g) · u
static void silu_mul(const float *g, const float *u, int64_t n, float *out) {
  int64_t i = 0;
#ifdef FOLO_AVX2
  const __m256 one = _mm256_set1_ps(1.f), sign = _mm256_set1_ps(-0.f);
  for (; i + 8 <= n; i += 8) {                   // σ(g) from e = exp(−|g|) ≤ 1: 1/(1+e) for g ≥ 0, e/(1+e) for g < 0
    const __m256 x = _mm256_loadu_ps(g + i), e = exp8_nonpos(_mm256_or_ps(x, sign));
    const __m256 num = _mm256_blendv_ps(one, e, x);          // blend on x's sign bit
    const __m256 sg = _mm256_div_ps(num, _mm256_add_ps(one, e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(x, sg), _mm256_loadu_ps(u + i)));
  }
#endif
  for (; i < n; ++i) out[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

// x [B, hidden]: the embedded tokens in, the last layer's residual stream out (before the final norm), in place.
// cos, sin [B, D]; per layer 24 weight tensors: input norm, post-attention norm, q norm, k norm (empty: none), then
// qkv, o, gate_up, down as (w, scales, zeros, bias, perm) each; group_sizes: 4 per layer. K/V caches [num_blocks, bs, Hkv, D].
at::Tensor decode_layers(at::Tensor x, at::Tensor cos, at::Tensor sin, std::vector<at::Tensor> weights,
                         std::vector<int64_t> group_sizes, std::vector<at::Tensor> k_caches, std::vector<at::Tensor> v_caches,
                         at::Tensor slot_mapping, at::Tensor block_tables, at::Tensor seq_lens, int64_t H, int64_t Hkv,
                         double eps) {
  const int64_t L = k_caches.size(), B = x.size(0), E = x.size(1), D = k_caches[0].size(3), bs = k_caches[0].size(1);
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.is_contiguous() && x.dim() == 2, "decode_layers: x must be contiguous float32 [B, hidden]");
  TORCH_CHECK((int64_t)weights.size() == 24 * L && (int64_t)group_sizes.size() == 4 * L && (int64_t)v_caches.size() == L,
              "decode_layers: 24 weights and 4 group sizes per layer, and one K and V cache per layer");
  TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.numel() == B * D && sin.numel() == B * D && slot_mapping.numel() == B
              && seq_lens.numel() == B && block_tables.size(0) >= B && block_tables.is_contiguous(), "decode_layers: per-row inputs do not match x");
  for (auto &w : weights) TORCH_CHECK(w.is_contiguous() && w.device().is_cpu(), "decode_layers: weights must be contiguous CPU tensors");
  const int64_t QKV = (H + 2 * Hkv) * D, I = weights[14].size(0) * 8;     // gate_up has 2·I outputs in T = 2·I/16 panels
  float *X = x.data_ptr<float>();
  const float *C = cos.data_ptr<float>(), *S = sin.data_ptr<float>();
  const int64_t *slots = slot_mapping.data_ptr<int64_t>();
  std::vector<float> xn(B * E), qkv(B * QKV), q(B * H * D), att(B * H * D), y(B * std::max(E, 2 * I)), act(B * I), xp;
  const float e = static_cast<float>(eps), scale = static_cast<float>(std::pow(static_cast<double>(D), -0.5));   // as head_dim ** -0.5
  for (int64_t l = 0; l < L; ++l) {
    const at::Tensor *w = weights.data() + 24 * l;
    const Lin qkv_l{w[4], w[5], w[6], w[7], w[8], group_sizes[4 * l]}, o_l{w[9], w[10], w[11], w[12], w[13], group_sizes[4 * l + 1]},
              gu_l{w[14], w[15], w[16], w[17], w[18], group_sizes[4 * l + 2]},
              down_l{w[19], w[20], w[21], w[22], w[23], group_sizes[4 * l + 3]};
    const float *in_norm = w[0].data_ptr<float>(), *post_norm = w[1].data_ptr<float>();
    const float *qn = w[2].numel() ? w[2].data_ptr<float>() : nullptr, *kn = w[3].numel() ? w[3].data_ptr<float>() : nullptr;
    float *kc = k_caches[l].data_ptr<float>(), *vc = v_caches[l].data_ptr<float>();
    rows(B, [&](int64_t b) { rms_norm(X + b * E, in_norm, E, e, xn.data() + b * E); });
    linear(qkv_l, xn.data(), B, E, qkv.data(), xp);
    rows(B, [&](int64_t b) {
      float *r = qkv.data() + b * QKV;                                     // [H q heads | Hkv k heads | Hkv v heads]
      if (qn) for (int64_t h = 0; h < H; ++h) rms_norm(r + h * D, qn, D, e, r + h * D);
      if (kn) for (int64_t h = H; h < H + Hkv; ++h) rms_norm(r + h * D, kn, D, e, r + h * D);
      rope(r, H + Hkv, D, C + b * D, S + b * D);
      std::copy(r, r + H * D, q.data() + b * H * D);
      std::copy(r + H * D, r + (H + Hkv) * D, kc + slots[b] * Hkv * D);  // this token's K and V into its cache slot
      std::copy(r + (H + Hkv) * D, r + QKV, vc + slots[b] * Hkv * D);
    });
    paged_decode_into(q.data(), kc, vc, block_tables.data_ptr<int64_t>(), block_tables.size(1), seq_lens.data_ptr<int64_t>(),
                      B, H, Hkv, D, bs, scale, att.data(), true);
    linear(o_l, att.data(), B, H * D, y.data(), xp);
    rows(B, [&](int64_t b) {
      for (int64_t i = 0; i < E; ++i) X[b * E + i] += y[b * E + i];
      rms_norm(X + b * E, post_norm, E, e, xn.data() + b * E);
    });
    linear(gu_l, xn.data(), B, E, y.data(), xp);
    rows(B, [&](int64_t b) { silu_mul(y.data() + b * 2 * I, y.data() + b * 2 * I + I, I, act.data() + b * I); });
    linear(down_l, act.data(), B, I, y.data(), xp);
    rows(B, [&](int64_t b) { for (int64_t i = 0; i < E; ++i) X[b * E + i] += y[b * E + i]; });
  }
  return x;
}
