#include "cli/run_commands.h"

#include <yaml-cpp/yaml.h>
#include <CLI/CLI.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/pipeline_commands.h"
#include "crypto/crypto.h"
#include "plot/plot.h"

namespace takt::cli {
namespace fs = std::filesystem;

namespace {

// Options of the run commands; they outlive parsing (CLI11 binds to them).
struct RunOptions {
  std::string file;
  std::vector<std::string> params;
  bool no_cache = false;
  bool no_wait = false;
  std::string id, from_step;
  std::vector<std::string> ids;
  std::string metric;
  std::optional<double> min, max;
  std::string pipeline;
  int limit = 20;
  std::string out, plot;
  bool log_y = false;
};

}  // namespace

// The files command steps name in `code:`, relative to the pipeline's folder.
Result<Json> CodeFiles(const std::string& pipeline_file, const std::string& yaml) {
  Json files = Json::object();
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception&) {
    return files;  // the server names the bad line
  }
  if (!root.IsMap() || !root["steps"] || !root["steps"].IsSequence()) return files;
  const fs::path base = fs::path(pipeline_file).parent_path();
  for (const auto& step : root["steps"]) {
    if (!step.IsMap() || !step["code"] || !step["code"].IsScalar()) continue;
    const std::string code = step["code"].Scalar();
    if (code.starts_with("/") || code.find("..") != std::string::npos) {
      return InvalidArgument("code '" + code +
                             "': give a path relative to the pipeline file, below its folder");
    }
    const fs::path p = base / code;
    std::vector<fs::path> found;
    if (fs::is_regular_file(p)) {
      found.push_back(p);
    } else if (fs::is_directory(p)) {
      for (const auto& e : fs::recursive_directory_iterator(p)) {
        if (e.is_regular_file() && e.path().filename().string().front() != '.' &&
            e.path().string().find("__pycache__") == std::string::npos)
          found.push_back(e.path());
      }
    } else {
      return NotFound("code '" + code + "' (step " + (step["name"] ? step["name"].Scalar() : "?") +
                      "): no such file or "
                      "folder next to " +
                      pipeline_file);
    }
    size_t total = 0;
    for (const auto& f : found) {
      TAKT_ASSIGN_OR_RETURN(std::string content, ReadFile(f.string()));
      total += content.size();
      if (total > (size_t{64} << 20))
        return InvalidArgument("code '" + code + "' is over 64 MiB: ship data as a dataset");
      files[fs::relative(f, base).generic_string()] = crypto::Base64Encode(content);
    }
  }
  return files;
}

// The commit of the git work tree holding `dir`, if any ("" otherwise).
std::string GitCommit(const fs::path& dir) {
  if (dir.string().find('\'') != std::string::npos) return "";
  const std::string cmd =
      "git -C '" + (dir.empty() ? std::string(".") : dir.string()) + "' rev-parse HEAD 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char buf[128] = {0};
  std::string out;
  if (std::fgets(buf, sizeof buf, p) != nullptr) out = buf;
  ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.size() == 40 ? out : "";
}

Result<Json> ParseParams(const std::vector<std::string>& params) {
  Json out = Json::object();
  for (const auto& p : params) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) return InvalidArgument("--param '" + p + "': write NAME=VALUE");
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

bool Finished(const std::string& status) {
  return status == "succeeded" || status == "failed" || status == "cancelled";
}

std::string StepMark(const std::string& status) {
  if (status == "succeeded") return "✓";
  if (status == "failed") return "✗";
  if (status == "skipped" || status == "cancelled") return "–";
  if (status == "retrying") return "↻";
  return "•";
}

void PrintRunSteps(const Json& run) {
  std::cout << "Run " << Str(run, "id") << " of pipeline " << Str(run, "pipeline") << ": "
            << Str(run, "status") << " (by " << Str(run, "created_by") << ", created "
            << ShortTime(Str(run, "created_at")) << ")\n";
  if (run.contains("params") && run["params"].is_object() && !run["params"].empty()) {
    std::cout << "  parameters: " << run["params"].dump() << "\n";
  }
  if (!Str(run, "error").empty()) std::cout << "  error: " << Str(run, "error") << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : run["steps"]) {
    std::string metrics;
    if (s["metrics"].is_object()) {
      for (const auto& [k, v] : s["metrics"].items()) {
        if (!v.is_number()) continue;
        metrics +=
            (metrics.empty() ? "" : " ") + k + "=" + (v.is_number_float() ? Num(v.get<double>()) : v.dump());
      }
    }
    std::string note = Str(s, "cached_from").empty() ? "" : "cached from " + Str(s, "cached_from");
    if (s.value("attempt", 0) > 1)
      note += (note.empty() ? "" : ", ") + std::to_string(s.value("attempt", 0)) + " attempts";
    if (!Str(s, "error").empty() && Str(s, "status") != "succeeded")
      note += (note.empty() ? "" : ", ") + Str(s, "error");
    rows.push_back(
        {StepMark(Str(s, "status")) + " " + Str(s, "name"), Str(s, "kind"), Str(s, "status"), metrics, note});
  }
  PrintTable({"STEP", "KIND", "STATUS", "METRICS", "NOTE"}, rows);
}

// Follows a run to its end: log lines as they come, a line per step as it settles.
Result<Json> Follow(Context& ctx, const std::string& id, bool quiet) {
  int64_t after = 0;
  std::map<std::string, std::string> shown;
  for (;;) {
    TAKT_ASSIGN_OR_RETURN(
        Json logs, ctx.Call("GET", "/api/v1/runs/" + Enc(id) + "/logs?after=" + std::to_string(after)));
    for (const auto& l : logs) {
      after = std::max<int64_t>(after, l.value("seq", int64_t{0}));
      if (!quiet)
        std::cerr << "  [" << (Str(l, "step").empty() ? "run" : Str(l, "step")) << "] " << Str(l, "line")
                  << "\n";
    }
    TAKT_ASSIGN_OR_RETURN(Json run, ctx.Call("GET", "/api/v1/runs/" + Enc(id)));
    for (const auto& s : run["steps"]) {
      const std::string status = Str(s, "status");
      if (shown[Str(s, "name")] != status && status != "queued" && status != "running") {
        shown[Str(s, "name")] = status;
        if (!quiet) {
          std::cerr << StepMark(status) << " " << Str(s, "name") << " " << status
                    << (Str(s, "cached_from").empty() ? "" : " (cache hit)") << "\n";
        }
      }
    }
    if (Finished(Str(run, "status")) && logs.empty()) return run;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

Status Settle(Context& ctx, const Json& done) {
  if (ctx.json()) {
    PrintJson(done);
  } else {
    PrintRunSteps(done);
  }
  if (Str(done, "status") != "succeeded") {
    return FailedPrecondition("run " + Str(done, "id") + " " + Str(done, "status") + ": " +
                              Str(done, "error"));
  }
  return Ok();
}

namespace {

Status CmdPipelineRun(Context& ctx, const RunOptions& o) {
  TAKT_ASSIGN_OR_RETURN(std::string yaml, ReadFile(o.file));
  TAKT_ASSIGN_OR_RETURN(Json params, ParseParams(o.params));
  TAKT_ASSIGN_OR_RETURN(Json files, CodeFiles(o.file, yaml));
  Json body = {{"yaml", yaml},
               {"params", params},
               {"no_cache", o.no_cache},
               {"files", files},
               {"git_commit", GitCommit(fs::path(o.file).parent_path())}};
  TAKT_ASSIGN_OR_RETURN(Json run, ctx.Call("POST", "/api/v1/runs", body.dump(), "application/json"));
  const std::string id = Str(run, "id");
  if (o.no_wait) {
    if (ctx.json()) return PrintJson(run), Ok();
    std::cout << "Queued run " << id << " (follow it with `takt run logs " << id << " -f`)\n";
    return Ok();
  }
  if (!ctx.json()) std::cerr << "Run " << id << " of " << Str(run, "pipeline") << " queued\n";
  TAKT_ASSIGN_OR_RETURN(Json done, Follow(ctx, id, ctx.json()));
  return Settle(ctx, done);
}

Status CmdRunCancel(Context& ctx, const RunOptions& o) {
  TAKT_ASSIGN_OR_RETURN(Json run,
                        ctx.Call("POST", "/api/v1/runs/" + Enc(o.id) + "/cancel", "{}", "application/json"));
  if (ctx.json()) return PrintJson(run), Ok();
  std::cout << "Cancelling run " << o.id << " (was " << Str(run, "status") << ")\n";
  return Ok();
}

Status CmdRunRerun(Context& ctx, const RunOptions& o) {
  Json body = {{"from_step", o.from_step}, {"no_cache", o.no_cache}};
  TAKT_ASSIGN_OR_RETURN(
      Json run, ctx.Call("POST", "/api/v1/runs/" + Enc(o.id) + "/rerun", body.dump(), "application/json"));
  const std::string id = Str(run, "id");
  if (o.no_wait) {
    if (ctx.json()) return PrintJson(run), Ok();
    std::cout << "Queued run " << id << " (rerun of " << o.id << " from step " << o.from_step << ")\n";
    return Ok();
  }
  if (!ctx.json()) std::cerr << "Run " << id << " reruns " << o.id << " from step " << o.from_step << "\n";
  TAKT_ASSIGN_OR_RETURN(Json done, Follow(ctx, id, ctx.json()));
  return Settle(ctx, done);
}

// Parameters flattened: {"params": {"eta": "0.1"}} → "params.eta".
void Flatten(const Json& j, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) Flatten(v, prefix.empty() ? k : prefix + "." + k, out);
  } else {
    out[prefix] = j.is_string() ? j.get<std::string>() : j.dump();
  }
}

Status CmdRunCompare(Context& ctx, const RunOptions& o) {
  if (o.ids.size() < 2) return InvalidArgument("compare needs at least two run ids");
  std::vector<Json> runs;
  std::vector<std::map<std::string, std::string>> params;
  std::vector<std::map<std::string, double>> metrics;
  std::set<std::string> param_names, metric_names;
  for (const auto& id : o.ids) {
    TAKT_ASSIGN_OR_RETURN(Json run, ctx.Call("GET", "/api/v1/runs/" + Enc(id)));
    TAKT_ASSIGN_OR_RETURN(Json ms, ctx.Call("GET", "/api/v1/runs/" + Enc(id) + "/metrics"));
    std::map<std::string, std::string> p;
    Flatten(run.value("params", Json::object()), "", p);
    for (const auto& s : run["steps"]) {
      // The training parameters actually used, from train/tune steps.
      if (s["outputs"].is_object() && s["outputs"].contains("params") && s["outputs"]["params"].is_object()) {
        for (const auto& [k, v] : s["outputs"]["params"].items())
          p[Str(s, "name") + "." + k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
    }
    std::map<std::string, double> m;
    for (const auto& x : ms) m[Str(x, "step") + "." + Str(x, "name")] = x.value("value", NAN);
    for (const auto& [k, _] : p) param_names.insert(k);
    for (const auto& [k, _] : m) metric_names.insert(k);
    runs.push_back(run);
    params.push_back(std::move(p));
    metrics.push_back(std::move(m));
  }
  if (ctx.json()) {
    Json out = Json::array();
    for (size_t i = 0; i < runs.size(); ++i) {
      out.push_back({{"id", Str(runs[i], "id")},
                     {"status", Str(runs[i], "status")},
                     {"params", params[i]},
                     {"metrics", metrics[i]}});
    }
    PrintJson(out);
  } else {
    std::vector<std::string> header = {""};
    for (const auto& r : runs) header.push_back(Str(r, "id"));
    std::vector<std::vector<std::string>> rows;
    auto row_of = [&](const std::string& label, auto get) {
      std::vector<std::string> row = {label};
      std::set<std::string> distinct;
      for (size_t i = 0; i < runs.size(); ++i) {
        row.push_back(get(i));
        distinct.insert(row.back());
      }
      if (distinct.size() > 1) row[0] = "* " + label;  // differs between the runs
      rows.push_back(row);
    };
    row_of("status", [&](size_t i) { return Str(runs[i], "status"); });
    row_of("pipeline", [&](size_t i) { return Str(runs[i], "pipeline"); });
    row_of("code (spec)", [&](size_t i) { return Str(runs[i], "spec_hash").substr(0, 12); });
    row_of("git commit", [&](size_t i) { return Str(runs[i], "git_commit").substr(0, 12); });
    for (const auto& name : param_names) {
      row_of(name, [&](size_t i) { return params[i].contains(name) ? params[i].at(name) : "-"; });
    }
    for (const auto& name : metric_names) {
      row_of(name, [&](size_t i) { return metrics[i].contains(name) ? Num(metrics[i].at(name)) : "-"; });
    }
    PrintTable(header, rows);
    std::cout << "(* marks rows that differ)\n";
  }
  if (!o.plot.empty()) {
    TAKT_ASSIGN_OR_RETURN(plot::Format format, plot::FormatOf(o.plot));
    plot::BarChart chart;
    chart.title = "Run comparison";
    chart.y_label = "value";
    for (const auto& r : runs) chart.groups.push_back(Str(r, "id"));
    std::vector<std::string> shown;
    for (const auto& name : metric_names) {
      if (o.metric.empty()
              ? (name.find("auc") != std::string::npos || name.find("f1") != std::string::npos ||
                 name.find("precision") != std::string::npos || name.find("recall") != std::string::npos)
              : name.find(o.metric) != std::string::npos) {
        shown.push_back(name);
      }
    }
    if (shown.empty())
      return InvalidArgument("no metric to plot" + (o.metric.empty() ? "" : " matches '" + o.metric + "'"));
    chart.bars = shown;
    for (size_t i = 0; i < runs.size(); ++i) {
      std::vector<double> v;
      for (const auto& name : shown) v.push_back(metrics[i].contains(name) ? metrics[i].at(name) : NAN);
      chart.values.push_back(v);
    }
    TAKT_ASSIGN_OR_RETURN(std::string image, plot::Render(chart, format));
    std::ofstream out(o.plot, std::ios::binary | std::ios::trunc);
    out << image;
    if (!out) return Unavailable("cannot write " + o.plot);
    if (!ctx.json()) std::cout << "Wrote " << o.plot << "\n";
  }
  return Ok();
}

Status CmdRunSearch(Context& ctx, const RunOptions& o) {
  std::string target = "/api/v1/runs?metric=" + Enc(o.metric) + "&limit=" + std::to_string(o.limit);
  if (o.min) target += "&min=" + std::to_string(*o.min);
  if (o.max) target += "&max=" + std::to_string(*o.max);
  if (!o.pipeline.empty()) target += "&pipeline=" + Enc(o.pipeline);
  TAKT_ASSIGN_OR_RETURN(Json found, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(found), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : found) {
    rows.push_back({Str(r, "id"), Str(r, "pipeline"), Str(r, "kind"), Str(r, "status"),
                    Num(r.value("value", NAN)), ShortTime(Str(r, "created_at"))});
  }
  PrintTable({"RUN", "PIPELINE", "KIND", "STATUS", o.metric, "CREATED"}, rows);
  return Ok();
}

Status CmdRunPlot(Context& ctx, const RunOptions& o) {
  TAKT_ASSIGN_OR_RETURN(plot::Format format, plot::FormatOf(o.out));
  TAKT_ASSIGN_OR_RETURN(Json points, ctx.Call("GET", "/api/v1/runs/" + Enc(o.id) + "/metrics?curves=1"));
  std::map<std::string, plot::Series> series;
  for (const auto& p : points) {
    const int round = p.value("round", -1);
    const std::string name = Str(p, "name");
    if (round < 0 || (!o.metric.empty() && name.find(o.metric) == std::string::npos)) continue;
    auto& s = series[Str(p, "step") + " " + name];
    s.name = Str(p, "step") + " " + name;
    s.x.push_back(round + 1);
    s.y.push_back(p.value("value", NAN));
  }
  if (series.empty()) {
    return NotFound("run " + o.id + " recorded no curve" +
                    (o.metric.empty() ? "" : " matching '" + o.metric + "'") +
                    " (train steps record one point per boosting round)");
  }
  plot::LineChart chart;
  chart.title = "Run " + o.id + (o.metric.empty() ? "" : ": " + o.metric);
  chart.x_label = "boosting round";
  chart.y_label = o.metric.empty() ? "metric" : o.metric;
  chart.log_y = o.log_y;
  for (auto& [_, s] : series) chart.series.push_back(std::move(s));
  TAKT_ASSIGN_OR_RETURN(std::string image, plot::Render(chart, format));
  std::ofstream out(o.out, std::ios::binary | std::ios::trunc);
  out << image;
  if (!out) return Unavailable("cannot write " + o.out);
  if (ctx.json()) return PrintJson({{"file", o.out}, {"series", chart.series.size()}}), Ok();
  std::cout << "Wrote " << o.out << " (" << chart.series.size() << " curves)\n";
  return Ok();
}

}  // namespace

void AddRunCommands(CLI::App& app, Context& ctx, const CommandRunner& run,
                    const std::function<void(CLI::App*)>& output) {
  static RunOptions o;  // bound by CLI11 for the life of the process
  CLI::App* pipeline = app.get_subcommand("pipeline");
  CLI::App* runs = app.get_subcommand("run");
  AddPipelineCommands(*pipeline, ctx, run, output);  // save, list, show, start, schedule

  auto* pr = pipeline->add_subcommand("run", "submit a pipeline YAML and follow the run");
  pr->add_option("file", o.file, "pipeline YAML")->required();
  pr->add_option("-p,--param", o.params, "override a declared parameter, NAME=VALUE (repeatable)");
  pr->add_flag("--no-cache", o.no_cache, "run every step, even those with a cached result");
  pr->add_flag("--no-wait", o.no_wait, "return once the run is queued");
  output(pr);
  pr->callback(run([&] { return CmdPipelineRun(ctx, o); }));

  auto* rc = runs->add_subcommand("cancel", "stop a queued or running run");
  rc->add_option("id", o.id, "run id")->required();
  output(rc);
  rc->callback(run([&] { return CmdRunCancel(ctx, o); }));

  auto* rr = runs->add_subcommand("rerun", "run a step and everything after it again, reusing the rest");
  rr->add_option("id", o.id, "run id")->required();
  rr->add_option("--from", o.from_step, "the step to start from")->required();
  rr->add_flag("--no-cache", o.no_cache, "do not reuse cached results for the steps that run");
  rr->add_flag("--no-wait", o.no_wait, "return once the run is queued");
  output(rr);
  rr->callback(run([&] { return CmdRunRerun(ctx, o); }));

  auto* cmp = runs->add_subcommand("compare", "parameters and metrics of runs side by side");
  cmp->add_option("ids", o.ids, "two or more run ids")->required();
  cmp->add_option("--plot", o.plot, "also draw the metrics as a bar chart (.png or .svg)");
  cmp->add_option("--metric", o.metric, "with --plot: the metrics whose name contains this");
  output(cmp);
  cmp->callback(run([&] { return CmdRunCompare(ctx, o); }));

  auto* se = runs->add_subcommand("search", "runs (and tuning trials) by a metric, best first");
  se->add_option("--metric", o.metric, "metric name, e.g. auc or holdout_logloss")->required();
  se->add_option("--min", o.min, "lowest value");
  se->add_option("--max", o.max, "highest value");
  se->add_option("--pipeline", o.pipeline, "only runs of this pipeline");
  se->add_option("--limit", o.limit, "at most this many (default 20)");
  output(se);
  se->callback(run([&] { return CmdRunSearch(ctx, o); }));

  auto* pl = runs->add_subcommand("plot", "draw a run's curves (a metric per boosting round) to PNG or SVG");
  pl->add_option("id", o.id, "run id")->required();
  pl->add_option("--out", o.out, "image file, .png or .svg")->required();
  pl->add_option("--metric", o.metric, "only curves whose name contains this, e.g. logloss");
  pl->add_flag("--log-y", o.log_y, "logarithmic y axis");
  output(pl);
  pl->callback(run([&] { return CmdRunPlot(ctx, o); }));
}

}  // namespace takt::cli
