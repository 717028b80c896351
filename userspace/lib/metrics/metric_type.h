// The metric types of the Prometheus text exposition format, shared by the
// parser of scraped metrics (prom_text.h: any of them) and veer's own
// registry (metrics_registry.h: counter, gauge and histogram only).
#pragma once

namespace veer::prom {

enum class MetricType { Counter, Gauge, Histogram, Summary, Untyped };
// The word of a "# TYPE" line: "counter", "gauge", "histogram", "summary", "untyped".
const char* to_string(MetricType type);

}  // namespace veer::prom
