// Byte encodings the fleet's etcd records use: base64 (RFC 4648, with
// padding: etcd's JSON gateway carries every key and value in it, and a table
// version carries its packed slot owners in it) and the FNV-1a 64-bit hash
// (the checksum of a table version, the digest of a service definition).
// FNV-1a detects accidental differences (a truncated or mangled record, two
// nodes configured differently); it is not a defence against a forger, who
// could as well write a valid record to etcd.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace veer::fleet {

std::string base64_encode(std::string_view bytes);
// Throws std::invalid_argument for a length that is not a multiple of 4, a
// character outside the alphabet, or padding anywhere but the end.
std::string base64_decode(std::string_view text);

inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

// Incremental FNV-1a 64. Fields are added with a length or a fixed width, so
// ("ab", "c") and ("a", "bc") hash differently.
class Fnv1a64 {
 public:
  Fnv1a64& bytes(std::string_view data);
  Fnv1a64& u64(uint64_t value);                 // 8 bytes, little-endian
  Fnv1a64& str(std::string_view text);          // length (u64) then the bytes
  uint64_t value() const { return h_; }
  std::string hex() const;                      // 16 lower-case hex digits

 private:
  uint64_t h_ = kFnvOffset;
};

}  // namespace veer::fleet
