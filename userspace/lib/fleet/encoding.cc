#include "fleet/encoding.h"

#include <array>
#include <cstdio>

namespace veer::fleet {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = static_cast<uint8_t>(bytes[i]) << 16 | static_cast<uint8_t>(bytes[i + 1]) << 8 |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += rest == 2 ? kAlphabet[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

std::string base64_decode(std::string_view text) {
  if (text.size() % 4 != 0)
    throw std::invalid_argument("base64: length " + std::to_string(text.size()) + " is not a multiple of 4");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    std::array<int, 4> s{};
    int padding = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=' && last && k >= 2) {
        ++padding;
        s[k] = 0;
        continue;
      }
      if (padding > 0 || (s[k] = sextet(c)) < 0)
        throw std::invalid_argument("base64: unexpected character at offset " + std::to_string(i + k));
    }
    const uint32_t v = static_cast<uint32_t>(s[0]) << 18 | static_cast<uint32_t>(s[1]) << 12 |
                       static_cast<uint32_t>(s[2]) << 6 | static_cast<uint32_t>(s[3]);
    out += static_cast<char>(v >> 16 & 0xff);
    if (padding < 2) out += static_cast<char>(v >> 8 & 0xff);
    if (padding < 1) out += static_cast<char>(v & 0xff);
  }
  return out;
}

Fnv1a64& Fnv1a64::bytes(std::string_view data) {
  for (unsigned char c : data) {
    h_ ^= c;
    h_ *= kFnvPrime;
  }
  return *this;
}

Fnv1a64& Fnv1a64::u64(uint64_t value) {
  char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<char>(value >> (8 * i) & 0xff);
  return bytes(std::string_view(le, 8));
}

Fnv1a64& Fnv1a64::str(std::string_view text) { return u64(text.size()).bytes(text); }

std::string Fnv1a64::hex() const {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
  return buf;
}

}  // namespace veer::fleet
