// Fused segment kernels for CPU (OpenMP), compiled at first use by hgnn.ops.cpu.
//
// Layout: segment s owns edges ptr[s]..ptr[s+1]; index[e] is the source row of edge e. The
// transpose (tptr, tedge, tseg) lists, for each source row n, the edges whose index is n and their
// segments, which lets every
// backward pass write its gradient rows from one thread: no atomics, deterministic results.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <limits>
#include <vector>

namespace {

constexpr int64_t kGrain = 64;
constexpr int64_t kPrefetch = 8;

}  // namespace

// reduce: 0 sum, 1 mean, 2 max. Returns (out [S, F], arg [S, F] for max else empty).
std::vector<torch::Tensor> spmm_forward(torch::Tensor x, torch::Tensor ptr, torch::Tensor index,
                                        torch::Tensor weight, int64_t reduce) {
  const int64_t S = ptr.numel() - 1, F = x.size(1), E = index.numel();
  auto out = torch::zeros({S, F}, x.options());
  auto arg = reduce == 2 ? torch::full({S, F}, -1, ptr.options()) : torch::empty({0}, ptr.options());
  const bool weighted = weight.numel() > 0;
  const int64_t* p = ptr.data_ptr<int64_t>();
  const int64_t* idx = index.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spmm_forward", [&] {
    const scalar_t* X = x.data_ptr<scalar_t>();
    const scalar_t* W = weighted ? weight.data_ptr<scalar_t>() : nullptr;
    scalar_t* O = out.data_ptr<scalar_t>();
    int64_t* A = reduce == 2 ? arg.data_ptr<int64_t>() : nullptr;
    at::parallel_for(0, S, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        scalar_t* o = O + s * F;
        const int64_t lo = p[s], hi = p[s + 1];
        if (reduce == 2) {
          int64_t* a = A + s * F;
          for (int64_t f = 0; f < F; ++f) o[f] = -std::numeric_limits<scalar_t>::infinity();
          for (int64_t e = lo; e < hi; ++e) {
            const scalar_t* xr = X + idx[e] * F;
            const scalar_t w = weighted ? W[e] : scalar_t(1);
            for (int64_t f = 0; f < F; ++f) {
              const scalar_t val = w * xr[f];
              if (val > o[f]) { o[f] = val; a[f] = e; }
            }
          }
          if (lo == hi) for (int64_t f = 0; f < F; ++f) o[f] = 0;
        } else {
          for (int64_t e = lo; e < hi; ++e) {
            // Rows are gathered at random: ask for a row a few edges ahead so its cache lines are
            // in flight while this one is summed (the op is bound by memory latency, not flops).
            if (e + kPrefetch < E) __builtin_prefetch(X + idx[e + kPrefetch] * F);
            const scalar_t* xr = X + idx[e] * F;
            const scalar_t w = weighted ? W[e] : scalar_t(1);
            _Pragma("omp simd")
            for (int64_t f = 0; f < F; ++f) o[f] += w * xr[f];
          }
          if (reduce == 1 && hi > lo) {
            const scalar_t inv = scalar_t(1) / scalar_t(hi - lo);
            for (int64_t f = 0; f < F; ++f) o[f] *= inv;
          }
        }
      }
    });
  });
  return {out, arg};
}

// Gradients of spmm_forward. grad_x [N, F] through the transpose; grad_weight [E] if weighted.
std::vector<torch::Tensor> spmm_backward(torch::Tensor grad_out, torch::Tensor x, torch::Tensor ptr,
                                         torch::Tensor index, torch::Tensor weight,
                                         torch::Tensor tptr, torch::Tensor tedge, torch::Tensor tseg,
                                         torch::Tensor arg,
                                         int64_t reduce, bool need_weight_grad) {
  const int64_t S = ptr.numel() - 1, F = x.size(1), N = x.size(0), E = index.numel();
  auto grad_x = torch::zeros_like(x);
  auto grad_w = need_weight_grad ? torch::zeros({E}, x.options()) : torch::empty({0}, x.options());
  const bool weighted = weight.numel() > 0;
  const int64_t* p = ptr.data_ptr<int64_t>();
  const int64_t* idx = index.data_ptr<int64_t>();
  const int64_t* tp = tptr.data_ptr<int64_t>();
  const int64_t* te = tedge.data_ptr<int64_t>();
  const int64_t* ts = tseg.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spmm_backward", [&] {
    const scalar_t* G = grad_out.data_ptr<scalar_t>();
    const scalar_t* X = x.data_ptr<scalar_t>();
    const scalar_t* W = weighted ? weight.data_ptr<scalar_t>() : nullptr;
    const int64_t* A = reduce == 2 ? arg.data_ptr<int64_t>() : nullptr;
    scalar_t* GX = grad_x.data_ptr<scalar_t>();
    // grad_x: each source row gathers from the segments of its edges.
    at::parallel_for(0, N, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        scalar_t* gx = GX + n * F;
        for (int64_t j = tp[n]; j < tp[n + 1]; ++j) {
          const int64_t e = te[j];
          const int64_t s = ts[j];
          const scalar_t* g = G + s * F;
          scalar_t w = weighted ? W[e] : scalar_t(1);
          if (reduce == 1) w /= scalar_t(p[s + 1] - p[s]);
          if (reduce == 2) {
            const int64_t* a = A + s * F;
            for (int64_t f = 0; f < F; ++f) if (a[f] == e) gx[f] += w * g[f];
          } else {
            _Pragma("omp simd")
            for (int64_t f = 0; f < F; ++f) gx[f] += w * g[f];
          }
        }
      }
    });
    if (need_weight_grad) {
      scalar_t* GW = grad_w.data_ptr<scalar_t>();
      at::parallel_for(0, S, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t s = begin; s < end; ++s) {
          const scalar_t* g = G + s * F;
          const scalar_t scale = reduce == 1 && p[s + 1] > p[s] ? scalar_t(1) / scalar_t(p[s + 1] - p[s])
                                                                : scalar_t(1);
          for (int64_t e = p[s]; e < p[s + 1]; ++e) {
            const scalar_t* xr = X + idx[e] * F;
            scalar_t acc = 0;
            if (reduce == 2) {
              const int64_t* a = A + s * F;
              for (int64_t f = 0; f < F; ++f) if (a[f] == e) acc += xr[f] * g[f];
            } else {
              for (int64_t f = 0; f < F; ++f) acc += xr[f] * g[f];
            }
            GW[e] = acc * scale;
          }
        }
      });
    }
  });
  return {grad_x, grad_w};
}

// Fused dot-product attention per segment with an online softmax: no [E, H] score tensor.
// q [S, H, D], k [N, H, D], v [N, H, Dv]. The scaled score is clamped to [lo, hi] (infinite
// bounds: no clamp). weight: [E, H] multipliers of the normalised weights (empty: none); they
// scale the numerator only, so the softmax normaliser (and lse) ignores them.
// Returns (out [S, H, Dv], lse [S, H]).
std::vector<torch::Tensor> attention_forward(torch::Tensor q, torch::Tensor k, torch::Tensor v,
                                             torch::Tensor ptr, torch::Tensor index, double scale,
                                             double lo_clamp, double hi_clamp,
                                             torch::Tensor weight) {
  const int64_t S = ptr.numel() - 1, H = q.size(1), D = q.size(2), Dv = v.size(2);
  auto out = torch::zeros({S, H, Dv}, q.options());
  auto lse = torch::full({S, H}, -std::numeric_limits<double>::infinity(), q.options());
  const int64_t* p = ptr.data_ptr<int64_t>();
  const int64_t* idx = index.data_ptr<int64_t>();
  const bool weighted = weight.numel() > 0;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "attention_forward", [&] {
    const scalar_t* Q = q.data_ptr<scalar_t>();
    const scalar_t* K = k.data_ptr<scalar_t>();
    const scalar_t* V = v.data_ptr<scalar_t>();
    const scalar_t* W = weighted ? weight.data_ptr<scalar_t>() : nullptr;
    scalar_t* O = out.data_ptr<scalar_t>();
    scalar_t* L = lse.data_ptr<scalar_t>();
    const scalar_t sc = static_cast<scalar_t>(scale);
    const scalar_t lo_c = static_cast<scalar_t>(lo_clamp), hi_c = static_cast<scalar_t>(hi_clamp);
    at::parallel_for(0, S, kGrain, [&](int64_t begin, int64_t end) {
      // Edge-outer, head-inner: each source row (all heads) is read once per edge.
      std::vector<scalar_t> m(H), l(H);
      for (int64_t s = begin; s < end; ++s) {
        if (p[s] == p[s + 1]) continue;
        const scalar_t* qs = Q + s * H * D;
        scalar_t* os = O + s * H * Dv;
        std::fill(m.begin(), m.end(), -std::numeric_limits<scalar_t>::infinity());
        std::fill(l.begin(), l.end(), scalar_t(0));
        for (int64_t e = p[s]; e < p[s + 1]; ++e) {
          const int64_t n = idx[e];
          const scalar_t* kn = K + n * H * D;
          const scalar_t* vn = V + n * H * Dv;
          for (int64_t h = 0; h < H; ++h) {
            scalar_t score = 0;
            for (int64_t d = 0; d < D; ++d) score += qs[h * D + d] * kn[h * D + d];
            score *= sc;
            score = score < lo_c ? lo_c : (score > hi_c ? hi_c : score);
            const scalar_t m_new = score > m[h] ? score : m[h];
            const scalar_t decay = std::exp(m[h] - m_new), wgt = std::exp(score - m_new);
            const scalar_t vw = weighted ? wgt * W[e * H + h] : wgt;
            scalar_t* o = os + h * Dv;
            const scalar_t* vh = vn + h * Dv;
            for (int64_t d = 0; d < Dv; ++d) o[d] = o[d] * decay + vw * vh[d];
            l[h] = l[h] * decay + wgt;
            m[h] = m_new;
          }
        }
        for (int64_t h = 0; h < H; ++h) {
          for (int64_t d = 0; d < Dv; ++d) os[h * Dv + d] /= l[h];
          L[s * H + h] = m[h] + std::log(l[h]);
        }
      }
    });
  });
  return {out, lse};
}

// Backward by recomputation: scores are rebuilt from q, k and the saved log-sum-exp. With
// out = sum_e alpha_e c_e v_e (c: the weights), d alpha_e = c_e <dO, v_e> and
// sum_e alpha_e d alpha_e = <dO, out>, so delta = <dO, O> holds as without weights; the clamp
// zeroes the score gradient outside [lo, hi].
std::vector<torch::Tensor> attention_backward(torch::Tensor grad_out, torch::Tensor q,
                                              torch::Tensor k, torch::Tensor v, torch::Tensor out,
                                              torch::Tensor lse, torch::Tensor ptr,
                                              torch::Tensor index, torch::Tensor tptr,
                                              torch::Tensor tedge, torch::Tensor tseg,
                                              double scale, double lo_clamp, double hi_clamp,
                                              torch::Tensor weight) {
  const int64_t S = ptr.numel() - 1, H = q.size(1), D = q.size(2), Dv = v.size(2);
  const int64_t N = k.size(0);
  auto grad_q = torch::zeros_like(q), grad_k = torch::zeros_like(k), grad_v = torch::zeros_like(v);
  auto delta = torch::zeros({S, H}, q.options());
  const int64_t* p = ptr.data_ptr<int64_t>();
  const int64_t* idx = index.data_ptr<int64_t>();
  const int64_t* tp = tptr.data_ptr<int64_t>();
  const int64_t* te = tedge.data_ptr<int64_t>();
  const int64_t* ts = tseg.data_ptr<int64_t>();
  const bool weighted = weight.numel() > 0;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "attention_backward", [&] {
    const scalar_t *GO = grad_out.data_ptr<scalar_t>(), *Q = q.data_ptr<scalar_t>();
    const scalar_t *K = k.data_ptr<scalar_t>(), *V = v.data_ptr<scalar_t>();
    const scalar_t *O = out.data_ptr<scalar_t>(), *L = lse.data_ptr<scalar_t>();
    const scalar_t* W = weighted ? weight.data_ptr<scalar_t>() : nullptr;
    scalar_t *GQ = grad_q.data_ptr<scalar_t>(), *GK = grad_k.data_ptr<scalar_t>();
    scalar_t *GV = grad_v.data_ptr<scalar_t>(), *DL = delta.data_ptr<scalar_t>();
    const scalar_t sc = static_cast<scalar_t>(scale);
    const scalar_t lo_c = static_cast<scalar_t>(lo_clamp), hi_c = static_cast<scalar_t>(hi_clamp);
    // Pass 1, per segment: delta = <dO, O>, and dq = sum_e dscore_e * scale * k_e (edge-outer, so
    // each source row is read once per edge for all heads).
    at::parallel_for(0, S, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        for (int64_t h = 0; h < H; ++h) {
          const int64_t sh = s * H + h;
          scalar_t dl = 0;
          for (int64_t d = 0; d < Dv; ++d) dl += GO[sh * Dv + d] * O[sh * Dv + d];
          DL[sh] = dl;
        }
        for (int64_t e = p[s]; e < p[s + 1]; ++e) {
          const int64_t n = idx[e];
          for (int64_t h = 0; h < H; ++h) {
            const int64_t sh = s * H + h;
            const scalar_t *qh = Q + sh * D, *go = GO + sh * Dv;
            const scalar_t* kh = K + (n * H + h) * D;
            const scalar_t* vh = V + (n * H + h) * Dv;
            scalar_t score = 0, dalpha = 0;
            for (int64_t d = 0; d < D; ++d) score += qh[d] * kh[d];
            score *= sc;
            const bool inside = score >= lo_c && score <= hi_c;
            score = score < lo_c ? lo_c : (score > hi_c ? hi_c : score);
            for (int64_t d = 0; d < Dv; ++d) dalpha += go[d] * vh[d];
            if (weighted) dalpha *= W[e * H + h];
            const scalar_t alpha = std::exp(score - L[sh]);
            const scalar_t ds = inside ? alpha * (dalpha - DL[sh]) * sc : scalar_t(0);
            scalar_t* gq = GQ + sh * D;
            for (int64_t d = 0; d < D; ++d) gq[d] += ds * kh[d];
          }
        }
      }
    });
    // Pass 2, per source row through the transpose: dk and dv.
    at::parallel_for(0, N, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        for (int64_t j = tp[n]; j < tp[n + 1]; ++j) {
          const int64_t e = te[j];
          const int64_t s = ts[j];
          for (int64_t h = 0; h < H; ++h) {
            const int64_t sh = s * H + h, nh = n * H + h;
            const scalar_t *qh = Q + sh * D, *kh = K + nh * D, *vh = V + nh * Dv;
            const scalar_t* go = GO + sh * Dv;
            const scalar_t c = weighted ? W[e * H + h] : scalar_t(1);
            scalar_t score = 0, dalpha = 0;
            for (int64_t d = 0; d < D; ++d) score += qh[d] * kh[d];
            score *= sc;
            const bool inside = score >= lo_c && score <= hi_c;
            score = score < lo_c ? lo_c : (score > hi_c ? hi_c : score);
            for (int64_t d = 0; d < Dv; ++d) dalpha += go[d] * vh[d];
            const scalar_t alpha = std::exp(score - L[sh]);
            const scalar_t ds = inside ? alpha * (c * dalpha - DL[sh]) * sc : scalar_t(0);
            const scalar_t ac = alpha * c;
            scalar_t* gk = GK + nh * D;
            scalar_t* gv = GV + nh * Dv;
            for (int64_t d = 0; d < D; ++d) gk[d] += ds * qh[d];
            for (int64_t d = 0; d < Dv; ++d) gv[d] += ac * go[d];
          }
        }
      }
    });
  });
  return {grad_q, grad_k, grad_v};
}

// Additive (GAT-style) attention: score = leaky_relu(a_dst[s, h] + a_src[n, h]); softmax per
// segment and head; out[s, h] = sum_e alpha_e v[n, h]. a_dst [S, H], a_src [N, H], v [N, H, Dv].
std::vector<torch::Tensor> additive_forward(torch::Tensor a_dst, torch::Tensor a_src,
                                            torch::Tensor v, torch::Tensor ptr, torch::Tensor index,
                                            double slope) {
  const int64_t S = ptr.numel() - 1, H = a_dst.size(1), Dv = v.size(2);
  auto out = torch::zeros({S, H, Dv}, v.options());
  auto lse = torch::full({S, H}, -std::numeric_limits<double>::infinity(), v.options());
  const int64_t* p = ptr.data_ptr<int64_t>();
  const int64_t* idx = index.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "additive_forward", [&] {
    const scalar_t *AD = a_dst.data_ptr<scalar_t>(), *AS = a_src.data_ptr<scalar_t>();
    const scalar_t* V = v.data_ptr<scalar_t>();
    scalar_t *O = out.data_ptr<scalar_t>(), *L = lse.data_ptr<scalar_t>();
    const scalar_t sl = static_cast<scalar_t>(slope);
    at::parallel_for(0, S, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        if (p[s] == p[s + 1]) continue;
        for (int64_t h = 0; h < H; ++h) {
          scalar_t* o = O + (s * H + h) * Dv;
          scalar_t m = -std::numeric_limits<scalar_t>::infinity(), l = 0;
          for (int64_t e = p[s]; e < p[s + 1]; ++e) {
            const int64_t n = idx[e];
            scalar_t score = AD[s * H + h] + AS[n * H + h];
            score = score > 0 ? score : sl * score;
            const scalar_t m_new = score > m ? score : m;
            const scalar_t decay = std::exp(m - m_new), wgt = std::exp(score - m_new);
            const scalar_t* vh = V + (n * H + h) * Dv;
            for (int64_t d = 0; d < Dv; ++d) o[d] = o[d] * decay + wgt * vh[d];
            l = l * decay + wgt;
            m = m_new;
          }
          for (int64_t d = 0; d < Dv; ++d) o[d] /= l;
          L[s * H + h] = m + std::log(l);
        }
      }
    });
  });
  return {out, lse};
}

std::vector<torch::Tensor> additive_backward(torch::Tensor grad_out, torch::Tensor a_dst,
                                             torch::Tensor a_src, torch::Tensor v,
                                             torch::Tensor out, torch::Tensor lse,
                                             torch::Tensor ptr, torch::Tensor index,
                                             torch::Tensor tptr, torch::Tensor tedge,
                                             torch::Tensor tseg, double slope) {
  const int64_t S = ptr.numel() - 1, H = a_dst.size(1), Dv = v.size(2), N = v.size(0);
  auto g_dst = torch::zeros_like(a_dst), g_src = torch::zeros_like(a_src);
  auto g_v = torch::zeros_like(v);
  auto delta = torch::zeros({S, H}, v.options());
  const int64_t* p = ptr.data_ptr<int64_t>();
  const int64_t* idx = index.data_ptr<int64_t>();
  const int64_t* tp = tptr.data_ptr<int64_t>();
  const int64_t* ts = tseg.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "additive_backward", [&] {
    const scalar_t *GO = grad_out.data_ptr<scalar_t>(), *AD = a_dst.data_ptr<scalar_t>();
    const scalar_t *AS = a_src.data_ptr<scalar_t>(), *V = v.data_ptr<scalar_t>();
    const scalar_t *O = out.data_ptr<scalar_t>(), *L = lse.data_ptr<scalar_t>();
    scalar_t *GD = g_dst.data_ptr<scalar_t>(), *GS = g_src.data_ptr<scalar_t>();
    scalar_t *GV = g_v.data_ptr<scalar_t>(), *DL = delta.data_ptr<scalar_t>();
    const scalar_t sl = static_cast<scalar_t>(slope);
    // Pass 1, per segment: delta = <dO, O> and the gradient of a_dst.
    at::parallel_for(0, S, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        for (int64_t h = 0; h < H; ++h) {
          const int64_t sh = s * H + h;
          const scalar_t* go = GO + sh * Dv;
          scalar_t dl = 0;
          for (int64_t d = 0; d < Dv; ++d) dl += go[d] * O[sh * Dv + d];
          DL[sh] = dl;
          scalar_t gd = 0;
          for (int64_t e = p[s]; e < p[s + 1]; ++e) {
            const int64_t n = idx[e];
            const scalar_t raw = AD[sh] + AS[n * H + h];
            const scalar_t score = raw > 0 ? raw : sl * raw;
            const scalar_t* vh = V + (n * H + h) * Dv;
            scalar_t dalpha = 0;
            for (int64_t d = 0; d < Dv; ++d) dalpha += go[d] * vh[d];
            const scalar_t alpha = std::exp(score - L[sh]);
            gd += alpha * (dalpha - dl) * (raw > 0 ? scalar_t(1) : sl);
          }
          GD[sh] = gd;
        }
      }
    });
    // Pass 2, per source row through the transpose: a_src and v.
    at::parallel_for(0, N, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        for (int64_t j = tp[n]; j < tp[n + 1]; ++j) {
          const int64_t s = ts[j];
          for (int64_t h = 0; h < H; ++h) {
            const int64_t sh = s * H + h, nh = n * H + h;
            const scalar_t raw = AD[sh] + AS[nh];
            const scalar_t score = raw > 0 ? raw : sl * raw;
            const scalar_t* go = GO + sh * Dv;
            const scalar_t* vh = V + nh * Dv;
            scalar_t dalpha = 0;
            for (int64_t d = 0; d < Dv; ++d) dalpha += go[d] * vh[d];
            const scalar_t alpha = std::exp(score - L[sh]);
            GS[nh] += alpha * (dalpha - DL[sh]) * (raw > 0 ? scalar_t(1) : sl);
            scalar_t* gv = GV + nh * Dv;
            for (int64_t d = 0; d < Dv; ++d) gv[d] += alpha * go[d];
          }
        }
      }
    });
  });
  return {g_dst, g_src, g_v};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("spmm_forward", &spmm_forward);
  m.def("spmm_backward", &spmm_backward);
  m.def("attention_forward", &attention_forward);
  m.def("attention_backward", &attention_backward);
  m.def("additive_forward", &additive_forward);
  m.def("additive_backward", &additive_backward);
}
