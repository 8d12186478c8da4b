#include "cli/event_commands.h"

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>

#include "cli/context.h"
#include "cli/output.h"

namespace takt::cli {
namespace {

// Options of the event commands; they outlive parsing (CLI11 binds to them).
struct EventOptions {
  std::string id;
  std::string name;
  std::string type;
  std::string subject;
  int limit = 50;
  std::string pattern;
  std::string target;
  std::string config;
  std::string description;
  bool disabled = false;
  std::string event;
  std::string status;
  std::string rule;
};

std::string Clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 1) + "…"; }

// A JSON value given inline ('{"type": [...]}') or as a file holding it.
Result<Json> JsonArg(const std::string& flag, const std::string& value) {
  const size_t first = value.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (value[first] == '{' || value[first] == '[')) {
    auto j = ParseJson(value, flag);
    if (!j) return std::unexpected(j.error());
    return j;
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(value, ec)) {
    return InvalidArgument(flag + ": '" + Clip(value, 60) +
                           "' is neither JSON nor a file; give a JSON object, e.g. '{\"type\": "
                           "[\"io.takt.model.version.approved\"]}', or the path of a file holding one");
  }
  TAKT_ASSIGN_OR_RETURN(std::string text, ReadFile(value));
  return ParseJson(text, flag + " file " + value);
}

std::string NextAttempt(const Json& d) {
  const std::string status = Str(d, "status");
  if (status != "pending" && status != "failed") return "-";
  return ShortTime(Str(d, "next_attempt_at"));
}

void PrintDeliveries(const Json& list, bool with_event) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& d : list) {
    std::vector<std::string> row;
    if (with_event) {
      row.push_back(Str(d, "event_id"));
      row.push_back(Str(d, "event_type"));
    }
    row.insert(row.end(), {Str(d, "rule"), Str(d, "status"), Str(d, "attempts"), NextAttempt(d),
                           ShortTime(Str(d, "updated_at")), Clip(Str(d, "last_error"), 90)});
    rows.push_back(std::move(row));
  }
  std::vector<std::string> header = {"RULE", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "UPDATED", "LAST ERROR"};
  if (with_event) header.insert(header.begin(), {"EVENT", "TYPE"});
  PrintTable(header, rows);
}

Status CmdList(Context& ctx, const EventOptions& o) {
  std::string target = "/api/v1/events?limit=" + std::to_string(o.limit);
  if (!o.type.empty()) target += "&type=" + Enc(o.type);
  if (!o.subject.empty()) target += "&subject=" + Enc(o.subject);
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(r), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : r) {
    rows.push_back({Str(e, "id"), ShortTime(Str(e, "time")), Str(e, "type"), Str(e, "subject"),
                    Str(e, "delivered_at").empty() ? "pending" : "delivered"});
  }
  PrintTable({"ID", "TIME", "TYPE", "SUBJECT", "DELIVERY"}, rows);
  return Ok();
}

Status CmdShow(Context& ctx, const EventOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json e, ctx.Call("GET", "/api/v1/events/" + Enc(o.id)));
  if (ctx.json()) return PrintJson(e), Ok();
  std::cout << "Event " << Str(e, "id") << "\n"
            << "  type     " << Str(e, "type") << "\n"
            << "  source   " << Str(e, "source") << "\n"
            << "  subject  " << Str(e, "subject") << "\n"
            << "  time     " << Str(e, "time") << "\n"
            << "  delivery "
            << (Str(e, "delivered_at").empty() ? "pending" : "done " + Str(e, "delivered_at")) << "\n"
            << "  data     " << (e.contains("data") ? e["data"].dump() : "{}") << "\n";
  const Json deliveries = e.value("deliveries", Json::array());
  if (deliveries.empty()) {
    std::cout << "No rule matched it.\n";
    return Ok();
  }
  std::cout << "\n";
  PrintDeliveries(deliveries, false);
  return Ok();
}

Status CmdRuleList(Context& ctx) {
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", "/api/v1/event-rules"));
  if (ctx.json()) return PrintJson(r), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& rule : r) {
    rows.push_back({Str(rule, "name"), Str(rule, "target"), rule.value("enabled", true) ? "yes" : "no",
                    Clip(rule.contains("pattern") ? rule["pattern"].dump() : "", 70),
                    Clip(rule.contains("config") ? rule["config"].dump() : "", 50),
                    Clip(Str(rule, "description"), 50)});
  }
  PrintTable({"NAME", "TARGET", "ENABLED", "PATTERN", "CONFIG", "DESCRIPTION"}, rows);
  return Ok();
}

Status CmdRulePut(Context& ctx, const EventOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json pattern, JsonArg("--pattern", o.pattern));
  Json body = {{"pattern", pattern}, {"target", o.target}, {"enabled", !o.disabled}};
  if (!o.config.empty()) {
    TAKT_ASSIGN_OR_RETURN(Json config, JsonArg("--config", o.config));
    body["config"] = config;
  }
  if (!o.description.empty()) body["description"] = o.description;
  TAKT_ASSIGN_OR_RETURN(
      Json r, ctx.Call("PUT", "/api/v1/event-rules/" + Enc(o.name), body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(r), Ok();
  std::cout << "Rule " << Str(r, "name") << ": events matching " << r["pattern"].dump() << " go to "
            << Str(r, "target") << (r.value("enabled", true) ? "" : " (disabled)") << "\n"
            << "  see its deliveries with `takt event deliveries --rule " << Str(r, "name") << "`\n";
  return Ok();
}

Status CmdRuleDelete(Context& ctx, const EventOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("DELETE", "/api/v1/event-rules/" + Enc(o.name)));
  if (ctx.json()) return PrintJson(r), Ok();
  std::cout << "Deleted rule " << o.name << " (its waiting deliveries are dead)\n";
  return Ok();
}

Status CmdRuleTest(Context& ctx, const EventOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json pattern, JsonArg("--pattern", o.pattern));
  Json event;
  const size_t first = o.event.find_first_not_of(" \t\r\n");
  std::error_code ec;
  if (first != std::string::npos && o.event[first] != '{' && !std::filesystem::is_regular_file(o.event, ec)) {
    event = o.event;  // an event id from `takt event list`
  } else {
    TAKT_ASSIGN_OR_RETURN(event, JsonArg("--event", o.event));
  }
  Json body = {{"pattern", pattern}, {"event", event}};
  TAKT_ASSIGN_OR_RETURN(Json r,
                        ctx.Call("POST", "/api/v1/event-rules/test", body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(r), Ok();
  const bool matches = r.value("matches", false);
  std::cout << (matches ? "matches" : "does not match") << ": " << Str(r["event"], "type") << " "
            << Str(r["event"], "subject") << "\n";
  return Ok();
}

Status CmdDeliveries(Context& ctx, const EventOptions& o) {
  std::string target = "/api/v1/event-deliveries?limit=" + std::to_string(o.limit);
  if (!o.status.empty()) target += "&status=" + Enc(o.status);
  if (!o.rule.empty()) target += "&rule=" + Enc(o.rule);
  if (!o.event.empty()) target += "&event=" + Enc(o.event);
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(r), Ok();
  PrintDeliveries(r, true);
  if (o.status == "dead" && !r.empty()) {
    std::cerr << "(replay one with `takt event replay EVENT --rule RULE` once the target is fixed)\n";
  }
  return Ok();
}

Status CmdReplay(Context& ctx, const EventOptions& o) {
  Json body = Json::object();
  if (!o.rule.empty()) body["rule"] = o.rule;
  TAKT_ASSIGN_OR_RETURN(
      Json r, ctx.Call("POST", "/api/v1/events/" + Enc(o.id) + "/replay", body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(r), Ok();
  std::string rules;
  for (const auto& d : r.value("replayed", Json::array()))
    rules += (rules.empty() ? "" : ", ") + Str(d, "rule");
  std::cout << "Replaying event " << o.id << " to " << rules << " (follow it with `takt event show " << o.id
            << "`)\n";
  return Ok();
}

}  // namespace

void AddEventCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                      const std::function<void(CLI::App*)>& output) {
  static EventOptions o;  // bound by CLI11 for the life of the process
  const std::string statuses = "pending, failed (waiting to retry), delivered or dead";

  auto* event = app.add_subcommand("event", "the event outbox, rules and deliveries")
                    ->require_subcommand(1)
                    ->fallthrough();

  auto* list = event->add_subcommand("list", "recent events, newest first, and whether they are delivered");
  list->add_option("--type", o.type, "only this type, e.g. io.takt.model.version.approved");
  list->add_option("--subject", o.subject,
                   "only this subject; a trailing * matches a prefix (models/weld-pm/*)");
  list->add_option("--limit", o.limit, "rows (1-1000)")->capture_default_str();
  output(list);
  list->callback(run([&] { return CmdList(ctx, o); }));

  auto* show = event->add_subcommand("show", "an event's envelope and its deliveries");
  show->add_option("id", o.id, "event id (see `takt event list`)")->required();
  output(show);
  show->callback(run([&] { return CmdShow(ctx, o); }));

  auto* rule = event->add_subcommand("rule", "rules: which events go to which target")
                   ->require_subcommand(1)
                   ->fallthrough();
  auto* rl = rule->add_subcommand("list", "every rule, its pattern and target (secrets shown as \"set\")");
  output(rl);
  rl->callback(run([&] { return CmdRuleList(ctx); }));

  auto* rp = rule->add_subcommand("put", "create or replace a rule");
  rp->add_option("name", o.name, "rule name (lowercase letters, digits, - _ .)")->required();
  rp->add_option("--pattern", o.pattern,
                 "EventBridge-style pattern, as JSON or a file, e.g. '{\"type\": "
                 "[\"io.takt.model.version.approved\"], \"data\": {\"group\": [\"weld-pm\"]}}'")
      ->required();
  rp->add_option("--target", o.target, "target kind: webhook, run, deploy, release")->required();
  rp->add_option(
      "--config", o.config,
      "the target's config, as JSON or a file (a file keeps a webhook secret out of shell history); "
      "a replace without config.secret keeps the stored one");
  rp->add_option("--description", o.description, "what the rule is for");
  rp->add_flag("--disabled", o.disabled, "keep the rule but match nothing");
  output(rp);
  rp->callback(run([&] { return CmdRulePut(ctx, o); }));

  auto* rd = rule->add_subcommand("delete", "delete a rule (its waiting deliveries become dead)");
  rd->add_option("name", o.name, "rule name")->required();
  output(rd);
  rd->callback(run([&] { return CmdRuleDelete(ctx, o); }));

  auto* rt = rule->add_subcommand("test", "does a pattern match an event?");
  rt->add_option("--pattern", o.pattern, "pattern, as JSON or a file")->required();
  rt->add_option("--event", o.event, "a CloudEvents envelope as JSON or a file, or the id of a stored event")
      ->required();
  output(rt);
  rt->callback(run([&] { return CmdRuleTest(ctx, o); }));

  auto* dl = event->add_subcommand("deliveries", "deliveries of events to rules, newest change first");
  dl->add_option("--status", o.status, statuses)
      ->check(CLI::IsMember({"pending", "failed", "delivered", "dead"}));
  dl->add_option("--rule", o.rule, "only this rule");
  dl->add_option("--event", o.event, "only this event");
  dl->add_option("--limit", o.limit, "rows (1-1000)")->capture_default_str();
  output(dl);
  dl->callback(run([&] { return CmdDeliveries(ctx, o); }));

  auto* rep = event->add_subcommand("replay", "deliver an event again: its dead deliveries, or one rule's");
  rep->add_option("id", o.id, "event id")->required();
  rep->add_option("--rule", o.rule, "only this rule (also a delivered one, or a rule added since)");
  output(rep);
  rep->callback(run([&] { return CmdReplay(ctx, o); }));
}

}  // namespace takt::cli
