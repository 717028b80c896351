// The live view (docs/view.md): the history of every service, sampled each
// second from its status, and the pages veerd serves on metrics_listen
// (/, /assets/..., /api/v1/...) and the `view` command answers. Everything
// here reads; a GET changes nothing but the fleet nodes' cache.
#include <spdlog/spdlog.h>

#include "daemon.h"
#include "unix_time.h"
#include "veer/view_assets.h"
#include "view/documents.h"

namespace veer {

using nlohmann::json;
using protocol::ErrorCode;
using protocol::ProtocolError;

namespace {

constexpr auto kViewSampleEvery = std::chrono::seconds(1);
constexpr int64_t kNodesRefreshMs = 1000;

Daemon::ViewPage json_page(unsigned status, const json& body) {
  return {status, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

Daemon::ViewPage asset_page(const char* name, const char* content_type) {
  const auto bytes = view_assets::get(name);
  if (!bytes) throw std::runtime_error(std::string("asset ") + name + " missing from this build");
  return {200, content_type, std::string(*bytes)};
}

}  // namespace

void Daemon::sample_views() {
  const int64_t now = unix_ms();
  std::map<std::string, view::History> kept;
  for (const auto& s : services_) {
    auto& h = kept[s.config.name];
    if (auto it = histories_.find(s.config.name); it != histories_.end()) h = std::move(it->second);
    try {
      h.add(view::sample_of_status(service_status(s), now));
    } catch (const std::exception& e) {
      spdlog::debug("service {}: no view sample: {}", s.config.name, e.what());
    }
  }
  histories_ = std::move(kept);  // a service gone in a reload takes its history with it
  view_timer_->expires_after(kViewSampleEvery);
  view_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) sample_views();
  });
}

json Daemon::view_document(const Service& s) const {
  const auto history = histories_.find(s.config.name);
  const auto events = events_.since(0, s.config.name, 0).events;
  json ab = nullptr;
  if (s.rt->engine && s.config.rollout && s.config.rollout->strategy == RolloutStrategy::Ab) {
    try {
      ab = to_json(ab_report(s.config, ab_snapshot(s)));
    } catch (const std::exception& e) {
      spdlog::debug("service {}: no A/B report for the view: {}", s.config.name, e.what());
    }
  }
  json fleet = nullptr;
  if (fleet_) {
    const json fs = fleet_status();
    if (const auto it = fs["services"].find(s.config.name); it != fs["services"].end()) fleet = *it;
  }
  return view::service_document(service_status(s),
                                history != histories_.end() ? history->second.to_json() : view::History().to_json(),
                                view::rollout_document(view::last_rollout_events(events, s.config.name)), ab,
                                fleet, unix_ms());
}

json Daemon::view(const protocol::ViewRequest& r) { return view_document(service_named(r.service)); }

json Daemon::view_nodes() {
  const int64_t now = unix_ms();
  if (!view_nodes_pending_ && now - view_nodes_at_ms_ >= kNodesRefreshMs) {
    // etcd answers later: this request gets the last answer, the next one the fresh one.
    view_nodes_pending_ = true;
    fleet_nodes([this](std::string line) {
      view_nodes_pending_ = false;
      view_nodes_at_ms_ = unix_ms();
      try {
        const protocol::Answer a = protocol::parse_answer(line);
        view_nodes_ = a.ok ? a.result : json{{"error", a.message}};
      } catch (const std::exception& e) {
        view_nodes_ = json{{"error", e.what()}};
      }
      view_nodes_["as_of_ms"] = view_nodes_at_ms_;
    });
  }
  return view_nodes_.is_null() ? json{{"nodes", nullptr}, {"pending", true}} : view_nodes_;
}

std::optional<Daemon::ViewPage> Daemon::view_page(std::string_view path) {
  const auto route = view::route_of(path);
  if (!route) return std::nullopt;
  switch (route->kind) {
    case view::Route::Kind::Page:
      return asset_page("index.html", "text/html; charset=utf-8");
    case view::Route::Kind::Script:
      return asset_page("veer-view.js", "text/javascript; charset=utf-8");
    case view::Route::Kind::Stylesheet:
      return asset_page("veer-view.css", "text/css; charset=utf-8");
    case view::Route::Kind::Services: {
      json status = json{{"services", json::array()}, {"fleet", fleet_ ? json(true) : json(nullptr)}};
      for (const auto& s : services_) status["services"].push_back(service_status(s));
      return json_page(200, view::services_document(status));
    }
    case view::Route::Kind::Service:
      try {
        return json_page(200, view_document(service_named(route->service)));
      } catch (const ProtocolError& e) {
        return json_page(404, json{{"error", e.what()}});
      }
    case view::Route::Kind::Nodes:
      if (!fleet_) return json_page(404, json{{"error", "this veerd is not in a fleet (no cluster: section)"}});
      return json_page(200, view_nodes());
  }
  return std::nullopt;
}

}  // namespace veer
