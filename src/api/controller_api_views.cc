// The fleet's read routes of ControllerApi: GET /applications/{app} (the
// application's tree and settings from ApplicationService, each cluster's
// member counts and load from the fleet's view) and GET /members (a page
// of members). Both answers are kept between events (view_cache.h).

#include <charconv>

#include <nlohmann/json.hpp>

#include "api/controller_api.h"

namespace tranche::api {

namespace {

using nlohmann::json;

std::string dump(const json& body) {
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

// `Vary`: the body depends on the caller's Accept-Encoding, which a cache
// between caller and controller must know.
Response kept_response(KeptAnswer kept) {
  Response response{200, "application/json", std::move(kept.body)};
  response.headers.emplace_back("Vary", "Accept-Encoding");
  if (kept.gzipped) {
    response.headers.emplace_back("Content-Encoding", "gzip");
  }
  return response;
}

std::optional<std::string> query_value(const Request& r, const std::string& key) {
  auto it = r.query.find(key);
  return it == r.query.end() || it->second.empty() ? std::nullopt : std::optional(it->second);
}

// GET /members' paging: `limit` (1..kMaxMemberPage) and `continue`, the
// cursor the previous page answered (opaque to clients: the last id).
constexpr uint64_t kMaxMemberPage = 10000;

Result<Fleet::MemberPage> member_page(const Request& r) {
  Fleet::MemberPage page;
  if (auto it = r.query.find("limit"); it != r.query.end()) {
    const std::string& text = it->second;
    uint64_t limit = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), limit);
    if (ec != std::errc() || ptr != text.data() + text.size() || limit < 1 || limit > kMaxMemberPage) {
      return fail(ErrorCode::kInvalid,
                  "limit must be a number from 1 to " + std::to_string(kMaxMemberPage) + ", got '" + text + "'",
                  "limit");
    }
    page.limit = static_cast<size_t>(limit);
  }
  if (auto cursor = query_value(r, "continue")) {
    page.after = *cursor;
  }
  return page;
}

}  // namespace

Result<Response> ControllerApi::application_view(const Params& p) {
  const std::string& app = p.path.at("app");
  const std::string key = "app\n" + app;
  const uint64_t seq = last_seq_.load();
  const TimePoint now = apps_.clock().now();
  if (auto kept = views_.find(key, seq, now, p.request.accepts_gzip)) {
    return kept_response(std::move(*kept));
  }
  auto doc = apps_.describe_application(app);
  if (!doc) {
    return std::unexpected(doc.error());
  }
  // The fleet's live view: what the members do (counts, O(members) of
  // plain fields under the fleet's lock, no store), the load state and the
  // autoscaler's member count.
  std::vector<std::string> clusters;
  for (const auto& node : (*doc)["tree"]) {
    if (node["kind"] == "cluster") {
      clusters.push_back(node["path"].get<std::string>());
    }
  }
  const auto counts = fleet_.cluster_counts(app, clusters);
  const json loads = fleet_.load_json(app);
  for (auto& node : (*doc)["tree"]) {
    if (node["kind"] == "cluster") {
      const std::string path = node["path"].get<std::string>();
      node["members"].update(Fleet::to_json(counts.at(path)));
      node["load"] = loads.value(path, json{{"state", "normal"}, {"average", nullptr}, {"scaledDesired", nullptr}});
    }
  }
  return kept_response(views_.keep(key, seq, now, dump(*doc), p.request.accepts_gzip));
}

Result<Response> ControllerApi::members_view(const Params& p) {
  auto page = member_page(p.request);
  if (!page) {
    return std::unexpected(page.error());
  }
  const MemberQuery query{query_value(p.request, "app"), query_value(p.request, "cluster"),
                          query_value(p.request, "state")};
  // What the answer depends on: the query, the page and what the caller may see.
  const std::string key = "members\n" + query.app.value_or("") + "\n" + query.cluster.value_or("") + "\n" +
                          query.state.value_or("") + "\n" + (page->limit ? std::to_string(*page->limit) : "") +
                          "\n" + page->after + "\n" + p.principal.app.value_or("*");
  const uint64_t seq = last_seq_.load();
  const TimePoint now = apps_.clock().now();
  if (auto kept = views_.find(key, seq, now, p.request.accepts_gzip)) {
    return kept_response(std::move(*kept));
  }
  auto members = fleet_.members_json(query, p.principal.app, *page);
  if (!members) {
    return std::unexpected(members.error());
  }
  return kept_response(views_.keep(key, seq, now, dump(*members), p.request.accepts_gzip));
}

}  // namespace tranche::api
