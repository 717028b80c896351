// Statistics for rollout gates and the A/B report (SPEC §5): distributions,
// Welch's t-test, chi-square tests, confidence intervals, sample sizes, the
// sample-ratio-mismatch check and KL divergence. Pure functions, no state.
//
// The contract is /work/notes/stats-api.md. Conventions:
// - Degenerate but valid data (n < 2, zero variance, no observations, a
//   single category) gives a defined, conservative result: statistic 0,
//   p_value 1, significant false. Nothing returns NaN except where a comment
//   says so (only the distribution functions, for NaN or invalid parameters).
// - Malformed input, i.e. a caller's bug or corrupt data (sizes that do not
//   match, successes > n, negative or non-finite counts/shares/weights,
//   alpha/confidence/power outside (0, 1)), throws std::invalid_argument with
//   a message naming the argument. No other exception leaves these functions.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace veer::stats {

// ---- Distributions -------------------------------------------------------
// Standard normal CDF; normal_cdf(±inf) = 0/1, NaN -> NaN.
double normal_cdf(double z);
// Inverse of normal_cdf: p <= 0 -> -inf, p >= 1 -> +inf, NaN -> NaN.
double normal_quantile(double p);
// Chi-square survival function P(X >= x). x <= 0 -> 1, x = +inf -> 0.
// df <= 0 or NaN (x or df) -> NaN.
double chi2_sf(double x, double df);
// Student's t one-sided upper tail P(T >= t). df = +inf is the normal
// distribution. df <= 0 or NaN (t or df) -> NaN.
double student_t_sf(double t, double df);
// Inverse CDF of Student's t: P(T <= result) = p. p <= 0 -> -inf,
// p >= 1 -> +inf; df <= 0 or NaN -> NaN.
double student_t_quantile(double p, double df);

// ---- Summaries and results ----------------------------------------------
struct Interval {
  double low, high;
};
struct MeanSummary {
  uint64_t n;
  double mean;
  double variance;  // sample variance (denominator n - 1)
};
struct ProportionSummary {
  uint64_t n;
  uint64_t successes;
};

struct TestResult {
  double statistic;
  double df;
  double p_value;
  bool significant;  // p_value < alpha
};

// Summary of raw observations (Welford's algorithm; numerically stable).
// Empty -> {0, 0, 0}; one value -> variance 0. Non-finite values throw.
MeanSummary summarize(const std::vector<double>& values);

// ---- Tests ---------------------------------------------------------------
// Welch's unequal-variance t-test of a.mean == b.mean, two-sided.
// statistic = (a.mean - b.mean) / se, df by Welch–Satterthwaite.
// Degenerate (either n < 2, or both variances 0 so se = 0) ->
// {0, 0, 1, false}: without spread there is nothing to test against.
TestResult welch_t_test(const MeanSummary& a, const MeanSummary& b, double alpha);

// Pearson chi-square test of independence on the 2 x k table of
// successes/failures (k = groups.size(); 2 x 2 for two proportions), no
// continuity correction. Groups with n = 0 are left out (they carry no
// information); df = (non-empty groups - 1). Fewer than 2 non-empty groups,
// or no success / no failure anywhere -> {0, df, 1, false}.
TestResult proportions_chi_square(const std::vector<ProportionSummary>& groups, double alpha);

// Chi-square goodness of fit of observed counts to expected shares. Shares
// are normalised by their sum (so weights in basis points work as well). A
// zero-share category with observations -> statistic +inf, p_value 0,
// significant true. df = (categories with share > 0) - 1. No observations
// or df = 0 -> p_value 1.
TestResult chi_square_goodness_of_fit(const std::vector<uint64_t>& observed,
                                      const std::vector<double>& shares, double alpha);

// ---- Intervals (confidence in (0, 1), e.g. 0.95) ------------------------
// mean ± t_{(1+c)/2, n-1} * sqrt(variance / n). n < 2 -> {-inf, +inf}
// (no information about the spread).
Interval mean_interval(const MeanSummary& s, double confidence);
// Wilson score interval, within [0, 1]. n = 0 -> {0, 1}.
Interval proportion_interval(const ProportionSummary& s, double confidence);

// ---- Sample sizes (per arm, two-sided alpha) ----------------------------
// Normal approximation with pooled variance under H0 and unpooled under H1
// (Fleiss, without continuity correction):
//   n = (z_{1-a/2} sqrt(2 pbar qbar) + z_{power} sqrt(p1 q1 + p2 q2))^2 / (p1 - p2)^2
// 10 % -> 11 %, alpha .05, power .8 -> 14,751. p1, p2 in [0, 1];
// p1 == p2 -> UINT64_MAX (no finite sample detects a zero effect).
uint64_t sample_size_proportions(double p1, double p2, double alpha, double power);
// n = 2 (z_{1-a/2} + z_{power})^2 sigma^2 / delta^2, at least 2 (a t-test
// needs two observations per arm). delta == 0 -> UINT64_MAX. sigma >= 0.
uint64_t sample_size_means(double sigma, double delta, double alpha, double power);

// ---- Sample ratio mismatch ----------------------------------------------
// Chi-square goodness of fit of flows per variant against the configured
// weights (any unit; normalised); mismatch if p_value < threshold.
// 5,200/4,800 at 50/50 -> mismatch (p ~ 6e-5); 5,050/4,950 -> not (p ~ 0.32).
// No flows -> {1, false}.
struct SrmResult {
  double p_value;
  bool mismatch;
};
SrmResult sample_ratio_mismatch(const std::vector<uint64_t>& flows, const std::vector<double>& weights,
                                double threshold = 0.001);

// ---- KL divergence -------------------------------------------------------
// KL(p || q) in nats over the union of labels. `smoothing` (additive,
// Laplace) is added to every label's count on both sides before
// normalising, so labels seen on one side only give a finite value when
// smoothing > 0. No labels at all, or p without mass (smoothing 0 and all
// p counts 0) -> 0. With smoothing 0, q without mass where p has some ->
// +inf (documented infinity). Negative or non-finite counts, or a negative
// or non-finite smoothing, throw.
double kl_divergence(const std::map<std::string, double>& p, const std::map<std::string, double>& q,
                     double smoothing = 1.0);

// Population stability index over the union of labels:
// sum_i (p_i - q_i) ln(p_i / q_i) of the smoothed shares (as kl_divergence
// smooths them), i.e. KL(p||q) + KL(q||p). The field's reading: < 0.1
// insignificant, 0.1-0.25 moderate, > 0.25 major. No labels -> 0; a label
// with mass on one side only and smoothing 0 -> +inf. Bad counts throw.
double population_stability_index(const std::map<std::string, double>& p, const std::map<std::string, double>& q,
                                  double smoothing = 1.0);

// Jensen-Shannon distance: sqrt of the JS divergence in nats (as
// scipy.spatial.distance.jensenshannon, which Evidently and NannyML use),
// symmetric, finite with unseen labels, bounded by sqrt(ln 2) = 0.8326.
// No mass on a side -> 0 when both are empty, else the bound. Bad counts throw.
double jensen_shannon_distance(const std::map<std::string, double>& p, const std::map<std::string, double>& q);

// p-value of the chi-square test of homogeneity of the 2 x k table of label
// counts (p's row against q's), df = k - 1 over the labels either side saw.
// Fewer than two labels, or a side without counts -> 1 (nothing to tell
// apart). Bad counts throw.
double label_chi_square_p(const std::map<std::string, double>& p, const std::map<std::string, double>& q);

}  // namespace veer::stats
