// The live view's files (userspace/view-assets: index.html, veer-view.js,
// veer-view.css), embedded at build time. veerd serves them; veerctl report
// inlines them into one HTML file.
#pragma once
#include <optional>
#include <string_view>

namespace veer::view_assets {

// The bytes of the file NAME ("index.html", "veer-view.js", "veer-view.css"),
// or nullopt.
std::optional<std::string_view> get(std::string_view name);

}  // namespace veer::view_assets
