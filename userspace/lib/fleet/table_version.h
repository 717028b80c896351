// A table version: what every node of a fleet needs to build the identical
// slot table of one service, as the leader writes it to etcd (one key per
// service, written in one transaction with the version number it carries).
//
// The table itself is published, not a recipe: with three or more variants
// `rebalance` depends on the path of weights a table went through, so a node
// that joined late could not derive it from the weights alone. What is
// published is the variant owning each slot (VEER_SLOTS of them, a nibble
// each: 5,000 bytes, 6,668 in base64); a slot's backend follows from its
// variant, the variant's backends (the same on every node: the service
// definition's digest says so) and which of them drain, by the same
// highest-random-weight pick a single node makes (`assign_backends`).
//
// A checksum (FNV-1a 64 over every field) guards the record against a
// truncated or mangled value, and a node checks that the owners it decoded
// give exactly the published weights before it builds anything.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tables/slot_table.h"

namespace veer::fleet {

inline constexpr int kTableVersionFormat = 1;
inline constexpr size_t kMaxCauseLength = 256;
inline constexpr size_t kMaxNodeNameLength = 253;  // a DNS name, as hostnames are

class TableVersionError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct TableVersion {
  uint64_t version = 0;        // 1, 2, ... per service; never reused
  std::string service;
  std::string definition;      // definition_digest() of the service it was built for
  unsigned stable = 0;         // variant index
  std::vector<uint32_t> weights_bp;            // per variant, sum VEER_WEIGHT_TOTAL
  std::vector<std::vector<uint8_t>> draining;  // per variant: indexes of its draining backends, ascending
  std::vector<uint8_t> owners;                 // per slot: the variant index that owns it (VEER_SLOTS)
  std::string cause;           // "weights", "switch", "drain", "rollout step 3/7", "abort: ..."
  std::string writer;          // the node that wrote it
  int64_t at_ms = 0;           // the writer's Unix time
  bool operator==(const TableVersion&) const = default;
};

// The version record of TABLE (its variant per slot) with the fields given.
// Throws TableVersionError if the table does not hold exactly WEIGHTS_BP.
TableVersion make_table_version(uint64_t version, std::string service, std::string definition,
                                const SlotTable& table, unsigned stable, std::vector<uint32_t> weights_bp,
                                std::vector<std::vector<uint8_t>> draining, std::string cause,
                                std::string writer, int64_t at_ms);

// FNV-1a 64 over every field but the checksum itself, as 16 hex digits.
std::string table_version_checksum(const TableVersion& v);

// The etcd value: one JSON object with "format", the fields above, "owners"
// packed (two slots a byte, base64) and "checksum".
nlohmann::json to_json(const TableVersion& v);
std::string table_version_to_string(const TableVersion& v);

// Reads and checks a record: every field present and in range, the owners
// decode to VEER_SLOTS variants that hold exactly weights_bp, the checksum
// matches. Throws TableVersionError naming the first thing wrong; nothing
// is half-read.
TableVersion table_version_from_json(const nlohmann::json& j);
TableVersion table_version_from_string(const std::string& text);

// The slot table of V for this node: owners as published, backends picked
// from BACKENDS (the service's, from this node's config) with V's draining
// flags. Throws TableVersionError if BACKENDS does not fit V (another number
// of variants, a draining index beyond a variant's backends, a weighted
// variant without a backend).
SlotTable build_table_from_version(const TableVersion& v, const VariantBackends& backends, uint32_t seed);

}  // namespace veer::fleet
