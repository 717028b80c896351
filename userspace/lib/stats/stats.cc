// Statistics for gates and the A/B report; see stats/stats.h.
//
// The special functions (incomplete gamma/beta behind the chi-square and t
// distributions, inverse normal) come from Boost.Math (header-only,
// libboost-dev): a well-tested, widely reviewed implementation with
// accuracy near machine precision, which a hand-written series or continued
// fraction here would not match and would have to be re-validated. We use a
// policy that reports errors through return values instead of exceptions
// and guard every parameter before calling, so no Boost exception can leave
// this file.
#include "stats/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>

namespace veer::stats {
namespace {

using NoThrowPolicy = boost::math::policies::policy<
    boost::math::policies::domain_error<boost::math::policies::ignore_error>,
    boost::math::policies::pole_error<boost::math::policies::ignore_error>,
    boost::math::policies::overflow_error<boost::math::policies::ignore_error>,
    boost::math::policies::underflow_error<boost::math::policies::ignore_error>,
    boost::math::policies::evaluation_error<boost::math::policies::ignore_error>,
    boost::math::policies::rounding_error<boost::math::policies::ignore_error>>;
using Normal = boost::math::normal_distribution<double, NoThrowPolicy>;
using ChiSquared = boost::math::chi_squared_distribution<double, NoThrowPolicy>;
using StudentsT = boost::math::students_t_distribution<double, NoThrowPolicy>;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
// Beyond this many degrees of freedom Student's t equals the normal
// distribution to double precision; Boost is also slow/unstable near inf.
constexpr double kNormalDf = 1e15;

void require_probability(double value, const char* name) {
  if (!(value > 0.0 && value < 1.0))
    throw std::invalid_argument(std::string(name) + " must be in (0, 1), got " + std::to_string(value));
}

void require_summary(const MeanSummary& s, const char* name) {
  if (!std::isfinite(s.mean) || !std::isfinite(s.variance) || s.variance < 0.0)
    throw std::invalid_argument(std::string(name) + ": mean and variance must be finite, variance >= 0");
}

constexpr TestResult kNoEvidence(double df = 0.0) { return TestResult{0.0, df, 1.0, false}; }

double clamp_probability(double p) { return std::clamp(p, 0.0, 1.0); }

}  // namespace

double normal_cdf(double z) {
  if (std::isnan(z)) return kNaN;
  if (z == kInf) return 1.0;
  if (z == -kInf) return 0.0;
  return boost::math::cdf(Normal(), z);
}

double normal_quantile(double p) {
  if (std::isnan(p)) return kNaN;
  if (p <= 0.0) return -kInf;
  if (p >= 1.0) return kInf;
  return boost::math::quantile(Normal(), p);
}

double chi2_sf(double x, double df) {
  if (std::isnan(x) || std::isnan(df) || df <= 0.0) return kNaN;
  if (x <= 0.0) return 1.0;
  if (x == kInf) return 0.0;
  if (df == kInf) return 1.0;  // the mass moves to +inf
  return clamp_probability(boost::math::cdf(boost::math::complement(ChiSquared(df), x)));
}

double student_t_sf(double t, double df) {
  if (std::isnan(t) || std::isnan(df) || df <= 0.0) return kNaN;
  if (t == kInf) return 0.0;
  if (t == -kInf) return 1.0;
  if (df >= kNormalDf) return boost::math::cdf(boost::math::complement(Normal(), t));
  return clamp_probability(boost::math::cdf(boost::math::complement(StudentsT(df), t)));
}

double student_t_quantile(double p, double df) {
  if (std::isnan(p) || std::isnan(df) || df <= 0.0) return kNaN;
  if (p <= 0.0) return -kInf;
  if (p >= 1.0) return kInf;
  if (df >= kNormalDf) return normal_quantile(p);
  return boost::math::quantile(StudentsT(df), p);
}

MeanSummary summarize(const std::vector<double>& values) {
  MeanSummary s{0, 0.0, 0.0};
  double m2 = 0.0;
  for (double v : values) {
    if (!std::isfinite(v)) throw std::invalid_argument("summarize: values must be finite");
    ++s.n;
    const double delta = v - s.mean;
    s.mean += delta / static_cast<double>(s.n);
    m2 += delta * (v - s.mean);
  }
  s.variance = s.n >= 2 ? m2 / static_cast<double>(s.n - 1) : 0.0;
  return s;
}

TestResult welch_t_test(const MeanSummary& a, const MeanSummary& b, double alpha) {
  require_probability(alpha, "welch_t_test: alpha");
  require_summary(a, "welch_t_test: a");
  require_summary(b, "welch_t_test: b");
  if (a.n < 2 || b.n < 2) return kNoEvidence();
  const double va = a.variance / static_cast<double>(a.n);
  const double vb = b.variance / static_cast<double>(b.n);
  const double se2 = va + vb;
  if (!(se2 > 0.0)) return kNoEvidence();
  const double t = (a.mean - b.mean) / std::sqrt(se2);
  // Welch–Satterthwaite, df = se2^2 / sum((v_i)^2 / (n_i - 1)), written with
  // the shares w_i = v_i / se2 so huge variances cannot overflow to inf/inf.
  // A group with zero variance contributes 0, so df falls back to the other
  // group's n - 1.
  const double wa = va / se2, wb = vb / se2;
  const double df = 1.0 / (wa * wa / static_cast<double>(a.n - 1) + wb * wb / static_cast<double>(b.n - 1));
  const double p = std::min(1.0, 2.0 * student_t_sf(std::fabs(t), df));
  return TestResult{t, df, p, p < alpha};
}

TestResult proportions_chi_square(const std::vector<ProportionSummary>& groups, double alpha) {
  require_probability(alpha, "proportions_chi_square: alpha");
  double total = 0.0, total_successes = 0.0;
  std::size_t non_empty = 0;
  for (const auto& g : groups) {
    if (g.successes > g.n) throw std::invalid_argument("proportions_chi_square: successes > n");
    if (g.n == 0) continue;
    ++non_empty;
    total += static_cast<double>(g.n);
    total_successes += static_cast<double>(g.successes);
  }
  const double df = non_empty >= 2 ? static_cast<double>(non_empty - 1) : 0.0;
  const double total_failures = total - total_successes;
  if (non_empty < 2 || total_successes == 0.0 || total_failures == 0.0) return kNoEvidence(df);
  double statistic = 0.0;
  for (const auto& g : groups) {
    if (g.n == 0) continue;
    const double n = static_cast<double>(g.n);
    const double expected_successes = n * total_successes / total;
    const double expected_failures = n * total_failures / total;
    const double ds = static_cast<double>(g.successes) - expected_successes;
    const double df_ = static_cast<double>(g.n - g.successes) - expected_failures;
    statistic += ds * ds / expected_successes + df_ * df_ / expected_failures;
  }
  const double p = chi2_sf(statistic, df);
  return TestResult{statistic, df, p, p < alpha};
}

TestResult chi_square_goodness_of_fit(const std::vector<uint64_t>& observed, const std::vector<double>& shares,
                                      double alpha) {
  require_probability(alpha, "chi_square_goodness_of_fit: alpha");
  if (observed.size() != shares.size())
    throw std::invalid_argument("chi_square_goodness_of_fit: observed and shares differ in size");
  double share_sum = 0.0, total = 0.0;
  std::size_t categories = 0;
  for (std::size_t i = 0; i < shares.size(); ++i) {
    if (!std::isfinite(shares[i]) || shares[i] < 0.0)
      throw std::invalid_argument("chi_square_goodness_of_fit: shares must be finite and >= 0");
    share_sum += shares[i];
    total += static_cast<double>(observed[i]);
    if (shares[i] > 0.0) ++categories;
  }
  if (!(share_sum > 0.0)) throw std::invalid_argument("chi_square_goodness_of_fit: shares sum to 0");
  const double df = categories >= 1 ? static_cast<double>(categories - 1) : 0.0;
  for (std::size_t i = 0; i < shares.size(); ++i)
    if (shares[i] == 0.0 && observed[i] > 0) return TestResult{kInf, df, 0.0, true};
  if (total == 0.0 || categories < 2) return kNoEvidence(df);
  double statistic = 0.0;
  for (std::size_t i = 0; i < shares.size(); ++i) {
    if (shares[i] == 0.0) continue;
    const double expected = total * shares[i] / share_sum;
    const double d = static_cast<double>(observed[i]) - expected;
    statistic += d * d / expected;
  }
  const double p = chi2_sf(statistic, df);
  return TestResult{statistic, df, p, p < alpha};
}

Interval mean_interval(const MeanSummary& s, double confidence) {
  require_probability(confidence, "mean_interval: confidence");
  require_summary(s, "mean_interval");
  if (s.n < 2) return Interval{-kInf, kInf};
  const double t = student_t_quantile(0.5 + confidence / 2.0, static_cast<double>(s.n - 1));
  const double half = t * std::sqrt(s.variance / static_cast<double>(s.n));
  return Interval{s.mean - half, s.mean + half};
}

Interval proportion_interval(const ProportionSummary& s, double confidence) {
  require_probability(confidence, "proportion_interval: confidence");
  if (s.successes > s.n) throw std::invalid_argument("proportion_interval: successes > n");
  if (s.n == 0) return Interval{0.0, 1.0};
  const double n = static_cast<double>(s.n);
  const double phat = static_cast<double>(s.successes) / n;
  const double z = normal_quantile(0.5 + confidence / 2.0);
  const double z2 = z * z;
  const double center = (phat + z2 / (2.0 * n)) / (1.0 + z2 / n);
  const double half = z / (1.0 + z2 / n) * std::sqrt(phat * (1.0 - phat) / n + z2 / (4.0 * n * n));
  return Interval{std::max(0.0, center - half), std::min(1.0, center + half)};
}

namespace {
uint64_t ceil_to_count(double n) {
  // 2^63 is far beyond any sample; also keeps the conversion defined.
  if (!(n < 9.2e18)) return std::numeric_limits<uint64_t>::max();
  return static_cast<uint64_t>(std::ceil(n));
}
}  // namespace

uint64_t sample_size_proportions(double p1, double p2, double alpha, double power) {
  require_probability(alpha, "sample_size_proportions: alpha");
  require_probability(power, "sample_size_proportions: power");
  if (!(p1 >= 0.0 && p1 <= 1.0) || !(p2 >= 0.0 && p2 <= 1.0))
    throw std::invalid_argument("sample_size_proportions: p1 and p2 must be in [0, 1]");
  if (p1 == p2) return std::numeric_limits<uint64_t>::max();
  const double z_alpha = normal_quantile(1.0 - alpha / 2.0);
  const double z_power = normal_quantile(power);
  const double pbar = (p1 + p2) / 2.0;
  const double root = z_alpha * std::sqrt(2.0 * pbar * (1.0 - pbar)) +
                      z_power * std::sqrt(p1 * (1.0 - p1) + p2 * (1.0 - p2));
  const double effect = p1 - p2;
  return std::max<uint64_t>(1, ceil_to_count(root * root / (effect * effect)));
}

uint64_t sample_size_means(double sigma, double delta, double alpha, double power) {
  require_probability(alpha, "sample_size_means: alpha");
  require_probability(power, "sample_size_means: power");
  if (!std::isfinite(sigma) || sigma < 0.0) throw std::invalid_argument("sample_size_means: sigma must be finite, >= 0");
  if (!std::isfinite(delta)) throw std::invalid_argument("sample_size_means: delta must be finite");
  if (delta == 0.0) return std::numeric_limits<uint64_t>::max();
  const double z = normal_quantile(1.0 - alpha / 2.0) + normal_quantile(power);
  return std::max<uint64_t>(2, ceil_to_count(2.0 * z * z * sigma * sigma / (delta * delta)));
}

SrmResult sample_ratio_mismatch(const std::vector<uint64_t>& flows, const std::vector<double>& weights,
                                double threshold) {
  if (!(threshold > 0.0 && threshold < 1.0))
    throw std::invalid_argument("sample_ratio_mismatch: threshold must be in (0, 1)");
  const TestResult r = chi_square_goodness_of_fit(flows, weights, threshold);
  return SrmResult{r.p_value, r.significant};
}

namespace {
// The union of P's and Q's labels with both sides' counts (absent = 0);
// throws (naming WHAT) for a negative or non-finite count.
std::map<std::string, std::pair<double, double>> joint_counts(const std::map<std::string, double>& p,
                                                              const std::map<std::string, double>& q,
                                                              const char* what) {
  std::map<std::string, std::pair<double, double>> counts;
  auto add = [&](const std::map<std::string, double>& side, bool is_p) {
    for (const auto& [label, count] : side) {
      if (!std::isfinite(count) || count < 0.0)
        throw std::invalid_argument(std::string(what) + ": count of label '" + label + "' must be finite and >= 0");
      (is_p ? counts[label].first : counts[label].second) = count;
    }
  };
  add(p, true);
  add(q, false);
  return counts;
}

void check_smoothing(double smoothing, const char* what) {
  if (!std::isfinite(smoothing) || smoothing < 0.0)
    throw std::invalid_argument(std::string(what) + ": smoothing must be finite and >= 0");
}
}  // namespace

double kl_divergence(const std::map<std::string, double>& p, const std::map<std::string, double>& q,
                     double smoothing) {
  check_smoothing(smoothing, "kl_divergence");
  const auto counts = joint_counts(p, q, "kl_divergence");
  if (counts.empty()) return 0.0;
  double p_total = 0.0, q_total = 0.0;
  for (const auto& [label, pq] : counts) {
    p_total += pq.first + smoothing;
    q_total += pq.second + smoothing;
  }
  if (!(p_total > 0.0)) return 0.0;
  double kl = 0.0;
  for (const auto& [label, pq] : counts) {
    const double pi = (pq.first + smoothing) / p_total;
    if (pi == 0.0) continue;  // 0 * log(0 / q) = 0
    const double qi = q_total > 0.0 ? (pq.second + smoothing) / q_total : 0.0;
    if (qi == 0.0) return kInf;
    kl += pi * std::log(pi / qi);
  }
  // Rounding can leave a tiny negative value for identical distributions.
  return std::max(0.0, kl);
}

double population_stability_index(const std::map<std::string, double>& p, const std::map<std::string, double>& q,
                                  double smoothing) {
  check_smoothing(smoothing, "population_stability_index");
  const auto counts = joint_counts(p, q, "population_stability_index");
  double p_total = 0.0, q_total = 0.0;
  for (const auto& [label, pq] : counts) {
    p_total += pq.first + smoothing;
    q_total += pq.second + smoothing;
  }
  if (!(p_total > 0.0) && !(q_total > 0.0)) return 0.0;
  if (!(p_total > 0.0) || !(q_total > 0.0)) return kInf;
  double psi = 0.0;
  for (const auto& [label, pq] : counts) {
    const double pi = (pq.first + smoothing) / p_total, qi = (pq.second + smoothing) / q_total;
    if (pi == qi) continue;  // also both 0
    if (pi == 0.0 || qi == 0.0) return kInf;
    psi += (pi - qi) * std::log(pi / qi);
  }
  return std::max(0.0, psi);
}

double jensen_shannon_distance(const std::map<std::string, double>& p, const std::map<std::string, double>& q) {
  const auto counts = joint_counts(p, q, "jensen_shannon_distance");
  double p_total = 0.0, q_total = 0.0;
  for (const auto& [label, pq] : counts) {
    p_total += pq.first;
    q_total += pq.second;
  }
  if (!(p_total > 0.0) && !(q_total > 0.0)) return 0.0;
  if (!(p_total > 0.0) || !(q_total > 0.0)) return std::sqrt(std::log(2.0));
  // JS = (KL(p||m) + KL(q||m)) / 2 with m the mean: every m_i > 0 where p_i or q_i is.
  double js = 0.0;
  for (const auto& [label, pq] : counts) {
    const double pi = pq.first / p_total, qi = pq.second / q_total, mi = (pi + qi) / 2;
    if (pi > 0.0) js += pi * std::log(pi / mi) / 2;
    if (qi > 0.0) js += qi * std::log(qi / mi) / 2;
  }
  return std::sqrt(std::max(0.0, js));
}

double label_chi_square_p(const std::map<std::string, double>& p, const std::map<std::string, double>& q) {
  const auto counts = joint_counts(p, q, "label_chi_square_p");
  double p_total = 0.0, q_total = 0.0;
  size_t labels = 0;
  for (const auto& [label, pq] : counts) {
    p_total += pq.first;
    q_total += pq.second;
    if (pq.first + pq.second > 0.0) ++labels;
  }
  if (labels < 2 || !(p_total > 0.0) || !(q_total > 0.0)) return 1.0;
  const double total = p_total + q_total;
  double x2 = 0.0;
  for (const auto& [label, pq] : counts) {
    const double column = pq.first + pq.second;
    if (!(column > 0.0)) continue;
    const double ep = p_total * column / total, eq = q_total * column / total;
    x2 += (pq.first - ep) * (pq.first - ep) / ep + (pq.second - eq) * (pq.second - eq) / eq;
  }
  return chi2_sf(x2, static_cast<double>(labels - 1));
}

}  // namespace veer::stats
