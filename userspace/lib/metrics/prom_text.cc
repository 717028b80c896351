// Prometheus text exposition format parser and gate helpers; see
// metrics/prom_text.h. Hand-written cursor parser over string_views: the input
// is copied only into the resulting names, labels and help strings, and all
// work is linear in the input size (bounded by ParseLimits::max_bytes).
#include "metrics/prom_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iterator>
#include <limits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>

namespace veer::prom {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

bool is_blank(char c) { return c == ' ' || c == '\t'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
bool is_label_start(char c) { return is_name_start(c) && c != ':'; }
bool is_label_char(char c) { return is_name_char(c) && c != ':'; }

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// A float as Go's strconv.ParseFloat reads it in exposition values:
// decimal with optional sign and exponent, Inf/+Inf/-Inf/NaN in any case.
std::optional<double> parse_float(std::string_view token) {
  if (token.empty()) return std::nullopt;
  bool negative = false;
  if (token.front() == '+' || token.front() == '-') {
    negative = token.front() == '-';
    token.remove_prefix(1);
    if (token.empty() || token.front() == '+' || token.front() == '-') return std::nullopt;
  }
  double value = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
  // Out-of-range decimal values (1e999) saturate like ParseFloat does.
  if (ec == std::errc::result_out_of_range && end == token.data() + token.size()) {
    const auto e = token.find_first_of("eE");
    const bool tiny = e != std::string_view::npos && e + 1 < token.size() && token[e + 1] == '-';
    value = tiny ? 0.0 : kInf;
  } else if (ec != std::errc() || end != token.data() + token.size()) {
    return std::nullopt;
  }
  return negative ? -value : value;
}

std::optional<int64_t> parse_timestamp(std::string_view token) {
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
  if (ec != std::errc() || end != token.data() + token.size()) return std::nullopt;
  return value;
}

struct LineError {
  std::string message;
};

// One sample line: name [{labels}] value [timestamp]. Returns the sample or
// the reason it was rejected.
std::variant<Sample, LineError> parse_sample(std::string_view line, std::size_t max_labels) {
  std::size_t i = 0;
  const auto skip_blanks = [&] {
    while (i < line.size() && is_blank(line[i])) ++i;
  };
  Sample sample;
  if (!is_name_start(line[i])) return LineError{"invalid metric name"};
  const std::size_t name_begin = i;
  while (i < line.size() && is_name_char(line[i])) ++i;
  sample.name.assign(line.substr(name_begin, i - name_begin));
  skip_blanks();
  if (i < line.size() && line[i] == '{') {
    ++i;
    for (;;) {
      skip_blanks();
      if (i >= line.size()) return LineError{"unterminated label set"};
      if (line[i] == '}') break;
      if (!is_label_start(line[i])) return LineError{"invalid label name"};
      const std::size_t label_begin = i;
      while (i < line.size() && is_label_char(line[i])) ++i;
      std::string label_name(line.substr(label_begin, i - label_begin));
      skip_blanks();
      if (i >= line.size() || line[i] != '=') return LineError{"expected '=' after label name '" + label_name + "'"};
      ++i;
      skip_blanks();
      if (i >= line.size() || line[i] != '"') return LineError{"expected '\"' to open the value of label '" + label_name + "'"};
      ++i;
      std::string value;
      bool closed = false;
      while (i < line.size()) {
        const char c = line[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c != '\\') {
          value.push_back(c);
          continue;
        }
        if (i >= line.size()) break;
        const char e = line[i++];
        if (e == '\\' || e == '"') {
          value.push_back(e);
        } else if (e == 'n') {
          value.push_back('\n');
        } else {
          return LineError{std::string("invalid escape '\\") + e + "' in the value of label '" + label_name + "'"};
        }
      }
      if (!closed) return LineError{"unterminated value of label '" + label_name + "'"};
      if (!valid_utf8(value)) return LineError{"value of label '" + label_name + "' is not valid UTF-8"};
      if (sample.labels.size() >= max_labels) return LineError{"more than " + std::to_string(max_labels) + " labels"};
      if (!sample.labels.emplace(std::move(label_name), std::move(value)).second)
        return LineError{"duplicate label name"};
      skip_blanks();
      if (i < line.size() && line[i] == ',') {
        ++i;
        continue;
      }
      if (i < line.size() && line[i] == '}') break;
      return LineError{"expected ',' or '}' in label set"};
    }
    ++i;  // the '}'
  } else if (i < line.size() && i == name_begin + sample.name.size()) {
    return LineError{"invalid character in metric name"};
  }
  skip_blanks();
  const auto token = [&] {
    const std::size_t begin = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    return line.substr(begin, i - begin);
  };
  const std::string_view value_token = token();
  if (value_token.empty()) return LineError{"missing value"};
  const auto value = parse_float(value_token);
  if (!value) return LineError{"invalid value '" + std::string(value_token.substr(0, 64)) + "'"};
  sample.value = *value;
  skip_blanks();
  const std::string_view timestamp_token = token();
  if (!timestamp_token.empty()) {
    const auto ts = parse_timestamp(timestamp_token);
    if (!ts) return LineError{"invalid timestamp '" + std::string(timestamp_token.substr(0, 64)) + "'"};
    sample.timestamp_ms = *ts;
  }
  skip_blanks();
  if (i != line.size()) return LineError{"unexpected text after the timestamp"};
  return sample;
}

std::optional<MetricType> parse_type(std::string_view word) {
  if (word == "counter") return MetricType::Counter;
  if (word == "gauge") return MetricType::Gauge;
  if (word == "histogram") return MetricType::Histogram;
  if (word == "summary") return MetricType::Summary;
  if (word == "untyped" || word == "unknown") return MetricType::Untyped;
  return std::nullopt;
}

std::string unescape_help(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == '\\' || s[i + 1] == 'n')) {
      out.push_back(s[i + 1] == 'n' ? '\n' : '\\');
      ++i;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string series_key(std::string_view name, const Labels& labels, std::string_view skip_label = {}) {
  std::string key(name);
  for (const auto& [k, v] : labels) {
    if (k == skip_label) continue;
    key.push_back('\xff');  // never in valid UTF-8, so keys cannot collide
    key += k;
    key.push_back('\xfe');
    key += v;
  }
  return key;
}

class Parser {
 public:
  Parser(const ParseLimits& limits, ParseResult& result) : limits_(limits), result_(result) {}

  // false: a limit was exceeded; the caller stops.
  bool line(std::size_t number, std::string_view text) {
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    std::size_t first = 0;
    while (first < text.size() && is_blank(text[first])) ++first;
    text.remove_prefix(first);
    if (text.empty()) return true;
    if (text.front() == '#') return comment(number, text);
    if (text.find('\0') != std::string_view::npos) return error(number, "NUL byte in line");
    if (!valid_utf8(text)) return error(number, "line is not valid UTF-8");
    auto parsed = parse_sample(text, limits_.max_labels_per_sample);
    if (auto* e = std::get_if<LineError>(&parsed)) return error(number, e->message);
    return add_sample(number, std::move(std::get<Sample>(parsed)));
  }

  void fatal(std::size_t number, std::string message) {
    result_.ok = false;
    result_.families.clear();
    record(number, std::move(message));
  }

 private:
  struct FamilyState {
    std::size_t index;
    bool typed = false;
    bool has_samples = false;
  };

  bool error(std::size_t number, std::string message) {
    record(number, std::move(message));
    return true;
  }
  void record(std::size_t number, std::string message) {
    ++result_.error_count;
    if (result_.errors.size() < limits_.max_errors_kept) result_.errors.push_back({number, std::move(message)});
  }

  bool comment(std::size_t number, std::string_view text) {
    // "# HELP name text" / "# TYPE name type"; any other comment is ignored.
    text.remove_prefix(1);
    std::size_t i = 0;
    while (i < text.size() && is_blank(text[i])) ++i;
    if (i == 0) return true;  // "#HELP" is an ordinary comment
    std::string_view rest = text.substr(i);
    const bool help = rest.substr(0, 4) == "HELP" && (rest.size() == 4 || is_blank(rest[4]));
    const bool type = rest.substr(0, 4) == "TYPE" && (rest.size() == 4 || is_blank(rest[4]));
    if (!help && !type) return true;
    if (text.find('\0') != std::string_view::npos) return error(number, "NUL byte in line");
    if (!valid_utf8(text)) return error(number, "line is not valid UTF-8");
    rest.remove_prefix(4);
    while (!rest.empty() && is_blank(rest.front())) rest.remove_prefix(1);
    std::size_t n = 0;
    while (n < rest.size() && is_name_char(rest[n])) ++n;
    if (n == 0 || !is_name_start(rest[0]) || (n < rest.size() && !is_blank(rest[n])))
      return error(number, std::string(help ? "HELP" : "TYPE") + " line with an invalid metric name");
    const std::string name(rest.substr(0, n));
    rest.remove_prefix(n);
    while (!rest.empty() && is_blank(rest.front())) rest.remove_prefix(1);
    if (help) {
      auto [state, fine] = family(name);
      if (!fine) return false;
      Family& f = result_.families[state->index];
      if (!f.help.empty()) return error(number, "second HELP line for '" + name + "'");
      f.help = unescape_help(rest);
      return true;
    }
    while (!rest.empty() && is_blank(rest.back())) rest.remove_suffix(1);
    const auto parsed_type = parse_type(rest);
    if (!parsed_type) return error(number, "unknown metric type '" + std::string(rest.substr(0, 32)) + "'");
    auto [state, fine] = family(name);
    if (!fine) return false;
    if (state->typed) return error(number, "second TYPE line for '" + name + "'");
    if (state->has_samples) return error(number, "TYPE line for '" + name + "' after its samples");
    state->typed = true;
    result_.families[state->index].type = *parsed_type;
    return true;
  }

  // The family of `name`, created if absent; .second false when the family
  // limit was hit (fatal).
  std::pair<FamilyState*, bool> family(const std::string& name) {
    auto it = index_.find(name);
    if (it != index_.end()) return {&it->second, true};
    if (result_.families.size() >= limits_.max_families) {
      fatal(0, "more than " + std::to_string(limits_.max_families) + " metric families");
      return {nullptr, false};
    }
    result_.families.push_back(Family{name, MetricType::Untyped, {}, {}});
    auto [inserted, _] = index_.emplace(name, FamilyState{result_.families.size() - 1});
    return {&inserted->second, true};
  }

  static constexpr unsigned bit(MetricType t) { return 1u << static_cast<unsigned>(t); }

  // The family `name` if a TYPE line declared it with one of `types` (a mask of bit()).
  FamilyState* typed_family(std::string_view name, unsigned types) {
    auto it = index_.find(std::string(name));
    if (it == index_.end() || !it->second.typed) return nullptr;
    return (bit(result_.families[it->second.index].type) & types) ? &it->second : nullptr;
  }

  // Which family a sample name belongs to (see Family in the header).
  FamilyState* owner(std::string_view name) {
    using MT = MetricType;
    struct Suffix {
      std::string_view text;
      unsigned types;
    };
    static constexpr Suffix suffixes[] = {{"_bucket", bit(MT::Histogram)},
                                          {"_sum", bit(MT::Histogram) | bit(MT::Summary)},
                                          {"_count", bit(MT::Histogram) | bit(MT::Summary)},
                                          {"_total", bit(MT::Counter)}};
    for (const auto& s : suffixes)
      if (ends_with(name, s.text))
        if (auto* f = typed_family(name.substr(0, name.size() - s.text.size()), s.types)) return f;
    return nullptr;
  }

  bool add_sample(std::size_t number, Sample sample) {
    FamilyState* state = owner(sample.name);
    if (!state) {
      auto [exact, fine] = family(sample.name);
      if (!fine) return false;
      state = exact;
    }
    Family& f = result_.families[state->index];
    if (f.type == MetricType::Histogram && sample.name == f.name)
      return error(number, "histogram '" + f.name + "' sample without _bucket/_sum/_count suffix");
    if (f.type == MetricType::Histogram && sample.name == f.name + "_bucket" && !sample.labels.count("le"))
      return error(number, "histogram bucket without an 'le' label");
    if (!series_.insert(series_key(sample.name, sample.labels)).second)
      return error(number, "duplicate series '" + sample.name + "'");
    if (result_.sample_count >= limits_.max_samples) {
      fatal(number, "more than " + std::to_string(limits_.max_samples) + " samples");
      return false;
    }
    ++result_.sample_count;
    state->has_samples = true;
    f.samples.push_back(std::move(sample));
    return true;
  }

  const ParseLimits& limits_;
  ParseResult& result_;
  std::unordered_map<std::string, FamilyState> index_;
  std::unordered_set<std::string> series_;
};

bool is_main_sample(const Family& f, const Sample& s) {
  return s.name == f.name || (f.type == MetricType::Counter && s.name == f.name + "_total");
}

double sum_samples(const Family& family, const LabelMatcher& matcher, std::string_view suffix) {
  double total = 0;
  for (const auto& s : family.samples) {
    const bool wanted = suffix.empty() ? is_main_sample(family, s)
                                       : (s.name.size() == family.name.size() + suffix.size() &&
                                          s.name.starts_with(family.name) && ends_with(s.name, suffix));
    // (name == family.name + suffix, without building the string per sample)
    if (wanted && std::isfinite(s.value) && matches(s.labels, matcher)) total += s.value;
  }
  return total;
}

}  // namespace

const char* to_string(MetricType type) {
  switch (type) {
    case MetricType::Counter: return "counter";
    case MetricType::Gauge: return "gauge";
    case MetricType::Histogram: return "histogram";
    case MetricType::Summary: return "summary";
    case MetricType::Untyped: return "untyped";
  }
  return "untyped";
}

const Family* ParseResult::find(std::string_view name) const {
  for (const auto& f : families)
    if (f.name == name) return &f;
  for (const auto& f : families) {
    if (f.type != MetricType::Counter) continue;
    if (ends_with(name, "_total") && f.name == name.substr(0, name.size() - 6)) return &f;
    if (f.name.size() == name.size() + 6 && f.name.starts_with(name) && ends_with(f.name, "_total")) return &f;
  }
  return nullptr;
}

ParseResult parse_prometheus_text(std::string_view text, const ParseLimits& limits) {
  ParseResult result;
  Parser parser(limits, result);
  if (text.size() > limits.max_bytes) {
    parser.fatal(0, "input of " + std::to_string(text.size()) + " bytes exceeds the limit of " +
                        std::to_string(limits.max_bytes));
    return result;
  }
  std::size_t number = 0;
  while (!text.empty()) {
    ++number;
    const std::size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (!parser.line(number, line)) break;
  }
  return result;
}

bool matches(const Labels& labels, const LabelMatcher& matcher) {
  for (const auto& [name, value] : matcher) {
    const auto it = labels.find(name);
    if (it == labels.end() ? !value.empty() : it->second != value) return false;
  }
  return true;
}

std::optional<double> histogram_quantile(const Family& histogram, double q, const LabelMatcher& matcher) {
  if (histogram.type != MetricType::Histogram || !(q >= 0.0 && q <= 1.0)) return std::nullopt;
  const std::string bucket_name = histogram.name + "_bucket";
  std::map<double, double> cumulative;  // upper bound -> count summed over matching series
  for (const auto& s : histogram.samples) {
    if (s.name != bucket_name || !matches(s.labels, matcher)) continue;
    const auto le = s.labels.find("le");
    if (le == s.labels.end()) return std::nullopt;
    const auto bound = parse_float(le->second);
    if (!bound || std::isnan(*bound)) return std::nullopt;
    if (!std::isfinite(s.value) || s.value < 0) return std::nullopt;
    cumulative[*bound] += s.value;
  }
  if (cumulative.size() < 2 || cumulative.rbegin()->first != kInf) return std::nullopt;
  std::vector<std::pair<double, double>> buckets(cumulative.begin(), cumulative.end());
  // Prometheus' ensureMonotonic: carry the maximum forward.
  for (std::size_t i = 1; i < buckets.size(); ++i) buckets[i].second = std::max(buckets[i].second, buckets[i - 1].second);
  const double observations = buckets.back().second;
  if (!(observations > 0)) return std::nullopt;
  double rank = q * observations;
  if (rank == 0) {
    // q = 0: the lower bound of the first bucket holding an observation.
    const auto first = std::find_if(buckets.begin(), buckets.end(), [](const auto& bk) { return bk.second > 0; });
    if (first == buckets.begin()) return std::min(0.0, first->first);
    return std::prev(first)->first;
  }
  const auto b = static_cast<std::size_t>(
      std::find_if(buckets.begin(), buckets.end(), [rank](const auto& bk) { return bk.second >= rank; }) -
      buckets.begin());
  if (b == buckets.size() - 1) return buckets[b - 1].first;  // in the +Inf bucket
  if (b == 0 && buckets[0].first <= 0) return buckets[0].first;
  double start = 0, count = buckets[b].second;
  const double end = buckets[b].first;
  if (b > 0) {
    start = buckets[b - 1].first;
    count -= buckets[b - 1].second;
    rank -= buckets[b - 1].second;
  }
  return start + (end - start) * (rank / count);
}

Family counter_delta(const Family& before, const Family& after) {
  Family delta{after.name, after.type, after.help, {}};
  const bool grouped = after.type == MetricType::Histogram || after.type == MetricType::Summary;
  std::unordered_map<std::string, double> previous;
  for (const auto& s : before.samples) previous.emplace(series_key(s.name, s.labels), s.value);
  const auto previous_value = [&](const Sample& s) -> std::optional<double> {
    const auto it = previous.find(series_key(s.name, s.labels));
    if (it == previous.end() || !std::isfinite(it->second)) return std::nullopt;
    return it->second;
  };
  // For histograms and summaries: which series (labels without le) reset.
  std::unordered_set<std::string> reset_groups;
  if (grouped) {
    for (const auto& s : after.samples) {
      if (!ends_with(s.name, "_bucket") && !ends_with(s.name, "_count")) continue;
      const auto prev = previous_value(s);
      if (prev && s.value < *prev) reset_groups.insert(series_key("", s.labels, "le"));
    }
  }
  for (const auto& s : after.samples) {
    const bool is_sum = grouped && ends_with(s.name, "_sum") && s.name != after.name;
    const bool copied = after.type == MetricType::Gauge ||
                        (after.type == MetricType::Summary && s.name == after.name);
    if (copied) {
      delta.samples.push_back(s);
      continue;
    }
    if (!std::isfinite(s.value) || (!is_sum && s.value < 0)) continue;
    const auto prev = previous_value(s);
    const bool reset = grouped ? reset_groups.count(series_key("", s.labels, "le")) > 0 : (prev && s.value < *prev);
    Sample d = s;
    d.value = (reset || !prev) ? s.value : s.value - *prev;
    delta.samples.push_back(std::move(d));
  }
  return delta;
}

Family histogram_delta(const Family& before, const Family& after) { return counter_delta(before, after); }

double counter_sum(const Family& family, const LabelMatcher& matcher) { return sum_samples(family, matcher, {}); }
double histogram_count(const Family& family, const LabelMatcher& matcher) {
  return sum_samples(family, matcher, "_count");
}
double histogram_sum(const Family& family, const LabelMatcher& matcher) {
  return sum_samples(family, matcher, "_sum");
}

double counter_increase(const Family& before, const Family& after, const LabelMatcher& matcher) {
  return counter_sum(counter_delta(before, after), matcher);
}

std::map<std::string, double> label_distribution(const Family& family, const std::string& label_name,
                                                 const LabelMatcher& matcher) {
  std::map<std::string, double> distribution;
  for (const auto& s : family.samples) {
    if (!is_main_sample(family, s) || !std::isfinite(s.value) || s.value < 0 || !matches(s.labels, matcher)) continue;
    const auto it = s.labels.find(label_name);
    if (it != s.labels.end()) distribution[it->second] += s.value;
  }
  return distribution;
}

}  // namespace veer::prom
