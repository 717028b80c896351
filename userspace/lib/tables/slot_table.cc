// Slot tables: which variant (and backend) owns each of the VEER_SLOTS slots.
//
// Variant ownership. Every slot s has a seeded rank: the slots sorted by a
// hash of (seed, s), position 0 being the "highest" rank. A weight change
// releases exactly each losing variant's surplus and hands it to the gaining
// variants:
//   - the stable variant releases its highest-ranked slots first,
//     any other variant its lowest-ranked slots first;
//   - non-stable gainers (config order) take the highest-ranked released
//     slots first, the stable variant takes what is left.
// So a variant that rises never loses a slot (monotone, SPEC §2.4), exactly
// sum(|Δ|)/2 slots move, and with two variants the non-stable one always
// holds the top-w ranked slots: the table is path independent and equals
// build_table(w). Everything is a function of the inputs and the seed only
// (SPEC §2.6).
//
// Backends. A slot's backend is the highest-random-weight choice among the
// variant's backends that are not draining, scored by a hash of (seed, slot,
// backend endpoint): it depends on the endpoint, not on the list position, so
// draining or removing a backend moves only that backend's slots and adding
// one moves only the slots it wins. If EVERY backend of a variant is
// draining, the drain flags are ignored for that variant (the slots keep
// their variant and its usual backends): a variant with weight must still
// have somewhere to send new flows; emptying it is a weight change.
#include "tables/slot_table.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

extern "C" {
#include "veer/hash.h"
}

namespace veer {

bool SlotTable::operator==(const SlotTable& o) const {
  if (slots.size() != o.slots.size()) return false;
  for (size_t i = 0; i < slots.size(); ++i)
    if (slots[i].variant != o.slots[i].variant || slots[i].backend != o.slots[i].backend) return false;
  return true;
}

namespace {

// Domain separators, so the rank and backend hashes are unrelated to each
// other and to the packet hash even with the same seed.
constexpr uint32_t kRankDomain = 0x72616e6bu;     // "rank"
constexpr uint32_t kBackendDomain = 0x6261636bu;  // "back"

uint32_t slot_rank_hash(uint32_t seed, uint32_t slot) {
  uint32_t h = veer_hash_round(seed, kRankDomain);
  h = veer_hash_round(h, slot);
  return veer_hash_final(h, 8);
}

// The seeded slot order: by_rank[r] = the slot at rank r (0 = highest). Cached for the last seed: the order is
// the same for every service of a node, so a weight change sorts nothing.
struct SlotOrder {
  uint32_t seed = 0;
  std::vector<uint32_t> by_rank;
};

const SlotOrder& order_for(uint32_t seed) {
  thread_local SlotOrder cached;
  if (!cached.by_rank.empty() && cached.seed == seed) return cached;
  std::vector<std::pair<uint32_t, uint32_t>> keyed(VEER_SLOTS);
  for (uint32_t s = 0; s < VEER_SLOTS; ++s) keyed[s] = {slot_rank_hash(seed, s), s};
  // Descending hash, ties by slot number: a strict total order.
  std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  cached.by_rank.assign(VEER_SLOTS, 0);
  for (uint32_t r = 0; r < VEER_SLOTS; ++r) cached.by_rank[r] = keyed[r].second;
  cached.seed = seed;
  return cached;
}

void check_inputs(const std::vector<uint32_t>& weights_bp, unsigned stable, const VariantBackends& backends) {
  const size_t n = weights_bp.size();
  if (n == 0 || n > VEER_MAX_VARIANTS)
    throw std::invalid_argument("slot table: 1 to 8 variants needed, got " + std::to_string(n));
  if (stable >= n) throw std::invalid_argument("slot table: stable variant index out of range");
  if (backends.size() != n) throw std::invalid_argument("slot table: backends and weights differ in variant count");
  uint64_t sum = 0;
  for (auto w : weights_bp) sum += w;
  if (sum != VEER_WEIGHT_TOTAL)
    throw std::invalid_argument("slot table: weights sum to " + std::to_string(sum) + " bp, not 10000");
  for (const auto& b : backends)
    if (b.size() > VEER_MAX_BACKENDS) throw std::invalid_argument("slot table: more than 64 backends");
  for (size_t v = 0; v < n; ++v)
    if (weights_bp[v] > 0 && backends[v].empty())
      throw std::invalid_argument("slot table: variant " + std::to_string(v) + " has weight but no backend");
}

// Per-backend hash prefix: the endpoint bytes hashed once, the slot mixed in
// per score, so a table costs one round + final per (slot, backend).
uint32_t backend_prefix(uint32_t seed, const Endpoint& ep) {
  const veer_addr a = ep.ip.to_abi();
  uint32_t h = veer_hash_round(seed, kBackendDomain);
  h = veer_hash_addr(h, &a);
  return veer_hash_round(h, (static_cast<uint32_t>(ep.port) << 8) | static_cast<uint32_t>(ep.ip.family));
}

}  // namespace

void assign_backends(SlotTable& table, const VariantBackends& backends, uint32_t seed) {
  struct Candidate {
    uint32_t prefix;
    uint8_t index;
  };
  std::vector<std::vector<Candidate>> candidates(backends.size());
  for (size_t v = 0; v < backends.size(); ++v) {
    const auto& list = backends[v];
    const bool all_draining = std::all_of(list.begin(), list.end(), [](const auto& b) { return b.draining; });
    for (size_t b = 0; b < list.size() && b < VEER_MAX_BACKENDS; ++b)
      if (!list[b].draining || all_draining)
        candidates[v].push_back({backend_prefix(seed, list[b].endpoint), static_cast<uint8_t>(b)});
  }
  for (uint32_t s = 0; s < table.slots.size(); ++s) {
    veer_slot& slot = table.slots[s];
    if (slot.variant >= candidates.size() || candidates[slot.variant].empty()) {
      slot.backend = 0;
      continue;
    }
    uint32_t best_score = 0;
    uint8_t best = 0;
    bool first = true;
    for (const auto& c : candidates[slot.variant]) {
      const uint32_t score = veer_hash_final(veer_hash_round(c.prefix, s), 28);
      // Ties (rare) go to the lower index: still a pure function.
      if (first || score > best_score) {
        best_score = score;
        best = c.index;
        first = false;
      }
    }
    slot.backend = best;
  }
}

SlotTable rebalance(const SlotTable& current, const std::vector<uint32_t>& weights_bp, unsigned stable,
                    const VariantBackends& backends, uint32_t seed) {
  check_inputs(weights_bp, stable, backends);
  if (current.slots.size() != VEER_SLOTS) throw std::invalid_argument("slot table: wrong size");
  const size_t n = weights_bp.size();
  const SlotOrder& order = order_for(seed);

  // Slots of each variant, highest rank first: one walk in rank order, no
  // sort (a weight change is on the control path the issue times). Slots
  // with no variant, or a variant that no longer exists, start released.
  std::vector<std::vector<uint32_t>> owned(n);
  std::vector<uint8_t> released(VEER_SLOTS, 0);
  for (uint32_t s : order.by_rank) {
    const uint8_t v = current.slots[s].variant;
    if (v < n) owned[v].push_back(s);
    else released[s] = 1;
  }

  SlotTable next = current;
  for (size_t v = 0; v < n; ++v) {
    if (owned[v].size() <= weights_bp[v]) continue;
    const size_t surplus = owned[v].size() - weights_bp[v];
    if (v == stable) {
      // Stable gives up its highest-ranked slots: the ones non-stable
      // variants are drawn to, which keeps two-variant tables path independent.
      for (size_t i = 0; i < surplus; ++i) released[owned[v][i]] = 1;
      owned[v].erase(owned[v].begin(), owned[v].begin() + static_cast<long>(surplus));
    } else {
      // A shrinking non-stable variant gives up its lowest-ranked slots.
      for (size_t i = owned[v].size() - surplus; i < owned[v].size(); ++i) released[owned[v][i]] = 1;
      owned[v].resize(owned[v].size() - surplus);
    }
  }
  // The released pool, highest rank first (a second walk in rank order).
  std::vector<uint32_t> pool;
  for (uint32_t s : order.by_rank)
    if (released[s]) pool.push_back(s);
  size_t taken = 0;
  auto give = [&](size_t v) {
    const size_t need = weights_bp[v] - owned[v].size();
    for (size_t i = 0; i < need; ++i) next.slots[pool[taken + i]].variant = static_cast<uint8_t>(v);
    taken += need;
  };
  for (size_t v = 0; v < n; ++v)
    if (v != stable && owned[v].size() < weights_bp[v]) give(v);
  if (owned[stable].size() < weights_bp[stable]) give(stable);
  // Counts are exact: the pool is exactly the gainers' need.
  if (taken != pool.size()) throw std::logic_error("slot table: rebalance left slots unassigned");

  assign_backends(next, backends, seed);
  return next;
}

SlotTable build_table(const std::vector<uint32_t>& weights_bp, unsigned stable, const VariantBackends& backends,
                      uint32_t seed) {
  check_inputs(weights_bp, stable, backends);
  SlotTable all_stable;
  for (auto& s : all_stable.slots) s = veer_slot{static_cast<uint8_t>(stable), 0};
  return rebalance(all_stable, weights_bp, stable, backends, seed);
}

std::vector<uint32_t> count_weights(const SlotTable& table, unsigned n_variants) {
  std::vector<uint32_t> counts(n_variants, 0);
  for (const auto& s : table.slots)
    if (s.variant < n_variants) ++counts[s.variant];
  return counts;
}

}  // namespace veer
