#include "fleet/table_version.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <numeric>

#include <nlohmann/json.hpp>

#include "fleet/encoding.h"

namespace veer::fleet {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& what) { throw TableVersionError("table version: " + what); }

// Two slots a byte, the even slot in the low nibble.
std::string pack_owners(const std::vector<uint8_t>& owners) {
  std::string packed((owners.size() + 1) / 2, '\0');
  for (size_t s = 0; s < owners.size(); ++s) {
    const uint8_t nibble = owners[s] & 0x0f;
    packed[s / 2] = static_cast<char>(static_cast<uint8_t>(packed[s / 2]) | (s % 2 ? nibble << 4 : nibble));
  }
  return packed;
}

std::vector<uint8_t> unpack_owners(const std::string& packed) {
  if (packed.size() != VEER_SLOTS / 2)
    fail("owners hold " + std::to_string(packed.size() * 2) + " slots, not " + std::to_string(VEER_SLOTS));
  std::vector<uint8_t> owners(VEER_SLOTS);
  for (size_t s = 0; s < owners.size(); ++s) {
    const auto byte = static_cast<uint8_t>(packed[s / 2]);
    owners[s] = s % 2 ? byte >> 4 : byte & 0x0f;
  }
  return owners;
}

void check_weights(const std::vector<uint32_t>& weights_bp) {
  if (weights_bp.empty() || weights_bp.size() > VEER_MAX_VARIANTS)
    fail("weights_bp must have 1.." + std::to_string(VEER_MAX_VARIANTS) + " variants, has " +
         std::to_string(weights_bp.size()));
  uint64_t sum = 0;
  for (uint32_t w : weights_bp) sum += w;
  if (sum != VEER_WEIGHT_TOTAL) fail("weights_bp sum to " + std::to_string(sum) + ", not 10000");
}

// The owners hold exactly the weights (every slot owned by a variant that exists).
void check_owners(const std::vector<uint8_t>& owners, const std::vector<uint32_t>& weights_bp) {
  if (owners.size() != VEER_SLOTS) fail("owners must name " + std::to_string(VEER_SLOTS) + " slots");
  std::vector<uint32_t> counts(weights_bp.size(), 0);
  for (size_t s = 0; s < owners.size(); ++s) {
    if (owners[s] >= weights_bp.size())
      fail("slot " + std::to_string(s) + " is owned by variant " + std::to_string(owners[s]) + " of " +
           std::to_string(weights_bp.size()));
    ++counts[owners[s]];
  }
  for (size_t v = 0; v < counts.size(); ++v)
    if (counts[v] != weights_bp[v])
      fail("variant " + std::to_string(v) + " owns " + std::to_string(counts[v]) + " slots, its weight is " +
           std::to_string(weights_bp[v]) + " bp");
}

void check_draining(const std::vector<std::vector<uint8_t>>& draining, size_t n_variants) {
  if (draining.size() != n_variants)
    fail("draining has " + std::to_string(draining.size()) + " variants, weights_bp " + std::to_string(n_variants));
  for (size_t v = 0; v < draining.size(); ++v) {
    const auto& list = draining[v];
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i] >= VEER_MAX_BACKENDS) fail("draining backend " + std::to_string(list[i]) + " out of range");
      if (i > 0 && list[i] <= list[i - 1]) fail("draining of variant " + std::to_string(v) + " is not ascending");
    }
  }
}

void check_text(const std::string& text, const char* field, size_t max, bool required) {
  if (required && text.empty()) fail(std::string(field) + " is empty");
  if (text.size() > max) fail(std::string(field) + " is longer than " + std::to_string(max) + " characters");
}

void check_fields(const TableVersion& v) {
  if (v.version == 0) fail("version must be at least 1");
  check_text(v.service, "service", 64, true);
  if (v.definition.size() != 16 ||
      !std::all_of(v.definition.begin(), v.definition.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
    fail("definition must be 16 lower-case hex digits");
  check_weights(v.weights_bp);
  if (v.stable >= v.weights_bp.size()) fail("stable " + std::to_string(v.stable) + " is not a variant");
  check_draining(v.draining, v.weights_bp.size());
  check_owners(v.owners, v.weights_bp);
  check_text(v.cause, "cause", kMaxCauseLength, false);
  check_text(v.writer, "writer", kMaxNodeNameLength, true);
}

// A non-negative integer (nlohmann would wrap -1 to 2^64 - 1 and cut 1.5 to 1).
uint64_t unsigned_value(const json& v, const std::string& what) {
  if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0))
    fail(what + " must be a non-negative integer");
  return v.get<uint64_t>();
}

const json& member(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end()) fail(std::string("no \"") + name + "\"");
  return *it;
}

uint64_t unsigned_field(const json& j, const char* name, uint64_t max) {
  const uint64_t v = unsigned_value(member(j, name), std::string("\"") + name + "\"");
  if (v > max) fail(std::string("\"") + name + "\" is above " + std::to_string(max));
  return v;
}

template <typename T>
std::vector<T> unsigned_list(const json& v, const std::string& what, uint64_t max, size_t max_size) {
  if (!v.is_array() || v.size() > max_size)
    fail(what + " must be an array of at most " + std::to_string(max_size) + " numbers");
  std::vector<T> out;
  for (const auto& e : v) {
    const uint64_t n = unsigned_value(e, what + " entry");
    if (n > max) fail(what + " entry " + std::to_string(n) + " is above " + std::to_string(max));
    out.push_back(static_cast<T>(n));
  }
  return out;
}

template <typename T>
T field(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end()) fail(std::string("no \"") + name + "\"");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail(std::string("\"") + name + "\" has the wrong type");
  }
}

}  // namespace

TableVersion make_table_version(uint64_t version, std::string service, std::string definition,
                                const SlotTable& table, unsigned stable, std::vector<uint32_t> weights_bp,
                                std::vector<std::vector<uint8_t>> draining, std::string cause,
                                std::string writer, int64_t at_ms) {
  TableVersion v;
  v.version = version;
  v.service = std::move(service);
  v.definition = std::move(definition);
  v.stable = stable;
  v.weights_bp = std::move(weights_bp);
  v.draining = std::move(draining);
  v.owners.reserve(table.slots.size());
  for (const auto& s : table.slots) v.owners.push_back(s.variant);
  v.cause = std::move(cause);
  v.writer = std::move(writer);
  v.at_ms = at_ms;
  check_fields(v);
  return v;
}

std::string table_version_checksum(const TableVersion& v) {
  Fnv1a64 h;
  h.u64(kTableVersionFormat).u64(v.version).str(v.service).str(v.definition).u64(v.stable);
  h.u64(v.weights_bp.size());
  for (uint32_t w : v.weights_bp) h.u64(w);
  h.u64(v.draining.size());
  for (const auto& list : v.draining) {
    h.u64(list.size());
    for (uint8_t b : list) h.u64(b);
  }
  h.str(std::string(v.owners.begin(), v.owners.end()));
  h.str(v.cause).str(v.writer).u64(static_cast<uint64_t>(v.at_ms));
  return h.hex();
}

json to_json(const TableVersion& v) {
  return json{{"format", kTableVersionFormat},
              {"service", v.service},
              {"version", v.version},
              {"definition", v.definition},
              {"stable", v.stable},
              {"weights_bp", v.weights_bp},
              {"draining", v.draining},
              {"owners", base64_encode(pack_owners(v.owners))},
              {"cause", v.cause},
              {"writer", v.writer},
              {"at_ms", v.at_ms},
              {"checksum", table_version_checksum(v)}};
}

std::string table_version_to_string(const TableVersion& v) { return to_json(v).dump(); }

TableVersion table_version_from_json(const json& j) {
  if (!j.is_object()) fail("not a JSON object");
  const auto format = static_cast<int64_t>(unsigned_field(j, "format", 1u << 20));
  if (format != kTableVersionFormat)
    fail("format " + std::to_string(format) + " is not " + std::to_string(kTableVersionFormat) +
         " (written by another veer version?)");
  TableVersion v;
  v.version = unsigned_field(j, "version", UINT64_MAX);
  v.service = field<std::string>(j, "service");
  v.definition = field<std::string>(j, "definition");
  v.stable = static_cast<unsigned>(unsigned_field(j, "stable", VEER_MAX_VARIANTS));
  v.weights_bp = unsigned_list<uint32_t>(member(j, "weights_bp"), "weights_bp", VEER_WEIGHT_TOTAL, VEER_MAX_VARIANTS);
  const json& draining = member(j, "draining");
  if (!draining.is_array() || draining.size() > VEER_MAX_VARIANTS) fail("\"draining\" must be an array per variant");
  for (const auto& list : draining)
    v.draining.push_back(unsigned_list<uint8_t>(list, "draining", VEER_MAX_BACKENDS - 1, VEER_MAX_BACKENDS));
  const auto owners_text = field<std::string>(j, "owners");
  try {
    v.owners = unpack_owners(base64_decode(owners_text));
  } catch (const TableVersionError&) {
    throw;
  } catch (const std::invalid_argument& e) {
    fail(std::string("owners: ") + e.what());
  }
  v.cause = field<std::string>(j, "cause");
  v.writer = field<std::string>(j, "writer");
  const json& at = member(j, "at_ms");
  if (!at.is_number_integer()) fail("\"at_ms\" must be an integer");
  v.at_ms = at.get<int64_t>();
  check_fields(v);
  const auto checksum = field<std::string>(j, "checksum");
  const std::string expected = table_version_checksum(v);
  if (checksum != expected) fail("checksum " + checksum + " does not match the record (" + expected + ")");
  return v;
}

TableVersion table_version_from_string(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(std::string("not JSON: ") + e.what());
  }
  return table_version_from_json(j);
}

SlotTable build_table_from_version(const TableVersion& v, const VariantBackends& backends, uint32_t seed) {
  check_fields(v);
  if (backends.size() != v.weights_bp.size())
    fail("the service has " + std::to_string(backends.size()) + " variants here, the version " +
         std::to_string(v.weights_bp.size()));
  VariantBackends with_drains = backends;
  for (size_t var = 0; var < with_drains.size(); ++var) {
    for (auto& b : with_drains[var]) b.draining = false;
    for (uint8_t index : v.draining[var]) {
      if (index >= with_drains[var].size())
        fail("variant " + std::to_string(var) + " drains backend " + std::to_string(index) + " of " +
             std::to_string(with_drains[var].size()));
      with_drains[var][index].draining = true;
    }
    if (v.weights_bp[var] > 0 && with_drains[var].empty())
      fail("variant " + std::to_string(var) + " has weight but no backend here");
  }
  SlotTable table;
  for (size_t s = 0; s < table.slots.size(); ++s) table.slots[s] = veer_slot{v.owners[s], 0};
  assign_backends(table, with_drains, seed);
  return table;
}

}  // namespace veer::fleet
