// Service tables pushed to the maps in packet-safe order (see the header).
#include "tables/service_tables.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace veer {

veer_service_key service_key(const ServiceConfig& svc) {
  veer_service_key key{};
  key.vip = svc.vip.to_abi();
  key.port = htons(svc.port);
  key.proto = svc.protocol == Protocol::Tcp ? VEER_PROTO_TCP : VEER_PROTO_UDP;
  key.family = static_cast<__u8>(svc.vip.family);
  return key;
}

namespace {

bool same_key(const veer_service_key& a, const veer_service_key& b) {
  return a.vip.addr[0] == b.vip.addr[0] && a.vip.addr[1] == b.vip.addr[1] && a.vip.addr[2] == b.vip.addr[2] &&
         a.vip.addr[3] == b.vip.addr[3] && a.port == b.port && a.proto == b.proto && a.family == b.family;
}

veer_backend_rev_key backend_rev_key(const Endpoint& ep, Protocol protocol) {
  veer_backend_rev_key key{};
  key.addr = ep.ip.to_abi();
  key.port = htons(ep.port);
  key.proto = protocol == Protocol::Tcp ? VEER_PROTO_TCP : VEER_PROTO_UDP;
  key.family = static_cast<__u8>(ep.ip.family);
  return key;
}

uint32_t backend_index(uint32_t service_id, unsigned variant, unsigned backend) {
  return (service_id * VEER_MAX_VARIANTS + variant) * VEER_MAX_BACKENDS + backend;
}

void check_service(uint32_t service_id, const ServiceConfig& svc, const std::vector<uint32_t>& weights_bp) {
  if (service_id >= VEER_MAX_SERVICES)
    throw std::invalid_argument("service id " + std::to_string(service_id) + " out of range");
  if (svc.variants.empty() || svc.variants.size() > VEER_MAX_VARIANTS)
    throw std::invalid_argument("service '" + svc.name + "' needs 1 to 8 variants");
  if (weights_bp.size() != svc.variants.size())
    throw std::invalid_argument("service '" + svc.name + "': " + std::to_string(weights_bp.size()) +
                                " weights for " + std::to_string(svc.variants.size()) + " variants");
  if (svc.stable_index() < 0) throw std::invalid_argument("service '" + svc.name + "': stable is not a variant");
  for (const auto& v : svc.variants)
    if (v.backends.empty() || v.backends.size() > VEER_MAX_BACKENDS)
      throw std::invalid_argument("variant '" + v.name + "' needs 1 to 64 backends");
  uint64_t sum = 0;
  for (auto w : weights_bp) sum += w;
  if (sum != VEER_WEIGHT_TOTAL)
    throw std::invalid_argument("service '" + svc.name + "': weights sum to " + format_weight(static_cast<uint32_t>(sum)) +
                                ", not 100");
}

}  // namespace

uint32_t udp_idle_ticks(Millis timeout) {
  if (timeout.count() <= 0) throw std::invalid_argument("the UDP idle timeout must be positive");
  const uint64_t ns = static_cast<uint64_t>(timeout.count()) * 1000000ull;
  const uint64_t ticks = (ns + VEER_TICK_NS - 1) / VEER_TICK_NS;
  // The kernel compares tick differences modulo 2^32: keep far below 2^31.
  if (ticks > (1ull << 30)) throw std::invalid_argument("the UDP idle timeout is too long");
  return static_cast<uint32_t>(ticks);
}

ServiceTables::ServiceTables(MapWriter& writer, uint32_t hash_seed, Millis udp_idle_timeout)
    : writer_(writer), seed_(hash_seed), udp_idle_ticks_(udp_idle_ticks(udp_idle_timeout)) {}

void ServiceTables::set_udp_idle_timeout(Millis timeout) {
  const uint32_t ticks = udp_idle_ticks(timeout);
  if (ticks == udp_idle_ticks_) return;
  udp_idle_ticks_ = ticks;
  for (const auto& [id, e] : entries_) {
    if (e.visible) writer_.put_service(service_key(e.svc), service_value(id, e));
  }
}

std::map<uint16_t, uint8_t> ServiceTables::port_bits_of(const ServiceConfig& svc) {
  std::map<uint16_t, uint8_t> bits;
  const bool tcp = svc.protocol == Protocol::Tcp;
  bits[svc.port] |= tcp ? VEER_PORT_F_SERVICE_TCP : VEER_PORT_F_SERVICE_UDP;
  for (const auto& v : svc.variants)
    for (const auto& b : v.backends) bits[b.port] |= tcp ? VEER_PORT_F_BACKEND_TCP : VEER_PORT_F_BACKEND_UDP;
  return bits;
}

void ServiceTables::write_port_values(const std::map<uint16_t, uint8_t>& wanted, std::map<uint16_t, uint8_t>& written,
                                      void (MapWriter::*put)(uint16_t, uint8_t)) {
  // Only ports whose value differs are written; a port absent from `wanted`
  // goes to 0.
  for (const auto& [port, value] : wanted) {
    auto it = written.find(port);
    if (it == written.end() || it->second != value) {
      (writer_.*put)(port, value);
      written[port] = value;
    }
  }
  for (auto it = written.begin(); it != written.end();) {
    if (!wanted.count(it->first)) {
      (writer_.*put)(it->first, 0);
      it = written.erase(it);
    } else {
      ++it;
    }
  }
}

void ServiceTables::write_port_filter(const std::map<uint16_t, uint8_t>& wanted) {
  write_port_values(wanted, port_filter_, &MapWriter::put_port_filter);
}

std::map<uint16_t, uint8_t> ServiceTables::tcp_port_hints(std::optional<uint32_t> without) const {
  std::map<uint16_t, std::vector<uint32_t>> ids;
  for (const auto& [id, e] : entries_)
    if (e.svc.protocol == Protocol::Tcp && id != without) ids[e.svc.port].push_back(id);
  std::map<uint16_t, uint8_t> hints;
  for (const auto& [port, list] : ids)
    if (list.size() == 1) hints[port] = static_cast<uint8_t>(list.front() + 1);
  return hints;
}

void ServiceTables::write_tcp_port_hints(const std::map<uint16_t, uint8_t>& wanted) {
  write_port_values(wanted, tcp_hints_, &MapWriter::put_tcp_port_hint);
}

std::map<uint16_t, uint8_t> ServiceTables::installed_port_bits() const {
  std::map<uint16_t, uint8_t> bits;
  for (const auto& [id, e] : entries_)
    for (const auto& [port, b] : port_bits_of(e.svc)) bits[port] |= b;
  return bits;
}

void ServiceTables::write_backends(uint32_t service_id, const Entry& e, bool present_only) {
  for (unsigned v = 0; v < VEER_MAX_VARIANTS; ++v) {
    for (unsigned b = 0; b < VEER_MAX_BACKENDS; ++b) {
      const bool present = v < e.backends.size() && b < e.backends[v].size();
      if (present_only != present) continue;
      veer_backend be{};
      if (present) {
        const BackendSpec& spec = e.backends[v][b];
        be.addr = spec.endpoint.ip.to_abi();
        be.port = htons(spec.endpoint.port);
        be.family = static_cast<__u8>(spec.endpoint.ip.family);
        be.flags = VEER_BACKEND_F_PRESENT | (spec.draining ? VEER_BACKEND_F_DRAINING : 0);
      }
      writer_.put_backend(backend_index(service_id, v, b), be);
    }
  }
}

void ServiceTables::write_backend_rev(uint32_t service_id, const Entry& e) {
  veer_backend_rev value{};
  value.vip = e.svc.vip.to_abi();
  value.vport = htons(e.svc.port);
  value.service_id = static_cast<__u16>(service_id);
  std::map<BackendRevKeyBytes, veer_backend_rev_key> listed;
  for (const auto& variant : e.backends) {
    for (const auto& b : variant) {
      const veer_backend_rev_key key = backend_rev_key(b.endpoint, e.svc.protocol);
      BackendRevKeyBytes bytes;
      std::memcpy(bytes.data(), &key, sizeof key);
      listed.emplace(bytes, key);
    }
  }
  // Room first: the longest-removed backends' entries go if the new ones
  // would not fit.
  size_t needed = 0;
  for (const auto& [bytes, key] : listed) needed += !backend_rev_.count(bytes);
  while (backend_rev_.size() + needed > VEER_BACKEND_REV_MAX) {
    auto oldest = backend_rev_.end();
    for (auto it = backend_rev_.begin(); it != backend_rev_.end(); ++it)
      if (!it->second.listed && !listed.count(it->first) &&
          (oldest == backend_rev_.end() || it->second.removed < oldest->second.removed))
        oldest = it;
    if (oldest == backend_rev_.end()) break;  // all listed: the writer reports the full map
    writer_.delete_backend_rev(oldest->second.key);
    backend_rev_.erase(oldest);
  }
  for (const auto& [bytes, key] : listed) {
    auto it = backend_rev_.find(bytes);
    const bool same = it != backend_rev_.end() && it->second.service_id == service_id &&
                      std::memcmp(&it->second.value, &value, sizeof value) == 0;
    if (!same) writer_.put_backend_rev(key, value);
    BackendRevEntry& entry = backend_rev_[bytes];
    entry = {service_id, key, value, true, 0};
  }
  // Backends gone from this service's lists keep their entries (their flows'
  // replies), marked for the overflow rule above.
  for (auto& [bytes, entry] : backend_rev_)
    if (entry.service_id == service_id && entry.listed && !listed.count(bytes)) {
      entry.listed = false;
      entry.removed = ++removals_;
    }
}

void ServiceTables::delete_backend_rev(uint32_t service_id) {
  for (auto it = backend_rev_.begin(); it != backend_rev_.end();) {
    if (it->second.service_id == service_id) {
      writer_.delete_backend_rev(it->second.key);
      it = backend_rev_.erase(it);
    } else {
      ++it;
    }
  }
}

void ServiceTables::install(uint32_t service_id, const ServiceConfig& svc, const std::vector<uint32_t>& weights_bp,
                            const std::vector<Endpoint>& draining_at_start) {
  check_service(service_id, svc, weights_bp);  // nothing below throws on input
  const unsigned stable = static_cast<unsigned>(svc.stable_index());
  const veer_service_key key = service_key(svc);

  // The id may be reused for another service (reload): retire the old one first.
  if (auto it = entries_.find(service_id); it != entries_.end() && !same_key(service_key(it->second.svc), key))
    remove(service_id);

  Entry next;
  next.svc = svc;
  next.svc.weights_bp = weights_bp;
  next.backends.resize(svc.variants.size());
  const Entry* previous = nullptr;
  if (auto it = entries_.find(service_id); it != entries_.end()) previous = &it->second;
  for (size_t v = 0; v < svc.variants.size(); ++v) {
    for (const auto& ep : svc.variants[v].backends) {
      bool draining = std::find(draining_at_start.begin(), draining_at_start.end(), ep) != draining_at_start.end();
      // A reload keeps drain marks of backends that are still there (same variant name).
      if (previous) {
        const int pv = previous->svc.variant_index(svc.variants[v].name);
        if (pv >= 0)
          for (const auto& old : previous->backends[static_cast<size_t>(pv)])
            if (old.endpoint == ep) draining = old.draining;
      }
      next.backends[v].push_back({ep, draining});
    }
  }

  // What the packet path currently uses for this service, if anything.
  // `current` is it with variant indices of the NEW config (the starting
  // point of the rebalance); `in_map` is it as the map holds it.
  std::optional<SlotTable> current;
  std::optional<SlotTable> in_map;
  if (previous) {
    // Same daemon, reload: variants are matched by name (the order may change).
    in_map = previous->table;
    current = previous->table;
    for (auto& slot : current->slots) {
      if (slot.variant >= previous->svc.variants.size()) continue;
      const int nv = svc.variant_index(previous->svc.variants[slot.variant].name);
      slot.variant = nv < 0 ? VEER_VARIANT_NONE : static_cast<uint8_t>(nv);
    }
    next.active = previous->active;
    next.generation = previous->generation;
    next.visible = previous->visible;
  } else if (auto existing = writer_.get_service(key); existing && existing->id == service_id &&
                                                       existing->active_table <= 1) {
    // Restart: adopt the pinned active table, so slot ownership (and the
    // flows that follow from it) survives. Variants keep their config order.
    next.active = existing->active_table;
    next.generation = existing->generation;
    next.visible = true;  // whatever happens, only the inactive table is written
    if (auto table = writer_.get_slot_table(service_id * 2 + existing->active_table)) {
      current.emplace();
      current->slots.assign(table->slot, table->slot + VEER_SLOTS);
      in_map = current;
    }
  }
  next.table = current ? rebalance(*current, weights_bp, stable, next.backends, seed_)
                       : build_table(weights_bp, stable, next.backends, seed_);

  // 1. Port filter bits of the new service set before it becomes visible.
  auto wanted = installed_port_bits();
  for (const auto& [port, b] : port_bits_of(svc)) wanted[port] |= b;
  for (const auto& [port, b] : port_filter_) wanted[port] |= b;  // nothing cleared yet
  write_port_filter(wanted);
  // 2. Backends the new table may name, and how their replies are told.
  write_backends(service_id, next, true);
  write_backend_rev(service_id, next);
  // The key this id stands for, which the TCP port hint is checked against.
  writer_.put_service_key(service_id, key);
  // 3. The table, then one flip of veer_service.
  const bool changed = !in_map || !(next.table == *in_map);
  if (!next.visible || changed) {
    push(service_id, next, next.table);
  } else {
    // Same table: rewrite the service value in place (affinity, seed) without a flip.
    writer_.put_service(key, service_value(service_id, next));
  }
  entries_[service_id] = std::move(next);
  // 4. The TCP port hints of the new service set (a hint only spares a hash
  // lookup: with or without it the packet finds the same service). Clean up:
  // backend slots beyond the new lists, stale port bits.
  write_tcp_port_hints(tcp_port_hints());
  write_backends(service_id, entries_[service_id], false);
  write_port_filter(installed_port_bits());
}

veer_service ServiceTables::service_value(uint32_t service_id, const Entry& e) const {
  veer_service value{};
  value.id = service_id;
  value.hash_seed = seed_;
  value.active_table = e.active;
  value.affinity = e.svc.affinity == Affinity::ClientIp ? VEER_AFFINITY_CLIENT_IP : VEER_AFFINITY_CONNECTION;
  value.n_variants = static_cast<__u8>(e.svc.variants.size());
  value.generation = e.generation;
  value.udp_idle_ticks = udp_idle_ticks_;
  return value;
}

void ServiceTables::push(uint32_t service_id, Entry& e, const SlotTable& next) {
  // A service not yet visible has no active table to protect: the first
  // table goes to slot 0 and the service appears with it. Otherwise write
  // the inactive table, then flip.
  const uint8_t target = e.visible ? static_cast<uint8_t>(1 - e.active) : 0;
  veer_slot_table raw;
  std::copy(next.slots.begin(), next.slots.end(), raw.slot);
  writer_.put_slot_table(service_id * 2 + target, raw);
  Entry flipped = e;
  flipped.active = target;
  flipped.generation = e.generation + 1;
  writer_.put_service(service_key(e.svc), service_value(service_id, flipped));
  e.active = target;
  e.generation = flipped.generation;
  e.table = next;
  e.visible = true;
}

ServiceTables::Entry& ServiceTables::entry(uint32_t service_id) {
  auto it = entries_.find(service_id);
  if (it == entries_.end()) throw std::out_of_range("no service with id " + std::to_string(service_id));
  return it->second;
}

const ServiceTables::Entry& ServiceTables::entry(uint32_t service_id) const {
  auto it = entries_.find(service_id);
  if (it == entries_.end()) throw std::out_of_range("no service with id " + std::to_string(service_id));
  return it->second;
}

void ServiceTables::set_weights(uint32_t service_id, const std::vector<uint32_t>& weights_bp) {
  Entry& e = entry(service_id);
  if (weights_bp.size() != e.svc.variants.size())
    throw std::invalid_argument("service '" + e.svc.name + "': " + std::to_string(weights_bp.size()) +
                                " weights for " + std::to_string(e.svc.variants.size()) + " variants");
  SlotTable next = rebalance(e.table, weights_bp, static_cast<unsigned>(e.svc.stable_index()), e.backends, seed_);
  if (!(next == e.table)) push(service_id, e, next);
  e.svc.weights_bp = weights_bp;
}

void ServiceTables::set_draining(uint32_t service_id, unsigned variant, unsigned backend, bool draining) {
  Entry& e = entry(service_id);
  if (variant >= e.backends.size() || backend >= e.backends[variant].size())
    throw std::out_of_range("service '" + e.svc.name + "' has no backend " + std::to_string(backend) +
                            " in variant " + std::to_string(variant));
  Entry updated = e;
  updated.backends[variant][backend].draining = draining;
  SlotTable next = updated.table;
  assign_backends(next, updated.backends, seed_);
  // The flag first (observers see the drain), then the table that stops
  // sending new flows there.
  write_backends(service_id, updated, true);
  e.backends = std::move(updated.backends);
  if (!(next == e.table)) push(service_id, e, next);
}

void ServiceTables::set_table(uint32_t service_id, const SlotTable& table,
                              const std::vector<std::vector<uint8_t>>& draining) {
  Entry& e = entry(service_id);
  const size_t n = e.backends.size();
  if (table.slots.size() != VEER_SLOTS || draining.size() != n)
    throw std::invalid_argument("service '" + e.svc.name + "': a table of " + std::to_string(table.slots.size()) +
                                " slots and drains of " + std::to_string(draining.size()) + " variants");
  for (size_t i = 0; i < table.slots.size(); ++i) {
    const veer_slot& slot = table.slots[i];
    if (slot.variant >= n || slot.backend >= e.backends[slot.variant].size())
      throw std::invalid_argument("service '" + e.svc.name + "': slot " + std::to_string(i) + " names variant " +
                                  std::to_string(slot.variant) + " backend " + std::to_string(slot.backend) +
                                  ", which it does not have");
  }
  Entry updated = e;
  for (size_t v = 0; v < n; ++v) {
    for (auto& b : updated.backends[v]) b.draining = false;
    for (uint8_t index : draining[v]) {
      if (index >= updated.backends[v].size())
        throw std::invalid_argument("service '" + e.svc.name + "': variant " + std::to_string(v) +
                                    " has no backend " + std::to_string(index) + " to drain");
      updated.backends[v][index].draining = true;
    }
  }
  write_backends(service_id, updated, true);
  e.backends = std::move(updated.backends);
  e.svc.weights_bp = count_weights(table, static_cast<unsigned>(n));
  if (!(table == e.table)) push(service_id, e, table);
}

void ServiceTables::remove(uint32_t service_id) {
  auto it = entries_.find(service_id);
  if (it == entries_.end()) return;
  // No hint names it, then invisible; then its key, backends and port bits can go.
  write_tcp_port_hints(tcp_port_hints(service_id));
  writer_.delete_service(service_key(it->second.svc));
  writer_.put_service_key(service_id, veer_service_key{});
  delete_backend_rev(service_id);
  Entry gone = std::move(it->second);
  entries_.erase(it);
  gone.backends.clear();
  write_backends(service_id, gone, false);
  write_port_filter(installed_port_bits());
}

const SlotTable& ServiceTables::active_table(uint32_t service_id) const { return entry(service_id).table; }

std::vector<uint32_t> ServiceTables::applied_weights(uint32_t service_id) const {
  const Entry& e = entry(service_id);
  auto value = writer_.get_service(service_key(e.svc));
  if (!value) throw std::runtime_error("service '" + e.svc.name + "' is not in the service map");
  auto raw = writer_.get_slot_table(service_id * 2 + value->active_table);
  if (!raw) throw std::runtime_error("service '" + e.svc.name + "': active slot table unreadable");
  SlotTable t;
  t.slots.assign(raw->slot, raw->slot + VEER_SLOTS);
  return count_weights(t, static_cast<unsigned>(e.svc.variants.size()));
}

}  // namespace veer
