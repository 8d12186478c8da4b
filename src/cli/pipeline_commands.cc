#include "cli/pipeline_commands.h"

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/run_commands.h"

namespace takt::cli {
namespace fs = std::filesystem;

namespace {

// Options of the pipeline commands; they outlive parsing (CLI11 binds to them).
struct PipelineOptions {
  std::string file;
  std::string name;
  std::vector<std::string> params;
  bool no_cache = false;
  bool no_wait = false;
  std::string cron;
  bool off = false;
  bool disabled = false;
};

std::string Clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 1) + "…"; }

// The schedule column of a saved pipeline: "0 3 * * *", "0 3 * * * (paused)" or "-".
std::string ScheduleText(const Json& p) {
  if (!p.contains("schedule") || !p["schedule"].is_object()) return "-";
  const Json& s = p["schedule"];
  return Str(s, "cron") + (s.value("enabled", true) ? "" : " (paused)");
}

std::string NextRunText(const Json& p) {
  if (!p.contains("schedule") || !p["schedule"].is_object()) return "-";
  const Json& s = p["schedule"];
  if (!s.value("enabled", true) || Str(s, "next_run").empty()) return "-";
  return ShortTime(Str(s, "next_run"));
}

// What the last tick did: "succeeded (run-…)", "error: dataset … does not exist", "never run".
std::string LastText(const Json& p, size_t width) {
  if (!p.contains("schedule") || !p["schedule"].is_object()) return "-";
  const Json& s = p["schedule"];
  const std::string status = Str(s, "last_status");
  if (status.empty()) return "never run";
  if (status == "error") return Clip("error: " + Str(s, "last_error"), width);
  const std::string run_status = Str(s, "last_run_status").empty() ? status : Str(s, "last_run_status");
  return run_status + " (" + Str(s, "last_run_id") + ")";
}

Status CmdSave(Context& ctx, const PipelineOptions& o) {
  TAKT_ASSIGN_OR_RETURN(std::string yaml, ReadFile(o.file));
  TAKT_ASSIGN_OR_RETURN(Json files, CodeFiles(o.file, yaml));
  Json body = {{"yaml", yaml}, {"files", files}, {"git_commit", GitCommit(fs::path(o.file).parent_path())}};
  TAKT_ASSIGN_OR_RETURN(Json saved, ctx.Call("PUT", "/api/v1/pipelines", body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(saved), Ok();
  std::cout << "Saved pipeline " << Str(saved, "name") << " v" << saved.value("version", 0) << " (project "
            << Str(saved, "project") << ", " << saved.value("files", Json::array()).size() << " code file"
            << (saved.value("files", Json::array()).size() == 1 ? "" : "s") << ")\n";
  std::cout << "  start it with `takt pipeline start " << Str(saved, "name")
            << "`, schedule it with `takt pipeline schedule " << Str(saved, "name")
            << " --cron \"0 3 * * *\"`\n";
  return Ok();
}

Status CmdList(Context& ctx) {
  TAKT_ASSIGN_OR_RETURN(Json list, ctx.Call("GET", "/api/v1/pipelines"));
  if (ctx.json()) return PrintJson(list), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : list) {
    rows.push_back({Str(p, "name"), Str(p, "project"), "v" + Str(p, "version"), Str(p, "updated_by"),
                    ShortTime(Str(p, "updated_at")), ScheduleText(p), NextRunText(p), LastText(p, 60)});
  }
  PrintTable({"NAME", "PROJECT", "VERSION", "SAVED BY", "SAVED", "SCHEDULE (UTC)", "NEXT RUN", "LAST"}, rows);
  return Ok();
}

Status CmdShow(Context& ctx, const PipelineOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json p, ctx.Call("GET", "/api/v1/pipelines/" + Enc(o.name)));
  if (ctx.json()) return PrintJson(p), Ok();
  std::cout << "Pipeline " << Str(p, "name") << " v" << Str(p, "version") << " (project " << Str(p, "project")
            << ")\n";
  if (!Str(p, "description").empty()) std::cout << "  description: " << Str(p, "description") << "\n";
  std::cout << "  saved by " << Str(p, "updated_by") << " " << ShortTime(Str(p, "updated_at"))
            << "; first by " << Str(p, "owner") << " " << ShortTime(Str(p, "created_at")) << "\n";
  if (!Str(p, "git_commit").empty()) std::cout << "  git commit: " << Str(p, "git_commit") << "\n";
  if (p.contains("files") && !p["files"].empty()) {
    std::string files;
    for (const auto& f : p["files"]) files += (files.empty() ? "" : ", ") + f.get<std::string>();
    std::cout << "  code files: " << files << "\n";
  }
  if (p.contains("schedule") && p["schedule"].is_object()) {
    const Json& s = p["schedule"];
    std::cout << "  schedule: " << ScheduleText(p) << " (UTC)";
    if (s.contains("params") && s["params"].is_object() && !s["params"].empty())
      std::cout << " with " << s["params"].dump();
    std::cout << ", by " << Str(s, "updated_by") << "\n";
    std::cout << "    next run: " << NextRunText(p) << "\n";
    std::cout << "    last: " << LastText(p, 400);
    if (!Str(s, "last_tick").empty()) std::cout << " for the tick of " << ShortTime(Str(s, "last_tick"));
    std::cout << "\n";
  } else {
    std::cout << "  schedule: none\n";
  }
  std::cout << "---\n" << Str(p, "yaml");
  if (!Str(p, "yaml").ends_with("\n")) std::cout << "\n";
  return Ok();
}

Status CmdStart(Context& ctx, const PipelineOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json params, ParseParams(o.params));
  Json body = {{"params", params}, {"no_cache", o.no_cache}};
  TAKT_ASSIGN_OR_RETURN(Json run, ctx.Call("POST", "/api/v1/pipelines/" + Enc(o.name) + "/runs", body.dump(),
                                           "application/json"));
  const std::string id = Str(run, "id");
  if (o.no_wait) {
    if (ctx.json()) return PrintJson(run), Ok();
    std::cout << "Queued run " << id << " of saved pipeline " << o.name << " (follow it with `takt run logs "
              << id << " -f`)\n";
    return Ok();
  }
  if (!ctx.json()) std::cerr << "Run " << id << " of saved pipeline " << o.name << " queued\n";
  TAKT_ASSIGN_OR_RETURN(Json done, Follow(ctx, id, ctx.json()));
  return Settle(ctx, done);
}

Status CmdSchedule(Context& ctx, const PipelineOptions& o) {
  const std::string target = "/api/v1/pipelines/" + Enc(o.name) + "/schedule";
  if (o.off) {
    if (!o.cron.empty() || !o.params.empty())
      return InvalidArgument("--off removes the schedule: give it without --cron or --param");
    TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("DELETE", target));
    if (ctx.json()) return PrintJson(r), Ok();
    std::cout << "Removed the schedule of pipeline " << o.name << "\n";
    return Ok();
  }
  if (o.cron.empty())
    return InvalidArgument("give --cron \"MIN HOUR DOM MON DOW\" (UTC, e.g. \"0 3 * * *\") or --off");
  TAKT_ASSIGN_OR_RETURN(Json params, ParseParams(o.params));
  Json body = {{"cron", o.cron}, {"params", params}, {"enabled", !o.disabled}};
  TAKT_ASSIGN_OR_RETURN(Json s, ctx.Call("PUT", target, body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(s), Ok();
  std::cout << "Scheduled pipeline " << o.name << ": " << Str(s, "cron") << " (UTC)";
  if (s.contains("params") && s["params"].is_object() && !s["params"].empty())
    std::cout << " with " << s["params"].dump();
  if (s.value("enabled", true)) {
    std::cout << ", next run " << ShortTime(Str(s, "next_run"))
              << " (scheduled runs act as the project's service identity)\n";
  } else {
    std::cout << " (paused)\n";
  }
  return Ok();
}

}  // namespace

void AddPipelineCommands(CLI::App& pipeline, Context& ctx, const CommandRunner& run,
                         const std::function<void(CLI::App*)>& output) {
  static PipelineOptions o;  // bound by CLI11 for the life of the process

  auto* save = pipeline.add_subcommand("save", "keep a pipeline (and the code files it names) on the server");
  save->add_option("file", o.file, "pipeline YAML")->required();
  output(save);
  save->callback(run([&] { return CmdSave(ctx, o); }));

  auto* list = pipeline.add_subcommand("list", "saved pipelines, their schedules, next runs and last status");
  output(list);
  list->callback(run([&] { return CmdList(ctx); }));

  auto* show = pipeline.add_subcommand("show", "a saved pipeline: its version, schedule and YAML");
  show->add_option("name", o.name, "saved pipeline")->required();
  output(show);
  show->callback(run([&] { return CmdShow(ctx, o); }));

  auto* start = pipeline.add_subcommand("start", "start a run of a saved pipeline and follow it");
  start->add_option("name", o.name, "saved pipeline")->required();
  start->add_option("-p,--param", o.params, "override a declared parameter, NAME=VALUE (repeatable)");
  start->add_flag("--no-cache", o.no_cache, "run every step, even those with a cached result");
  start->add_flag("--no-wait", o.no_wait, "return once the run is queued");
  output(start);
  start->callback(run([&] { return CmdStart(ctx, o); }));

  auto* sched = pipeline.add_subcommand(
      "schedule", "run a saved pipeline on a cron schedule (UTC), as the project's service identity");
  sched->add_option("name", o.name, "saved pipeline")->required();
  auto* cron = sched->add_option("--cron", o.cron, "MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK, or @daily etc.");
  sched->add_option("-p,--param", o.params, "parameter override for the scheduled runs, NAME=VALUE");
  sched->add_flag("--disabled", o.disabled, "keep the schedule but pause it");
  auto* off = sched->add_flag("--off", o.off, "remove the schedule");
  off->excludes(cron);
  output(sched);
  sched->callback(run([&] { return CmdSchedule(ctx, o); }));
}

}  // namespace takt::cli
