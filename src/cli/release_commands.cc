#include "cli/release_commands.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <thread>

#include "cli/context.h"
#include "cli/output.h"

namespace takt::cli {
namespace {

struct ReleaseOptions {
  std::string group;
  std::string file;
  std::string id;
  std::string version;
  std::string stage;
  std::string comment;
  std::string at;
  int to = 0;
  int limit = 20;
  int timeout_s = 120;
};

std::string VariantsText(const Json& variants) {
  std::string out;
  for (const auto& v : variants) {
    out += (out.empty() ? "" : ", ") + std::string("v") + std::to_string(v.value("version", 0)) + " " +
           std::to_string(v.value("weight", 0)) + "%";
  }
  return out.empty() ? "-" : out;
}

std::string Approvers(const Json& r, const std::string& stage) {
  std::string out;
  for (const auto& a : r.value("approvals", Json::array())) {
    if (Str(a, "stage") != stage || Str(a, "decision") != "approved") continue;
    out += (out.empty() ? "" : ", ") + Str(a, "principal");
  }
  return out;
}

void PrintLog(const Json& r) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& l : r.value("log", Json::array())) {
    rows.push_back({ShortTime(Str(l, "time")), Str(l, "stage"), Str(l, "what"),
                    Str(l, "principal").empty() ? "-" : Str(l, "principal"), Str(l, "detail")});
  }
  PrintTable({"TIME", "STAGE", "STEP", "BY", "DETAIL"}, rows);
}

void PrintRelease(const Json& r) {
  std::cout << "Release " << Str(r, "id") << ": " << Str(r, "group") << " v" << r.value("version", 0) << ", "
            << Str(r, "status") << " at " << Str(r, "stage") << " (" << Str(r, "phase") << ")\n";
  std::cout << "  " << Str(r, "message") << "\n";
  std::cout << "  started " << ShortTime(Str(r, "created_at"))
            << (Str(r, "started_by").empty() ? "" : " after " + Str(r, "started_by") + "'s decision") << "\n";
  PrintLog(r);
}

Status CmdStatus(Context& ctx, const ReleaseOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json s, ctx.Call("GET", "/api/v1/releases/" + Enc(o.group)));
  if (ctx.json()) return PrintJson(s), Ok();
  std::cout << "Model group " << Str(s, "group") << " ("
            << (s.value("custom_config", false) ? "its own release config" : "the default release config")
            << ")\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& st : s["stages"]) {
    int live = st.value("live_version", 0);
    rows.push_back({Str(st, "stage"), Str(st, "endpoint"), live ? "v" + std::to_string(live) : "-",
                    VariantsText(st["variants"]), ShortTime(Str(st, "since"))});
  }
  PrintTable({"STAGE", "ENDPOINT", "LIVE", "TRAFFIC", "SINCE"}, rows);
  for (const auto& r : s["active"]) {
    std::cout << "\n";
    PrintRelease(r);
    if (Str(r, "status") == "WaitingForApproval") {
      std::cout << "  approve with `takt release approve " << Str(s, "group") << " --stage "
                << Str(r, "stage") << "` (an approver other than the version's author)\n";
    }
  }
  if (s["active"].empty()) std::cout << "\nNo release in progress.\n";
  if (!s["recent"].empty()) {
    std::cout << "\nRecent releases:\n";
    std::vector<std::vector<std::string>> recent;
    for (const auto& r : s["recent"]) {
      recent.push_back({Str(r, "id"), "v" + std::to_string(r.value("version", 0)), Str(r, "status"),
                        Str(r, "stage"), ShortTime(Str(r, "updated_at")), Str(r, "message")});
    }
    PrintTable({"RELEASE", "VERSION", "STATUS", "STAGE", "ENDED", "MESSAGE"}, recent);
  }
  return Ok();
}

Status CmdConfigPut(Context& ctx, const ReleaseOptions& o) {
  TAKT_ASSIGN_OR_RETURN(std::string yaml, ReadFile(o.file));
  // The group is the file's model_group; the server checks the rest.
  std::string group;
  for (size_t pos = 0; pos < yaml.size();) {
    size_t end = yaml.find('\n', pos);
    std::string line = yaml.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (line.rfind("model_group:", 0) == 0) {
      group = line.substr(12);
      group.erase(0, group.find_first_not_of(" \t\"'"));
      group.erase(group.find_last_not_of(" \t\"'\r") + 1);
      if (auto hash = group.find(" #"); hash != std::string::npos) group.erase(hash);
    }
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  if (group.empty()) return InvalidArgument(o.file + ": no model_group: line at the top level");
  TAKT_ASSIGN_OR_RETURN(
      Json c, ctx.Call("PUT", "/api/v1/releases/" + Enc(group) + "/config", yaml, "application/yaml"));
  if (ctx.json()) return PrintJson(c), Ok();
  std::cout << "Release config of " << group << " saved: ";
  std::string stages;
  for (const auto& s : c["stages"]) stages += (stages.empty() ? "" : " → ") + Str(s, "name");
  std::cout << stages << "\n";
  return Ok();
}

Status CmdConfigShow(Context& ctx, const ReleaseOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json c, ctx.Call("GET", "/api/v1/releases/" + Enc(o.group) + "/config"));
  if (ctx.json()) return PrintJson(c), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : c["stages"]) {
    std::string gates;
    for (const auto& g : s["gates"]) {
      for (const auto& [k, v] : g.items()) {
        std::string text = k;
        if (k == "quality")
          text += " " + Str(v, "metric") + " vs " + Str(v, "compare_to") + " (max -" +
                  Str(v, "max_regression") + ")";
        if (k == "approval")
          text += " x" + Str(v, "approvers") + " " + Str(v, "persona") +
                  (Str(v, "group").empty() ? "" : " in " + Str(v, "group"));
        gates += (gates.empty() ? "" : "; ") + text;
      }
    }
    std::string strategy = Str(s, "strategy");
    if (s.contains("strategy_settings")) {
      const Json& x = s["strategy_settings"];
      if (strategy == "canary") strategy += " " + Str(x, "percent") + "%";
      strategy += " for " + Str(x, "duration_s") + "s";
    }
    rows.push_back({Str(s, "name"), Str(s["replicas"], "min") + "-" + Str(s["replicas"], "max"), strategy,
                    Str(s, "capture_percent") + "%", gates});
  }
  std::cout << "Release pipeline of " << Str(c, "model_group")
            << (c.value("custom", false) ? "" : " (the default: no config was put)") << "\n";
  PrintTable({"STAGE", "REPLICAS", "STRATEGY", "CAPTURE", "GATES"}, rows);
  return Ok();
}

Status CmdStart(Context& ctx, const ReleaseOptions& o) {
  Json body = {{"version", o.version}};
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("POST", "/api/v1/releases/" + Enc(o.group) + "/start", body.dump(),
                                         "application/json"));
  if (ctx.json()) return PrintJson(r), Ok();
  std::cout << "Started release " << Str(r, "id") << " of " << o.group << " v" << r.value("version", 0)
            << " (follow it with `takt release status " << o.group << "`)\n";
  return Ok();
}

Status CmdDecide(Context& ctx, const ReleaseOptions& o, bool approve) {
  if (!approve && o.comment.empty()) return InvalidArgument("say why with --comment");
  Json body = {{"stage", o.stage}, {"comment", o.comment}};
  TAKT_ASSIGN_OR_RETURN(
      Json r, ctx.Call("POST", "/api/v1/releases/" + Enc(o.group) + (approve ? "/approve" : "/reject"),
                       body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(r), Ok();
  if (approve) {
    std::cout << "Approved " << o.group << " v" << r.value("version", 0) << " for " << o.stage
              << " (approvers: " << Approvers(r, o.stage) << "): " << Str(r, "message") << "\n";
  } else {
    std::cout << "Rejected the release of " << o.group << " v" << r.value("version", 0) << " at " << o.stage
              << "; nothing was deployed there\n";
  }
  return Ok();
}

Status CmdRollback(Context& ctx, const ReleaseOptions& o) {
  Json body = {{"stage", o.stage}, {"comment", o.comment}};
  if (o.to > 0) body["to"] = o.to;
  TAKT_ASSIGN_OR_RETURN(Json s, ctx.Call("POST", "/api/v1/releases/" + Enc(o.group) + "/rollback",
                                         body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(s), Ok();
  std::cout << "Rolled " << o.group << " at " << o.stage << " back to v" << s.value("version", 0)
            << ": it takes all traffic\n";
  return Ok();
}

Status CmdHistory(Context& ctx, const ReleaseOptions& o) {
  std::string target = "/api/v1/releases/" + Enc(o.group) + "/history";
  std::string q;
  if (!o.at.empty()) q += "at=" + Enc(o.at);
  if (!o.stage.empty()) q += std::string(q.empty() ? "" : "&") + "stage=" + Enc(o.stage);
  TAKT_ASSIGN_OR_RETURN(Json h, ctx.Call("GET", target + (q.empty() ? "" : "?" + q)));
  if (ctx.json()) return PrintJson(h), Ok();
  if (!o.at.empty()) std::cout << "What served " << o.group << " at " << o.at << ":\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : h) {
    std::string approved;
    for (const auto& a : s["approved_by"]) approved += (approved.empty() ? "" : ", ") + a.get<std::string>();
    std::string data = Str(s, "dataset").empty() ? "-" : Str(s, "dataset") + " v" + Str(s, "dataset_version");
    rows.push_back({Str(s, "stage"), "v" + Str(s, "version"), ShortTime(Str(s, "from")),
                    Str(s, "to").empty() ? "now" : ShortTime(Str(s, "to")), Str(s, "how"),
                    Str(s, "by").empty() ? "-" : Str(s, "by"), approved.empty() ? "-" : approved,
                    Str(s, "run_id").empty() ? "-" : Str(s, "run_id"), data});
  }
  if (rows.empty()) {
    std::cout << (o.at.empty() ? "Nothing has served " + o.group + " yet.\n" : "Nothing served then.\n");
    return Ok();
  }
  PrintTable({"STAGE", "VERSION", "FROM", "TO", "HOW", "DECIDED BY", "APPROVED BY", "RUN", "DATA"}, rows);
  return Ok();
}

Status CmdList(Context& ctx, const ReleaseOptions& o) {
  std::string target = "/api/v1/releases?limit=" + std::to_string(o.limit);
  if (!o.group.empty()) target += "&group=" + Enc(o.group);
  TAKT_ASSIGN_OR_RETURN(Json list, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(list), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : list) {
    rows.push_back({Str(r, "id"), Str(r, "group"), "v" + std::to_string(r.value("version", 0)),
                    Str(r, "status"), Str(r, "stage"), ShortTime(Str(r, "created_at")), Str(r, "message")});
  }
  PrintTable({"RELEASE", "GROUP", "VERSION", "STATUS", "STAGE", "STARTED", "MESSAGE"}, rows);
  return Ok();
}

Status CmdShow(Context& ctx, const ReleaseOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", "/api/v1/release-runs/" + Enc(o.id)));
  if (ctx.json()) return PrintJson(r), Ok();
  PrintRelease(r);
  return Ok();
}

// Waits until the group's latest release (of --version, if given) waits for
// an approval or has ended; prints it.
Status CmdWait(Context& ctx, const ReleaseOptions& o) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.timeout_s);
  std::string last;
  while (true) {
    TAKT_ASSIGN_OR_RETURN(Json list, ctx.Call("GET", "/api/v1/releases?limit=5&group=" + Enc(o.group)));
    for (const auto& r : list) {
      if (!o.version.empty() && std::to_string(r.value("version", 0)) != o.version) continue;
      const std::string status = Str(r, "status");
      const std::string where = status + " at " + Str(r, "stage") + " (" + Str(r, "phase") + ")";
      if (!ctx.json() && where != last) std::cerr << "  " << Str(r, "id") << ": " << where << "\n";
      last = where;
      if (status != "InProgress") {
        if (ctx.json()) return PrintJson(r), Ok();
        std::cout << Str(r, "group") << " v" << r.value("version", 0) << ": " << status << " at "
                  << Str(r, "stage") << ": " << Str(r, "message") << "\n";
        return Ok();
      }
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Unavailable("the release of " + o.group + " did not settle within " +
                         std::to_string(o.timeout_s) + " s (last: " + (last.empty() ? "no release" : last) +
                         ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace

void AddReleaseCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                        const std::function<void(CLI::App*)>& output) {
  static ReleaseOptions o;  // bound by CLI11 for the life of the process
  auto* rel = app.add_subcommand("release", "release pipelines: dev → int → prod with approvals and rollback")
                  ->require_subcommand(1)
                  ->fallthrough();

  auto* status = rel->add_subcommand("status", "what serves each stage and the release going on");
  status->add_option("group", o.group, "model group")->required();
  output(status);
  status->callback(run([&] { return CmdStatus(ctx, o); }));

  auto* config =
      rel->add_subcommand("config", "a group's release pipeline (release.yaml)")->require_subcommand(1);
  auto* put =
      config->add_subcommand("put", "check and store a release.yaml (its model_group names the group)");
  put->add_option("file", o.file, "release.yaml")->required();
  output(put);
  put->callback(run([&] { return CmdConfigPut(ctx, o); }));
  auto* show_cfg = config->add_subcommand("show", "the stages and gates a group's versions pass");
  show_cfg->add_option("group", o.group, "model group")->required();
  output(show_cfg);
  show_cfg->callback(run([&] { return CmdConfigShow(ctx, o); }));

  auto* start = rel->add_subcommand("start", "release an Approved version (approval starts one by itself)");
  start->add_option("group", o.group, "model group")->required();
  start->add_option("version", o.version, "version number or alias")->required();
  output(start);
  start->callback(run([&] { return CmdStart(ctx, o); }));

  for (bool approve : {true, false}) {
    auto* cmd =
        rel->add_subcommand(approve ? "approve" : "reject", approve ? "approve the release waiting at a stage"
                                                                    : "stop the release waiting at a stage");
    cmd->add_option("group", o.group, "model group")->required();
    cmd->add_option("--stage", o.stage, "the stage waiting for approval (int, prod)")->required();
    cmd->add_option("--comment", o.comment, approve ? "why (kept in the history)" : "why (required)");
    output(cmd);
    cmd->callback(run([&, approve] { return CmdDecide(ctx, o, approve); }));
  }

  auto* rollback = rel->add_subcommand("rollback", "put a stage back to its previous good version");
  rollback->add_option("group", o.group, "model group")->required();
  rollback->add_option("--stage", o.stage, "dev, int or prod")->required();
  rollback->add_option("--to", o.to, "this version instead of the previous good one");
  rollback->add_option("--comment", o.comment, "why (kept in the history)");
  output(rollback);
  rollback->callback(run([&] { return CmdRollback(ctx, o); }));

  auto* history = rel->add_subcommand("history", "what served each stage when, who released and approved it");
  history->add_option("group", o.group, "model group")->required();
  history->add_option("--at", o.at, "only what served at this time (UTC), e.g. 2026-11-20T10:00Z");
  history->add_option("--stage", o.stage, "only this stage");
  output(history);
  history->callback(run([&] { return CmdHistory(ctx, o); }));

  auto* list = rel->add_subcommand("list", "releases, newest first");
  list->add_option("group", o.group, "only this model group");
  list->add_option("--limit", o.limit, "rows")->capture_default_str();
  output(list);
  list->callback(run([&] { return CmdList(ctx, o); }));

  auto* show = rel->add_subcommand("show", "one release and its timeline");
  show->add_option("id", o.id, "release id (rel-...)")->required();
  output(show);
  show->callback(run([&] { return CmdShow(ctx, o); }));

  auto* wait = rel->add_subcommand("wait", "wait until the group's release waits for approval or has ended");
  wait->add_option("group", o.group, "model group")->required();
  wait->add_option("--version", o.version, "the release of this version");
  wait->add_option("--timeout", o.timeout_s, "seconds")->capture_default_str();
  output(wait);
  wait->callback(run([&] { return CmdWait(ctx, o); }));
}

}  // namespace takt::cli
