#include "config/openssl_errors.h"

#include <openssl/err.h>

namespace veer {

std::string openssl_errors(const std::string& if_none) {
  std::string text;
  while (const unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof buffer);
    text += (text.empty() ? "" : "; ") + std::string(buffer);
  }
  return text.empty() ? if_none : text;
}

}  // namespace veer
