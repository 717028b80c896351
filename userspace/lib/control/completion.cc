#include "control/completion.h"

#include <algorithm>

namespace veer::protocol {

using nlohmann::json;

namespace {

bool printable_word(const std::string& s) {
  if (s.empty()) return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= ' ' || u == 0x7f;
  });
}

void add_once(std::vector<std::string>& out, const json& value) {
  if (!value.is_string()) return;
  const std::string& s = value.get_ref<const std::string&>();
  if (printable_word(s) && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
}

const json* array_at(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it != object.end() && it->is_array() ? &*it : nullptr;
}

}  // namespace

std::optional<CompletionKind> completion_kind_from_string(std::string_view word) {
  if (word == "services") return CompletionKind::Services;
  if (word == "variants") return CompletionKind::Variants;
  if (word == "backends") return CompletionKind::Backends;
  return std::nullopt;
}

std::vector<std::string> completion_names(const json& status_result, CompletionKind kind, const std::string& service) {
  std::vector<std::string> out;
  const json* services = array_at(status_result, "services");
  if (services == nullptr) return out;
  for (const auto& s : *services) {
    if (!s.is_object()) continue;
    const auto name = s.find("name");
    if (kind == CompletionKind::Services) {
      if (name != s.end()) add_once(out, *name);
      continue;
    }
    if (name == s.end() || !name->is_string() || name->get_ref<const std::string&>() != service) continue;
    const json* variants = array_at(s, "variants");
    if (variants == nullptr) continue;
    for (const auto& v : *variants) {
      if (!v.is_object()) continue;
      if (kind == CompletionKind::Variants) {
        if (const auto vn = v.find("name"); vn != v.end()) add_once(out, *vn);
        continue;
      }
      const json* backends = array_at(v, "backends");
      if (backends == nullptr) continue;
      for (const auto& b : *backends) {
        if (!b.is_object()) continue;
        if (const auto address = b.find("address"); address != b.end()) add_once(out, *address);
      }
    }
  }
  return out;
}

}  // namespace veer::protocol
