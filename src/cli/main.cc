// The `takt` binary: the server (`takt server`) and its CLI, one program.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "api/platform.h"
#include "api/routes.h"
#include "cli/access_key_commands.h"
#include "cli/context.h"
#include "cli/data_commands.h"
#include "cli/event_commands.h"
#include "cli/model_commands.h"
#include "cli/output.h"
#include "cli/release_commands.h"
#include "cli/run_commands.h"
#include "core/config.h"
#include "core/json.h"
#include "core/log.h"
#include "frame/csv.h"
#include "http/client.h"
#include "http/server.h"
#include "http/url.h"
#include "pipeline/slurm_step.h"
#include "sim/weld.h"

namespace takt::cli {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- init, server, login

Status CmdInit(Context& ctx, const std::string& admin) {
  TAKT_ASSIGN_OR_RETURN(api::InitResult r, api::Initialize(ctx.config, admin));
  if (ctx.json()) {
    PrintJson({{"data_dir", r.data_dir},
               {"master_key_file", r.master_key_file},
               {"admin", r.admin_name},
               {"token", r.admin_token}});
    return Ok();
  }
  std::cout << "Initialised " << r.data_dir << "\n"
            << "  master key   " << r.master_key_file
            << " (mode 0600: back it up; without it the data is lost)\n"
            << "  admin        " << r.admin_name << "\n"
            << "  admin token  " << r.admin_token << "\n\n"
            << "The token is shown only this once. Start the server with `takt server --data-dir "
            << r.data_dir << "`,\nthen `takt login --token <token>`.\n";
  return Ok();
}

std::atomic<bool> g_stop{false};

Status CmdServer(Context& ctx) {
  TAKT_RETURN_IF_ERROR(InitLogging(ctx.config.log_format, ctx.config.log_level));
  TAKT_ASSIGN_OR_RETURN(auto platform, api::Platform::Open(ctx.config));
  platform->Start();
  http::ServerOptions opts;
  opts.address = ctx.config.address;
  opts.port = static_cast<uint16_t>(ctx.config.port);
  opts.threads = ctx.config.http_threads;
  opts.loops = ctx.config.http_loops;
  http::Server server(opts, api::BuildRouter(*platform));
  api::InstallHooks(server, *platform);
  TAKT_RETURN_IF_ERROR(server.Start());
  spdlog::info("takt server listening on http://{}:{} (data dir {})", opts.address, server.port(),
               ctx.config.data_dir);
  // Tests and scripts read the bound port from this line when --port 0.
  std::cout << "listening on http://" << opts.address << ":" << server.port() << std::endl;
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = true; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  spdlog::info("takt server stopping");
  server.Stop();
  platform->Stop();
  return Ok();
}

Status CmdLogin(Context& ctx, const std::string& token) {
  if (token.empty())
    return InvalidArgument("--token is required (the token `takt init` or `principal create` printed)");
  ctx.config.token = token;
  TAKT_ASSIGN_OR_RETURN(Json me, ctx.Call("GET", "/api/v1/whoami"));
  fs::path path = ctx.config.CredentialsPath();
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  std::string tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return Unavailable("cannot write " + tmp);
    ::chmod(tmp.c_str(), 0600);
    out << Json{{"url", ctx.config.url}, {"token", token}}.dump() << "\n";
  }
  fs::rename(tmp, path, ec);
  if (ec) return Unavailable("cannot write " + path.string() + ": " + ec.message());
  std::cout << "Logged in to " << ctx.config.url << " as " << me.value("name", "?") << " (credentials in "
            << path.string() << ")\n";
  return Ok();
}

Status CmdWhoami(Context& ctx) {
  TAKT_ASSIGN_OR_RETURN(Json me, ctx.Call("GET", "/api/v1/whoami"));
  if (ctx.json()) return PrintJson(me), Ok();
  std::string personas;
  for (const auto& p : me["personas"]) personas += (personas.empty() ? "" : ",") + p.get<std::string>();
  std::cout << me.value("name", "") << " (" << me.value("kind", "") << ", personas " << personas << ") at "
            << ctx.config.url << "\n";
  return Ok();
}

// ---------------------------------------------------------------- principals

Status CmdPrincipalCreate(Context& ctx, const std::string& name, const std::vector<std::string>& personas,
                          const std::vector<std::string>& denies, bool service) {
  Json body = {
      {"name", name}, {"kind", service ? "service" : "user"}, {"personas", personas}, {"denies", denies}};
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("POST", "/api/v1/principals", body.dump(), "application/json"));
  if (ctx.json()) return PrintJson(r), Ok();
  std::cout << "Created principal " << name << "\n  token " << r.value("token", "")
            << "\n(shown only this once)\n";
  return Ok();
}

Status CmdPrincipalList(Context& ctx) {
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", "/api/v1/principals"));
  if (ctx.json()) return PrintJson(r), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : r) {
    std::string personas, denies;
    for (const auto& x : p["personas"]) personas += (personas.empty() ? "" : ",") + x.get<std::string>();
    for (const auto& x : p["denies"]) denies += (denies.empty() ? "" : ",") + x.get<std::string>();
    rows.push_back({Str(p, "name"), Str(p, "kind"), personas, denies, ShortTime(Str(p, "created_at"))});
  }
  PrintTable({"NAME", "KIND", "PERSONAS", "DENIES", "CREATED"}, rows);
  return Ok();
}

// ---------------------------------------------------------------- sim

Status CmdSimWeld(Context&, const sim::WeldOptions& o, const std::string& out_path) {
  TAKT_RETURN_IF_ERROR(sim::ValidateWeldOptions(o));
  if (out_path.empty()) return InvalidArgument("-o FILE is required (e.g. -o telemetry.csv)");
  std::string tmp = out_path + ".tmp";
  std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
  if (!out) return Unavailable("cannot write " + tmp);
  Progress progress("sim weld");
  uint64_t rows = 0;
  TAKT_RETURN_IF_ERROR(sim::WriteWeldCsv(o, out, [&](uint64_t done, uint64_t total) {
    rows = done;
    progress.Update(done, total);
  }));
  out.close();
  if (!out) return Unavailable("writing " + tmp + " failed");
  std::error_code ec;
  fs::rename(tmp, out_path, ec);
  if (ec) return Unavailable("cannot rename " + tmp + ": " + ec.message());
  progress.Finish("");
  std::cout << "Wrote " << out_path << ": " << static_cast<uint64_t>(o.robots) * o.days * 24 << " rows, "
            << o.robots << " robots in " << o.plants << " plants over " << o.days << " days ("
            << HumanBytes(fs::file_size(out_path)) << ")\n";
  return Ok();
}

// ---------------------------------------------------------------- datasets

Status CmdDatasetList(Context& ctx) {
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", "/api/v1/datasets"));
  if (ctx.json()) return PrintJson(r), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& d : r) {
    rows.push_back(
        {Str(d, "name"), Str(d, "latest_version"), Str(d, "owner"), ShortTime(Str(d, "created_at"))});
  }
  PrintTable({"NAME", "LATEST", "OWNER", "CREATED"}, rows);
  return Ok();
}

// ---------------------------------------------------------------- runs

Status CmdRunList(Context& ctx) {
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", "/api/v1/runs"));
  if (ctx.json()) return PrintJson(r), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& x : r) {
    rows.push_back({Str(x, "id"), Str(x, "pipeline"), Str(x, "status"), Str(x, "created_by"),
                    ShortTime(Str(x, "created_at")), ShortTime(Str(x, "finished_at"))});
  }
  PrintTable({"RUN", "PIPELINE", "STATUS", "BY", "CREATED", "FINISHED"}, rows);
  return Ok();
}

Status CmdRunShow(Context& ctx, const std::string& id) {
  TAKT_ASSIGN_OR_RETURN(Json run, ctx.Call("GET", "/api/v1/runs/" + Enc(id)));
  if (ctx.json()) return PrintJson(run), Ok();
  PrintRunSteps(run);
  return Ok();
}

Status CmdRunLogs(Context& ctx, const std::string& id, bool follow) {
  if (follow) {
    TAKT_ASSIGN_OR_RETURN(Json run, Follow(ctx, id, false));
    std::cout << "run " << id << " " << Str(run, "status") << "\n";
    return Ok();
  }
  TAKT_ASSIGN_OR_RETURN(Json logs, ctx.Call("GET", "/api/v1/runs/" + Enc(id) + "/logs"));
  if (ctx.json()) return PrintJson(logs), Ok();
  for (const auto& l : logs) {
    std::cout << ShortTime(Str(l, "time")) << " [" << Str(l, "step") << "] " << Str(l, "line") << "\n";
  }
  return Ok();
}

Status CmdRunExport(Context& ctx, const std::string& id, const std::string& what, const std::string& file) {
  auto slash = what.find('/');
  if (slash == std::string::npos)
    return InvalidArgument("name the output as STEP/OUTPUT, e.g. features/latest");
  std::string target = "/api/v1/runs/" + Enc(id) + "/steps/" + Enc(what.substr(0, slash)) + "/outputs/" +
                       Enc(what.substr(slash + 1)) + "?format=csv";
  TAKT_ASSIGN_OR_RETURN(Json body, ctx.Call("GET", target));
  std::string csv = body.get<std::string>();
  if (file.empty() || file == "-") {
    std::cout << csv;
    return Ok();
  }
  std::ofstream out(file, std::ios::trunc);
  if (!out) return Unavailable("cannot write " + file);
  out << csv;
  std::cerr << "Wrote " << file << " (" << HumanBytes(csv.size()) << ")\n";
  return Ok();
}

// ---------------------------------------------------------------- endpoints

Status CmdEndpointList(Context& ctx) {
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", "/api/v1/endpoints"));
  if (ctx.json()) return PrintJson(r), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : r) {
    rows.push_back({Str(e, "name"), Str(e, "stage"), Str(e, "model_group") + " v" + Str(e, "model_version"),
                    Str(e, "status"), ShortTime(Str(e, "updated_at"))});
  }
  PrintTable({"ENDPOINT", "STAGE", "MODEL", "STATUS", "UPDATED"}, rows);
  return Ok();
}

Status CmdEndpointShow(Context& ctx, const std::string& name) {
  TAKT_ASSIGN_OR_RETURN(Json e, ctx.Call("GET", "/api/v1/endpoints/" + Enc(name)));
  if (ctx.json()) return PrintJson(e), Ok();
  std::cout << "Endpoint " << Str(e, "name") << " (" << Str(e, "stage") << "): " << Str(e, "status")
            << ", serving " << Str(e, "model_group") << " v" << Str(e, "model_version") << "\n"
            << "  Open Inference Protocol  POST " << ctx.config.url << "/v2/models/" << Str(e, "name")
            << "/infer\n"
            << "  SageMaker runtime        POST " << ctx.config.url << "/endpoints/" << Str(e, "name")
            << "/invocations\n"
            << "  features                 " << (e.contains("feature_names") ? e["feature_names"].size() : 0)
            << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& v : e.value("variants", Json::array())) {
    std::vector<std::string> row = {Str(v, "name"), "v" + Str(v, "version"), Str(v, "weight") + "%"};
    for (const auto& s : e.value("last_15m", Json::array())) {
      if (Str(s, "variant") != Str(v, "name")) continue;
      row.push_back(Str(s, "requests"));
      row.push_back(Num(s.value("error_rate", 0.0), 3));
      row.push_back(Num(s.value("p99_ms", 0.0), 2));
    }
    rows.push_back(std::move(row));
  }
  if (!rows.empty())
    PrintTable({"VARIANT", "VERSION", "TRAFFIC", "REQUESTS 15M", "ERROR RATE", "P99 MS"}, rows);
  // How the variants run now: replicas (the autoscaler's target), queues, batching.
  std::vector<std::vector<std::string>> runtime;
  for (const auto& r : e.value("runtime", Json::array())) {
    runtime.push_back({Str(r, "variant"),
                       Str(r, "replicas") + " (want " + Str(r, "desired_replicas") + ", " +
                           Str(r, "min_replicas") + "-" + Str(r, "max_replicas") + ")",
                       Str(r, "in_flight"), Str(r, "queued") + "/" + Str(r, "queue_capacity"),
                       Num(r.value("mean_batch_rows", 0.0), 1) + " (max " + Str(r, "max_batch_size") + ")",
                       Str(r, "rejected"), Str(r, "cold_starts"),
                       r.value("model_loaded", false) ? "loaded" : "not loaded"});
  }
  if (!runtime.empty()) {
    std::cout << "\n";
    PrintTable(
        {"VARIANT", "REPLICAS", "IN FLIGHT", "QUEUED", "ROWS/BATCH", "REJECTED", "COLD STARTS", "MODEL"},
        runtime);
  }
  return Ok();
}

// Captured requests: time, variant, inference id, latency, the first inputs, the prediction.
Status CmdEndpointCapture(Context& ctx, const std::string& name, int minutes, int limit) {
  TAKT_ASSIGN_OR_RETURN(Json cap, ctx.Call("GET", "/api/v1/endpoints/" + Enc(name) +
                                                      "/capture?minutes=" + std::to_string(minutes) +
                                                      "&limit=" + std::to_string(limit)));
  if (ctx.json()) return PrintJson(cap), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : cap.value("records", Json::array())) {
    std::string inputs;
    const Json in = r.value("input", Json::array());
    if (!in.empty()) {
      int shown = 0;
      for (const auto& [k, v] : in.front().items()) {
        if (shown++ == 3) {
          inputs += " ...";
          break;
        }
        inputs +=
            (inputs.empty() ? "" : " ") + k + "=" + (v.is_number() ? Num(v.get<double>(), 3) : v.dump());
      }
      if (in.size() > 1) inputs += " (+" + std::to_string(in.size() - 1) + " rows)";
    }
    std::string out;
    for (const auto& o : r.value("output", Json::array()))
      out += (out.empty() ? "" : " ") + Num(o.get<double>(), 4);
    rows.push_back({Str(r, "time"), Str(r, "variant"), Str(r, "inference_id").substr(0, 12),
                    Num(r.value("latency_us", 0.0) / 1000.0, 2), inputs, out});
  }
  PrintTable({"TIME", "VARIANT", "INFERENCE ID", "MS", "INPUT", "PREDICTION"}, rows);
  if (rows.empty()) std::cout << "no captured requests in the last " << minutes << " minutes\n";
  return Ok();
}

// The endpoint's recent requests, newest first.
Status CmdEndpointLogs(Context& ctx, const std::string& name, int limit) {
  TAKT_ASSIGN_OR_RETURN(
      Json logs, ctx.Call("GET", "/api/v1/endpoints/" + Enc(name) + "/logs?limit=" + std::to_string(limit)));
  if (ctx.json()) return PrintJson(logs), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& l : logs) {
    rows.push_back({Str(l, "time"), Str(l, "variant"), Str(l, "status"), Num(l.value("latency_ms", 0.0), 2),
                    Str(l, "error")});
  }
  PrintTable({"TIME", "VARIANT", "STATUS", "MS", "ERROR"}, rows);
  return Ok();
}

// Scores a CSV with a header: columns are matched to the endpoint's features
// by name; --id-column values are shown beside the scores.
Status CmdEndpointInvoke(Context& ctx, const std::string& name, const std::string& file,
                         const std::vector<std::string>& id_columns, int top) {
  TAKT_ASSIGN_OR_RETURN(Json e, ctx.Call("GET", "/api/v1/endpoints/" + Enc(name)));
  if (!e.contains("feature_names")) return Unavailable("endpoint " + name + " is not serving yet");
  auto features = e["feature_names"].get<std::vector<std::string>>();
  TAKT_ASSIGN_OR_RETURN(std::string text, ReadFile(file));
  auto table = frame::ReadCsv(text);
  if (!table) return std::unexpected(table.error().WithContext(file));
  std::vector<const frame::Column*> cols;
  for (const auto& f : features) {
    const frame::Column* c = table->Find(f);
    if (!c) return InvalidArgument(file + ": column '" + f + "' (a feature of " + name + ") is missing");
    cols.push_back(c);
  }
  for (const auto& id : id_columns) {
    if (!table->Find(id)) return InvalidArgument(file + ": --id-column '" + id + "' is not a column");
  }
  std::string csv;
  char buf[64];
  for (size_t r = 0; r < table->num_rows(); ++r) {
    for (size_t i = 0; i < cols.size(); ++i) {
      if (i) csv += ',';
      double v = cols[i]->AsDouble(r);
      if (!std::isnan(v)) {
        std::snprintf(buf, sizeof buf, "%.9g", v);
        csv += buf;
      }
    }
    csv += '\n';
  }
  TAKT_ASSIGN_OR_RETURN(http::Client * client, ctx.Client());
  TAKT_ASSIGN_OR_RETURN(http::ClientResponse resp,
                        client->Send("POST", "/endpoints/" + Enc(name) + "/invocations", csv, "text/csv"));
  if (resp.status != 200) {
    auto j = Json::parse(resp.body, nullptr, false);
    std::string msg =
        j.is_object() && j.contains("error") ? j["error"].value("message", resp.body) : resp.body;
    return MakeError(resp.status == 403 ? Code::kPermissionDenied : Code::kInvalidArgument,
                     "invoking " + name + ": " + msg);
  }
  std::vector<double> scores;
  std::istringstream in(resp.body);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) scores.push_back(std::stod(line));
  if (scores.size() != table->num_rows())
    return Internal("the endpoint returned a wrong number of predictions");
  std::vector<size_t> order(scores.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  if (top > 0 && order.size() > static_cast<size_t>(top)) order.resize(top);
  std::string variant = resp.headers.count("x-amzn-invoked-production-variant")
                            ? resp.headers["x-amzn-invoked-production-variant"]
                            : "";
  if (ctx.json()) {
    Json out = Json::array();
    for (size_t i : order) {
      Json row = {{"score", scores[i]}};
      for (const auto& id : id_columns) row[id] = table->Find(id)->AsText(i);
      out.push_back(row);
    }
    return PrintJson({{"endpoint", name}, {"variant", variant}, {"predictions", out}}), Ok();
  }
  std::vector<std::string> header = id_columns;
  header.push_back("P(FAIL WITHIN 24H)");
  header.push_back("");
  std::vector<std::vector<std::string>> rows;
  for (size_t i : order) {
    std::vector<std::string> row;
    for (const auto& id : id_columns) row.push_back(table->Find(id)->AsText(i));
    row.push_back(Num(scores[i], 3));
    row.push_back(std::string(static_cast<size_t>(std::lround(scores[i] * 20)), '#'));
    rows.push_back(std::move(row));
  }
  PrintTable(header, rows);
  std::cerr << "(" << table->num_rows() << " rows scored by " << name << ", variant " << variant << ")\n";
  return Ok();
}

// ---------------------------------------------------------------- audit (events: cli/event_commands.cc)

Status CmdAuditList(Context& ctx, const std::string& principal, const std::string& action,
                    const std::string& resource, const std::string& dataset, int limit) {
  std::string target = "/api/v1/audit?limit=" + std::to_string(limit);
  if (!principal.empty()) target += "&principal=" + Enc(principal);
  if (!action.empty()) target += "&action=" + Enc(action);
  if (!resource.empty()) target += "&resource=" + Enc(resource);
  if (!dataset.empty()) target += "&dataset=" + Enc(dataset);
  TAKT_ASSIGN_OR_RETURN(Json r, ctx.Call("GET", target));
  if (ctx.json()) return PrintJson(r), Ok();
  std::vector<std::vector<std::string>> rows;
  for (const auto& a : r) {
    std::string detail = Str(a, "detail");
    if (a.contains("access") && a["access"].is_object()) {
      // What a data read returned: columns, masks, row filter, rows.
      const Json& x = a["access"];
      std::string masks;
      if (x.contains("masks"))
        for (const auto& [k, v] : x["masks"].items())
          masks += (masks.empty() ? "" : ",") + k + "=" + v.get<std::string>();
      detail = std::to_string(x.value("rows", int64_t{0})) + " rows; columns " +
               std::to_string(x.value("columns", Json::array()).size()) +
               (masks.empty() ? "" : "; masked " + masks) +
               (x.contains("row_filter") ? "; rows where " + x["row_filter"].get<std::string>() : "") +
               (x.value("purpose", "").empty() ? "" : "; " + x.value("purpose", ""));
    }
    rows.push_back({ShortTime(Str(a, "time")), Str(a, "principal"), Str(a, "action"), Str(a, "resource"),
                    a.value("allowed", false) ? "allowed" : "DENIED", Str(a, "status"), detail});
  }
  PrintTable({"TIME", "PRINCIPAL", "ACTION", "RESOURCE", "DECISION", "STATUS", "DETAIL"}, rows);
  return Ok();
}

int ExitCode(const Error& e) {
  switch (e.code()) {
    case Code::kInvalidArgument:
      return 2;
    case Code::kUnauthenticated:
    case Code::kPermissionDenied:
      return 3;
    case Code::kNotFound:
      return 4;
    case Code::kUnavailable:
      return 5;
    default:
      return 1;
  }
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"takt: an on-premises MLOps platform — governed data to monitored endpoints, in one binary"};
  app.require_subcommand(1);
  app.fallthrough();
  app.set_version_flag("--version", "takt 0.1.0");
  Context ctx;
  std::map<std::string, std::string>& flags = ctx.flags;
  auto setting = [&](CLI::App* cmd, const std::string& key, const std::string& help) {
    cmd->add_option_function<std::string>(
        "--" + key, [&flags, key](const std::string& v) { flags[key] = v; }, help);
  };
  std::function<void(CLI::App*)> output = [&](CLI::App* cmd) {
    cmd->add_option("-o,--output", ctx.output, "table (default) or json")
        ->check(CLI::IsMember({"table", "json"}));
  };
  app.add_option("--config", ctx.config_file, "config file (YAML; also TAKT_CONFIG)");
  setting(&app, "url", "server URL (TAKT_URL; default http://127.0.0.1:8080)");
  setting(&app, "token", "API token (TAKT_TOKEN; default from `takt login`)");
  setting(&app, "data-dir", "data directory (TAKT_DATA_DIR; default ./takt-data)");
  setting(&app, "log-level", "debug, info, warn, error");
  setting(&app, "log-format", "text or json");
  setting(&app, "credentials-file", "where `takt login` keeps the token");

  Status status = Ok();
  CommandRunner run = [&](std::function<Status()> fn) -> std::function<void()> {
    return [&status, &ctx, fn]() {
      status = ctx.Load();
      if (status) status = fn();
    };
  };

  // init / server / login / whoami
  std::string admin = "admin";
  auto* init = app.add_subcommand("init", "create a data directory, its master key and an admin principal");
  init->add_option("--admin", admin, "name of the admin principal");
  setting(init, "master-key-file", "use this master key file instead of creating <data-dir>/master.key");
  output(init);
  init->callback(run([&] { return CmdInit(ctx, admin); }));

  auto* server = app.add_subcommand("server", "run the platform: API, inference, scheduler and workers");
  setting(server, "address", "listen address (default 127.0.0.1)");
  setting(server, "port", "listen port (default 8080; 0 picks a free one)");
  setting(server, "http-threads", "threads for API handlers (default 4)");
  setting(server, "http-loops", "event loops serving connections (default 0: one per usable CPU, at most 8)");
  setting(server, "workers", "concurrent pipeline runs (default 2)");
  setting(server, "step-slots", "steps running at once on this server (default: the number of cores)");
  setting(server, "slurm-conf", "slurm.conf of a Slurm cluster for `executor: slurm` steps (default: none)");
  setting(server, "slurm-partition", "Slurm partition for steps (default: the cluster's default)");
  setting(server, "master-key-file", "master key file (default <data-dir>/master.key)");
  setting(server, "event-max-attempts", "tries of an event delivery before it is dead (default 8)");
  setting(server, "event-base-backoff-ms",
          "wait before an event delivery's first retry, doubling up to 5 min (default 1000)");
  server->callback(run([&] { return CmdServer(ctx); }));

  std::string token;
  auto* login = app.add_subcommand("login", "check a token against the server and remember it");
  login->add_option("--with-token", token, "the token to store")->required();
  login->callback(run([&] { return CmdLogin(ctx, token); }));

  auto* whoami = app.add_subcommand("whoami", "show who the current token belongs to");
  output(whoami);
  whoami->callback(run([&] { return CmdWhoami(ctx); }));

  // principal
  auto* principal =
      app.add_subcommand("principal", "users and service identities")->require_subcommand(1)->fallthrough();
  std::string p_name;
  std::vector<std::string> personas, denies;
  bool service = false;
  auto* pc = principal->add_subcommand("create", "create a principal and print its token once");
  pc->add_option("name", p_name, "principal name")->required();
  pc->add_option("--persona", personas,
                 "admin, data-engineer, data-scientist, ml-engineer, approver, auditor, service (repeatable)")
      ->required();
  pc->add_option("--deny", denies, "explicitly denied action pattern, e.g. dataset:read (repeatable)");
  pc->add_flag("--service", service, "a service identity, not a person");
  output(pc);
  pc->callback(run([&] { return CmdPrincipalCreate(ctx, p_name, personas, denies, service); }));
  auto* pl = principal->add_subcommand("list", "list principals");
  output(pl);
  pl->callback(run([&] { return CmdPrincipalList(ctx); }));
  AddAccessKeyCommands(app, ctx, run, output);  // create, list, deactivate, activate, delete

  // sim
  auto* simcmd =
      app.add_subcommand("sim", "simulators for demos and tests")->require_subcommand(1)->fallthrough();
  sim::WeldOptions weld;
  std::string sim_out;
  auto* sw = simcmd->add_subcommand("weld", "hourly telemetry of welding-gun robots with failures");
  sw->add_option("--robots", weld.robots, "number of robots")->capture_default_str();
  sw->add_option("--plants", weld.plants, "number of plants")->capture_default_str();
  sw->add_option("--days", weld.days, "days of hourly telemetry")->capture_default_str();
  sw->add_option("--seed", weld.seed, "random seed (same seed, same data)")->capture_default_str();
  sw->add_option("-o,--out", sim_out, "CSV file to write")->required();
  sw->callback(run([&] { return CmdSimWeld(ctx, weld, sim_out); }));

  // dataset
  auto* dataset = app.add_subcommand("dataset", "the data catalog")->require_subcommand(1)->fallthrough();
  auto* dl = dataset->add_subcommand("list", "list datasets");
  output(dl);
  dl->callback(run([&] { return CmdDatasetList(ctx); }));

  // pipeline / run
  app.add_subcommand("pipeline", "pipelines of processing, training and evaluation")
      ->require_subcommand(1)
      ->fallthrough();

  auto* runcmd = app.add_subcommand("run", "pipeline runs")->require_subcommand(1)->fallthrough();
  std::string run_id, run_output, run_file;
  bool follow = false;
  auto* rl = runcmd->add_subcommand("list", "recent runs");
  output(rl);
  rl->callback(run([&] { return CmdRunList(ctx); }));
  auto* rs = runcmd->add_subcommand("show", "a run's steps, states and metrics");
  rs->add_option("id", run_id, "run id")->required();
  output(rs);
  rs->callback(run([&] { return CmdRunShow(ctx, run_id); }));
  auto* rlog = runcmd->add_subcommand("logs", "a run's log");
  rlog->add_option("id", run_id, "run id")->required();
  rlog->add_flag("-f,--follow", follow, "follow until the run ends");
  output(rlog);
  rlog->callback(run([&] { return CmdRunLogs(ctx, run_id, follow); }));
  auto* re = runcmd->add_subcommand("export", "download a table a step wrote, as CSV (an audited read)");
  re->add_option("id", run_id, "run id")->required();
  re->add_option("output", run_output, "STEP/OUTPUT, e.g. features/latest")->required();
  re->add_option("--file", run_file, "file to write (default stdout)");
  re->callback(run([&] { return CmdRunExport(ctx, run_id, run_output, run_file); }));

  AddModelCommands(app, ctx, run, output);

  // endpoint
  auto* endpoint =
      app.add_subcommand("endpoint", "online inference endpoints")->require_subcommand(1)->fallthrough();
  std::string ep_name, ep_file;
  std::vector<std::string> id_columns;
  int top = 0;
  auto* el = endpoint->add_subcommand("list", "endpoints in every stage");
  output(el);
  el->callback(run([&] { return CmdEndpointList(ctx); }));
  auto* es = endpoint->add_subcommand("show", "an endpoint and how to call it");
  es->add_option("name", ep_name, "endpoint")->required();
  output(es);
  es->callback(run([&] { return CmdEndpointShow(ctx, ep_name); }));
  int ep_limit = 50;
  auto* elog =
      endpoint->add_subcommand("logs", "an endpoint's recent requests: variant, status, latency, error");
  elog->add_option("name", ep_name, "endpoint")->required();
  elog->add_option("--limit", ep_limit, "rows")->capture_default_str();
  output(elog);
  elog->callback(run([&] { return CmdEndpointLogs(ctx, ep_name, ep_limit); }));
  int cap_minutes = 60, cap_limit = 20;
  auto* ecap = endpoint->add_subcommand(
      "capture", "captured requests (inputs and predictions) for monitoring; see capture: in release.yaml");
  ecap->add_option("name", ep_name, "endpoint")->required();
  ecap->add_option("--minutes", cap_minutes, "how far back")->capture_default_str();
  ecap->add_option("--limit", cap_limit, "newest N records")->capture_default_str();
  output(ecap);
  ecap->callback(run([&] { return CmdEndpointCapture(ctx, ep_name, cap_minutes, cap_limit); }));
  auto* ei = endpoint->add_subcommand("invoke", "score the rows of a CSV (with a header) and rank them");
  ei->add_option("name", ep_name, "endpoint")->required();
  ei->add_option("--file", ep_file, "CSV with the model's feature columns")->required();
  ei->add_option("--id-column", id_columns, "column(s) to show beside each score (repeatable)");
  ei->add_option("--top", top, "show only the N highest scores");
  output(ei);
  ei->callback(run([&] { return CmdEndpointInvoke(ctx, ep_name, ep_file, id_columns, top); }));

  AddDataCommands(app, ctx, run, output);
  AddRunCommands(app, ctx, run, output);
  AddReleaseCommands(app, ctx, run, output);

  // event / audit
  AddEventCommands(app, ctx, run, output);  // list, show, rule, deliveries, replay
  auto* audit = app.add_subcommand("audit", "the audit log")->require_subcommand(1)->fallthrough();
  std::string a_principal, a_action, a_resource, a_dataset;
  int a_limit = 50;
  auto* al = audit->add_subcommand("list", "who did what, allowed or denied, newest first");
  al->add_option("--principal", a_principal, "only this principal");
  al->add_option("--action", a_action, "only actions starting with this, e.g. dataset:");
  al->add_option("--resource", a_resource, "only resources starting with this, e.g. datasets/weld-telemetry");
  al->add_option("--dataset", a_dataset,
                 "only records of this dataset (its reads, with columns, masks, rows)");
  al->add_option("--limit", a_limit, "rows")->capture_default_str();
  output(al);
  al->callback(run([&] { return CmdAuditList(ctx, a_principal, a_action, a_resource, a_dataset, a_limit); }));

  // internal: what the platform runs on its own behalf (hidden from help).
  int internal_exit = -1;
  auto* internal = app.add_subcommand("internal", "")->group("")->require_subcommand(1);
  std::string sx_spec, sx_result;
  auto* sx = internal->add_subcommand("sandbox-exec", "run a command step's sandbox spec (on a Slurm node)");
  sx->add_option("spec", sx_spec, "the sandbox spec (JSON)")->required();
  sx->add_option("result", sx_result, "where the result goes (JSON)")->required();
  sx->callback([&] { internal_exit = pipeline::ExecSandboxJob(sx_spec, sx_result); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (internal_exit >= 0) return internal_exit;
  if (!status) {
    std::cerr << "takt: " << CodeName(status.error().code()) << ": " << status.error().message() << "\n";
    return ExitCode(status.error());
  }
  return 0;
}

}  // namespace takt::cli

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  return takt::cli::Main(argc, argv);
}
