// Events, rules, deliveries and replay. Reads need event:list; writing or
// deleting rules event:rule-manage; replay event:replay. The after hook
// audits every mutation; rule configs come back with secrets as "set".
#include <set>

#include "api/internal.h"
#include "core/time.h"
#include "events/pattern.h"

namespace takt::api {
namespace {

using http::Request;
using http::Response;
using namespace internal;  // NOLINT

Json EventJson(const events::Event& e) {
  Json j = events::Envelope(e);
  j["delivered_at"] = e.delivered_at;
  return j;
}

Json DeliveryJson(const events::Delivery& d) {
  const bool waiting = d.status == events::kDeliveryPending || d.status == events::kDeliveryFailed;
  return {{"event_id", d.event_id},
          {"rule", d.rule},
          {"status", d.status},
          {"attempts", d.attempts},
          {"last_error", d.last_error},
          {"next_attempt_at", waiting ? FormatIsoMillis(d.next_attempt_at) : ""},
          {"updated_at", d.updated_at},
          {"event_type", d.event_type},
          {"event_subject", d.event_subject}};
}

Json RuleJson(const events::Rule& r) {
  return {{"name", r.name},
          {"pattern", Json::parse(r.pattern_json, nullptr, false)},
          {"target", r.target},
          {"config", Json::parse(r.target_config_json, nullptr, false)},
          {"description", r.description},
          {"enabled", r.enabled},
          {"created_by", r.created_by},
          {"created_at", r.created_at},
          {"updated_by", r.updated_by},
          {"updated_at", r.updated_at}};
}

// The request body as a JSON object whose keys are all in `known`.
Result<Json> BodyObject(const Request& req, std::string_view what, const std::set<std::string>& known) {
  TAKT_RETURN_IF_ERROR(RequireJson(req));
  TAKT_ASSIGN_OR_RETURN(Json body, ParseJson(req.body.empty() ? std::string("{}") : req.body, what));
  if (!body.is_object()) return InvalidArgument(std::string(what) + ": expected a JSON object");
  for (const auto& [key, _] : body.items()) {
    if (!known.contains(key)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      return InvalidArgument(std::string(what) + ": unknown field '" + key + "' (known: " + list + ")");
    }
  }
  return body;
}

Result<int> LimitOf(const Request& req, int fallback) {
  auto l = req.Query("limit");
  if (!l) return fallback;
  return ParseInt(*l, "limit");
}

// PUT /event-rules/{name}: {"pattern": {...}, "target": "webhook", "config": {...}, "description": "...",
// "enabled": true}
Result<events::Rule> RuleFrom(const Request& req) {
  TAKT_ASSIGN_OR_RETURN(Json body,
                        BodyObject(req, "rule", {"pattern", "target", "config", "description", "enabled"}));
  events::Rule r;
  r.name = req.path_params.at("name");
  r.created_by = req.principal_id;
  if (!body.contains("pattern")) {
    return InvalidArgument(
        "rule: pattern is required, e.g. {\"type\": [\"io.takt.model.version.approved\"]}");
  }
  r.pattern_json = body["pattern"].dump();  // PutRule checks it, naming the path
  if (!body.contains("target") || !body["target"].is_string()) {
    return InvalidArgument("rule: target is required, the kind of target, e.g. \"webhook\"");
  }
  r.target = body["target"];
  const Json config = body.contains("config") ? body["config"] : Json::object();
  if (!config.is_object()) return InvalidArgument("rule: config must be a JSON object");
  r.target_config_json = config.dump();
  if (body.contains("description")) {
    if (!body["description"].is_string()) return InvalidArgument("rule: description must be a string");
    r.description = body["description"];
  }
  if (body.contains("enabled")) {
    if (!body["enabled"].is_boolean()) return InvalidArgument("rule: enabled must be true or false");
    r.enabled = body["enabled"];
  }
  return r;
}

}  // namespace

void AddEventRoutes(Platform& p, const AddRoute& add) {
  add("GET", "/api/v1/events", "event:list", [&p](Request& req) {
    auto limit = LimitOf(req, 100);
    if (!limit) return http::ErrorResponse(limit.error());
    events::EventFilter f{.type = req.Query("type").value_or(""),
                          .subject = req.Query("subject").value_or(""),
                          .limit = *limit};
    return Render<std::vector<events::Event>>(p.events->List(f), [](const auto& v) {
      Json a = Json::array();
      for (const auto& e : v) a.push_back(EventJson(e));
      return a;
    });
  });
  add("GET", "/api/v1/events/{id}", "event:list", [&p](Request& req) {
    auto e = p.events->GetEvent(req.path_params["id"]);
    if (!e) return http::ErrorResponse(e.error());
    auto deliveries = p.events->Deliveries({.event_id = e->id, .limit = 1000});
    if (!deliveries) return http::ErrorResponse(deliveries.error());
    Json j = EventJson(*e);
    j["deliveries"] = Json::array();
    for (const auto& d : *deliveries) j["deliveries"].push_back(DeliveryJson(d));
    return JsonOk(j);
  });
  add("POST", "/api/v1/events/{id}/replay", "event:replay", [&p](Request& req) {
    // {"rule": "<name>"}: that delivery; {}: every dead delivery of the event.
    auto body = BodyObject(req, "replay request", {"rule"});
    if (!body) return http::ErrorResponse(body.error());
    if (body->contains("rule") && !(*body)["rule"].is_string())
      return http::ErrorResponse(InvalidArgument("replay request: rule must be a rule name"));
    auto replayed = p.events->Replay(req.path_params["id"], body->value("rule", ""));
    if (replayed) p.events->Notify();
    return Render<std::vector<events::Delivery>>(replayed, [&](const auto& v) {
      Json a = Json::array();
      for (const auto& d : v) a.push_back(DeliveryJson(d));
      return Json{{"event_id", req.path_params["id"]}, {"replayed", a}};
    });
  });
  add("GET", "/api/v1/event-deliveries", "event:list", [&p](Request& req) {
    auto limit = LimitOf(req, 100);
    if (!limit) return http::ErrorResponse(limit.error());
    events::DeliveryFilter f{.status = req.Query("status").value_or(""),
                             .rule = req.Query("rule").value_or(""),
                             .event_id = req.Query("event").value_or(""),
                             .limit = *limit};
    return Render<std::vector<events::Delivery>>(p.events->Deliveries(f), [](const auto& v) {
      Json a = Json::array();
      for (const auto& d : v) a.push_back(DeliveryJson(d));
      return a;
    });
  });

  add("GET", "/api/v1/event-rules", "event:list", [&p](Request&) {
    return Render<std::vector<events::Rule>>(p.events->Rules(), [](const auto& v) {
      Json a = Json::array();
      for (const auto& r : v) a.push_back(RuleJson(r));
      return a;
    });
  });
  add("PUT", "/api/v1/event-rules/{name}", "event:rule-manage", [&p](Request& req) {
    auto rule = RuleFrom(req);
    if (!rule) return http::ErrorResponse(rule.error());
    auto put = p.events->PutRule(*rule);
    if (!put) return http::ErrorResponse(put.error());
    // Events from now on are matched against it.
    return JsonOk(RuleJson(*put), put->created_at == put->updated_at ? 201 : 200);
  });
  add("DELETE", "/api/v1/event-rules/{name}", "event:rule-manage", [&p](Request& req) {
    if (auto s = p.events->DeleteRule(req.path_params["name"]); !s) return http::ErrorResponse(s.error());
    return JsonOk({{"name", req.path_params["name"]}, {"deleted", true}});
  });
  add("POST", "/api/v1/event-rules/test", "event:list", [&p](Request& req) {
    // {"pattern": {...}, "event": {<a CloudEvents envelope>} | "<id of an event in the outbox>"}
    auto body = BodyObject(req, "pattern test", {"pattern", "event"});
    if (!body) return http::ErrorResponse(body.error());
    if (!body->contains("pattern"))
      return http::ErrorResponse(InvalidArgument("pattern test: pattern is required"));
    auto pattern = events::Pattern::Parse((*body)["pattern"]);
    if (!pattern) return http::ErrorResponse(pattern.error());
    const Json event = body->value("event", Json());
    Json envelope;
    if (event.is_string()) {
      auto e = p.events->GetEvent(event.get<std::string>());
      if (!e) return http::ErrorResponse(e.error());
      envelope = events::Envelope(*e);
    } else if (event.is_object()) {
      envelope = event;
    } else {
      return http::ErrorResponse(
          InvalidArgument("pattern test: event must be a CloudEvents envelope ({\"type\": ..., \"data\": "
                          "{...}}) or an event id"));
    }
    return JsonOk({{"matches", pattern->Matches(envelope)}, {"event", envelope}});
  });
}

}  // namespace takt::api
