// What the pure logic needs from the kernel maps, injected: veerd passes the
// BPF map implementation (userspace/dataplane), unit tests an in-memory one.
#pragma once
#include <cstdint>
#include <optional>

#include "config/net.h"

namespace veer {

class MapWriter {
 public:
  virtual ~MapWriter() = default;
  virtual void put_service(const veer_service_key& key, const veer_service& value) = 0;
  virtual void delete_service(const veer_service_key& key) = 0;
  virtual std::optional<veer_service> get_service(const veer_service_key& key) const = 0;
  // index = service_id * 2 + table
  virtual void put_slot_table(uint32_t index, const veer_slot_table& table) = 0;
  virtual std::optional<veer_slot_table> get_slot_table(uint32_t index) const = 0;
  // index = (service_id * VEER_MAX_VARIANTS + variant) * VEER_MAX_BACKENDS + backend
  virtual void put_backend(uint32_t index, const veer_backend& backend) = 0;
  // key = port in host order; value = VEER_PORT_F_* bits
  virtual void put_port_filter(uint16_t port, uint8_t bits) = 0;
  // veer_service_keys[service_id]: the key the id stands for (zero: none)
  virtual void put_service_key(uint32_t service_id, const veer_service_key& key) = 0;
  // veer_tcp_port_service: port in host order -> 1 + the id of the only TCP
  // service on it, 0: none or several
  virtual void put_tcp_port_hint(uint16_t port, uint8_t hint) = 0;
  // veer_backend_rev: a backend -> its service (how the kernel tells replies).
  // Deleting a key that is not there is not an error.
  virtual void put_backend_rev(const veer_backend_rev_key& key, const veer_backend_rev& value) = 0;
  virtual void delete_backend_rev(const veer_backend_rev_key& key) = 0;
};

}  // namespace veer
