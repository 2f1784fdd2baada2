// SPDX-License-Identifier: MIT
// The attention-residual depth-mix kernels on every compiled ISA against a double-precision
// reference written here: full mode (sources only), block mode (sources and a partial sum), and
// the two-phase block computation against the direct formula, over t > 1 tokens, every d up to
// 3 vectors + 1 (tails), both source layouts, given and computed rstd, misaligned pointers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <pith/core/aligned_buffer.hpp>
#include <pith/kernels/depth_mix.hpp>

namespace {

namespace k = pith::kernels;

// Sources and queries are uniform in [-1, 1]: rstd is about sqrt(3) and scores are sums of d
// products, |s| <= ~2·sqrt(d) ≈ 14 for d = 49. A float score is off by about d ulp of its terms
// (~1e-5 absolute at d = 49), which moves each softmax weight by as much relative; outputs are
// convex combinations of values in [-1, 1], so they stay within ~1e-5 of the exact mix.
constexpr double reference_tolerance = 5e-5;
// Two phases against one: the same float scores, but exp(s - running max) rescaled by exp(max
// difference) and a merged denominator instead of one normalisation: a few ulp of O(1) outputs.
constexpr float two_phase_tolerance = 2e-6f;
constexpr float eps = 1e-5f;

struct isa_kernels {
  std::string name;
  std::size_t width;
  bool supported;
  void (*mix)(const k::depth_sources&, const float*, std::size_t, const float*, std::size_t, std::size_t, float,
              float*, std::size_t, float*);
  void (*partial)(const k::depth_sources&, const float*, std::size_t, std::size_t, float, const k::depth_partial&);
  void (*merge)(const k::depth_partial&, const float*, std::size_t, const float*, std::size_t, std::size_t, float,
                float*, std::size_t);
};

template <class Ops>
isa_kernels make_isa() {
  return {Ops::name, Ops::width, pith::simd::cpu_supports<Ops>(), &k::depth_mix_with<Ops>,
          &k::depth_mix_partial_with<Ops>, &k::depth_mix_merge_with<Ops>};
}

std::vector<isa_kernels> isas() {
  std::vector<isa_kernels> all{make_isa<pith::simd::scalar::ops>()};
#if defined(PITH_SIMD_HAS_AVX2) && !defined(PITH_DISABLE_SIMD)
  all.push_back(make_isa<pith::simd::avx2::ops>());
#endif
#if defined(PITH_SIMD_HAS_AVX512) && !defined(PITH_DISABLE_SIMD)
  all.push_back(make_isa<pith::simd::avx512::ops>());
#endif
#if defined(PITH_SIMD_HAS_NEON) && !defined(PITH_DISABLE_SIMD)
  all.push_back(make_isa<pith::simd::neon::ops>());
#endif
  return all;
}

std::size_t widest() {
  std::size_t w = 1;
  for (const auto& isa : isas()) w = std::max(w, isa.width);
  return w;
}

// One site's inputs: n sources of t tokens of d floats in the chosen layout, a partial sum, a query.
struct site {
  std::size_t n, t, d;
  bool token_major;  // [t, n, d] (llama.cpp's stack) instead of [n, t, d]
  std::size_t misalign;
  pith::aligned_buffer<float> storage, partial_storage, query_storage, rstd;
  k::depth_sources sources;
  const float* partial = nullptr;
  const float* query = nullptr;

  site(std::size_t n_, std::size_t t_, std::size_t d_, bool token_major_, std::size_t misalign_, unsigned seed,
       float query_scale = 1.0f)
      : n(n_), t(t_), d(d_), token_major(token_major_), misalign(misalign_) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    storage.resize(n * t * d + misalign + 1);
    partial_storage.resize(t * d + misalign + 1);
    query_storage.resize(d + misalign + 1);
    for (std::size_t i = 0; i < storage.size(); ++i) storage[i] = u(rng);
    for (std::size_t i = 0; i < partial_storage.size(); ++i) partial_storage[i] = u(rng);
    for (std::size_t i = 0; i < query_storage.size(); ++i) query_storage[i] = u(rng) * query_scale;
    sources.values = storage.data() + misalign;
    sources.count = n;
    sources.source_stride = token_major ? d : t * d;
    sources.row_stride = token_major ? n * d : d;
    partial = partial_storage.data() + misalign;
    query = query_storage.data() + misalign;
  }

  // Banks every source's rstd as an engine would (rstd[j * t + i]).
  void bank_rstd() {
    rstd.resize(n * t);
    for (std::size_t j = 0; j < n; ++j)
      k::depth_rstd_rows(sources.row(j, 0), t, d, sources.row_stride, eps, rstd.data() + j * t);
    sources.rstd = rstd.data();
    sources.rstd_stride = t;
  }

  std::string describe() const {
    std::ostringstream s;
    s << "n=" << n << " t=" << t << " d=" << d << (token_major ? " [t,n,d]" : " [n,t,d]") << " misalign=" << misalign
      << (sources.rstd != nullptr ? " banked rstd" : " computed rstd");
    return s.str();
  }
};

// The mix in double: softmax over dot(v_j, q) / sqrt(mean(v_j²) + eps) of the raw rows.
std::vector<double> reference(const site& s, bool with_partial) {
  std::vector<double> out(s.t * s.d, 0.0);
  for (std::size_t i = 0; i < s.t; ++i) {
    std::vector<const float*> rows;
    for (std::size_t j = 0; j < s.n; ++j) rows.push_back(s.sources.row(j, i));
    if (with_partial) rows.push_back(s.partial + i * s.d);
    std::vector<double> score(rows.size());
    double best = -INFINITY;
    for (std::size_t j = 0; j < rows.size(); ++j) {
      double dot = 0.0, squares = 0.0;
      for (std::size_t c = 0; c < s.d; ++c) {
        dot += double(rows[j][c]) * double(s.query[c]);
        squares += double(rows[j][c]) * double(rows[j][c]);
      }
      score[j] = dot / std::sqrt(squares / double(s.d) + double(eps));
      best = std::max(best, score[j]);
    }
    double total = 0.0;
    for (double& x : score) total += x = std::exp(x - best);
    for (std::size_t j = 0; j < rows.size(); ++j)
      for (std::size_t c = 0; c < s.d; ++c) out[i * s.d + c] += score[j] / total * double(rows[j][c]);
  }
  return out;
}

std::vector<std::size_t> dimensions() {
  std::vector<std::size_t> ds;
  for (std::size_t d = 1; d <= 3 * widest() + 1; ++d) ds.push_back(d);
  return ds;
}

// out[i * out_stride + c] (misaligned like the inputs) against the reference.
void expect_near_reference(const std::vector<double>& expected, const float* out, std::size_t out_stride, const site& s,
                           const std::string& what) {
  for (std::size_t i = 0; i < s.t; ++i)
    for (std::size_t c = 0; c < s.d; ++c)
      ASSERT_NEAR(out[i * out_stride + c], expected[i * s.d + c], reference_tolerance)
          << what << " " << s.describe() << " token " << i << " channel " << c;
}

TEST(DepthMix, FullModeMatchesTheDoubleReference) {
  for (const auto& isa : isas()) {
    if (!isa.supported) continue;
    for (std::size_t n : {1u, 2u, 3u, 9u})
      for (std::size_t d : dimensions())
        for (bool token_major : {false, true})
          for (bool banked : {false, true}) {
            site s(n, 3, d, token_major, (n + d) % 3, static_cast<unsigned>(n * 131 + d));
            if (banked) s.bank_rstd();
            const std::size_t out_stride = d + 2;  // rows of the output need not be packed
            pith::aligned_buffer<float> out(s.t * out_stride + s.misalign), scratch(k::depth_mix_scratch_size(n));
            isa.mix(s.sources, nullptr, 0, s.query, s.t, d, eps, out.data() + s.misalign, out_stride, scratch.data());
            expect_near_reference(reference(s, false), out.data() + s.misalign, out_stride, s, isa.name + " full");
          }
  }
}

TEST(DepthMix, BlockModeWithThePartialSumMatchesTheDoubleReference) {
  for (const auto& isa : isas()) {
    if (!isa.supported) continue;
    for (std::size_t n : {0u, 1u, 2u, 5u})
      for (std::size_t d : dimensions()) {
        site s(n, 4, d, n % 2 == 1, d % 2, static_cast<unsigned>(n * 17 + d));
        s.bank_rstd();
        pith::aligned_buffer<float> out(s.t * d + s.misalign), scratch(k::depth_mix_scratch_size(n));
        isa.mix(s.sources, s.partial, d, s.query, s.t, d, eps, out.data() + s.misalign, d, scratch.data());
        expect_near_reference(reference(s, true), out.data() + s.misalign, d, s, isa.name + " block");
      }
  }
}

TEST(DepthMix, TwoPhaseEqualsOnePhase) {
  for (const auto& isa : isas()) {
    if (!isa.supported) continue;
    for (std::size_t n : {1u, 2u, 4u, 8u})
      for (std::size_t d : dimensions())
        for (bool with_partial : {false, true}) {
          site s(n, 5, d, false, 1, static_cast<unsigned>(n * 7 + d * 3 + with_partial));
          s.bank_rstd();
          const std::size_t t = s.t;
          pith::aligned_buffer<float> direct(t * d), scratch(k::depth_mix_scratch_size(n));
          isa.mix(s.sources, with_partial ? s.partial : nullptr, d, s.query, t, d, eps, direct.data(), d, scratch.data());
          pith::aligned_buffer<float> o(t * d), max(t), sum(t), merged(t * d);
          const k::depth_partial state{o.data(), d, max.data(), sum.data()};
          isa.partial(s.sources, s.query, t, d, eps, state);
          isa.merge(state, with_partial ? s.partial : nullptr, d, s.query, t, d, eps, merged.data(), d);
          for (std::size_t i = 0; i < t * d; ++i)
            ASSERT_NEAR(merged[i], direct[i], two_phase_tolerance)
                << isa.name << " " << s.describe() << " partial " << with_partial << " element " << i;
          // Phase one's statistics are those of the banked sources alone.
          for (std::size_t i = 0; i < t; ++i) {
            double best = -INFINITY;
            std::vector<double> scores;
            for (std::size_t j = 0; j < n; ++j) {
              double dot = 0.0;
              for (std::size_t c = 0; c < d; ++c) dot += double(s.sources.row(j, i)[c]) * s.query[c];
              scores.push_back(dot * s.rstd[j * t + i]);
              best = std::max(best, scores.back());
            }
            double total = 0.0;
            for (double x : scores) total += std::exp(x - best);
            EXPECT_NEAR(max[i], best, 1e-5) << isa.name << " " << s.describe();
            EXPECT_NEAR(sum[i], total, 1e-5 * total) << isa.name << " " << s.describe();
          }
          // The merge may write over the phase-one output it reads.
          isa.merge(state, with_partial ? s.partial : nullptr, d, s.query, t, d, eps, o.data(), d);
          for (std::size_t i = 0; i < t * d; ++i) ASSERT_EQ(o[i], merged[i]) << isa.name << " in place, element " << i;
        }
  }
}

TEST(DepthMix, SourcesInSeparateBuffersEqualOneBuffer) {
  // The same sources described by row pointers (one buffer per source, rstd per source) and by
  // strides: the same rows, the same arithmetic, the same bits.
  for (const auto& isa : isas()) {
    if (!isa.supported) continue;
    site s(4, 3, 21, false, 0, 77);
    s.bank_rstd();
    std::vector<const float*> rows, rstd;
    for (std::size_t j = 0; j < s.n; ++j) {
      rows.push_back(s.sources.row(j, 0));
      rstd.push_back(s.rstd.data() + j * s.t);
    }
    k::depth_sources separate;
    separate.count = s.n;
    separate.row_stride = s.d;
    separate.source_rows = rows.data();
    separate.source_rstd = rstd.data();
    const std::size_t t = s.t, d = s.d;
    pith::aligned_buffer<float> a(t * d), b(t * d), scratch(k::depth_mix_scratch_size(s.n));
    isa.mix(s.sources, s.partial, d, s.query, t, d, eps, a.data(), d, scratch.data());
    isa.mix(separate, s.partial, d, s.query, t, d, eps, b.data(), d, scratch.data());
    for (std::size_t i = 0; i < t * d; ++i) ASSERT_EQ(a[i], b[i]) << isa.name << " element " << i;
    pith::aligned_buffer<float> o(t * d), max(t), sum(t);
    isa.partial(separate, s.query, t, d, eps, {o.data(), d, max.data(), sum.data()});
    isa.merge({o.data(), d, max.data(), sum.data()}, s.partial, d, s.query, t, d, eps, b.data(), d);
    for (std::size_t i = 0; i < t * d; ++i) ASSERT_NEAR(a[i], b[i], two_phase_tolerance) << isa.name << " element " << i;
  }
}

TEST(DepthMix, LargeScoresDoNotOverflow) {
  // Queries of magnitude 1e4 give scores of ~1e5: exp without the max subtracted is inf.
  for (const auto& isa : isas()) {
    if (!isa.supported) continue;
    site s(6, 2, 19, false, 0, 5, 1e4f);
    s.bank_rstd();
    const std::size_t t = s.t, d = s.d;
    pith::aligned_buffer<float> direct(t * d), scratch(k::depth_mix_scratch_size(6)), o(t * d), max(t), sum(t), merged(t * d);
    isa.mix(s.sources, s.partial, d, s.query, t, d, eps, direct.data(), d, scratch.data());
    const k::depth_partial state{o.data(), d, max.data(), sum.data()};
    isa.partial(s.sources, s.query, t, d, eps, state);
    isa.merge(state, s.partial, d, s.query, t, d, eps, merged.data(), d);
    const auto expected = reference(s, true);
    for (std::size_t i = 0; i < t * d; ++i) {
      ASSERT_TRUE(std::isfinite(direct[i]) && std::isfinite(merged[i])) << isa.name << " element " << i;
      // One source takes (almost) all the weight: both equal it up to float rounding of the scores.
      EXPECT_NEAR(direct[i], expected[i], 1e-3) << isa.name << " element " << i;
      EXPECT_NEAR(merged[i], expected[i], 1e-3) << isa.name << " element " << i;
    }
  }
}

TEST(DepthMix, OneSourceIsTheIdentity) {
  site s(1, 3, 13, false, 0, 9);
  pith::aligned_buffer<float> out(s.t * s.d), scratch(k::depth_mix_scratch_size(1));
  k::depth_mix(s.sources, nullptr, 0, s.query, s.t, s.d, eps, out.data(), s.d, scratch.data());
  for (std::size_t i = 0; i < s.t * s.d; ++i) EXPECT_EQ(out[i], s.storage[i]) << i;
}

TEST(DepthMix, ValidationNamesTheProblem) {
  site s(2, 3, 8, false, 0, 1);
  EXPECT_EQ(k::validate_depth_mix(s.sources, s.query, 3, 8, true), nullptr);
  EXPECT_STREQ(k::validate_depth_mix(s.sources, nullptr, 3, 8, true), "depth_mix: the pseudo-query is null");
  k::depth_sources none = s.sources;
  none.count = 0;
  EXPECT_STREQ(k::validate_depth_mix(none, s.query, 3, 8, true), "depth_mix: no source to mix (and no partial sum)");
  EXPECT_EQ(k::validate_depth_mix(none, s.query, 3, 8, false), nullptr);
  k::depth_sources narrow = s.sources;
  narrow.row_stride = 4;
  EXPECT_STREQ(k::validate_depth_mix(narrow, s.query, 3, 8, true), "depth_mix: sources.row_stride < d");
  k::depth_sources null_values = s.sources;
  null_values.values = nullptr;
  EXPECT_STREQ(k::validate_depth_mix(null_values, s.query, 3, 8, true),
               "depth_mix: sources.values and sources.source_rows are null");
  const float* rows[2] = {s.sources.row(0, 0), nullptr};
  k::depth_sources null_row = s.sources;
  null_row.source_rows = rows;
  EXPECT_STREQ(k::validate_depth_mix(null_row, s.query, 3, 8, true), "depth_mix: a pointer of sources.source_rows is null");
}

}  // namespace
