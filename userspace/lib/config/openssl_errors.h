// OpenSSL's error queue as text, for messages that name why a TLS file or
// handshake failed (config's PEM checks, veer_net's TLS context).
#pragma once
#include <string>

namespace veer {

// The reasons queued in this thread, oldest first, "; "-separated, and clears
// the queue; IF_NONE when OpenSSL queued none.
std::string openssl_errors(const std::string& if_none = "no reason given by OpenSSL");

}  // namespace veer
