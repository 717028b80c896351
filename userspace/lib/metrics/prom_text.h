// Parser of the Prometheus text exposition format (version 0.0.4,
// https://prometheus.io/docs/instrumenting/exposition_formats/) and the
// helpers the gates need: histogram quantiles over a window, counter
// increases with reset handling, and the label distribution of a counter
// family (the input of prediction_kl).
//
// The input comes from the network (a variant's metrics_url), so it is
// treated as hostile: the size of the input, the number of samples, families
// and labels per sample are bounded (ParseLimits); a bad line is rejected
// with an error entry (line number, message) and parsing goes on; exceeding
// a limit is fatal (ok = false, no families: partial data could make a gate
// pass on the wrong numbers). No exception leaves parse_prometheus_text or
// the helpers (std::bad_alloc aside).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/metric_type.h"

namespace veer::prom {


using Labels = std::map<std::string, std::string>;

struct Sample {
  std::string name;  // the full sample name, e.g. "latency_seconds_bucket"
  Labels labels;     // includes "le" / "quantile" where present
  double value = 0;  // may be ±Inf or NaN as exposed
  std::optional<int64_t> timestamp_ms;
};

// A metric family: the samples of one `# TYPE` (histogram: name_bucket,
// name_sum, name_count; summary: name{quantile=...}, name_sum, name_count;
// counter: name, or name_total when the TYPE line names the family without
// the suffix). Samples without a TYPE line form an Untyped family each.
struct Family {
  std::string name;
  MetricType type = MetricType::Untyped;
  std::string help;
  std::vector<Sample> samples;  // in input order
};

struct ParseError {
  std::size_t line;  // 1-based; 0 for errors about the whole input
  std::string message;
};

struct ParseLimits {
  std::size_t max_bytes = 4u << 20;           // whole input
  std::size_t max_samples = 200'000;          // over all families
  std::size_t max_families = 20'000;
  std::size_t max_labels_per_sample = 64;     // a longer label set rejects the line
  std::size_t max_errors_kept = 100;          // more are counted in error_count only
};

struct ParseResult {
  bool ok = true;                 // false: a limit was exceeded, families is empty
  std::vector<Family> families;   // in order of first appearance
  std::vector<ParseError> errors; // at most max_errors_kept entries
  std::size_t error_count = 0;    // rejected lines (+1 for a fatal error)
  std::size_t sample_count = 0;

  // The family named `name`; also finds a counter family "foo" when asked
  // for "foo_total" and vice versa. nullptr if absent.
  const Family* find(std::string_view name) const;
};

ParseResult parse_prometheus_text(std::string_view text, const ParseLimits& limits = {});

// ---- Helpers for gates ---------------------------------------------------

// Equality on each listed label; an empty matcher matches every sample. A
// matcher value "" also matches a sample without that label (as in PromQL).
using LabelMatcher = std::map<std::string, std::string>;
bool matches(const Labels& labels, const LabelMatcher& matcher);

// Prometheus' histogram_quantile(): the cumulative _bucket samples of all
// series matching `matcher` are summed per `le`, and the quantile is found
// by linear interpolation inside the bucket holding rank q * count (the
// lowest bucket starts at 0 if its bound is positive; a quantile in the +Inf
// bucket returns the highest finite bound). Like Prometheus, cumulative
// counts that decrease (float noise) are made monotone by carrying the
// maximum forward. nullopt when: q not in [0, 1]; not a histogram; no
// matching buckets; no +Inf bucket; fewer than 2 buckets; no observations
// (count 0); a bucket with an unparsable `le`, or a count that is negative
// or not finite. Only families declared `# TYPE name histogram` qualify.
// q = 0 gives the lower bound of the first bucket holding an observation.
std::optional<double> histogram_quantile(const Family& histogram, double q, const LabelMatcher& matcher = {});

// Per-series increase from `before` to `after` (two scrapes of the same
// family), for counters and the _bucket/_sum/_count samples of histograms
// and summaries. A series that went down was reset and counts from 0, so
// its increase is its `after` value; a series absent from `before` is new
// (increase = after). For histograms and summaries the reset is decided per
// series (labels without `le`) from _count and the buckets, and applies to
// all of the series' samples (_sum may decrease legitimately). Summary
// quantile samples and gauges are not increases: they are copied from
// `after` unchanged. Samples whose value in `after` is not finite, or is
// negative (except _sum, which may be), are dropped. The result has after's
// name, type, help.
Family counter_delta(const Family& before, const Family& after);
// The same function under the name the gates use for histograms: the result
// feeds histogram_quantile for a quantile over the window between scrapes.
Family histogram_delta(const Family& before, const Family& after);

// Sum of the family's main samples (name or name_total; not _bucket, _sum,
// _count) matching `matcher`. Non-finite values are skipped.
double counter_sum(const Family& family, const LabelMatcher& matcher = {});
// Sums of a histogram's / summary's _count and _sum samples matching
// `matcher` (the number of observations and their total). Non-finite skipped.
double histogram_count(const Family& family, const LabelMatcher& matcher = {});
double histogram_sum(const Family& family, const LabelMatcher& matcher = {});

// counter_sum over counter_delta(before, after): the window's increase.
double counter_increase(const Family& before, const Family& after, const LabelMatcher& matcher = {});

// The family's main samples matching `matcher`, summed per value of
// `label_name` (samples without the label are skipped; non-finite or
// negative values are skipped): model_predictions_total{class="cat"} 5 ->
// {"cat": 5}. The input of stats::kl_divergence.
std::map<std::string, double> label_distribution(const Family& family, const std::string& label_name,
                                                 const LabelMatcher& matcher = {});

}  // namespace veer::prom
