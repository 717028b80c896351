// The slot-table builder (SPEC §2.3, §2.4, §2.6). Pure functions: no kernel.
//
// A table has VEER_SLOTS = 10,000 slots, so a weight in basis points is
// exactly the number of slots a variant owns (share error 0, resolution 0.01 %).
// Each slot also names the variant's backend for keys that land on it
// (highest-random-weight over the variant's backends that are not draining),
// so a backend change moves only that backend's slots. If every backend of a
// variant is draining, its drain flags are ignored (the variant keeps serving
// with all its backends: emptying a variant is a weight change, not a drain).
//
// Variant ownership follows a seeded rank of the slots (see slot_table.cc):
// the stable variant gives up its highest-ranked slots first, other variants
// their lowest-ranked; non-stable gainers take the highest-ranked released
// slots, the stable variant the rest. Invalid input (not 1..8 variants,
// weights not summing to 10000, stable out of range, a weighted variant with
// no backend) throws std::invalid_argument.
#pragma once
#include <cstdint>
#include <vector>

#include "config/net.h"

namespace veer {

struct SlotTable {
  std::vector<veer_slot> slots = std::vector<veer_slot>(VEER_SLOTS, veer_slot{VEER_VARIANT_NONE, 0});
  bool operator==(const SlotTable& o) const;
};

struct BackendSpec {
  Endpoint endpoint;
  bool draining = false;
};
using VariantBackends = std::vector<std::vector<BackendSpec>>;  // [variant][backend]

// Table for `weights_bp` (per variant, sum VEER_WEIGHT_TOTAL) built from the
// all-stable table: a function of (weights, stable, backends, seed) only.
SlotTable build_table(const std::vector<uint32_t>& weights_bp, unsigned stable,
                      const VariantBackends& backends, uint32_t seed);

// Minimal-change update of `current` to `weights_bp`: only the slots of
// variants that lose weight move, exactly |Δ| slots, and a variant whose
// weight rises keeps every slot it had (monotone). With two variants the
// result equals build_table(weights_bp, ...) whatever the path.
SlotTable rebalance(const SlotTable& current, const std::vector<uint32_t>& weights_bp,
                    unsigned stable, const VariantBackends& backends, uint32_t seed);

// Re-pick backends (after a drain or a backend list change), variants unchanged.
void assign_backends(SlotTable& table, const VariantBackends& backends, uint32_t seed);

// Applied weights read back from a table: slots per variant (basis points).
std::vector<uint32_t> count_weights(const SlotTable& table, unsigned n_variants);

}  // namespace veer
