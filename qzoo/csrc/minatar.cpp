// The MinAtar CNN's training phase (qzoo/fastpath_cnn.py): three of its CPU kernels, written to give torch's numbers
// bit for bit with less work. qzoo.fastpath_cnn uses each only after checking, on this machine, that it does (and
// torch's own kernels otherwise), so the weights never depend on whether this library is built.
//
// - centered_rmsprop: torch.optim.RMSprop(centered=True)'s step as one pass over the flat moments instead of ~10.
//   Every element-wise operation as ATen's CPU kernels compute it: addcmul and lerp as one fused multiply-add
//   (std::fma), the square root by torch's own at::sqrt_ (MKL's VML, which is not correctly rounded), the division
//   and additions plain (-ffp-contract=off keeps the compiler from fusing them).
// - conv3x3_weight_grad: the weight and bias gradients of a 3x3, stride-1, unpadded convolution with 16 output
//   channels, summed in oneDNN's order (each weight's sum runs over batch, row, column, one fused multiply-add per
//   term), with 9 accumulators of 16 channels held in registers (~2.3x faster than aten::convolution_backward at
//   MinAtar's batch of 32).
// - conv3x3_forward: that convolution itself, in the order oneDNN sums for the batch size at hand (~2x faster than
//   torch.conv2d at a batch of 32).
#include "native.h"

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include <cmath>
#include <cstdint>
#include <vector>

using at::Tensor;

static float* floats(const Tensor& t, int64_t numel, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() && t.numel() == numel,
              name, ": a contiguous float32 CPU tensor of ", numel, " elements is expected");
  return t.data_ptr<float>();
}

// One centered RMSprop step (alpha, eps, lr: the param group's), the parameters views of nothing in particular,
// the gradients, moments and denominators flat buffers in the parameters' order; lifted: a uint8 buffer as long.
//   v = fma((1 - alpha) g, g, alpha v)           (mul_, then addcmul_)
//   m = lerp(m, g, 1 - alpha)                    (ATen's lerp: fma(w, g - m, m) for |w| < 0.5, else fma(w - 1, g - m, g))
//   d = sqrt(fma(-m, m, v)) + eps                (addcmul(value=-1), sqrt_, add_)
//   p = p + ((-lr) g) / d                        (addcdiv_)
// VML's sqrt slows down 10-25x where exact zeros are mixed with other values (qzoo.fastpath_cnn explains), so
// zeros go through it as 1 and come back as 0 (exactly what sqrt(0) is).
void centered_rmsprop(const std::vector<Tensor>& params, const Tensor& flat_grad, const Tensor& square_avg,
                      const Tensor& grad_avg, Tensor denom, const Tensor& lifted, std::vector<Tensor> steps,
                      double alpha, double eps, double lr) {
  const int64_t n = flat_grad.numel();
  const float* g = floats(flat_grad, n, "flat_grad");
  float* v = floats(square_avg, n, "square_avg");
  float* m = floats(grad_avg, n, "grad_avg");
  float* d = floats(denom, n, "denom");
  TORCH_CHECK(lifted.scalar_type() == at::kByte && lifted.is_contiguous() && lifted.numel() == n, "lifted: uint8");
  uint8_t* z = lifted.data_ptr<uint8_t>();
  const float a = static_cast<float>(alpha), w = static_cast<float>(1.0 - alpha);  // as torch casts the scalars
  const bool small = std::abs(w) < 0.5f;
  const float coeff = small ? w : w - 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i], mi = m[i];
    const float vi = std::fma(w * gi, gi, v[i] * a);
    const float mn = std::fma(coeff, gi - mi, small ? mi : gi);
    const float di = std::fma(-mn, mn, vi);
    v[i] = vi;
    m[i] = mn;
    z[i] = di == 0.0f;
    d[i] = di == 0.0f ? 1.0f : di;
  }
  at::sqrt_(denom);
  const float e = static_cast<float>(eps), value = static_cast<float>(-lr);
  int64_t i = 0;
  for (const Tensor& p : params) {
    const int64_t size = p.numel();
    TORCH_CHECK(i + size <= n, "the parameters hold more elements than the flat buffers");
    float* pd = floats(p, size, "param");
    for (int64_t j = 0; j < size; ++j, ++i) pd[j] = pd[j] + value * g[i] / ((z[i] ? d[i] - 1.0f : d[i]) + e);
  }
  TORCH_CHECK(i == n, "the parameters hold fewer elements than the flat buffers");
  for (Tensor& s : steps) s.add_(1);
}

// 16 floats: one AVX-512 register where the compiler targets it, else a loop of std::fma the compiler vectorizes
#if defined(__AVX512F__)
struct Lanes { __m512 v; };
static inline Lanes zeros() { return {_mm512_setzero_ps()}; }
static inline Lanes load(const float* p) { return {_mm512_loadu_ps(p)}; }
static inline void store(float* p, Lanes a) { _mm512_storeu_ps(p, a.v); }
static inline Lanes fma(float s, Lanes g, Lanes a) { return {_mm512_fmadd_ps(_mm512_set1_ps(s), g.v, a.v)}; }
static inline Lanes add(Lanes a, Lanes b) { return {_mm512_add_ps(a.v, b.v)}; }
#else
struct Lanes { float v[16]; };
static inline Lanes zeros() { Lanes r; for (int k = 0; k < 16; ++k) r.v[k] = 0.0f; return r; }
static inline Lanes load(const float* p) { Lanes r; for (int k = 0; k < 16; ++k) r.v[k] = p[k]; return r; }
static inline void store(float* p, Lanes a) { for (int k = 0; k < 16; ++k) p[k] = a.v[k]; }
static inline Lanes fma(float s, Lanes g, Lanes a) { for (int k = 0; k < 16; ++k) a.v[k] = std::fma(s, g.v[k], a.v[k]); return a; }
static inline Lanes add(Lanes a, Lanes b) { for (int k = 0; k < 16; ++k) a.v[k] += b.v[k]; return a; }
#endif

// 8 floats (one output row of MinAtar's 8x8 maps): one AVX register where the compiler targets FMA, else a loop
#if defined(__FMA__)
struct Row { __m256 v; };
static inline Row row_zeros() { return {_mm256_setzero_ps()}; }
static inline Row row_load(const float* p) { return {_mm256_loadu_ps(p)}; }
static inline void row_store(float* p, Row a) { _mm256_storeu_ps(p, a.v); }
static inline Row row_fma(float s, Row x, Row a) { return {_mm256_fmadd_ps(_mm256_set1_ps(s), x.v, a.v)}; }
static inline Row row_add(Row a, float s) { return {_mm256_add_ps(a.v, _mm256_set1_ps(s))}; }
#else
struct Row { float v[8]; };
static inline Row row_zeros() { Row r; for (int k = 0; k < 8; ++k) r.v[k] = 0.0f; return r; }
static inline Row row_load(const float* p) { Row r; for (int k = 0; k < 8; ++k) r.v[k] = p[k]; return r; }
static inline void row_store(float* p, Row a) { for (int k = 0; k < 8; ++k) p[k] = a.v[k]; }
static inline Row row_fma(float s, Row x, Row a) { for (int k = 0; k < 8; ++k) a.v[k] = std::fma(s, x.v[k], a.v[k]); return a; }
static inline Row row_add(Row a, float s) { for (int k = 0; k < 8; ++k) a.v[k] += s; return a; }
#endif

// conv2d(x, weight, bias) for x (B, C, H, 10) and weight (16, C, 3, 3): each output a sum of one fused
// multiply-add per tap from 0, in the order oneDNN uses for the batch (taps_channel_last: (row, column, channel),
// else (channel, row, column)), then the bias added. An output row of 8 positions for all 16 channels at a time:
// 16 independent sums in flight, each tap's input row loaded once.
Tensor conv3x3_forward(const Tensor& x_, const Tensor& weight, const Tensor& bias, bool taps_channel_last) {
  TORCH_CHECK(x_.dim() == 4 && x_.size(3) == 10 && weight.dim() == 4 && weight.size(0) == 16 &&
              weight.size(1) == x_.size(1) && weight.size(2) == 3 && weight.size(3) == 3 && bias.numel() == 16 &&
              x_.size(2) >= 3, "conv3x3_forward: x (B, C, H, 10), weight (16, C, 3, 3), bias (16,)");
  const Tensor x = x_.contiguous();
  const int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = 10;
  const int64_t rows = height - 2, cols = 8, n_taps = channels * 9;
  // the weights as (tap, 16) in the summation's order, and each tap's offset in an image
  const Tensor w = taps_channel_last ? weight.permute({2, 3, 1, 0}).reshape({n_taps, 16}).contiguous()
                                     : weight.permute({1, 2, 3, 0}).reshape({n_taps, 16}).contiguous();
  std::vector<int64_t> offsets(n_taps);
  for (int64_t c = 0, t = 0; c < channels; ++c)
    for (int64_t ky = 0; ky < 3; ++ky)
      for (int64_t kx = 0; kx < 3; ++kx, ++t)
        offsets[taps_channel_last ? (ky * 3 + kx) * channels + c : t] = (c * height + ky) * width + kx;
  const float* xs = floats(x, x.numel(), "x");
  const float* ws = w.data_ptr<float>();
  const Tensor b = bias.contiguous();
  const float* bs = floats(b, 16, "bias");
  Tensor out = at::empty({batch, 16, rows, cols}, x.options());
  float* o = out.data_ptr<float>();
  for (int64_t n = 0; n < batch; ++n) {
    const float* image = xs + n * channels * height * width;
    for (int64_t y = 0; y < rows; ++y) {
      Row s[16];
      for (int k = 0; k < 16; ++k) s[k] = row_zeros();
      for (int64_t t = 0; t < n_taps; ++t) {
        const Row in = row_load(image + y * width + offsets[t]);
        const float* wt = ws + 16 * t;
        for (int k = 0; k < 16; ++k) s[k] = row_fma(wt[k], in, s[k]);
      }
      for (int k = 0; k < 16; ++k) row_store(o + ((n * 16 + k) * rows + y) * cols, row_add(s[k], bs[k]));
    }
  }
  return out;
}

// (grad_weight (16, C, 3, 3), grad_bias (16,)) of out = conv2d(x, weight, bias) from grad_out (B, 16, H-2, W-2).
std::vector<Tensor> conv3x3_weight_grad(const Tensor& grad_out, const Tensor& x_) {
  TORCH_CHECK(x_.dim() == 4 && grad_out.dim() == 4 && grad_out.size(1) == 16 && grad_out.size(0) == x_.size(0) &&
              grad_out.size(2) == x_.size(2) - 2 && grad_out.size(3) == x_.size(3) - 2,
              "conv3x3_weight_grad: x (B, C, H, W) and grad_out (B, 16, H - 2, W - 2)");
  const Tensor x = x_.contiguous();
  const int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  const int64_t rows = height - 2, cols = width - 2;
  const Tensor g = grad_out.reshape({batch, 16, rows * cols}).transpose(1, 2).contiguous();  // (B, positions, 16)
  const float* xs = floats(x, x.numel(), "x");
  const float* gs = floats(g, g.numel(), "grad_out");
  Tensor taps = at::empty({channels * 9, 16}, x.options()), grad_bias = at::empty({16}, x.options());
  float* out = taps.data_ptr<float>();
  Lanes bias = zeros();
  for (int64_t k = 0; k < batch * rows * cols; ++k) bias = add(bias, load(gs + 16 * k));
  store(grad_bias.data_ptr<float>(), bias);
  for (int64_t c = 0; c < channels; ++c) {
    Lanes a0 = zeros(), a1 = zeros(), a2 = zeros(), a3 = zeros(), a4 = zeros(), a5 = zeros(), a6 = zeros(),
          a7 = zeros(), a8 = zeros();
    for (int64_t b = 0; b < batch; ++b) {
      const float* plane = xs + (b * channels + c) * height * width;
      for (int64_t y = 0; y < rows; ++y) {
        const float* r0 = plane + y * width;
        const float* r1 = r0 + width;
        const float* r2 = r1 + width;
        const float* gv = gs + (b * rows + y) * cols * 16;
        for (int64_t x0 = 0; x0 < cols; ++x0, gv += 16) {
          const Lanes gg = load(gv);
          a0 = fma(r0[x0], gg, a0); a1 = fma(r0[x0 + 1], gg, a1); a2 = fma(r0[x0 + 2], gg, a2);
          a3 = fma(r1[x0], gg, a3); a4 = fma(r1[x0 + 1], gg, a4); a5 = fma(r1[x0 + 2], gg, a5);
          a6 = fma(r2[x0], gg, a6); a7 = fma(r2[x0 + 1], gg, a7); a8 = fma(r2[x0 + 2], gg, a8);
        }
      }
    }
    float* o = out + c * 9 * 16;
    store(o, a0); store(o + 16, a1); store(o + 32, a2); store(o + 48, a3); store(o + 64, a4);
    store(o + 80, a5); store(o + 96, a6); store(o + 112, a7); store(o + 128, a8);
  }
  return {taps.t().contiguous().view({16, channels, 3, 3}), grad_bias};
}
