#include "fleet/definition_digest.h"

#include <cstdio>

#include "fleet/encoding.h"

namespace veer::fleet {
namespace {

// Every bit of a double (std::to_string keeps six decimals: 1e-7 would equal 0).
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

void add_optional(Fnv1a64& h, const std::optional<double>& v) {
  h.u64(v.has_value());
  if (v) h.str(num(*v));
}

void add_gates(Fnv1a64& h, const std::vector<GateConfig>& gates) {
  h.u64(gates.size());
  for (const auto& g : gates) {
    h.str(g.name).str(g.metric).str(to_string(g.source));
    add_optional(h, g.max);
    add_optional(h, g.min);
    h.u64(g.min_samples).u64(g.relative).str(g.series).str(g.label).str(g.histogram).str(num(g.smoothing));
  }
}

void add_rollout(Fnv1a64& h, const std::optional<RolloutConfig>& rollout) {
  h.u64(rollout.has_value());
  if (!rollout) return;
  const RolloutConfig& r = *rollout;
  h.str(to_string(r.strategy)).u64(static_cast<uint64_t>(r.interval.count())).u64(r.failure_limit);
  h.str(r.canary).u64(r.steps.size());
  for (const auto& s : r.steps) {
    h.u64(static_cast<uint64_t>(s.kind)).u64(s.weight_bp).u64(s.pause.has_value());
    if (s.pause) h.u64(static_cast<uint64_t>(s.pause->count()));
  }
  add_gates(h, r.gates);
  h.str(r.active).str(r.preview).u64(r.pre_promotion.has_value());
  if (r.pre_promotion) {
    h.u64(r.pre_promotion->requests).str(r.pre_promotion->path).u64(static_cast<uint64_t>(r.pre_promotion->timeout.count()));
    add_gates(h, r.pre_promotion->gates);
  }
  h.u64(r.auto_promote).u64(r.post_promotion.has_value());
  if (r.post_promotion) {
    h.u64(static_cast<uint64_t>(r.post_promotion->duration.count()));
    add_gates(h, r.post_promotion->gates);
  }
  h.str(r.metric.name).str(to_string(r.metric.kind));
  h.str(num(r.alpha)).str(num(r.power)).str(num(r.min_detectable_effect));
}

}  // namespace

std::string definition_digest(const ServiceConfig& s, uint32_t hash_seed) {
  Fnv1a64 h;
  h.str("veer service definition 1").u64(hash_seed);
  h.str(s.name).str(s.vip.to_string()).u64(s.port).str(to_string(s.protocol)).str(to_string(s.affinity));
  h.u64(s.variants.size());
  for (const auto& v : s.variants) {
    h.str(v.name).u64(v.backends.size());
    for (const auto& b : v.backends) h.str(b.to_string());
  }
  add_rollout(h, s.rollout);
  return h.hex();
}

}  // namespace veer::fleet
