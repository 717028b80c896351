#include "fleet/table_change.h"

#include <algorithm>
#include <stdexcept>

namespace veer::fleet {

VariantBackends variant_backends(const ServiceConfig& svc) {
  VariantBackends out(svc.variants.size());
  for (size_t v = 0; v < svc.variants.size(); ++v)
    for (const auto& ep : svc.variants[v].backends) out[v].push_back(BackendSpec{ep, false});
  return out;
}

namespace {

// The next table of SVC with CHANGE applied, numbered VERSION, from CURRENT's table (the minimal-change
// rebalance) or, without CURRENT, from BASE.
TableVersion derive_table_version(uint64_t version, const TableVersion* current, const BaseTable& base,
                                  const ServiceConfig& svc, const std::string& definition, uint32_t seed,
                                  const TableChange& change, const std::string& writer, int64_t at_ms) {
  const size_t n = svc.variants.size();
  const VariantBackends backends = variant_backends(svc);
  SlotTable from;
  unsigned stable = 0;
  std::vector<std::vector<uint8_t>> draining;
  if (current) {
    from = build_table_from_version(*current, backends, seed);  // checks that it fits this definition
    stable = current->stable;
    draining = current->draining;
  } else {
    from = base.table;
    stable = base.stable;
    draining = base.draining;
    draining.resize(n);
  }
  const std::vector<uint32_t> weights = change.weights_bp ? *change.weights_bp : count_weights(from, n);
  if (weights.size() != n)
    throw std::invalid_argument("weights name " + std::to_string(weights.size()) + " variants, the service has " +
                                std::to_string(n));
  if (change.stable) {
    if (*change.stable >= n) throw std::invalid_argument("stable variant " + std::to_string(*change.stable) +
                                                         " out of range");
    stable = *change.stable;
  }
  for (const auto& d : change.drains) {
    if (d.variant >= n || d.backend >= backends[d.variant].size())
      throw std::invalid_argument("drain: backend " + std::to_string(d.backend) + " of variant " +
                                  std::to_string(d.variant) + " does not exist");
    auto& list = draining[d.variant];
    const auto index = static_cast<uint8_t>(d.backend);
    const auto at = std::lower_bound(list.begin(), list.end(), index);
    const bool present = at != list.end() && *at == index;
    if (d.draining && !present) list.insert(at, index);
    if (!d.draining && present) list.erase(at);
  }
  VariantBackends with_drains = backends;
  for (size_t v = 0; v < n; ++v)
    for (uint8_t b : draining[v]) with_drains[v].at(b).draining = true;
  const SlotTable next = rebalance(from, weights, stable, with_drains, seed);
  return make_table_version(version, svc.name, definition, next, stable, weights, std::move(draining), change.cause,
                            writer, at_ms);
}

void check_service(const std::optional<TableVersion>& current, const ServiceConfig& svc) {
  if (current && current->service != svc.name)
    throw std::invalid_argument("the current version is of service '" + current->service + "', not '" + svc.name +
                                "'");
}

}  // namespace

TableVersion next_table_version(const std::optional<TableVersion>& current, const BaseTable& base,
                                const ServiceConfig& svc, const std::string& definition, uint32_t seed,
                                const TableChange& change, const std::string& writer, int64_t at_ms) {
  check_service(current, svc);
  return derive_table_version(current ? current->version + 1 : 1, current ? &*current : nullptr, base, svc,
                              definition, seed, change, writer, at_ms);
}

TableVersion adopted_table_version(const std::optional<TableVersion>& current, const BaseTable& base,
                                   const ServiceConfig& svc, const std::string& definition, uint32_t seed,
                                   const TableChange& change, const std::string& writer, int64_t at_ms) {
  check_service(current, svc);
  const bool same = current && current->definition == definition;
  return derive_table_version(current ? current->version + 1 : 1, same ? &*current : nullptr, base, svc, definition,
                              seed, change, writer, at_ms);
}

}  // namespace veer::fleet
