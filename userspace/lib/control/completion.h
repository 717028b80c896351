// The names shell completion offers (`veerctl __complete`, used by
// packaging/bash-completion/veerctl): services, a service's variants or its
// backends, read from a status answer of the running veerd. Pure: the answer
// in, one name per element out.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace veer::protocol {

enum class CompletionKind {
  Services,  // every service's name
  Variants,  // the variants of one service
  Backends,  // the backend addresses (IP:PORT, [IPv6]:PORT) of one service, for drain
};

// "services", "variants", "backends"; nullopt for anything else.
std::optional<CompletionKind> completion_kind_from_string(std::string_view word);

// The names of KIND in a status answer's result ({"services": [...]}), in the
// daemon's order, each once. SERVICE selects the service for Variants and
// Backends (none: nothing). A malformed answer gives what is readable of it,
// and a name that would break the one-name-a-line output (empty, whitespace,
// control characters) is left out: completion offers nothing rather than
// something wrong.
std::vector<std::string> completion_names(const nlohmann::json& status_result, CompletionKind kind,
                                          const std::string& service = "");

}  // namespace veer::protocol
