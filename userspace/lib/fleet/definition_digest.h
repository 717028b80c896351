// The digest of a service's definition: what every node of a fleet must agree
// on before it may apply the fleet's table versions of that service. It
// covers what decides where a connection goes and how a rollout runs: name,
// VIP, port, protocol, affinity, the variants in order with their backends in
// order, the rollout section, and the node's hash seed (slots and backends
// are hashed with it). It leaves out what the table versions carry (weights,
// which variant is stable: both change at run time) and what is local to a
// node (its interfaces, socket, paths, the variants' metrics_url).
#pragma once
#include <cstdint>
#include <string>

#include "config/config.h"

namespace veer::fleet {

// 16 lower-case hex digits (FNV-1a 64 over a canonical encoding).
std::string definition_digest(const ServiceConfig& service, uint32_t hash_seed);

}  // namespace veer::fleet
