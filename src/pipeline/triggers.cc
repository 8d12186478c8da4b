#include "pipeline/triggers.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "core/cron.h"
#include "core/json.h"
#include "core/posix.h"
#include "pipeline/spec.h"

namespace takt::pipeline {
namespace {

constexpr const char* kPipelineColumns =
    "name, project, description, files_json, git_commit, version, owner, updated_by, created_at, updated_at";
constexpr const char* kScheduleColumns =
    "pipeline, cron, params_json, enabled, next_run, last_run_at, last_tick, last_run_id, last_status, "
    "last_error, created_by, created_at, updated_by, updated_at";

// "2026-11-24T03:00:00Z": a tick, in the trigger keys and last_tick.
std::string TickIso(int64_t seconds) { return FormatIsoMillis(seconds * 1000).substr(0, 19) + "Z"; }

PipelineSchedule ScheduleFromRow(const store::Row& r) {
  PipelineSchedule s;
  s.pipeline = r.Text(0);
  s.cron = r.Text(1);
  s.params_json = r.Text(2);
  s.enabled = r.Int(3) != 0;
  s.next_run = r.Int(4);
  s.last_run_at = r.Text(5);
  s.last_tick = r.Text(6);
  s.last_run_id = r.Text(7);
  s.last_status = r.Text(8);
  s.last_error = r.Text(9);
  s.created_by = r.Text(10);
  s.created_at = r.Text(11);
  s.updated_by = r.Text(12);
  s.updated_at = r.Text(13);
  return s;
}

// The same checks RunService::Submit makes on code files, so that a saved
// pipeline does not fail at its first scheduled start for a file left behind.
Status CheckCodeFiles(const PipelineSpec& spec, const std::map<std::string, std::string>& files) {
  for (const auto& [path, _] : files) {
    if (path.empty() || path.starts_with("/") || path.find("..") != std::string::npos) {
      return InvalidArgument("code file '" + path +
                             "': paths must be relative and stay below the pipeline's folder");
    }
  }
  for (const auto& step : spec.steps) {
    if (step.kind != "command" || !step.config.contains("code")) continue;
    const std::string code = step.config["code"];
    bool found = false;
    for (const auto& [path, _] : files) {
      if (path == code || path.starts_with(code + (code.ends_with("/") ? "" : "/"))) found = true;
    }
    if (!found) {
      return InvalidArgument("pipeline: line " + std::to_string(step.line) + ": step '" + step.name +
                             "': code '" + code +
                             "' was not sent with the pipeline (`takt pipeline save` sends the files that "
                             "command steps name, relative to the pipeline file)");
    }
  }
  return Ok();
}

// Whether a JSON value fits a declared parameter type.
bool FitsType(const Json& v, const std::string& type) {
  if (type == "int") return v.is_number_integer();
  if (type == "number") return v.is_number();
  if (type == "bool") return v.is_boolean();
  return v.is_string();
}

std::string JsonKind(const Json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "bool";
  if (v.is_number_integer()) return "int";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  if (v.is_array()) return "list";
  return "object";
}

// Starts without an HTTP request (schedule ticks, event deliveries) leave
// an audit record of their own, as the service identity they act as.
void AuditStart(iam::IamService& iam, const std::string& principal, const std::string& pipeline,
                const Result<Run>& run, const std::string& why) {
  const bool denied = !run && run.error().code() == Code::kPermissionDenied;
  auto s = iam.Audit({.principal = principal,
                      .action = "pipeline:run",
                      .resource = "pipelines/" + pipeline + "/runs",
                      .allowed = !denied,
                      .status = run ? 201 : HttpStatus(run.error().code()),
                      .detail = why + (run ? ": run " + run->id : ": " + run.error().ToString())});
  if (!s) spdlog::error("audit write failed: {}", s.error().ToString());
}

}  // namespace

TriggerService::TriggerService(store::Database* db, blob::BlobStore* blobs, RunService* runs,
                               iam::IamService* iam, const Clock* clock)
    : db_(db), blobs_(blobs), runs_(runs), iam_(iam), clock_(clock != nullptr ? clock : &RealClock()) {}

TriggerService::~TriggerService() { StopScheduler(); }

Status TriggerService::Migrate() {
  return store::Migrate(
      *db_, "pipeline-triggers",
      {{1, "saved-pipelines-schedules",
        "CREATE TABLE saved_pipelines (name TEXT PRIMARY KEY, project TEXT NOT NULL, description TEXT NOT "
        "NULL, yaml TEXT NOT NULL, files_blob TEXT NOT NULL, files_json TEXT NOT NULL, git_commit TEXT NOT "
        "NULL, version INTEGER NOT NULL, owner TEXT NOT NULL, updated_by TEXT NOT NULL, created_at TEXT NOT "
        "NULL, updated_at TEXT NOT NULL);"
        "CREATE INDEX saved_pipelines_project ON saved_pipelines (project, name);"
        "CREATE TABLE pipeline_schedules (pipeline TEXT PRIMARY KEY REFERENCES saved_pipelines(name), cron "
        "TEXT NOT NULL, params_json TEXT NOT NULL, enabled INTEGER NOT NULL, next_run INTEGER NOT NULL, "
        "last_run_at TEXT NOT NULL, last_tick TEXT NOT NULL, last_run_id TEXT NOT NULL, last_status TEXT NOT "
        "NULL, last_error TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL, updated_by TEXT "
        "NOT NULL, updated_at TEXT NOT NULL);"
        "CREATE INDEX pipeline_schedules_due ON pipeline_schedules (enabled, next_run);"}});
}

int64_t TriggerService::NowSeconds() const { return clock_->NowMillis() / 1000; }

Status TriggerService::CheckMember(const std::string& project, const std::string& principal) const {
  Run probe;
  probe.project = project;
  return runs_->CheckProjectAccess(probe, principal);
}

Result<SavedPipeline> TriggerService::Save(const SaveRequest& request) {
  // Everything is checked before anything is written.
  TAKT_ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipeline(request.yaml));
  if (auto project = iam_->GetProject(spec.project); !project) {
    if (project.error().code() != Code::kNotFound) return std::unexpected(project.error());
    return NotFound("pipeline " + spec.name + ": project " + spec.project +
                    " does not exist (an admin creates it with `takt project create " + spec.project + "`)");
  }
  TAKT_RETURN_IF_ERROR(CheckMember(spec.project, request.principal));
  for (const auto& step : spec.steps) {
    if (!step.network) continue;
    TAKT_ASSIGN_OR_RETURN(iam::Principal who, iam_->Get(request.principal));
    if (!iam::Authorize(who, "pipeline:network").allowed) {
      return PermissionDenied("pipeline: line " + std::to_string(step.line) + ": step '" + step.name +
                              "' asks for network access, which needs the pipeline:network action (held by "
                              "admins); steps run without network by default");
    }
  }
  TAKT_RETURN_IF_ERROR(CheckCodeFiles(spec, request.files));
  TAKT_ASSIGN_OR_RETURN(auto existing,
                        db_->Query("SELECT project FROM saved_pipelines WHERE name = ?", {spec.name}));
  auto other_project = [&](const std::string& project) {
    return Conflict("pipeline " + spec.name + " is already saved in project " + project +
                    "; pipeline names are unique: rename this one (its `name:`)");
  };
  if (!existing.empty() && existing.front().Text(0) != spec.project)
    return other_project(existing.front().Text(0));

  std::string files_blob;
  Json paths = Json::array();
  if (!request.files.empty()) {
    Json bundle = Json::object();
    for (const auto& [path, content] : request.files) {
      TAKT_ASSIGN_OR_RETURN(bundle[path], blobs_->Put(content));
      paths.push_back(path);
    }
    TAKT_ASSIGN_OR_RETURN(files_blob, blobs_->Put(bundle.dump()));
  }
  const std::string now = FormatIsoMillis(clock_->NowMillis());
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(auto rows,
                          tx.Query("SELECT project FROM saved_pipelines WHERE name = ?", {spec.name}));
    if (rows.empty()) {
      TAKT_RETURN_IF_ERROR(tx.Exec(
          "INSERT INTO saved_pipelines (name, project, description, yaml, files_blob, files_json, "
          "git_commit, version, owner, updated_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, "
          "1, ?, ?, ?, ?)",
          {spec.name, spec.project, spec.description, request.yaml, files_blob, paths.dump(),
           request.git_commit, request.principal, request.principal, now, now}));
      return Ok();
    }
    if (rows.front().Text(0) != spec.project) return other_project(rows.front().Text(0));
    TAKT_RETURN_IF_ERROR(tx.Exec(
        "UPDATE saved_pipelines SET description = ?, yaml = ?, files_blob = ?, files_json = ?, git_commit "
        "= ?, version = version + 1, updated_by = ?, updated_at = ? WHERE name = ?",
        {spec.description, request.yaml, files_blob, paths.dump(), request.git_commit, request.principal, now,
         spec.name}));
    return Ok();
  }));
  return Load(spec.name, true);
}

Result<std::optional<PipelineSchedule>> TriggerService::LoadSchedule(std::string_view name) const {
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(std::string("SELECT ") + kScheduleColumns +
                                                  " FROM pipeline_schedules WHERE pipeline = ?",
                                              {std::string(name)}));
  if (rows.empty()) return std::optional<PipelineSchedule>();
  PipelineSchedule s = ScheduleFromRow(rows.front());
  if (!s.last_run_id.empty()) {
    if (auto run = runs_->Get(s.last_run_id)) s.last_run_status = run->status;
  }
  return std::optional<PipelineSchedule>(std::move(s));
}

Result<SavedPipeline> TriggerService::Load(std::string_view name, bool with_yaml) const {
  TAKT_ASSIGN_OR_RETURN(
      auto row,
      db_->QueryOne(
          std::string("SELECT ") + kPipelineColumns + ", yaml FROM saved_pipelines WHERE name = ?",
          {std::string(name)},
          "pipeline " + std::string(name) + " is not saved (save it with `takt pipeline save FILE`)"));
  SavedPipeline p;
  p.name = row.Text(0);
  p.project = row.Text(1);
  p.description = row.Text(2);
  Json paths = Json::parse(row.Text(3), nullptr, false);
  if (paths.is_array()) {
    for (const auto& x : paths)
      if (x.is_string()) p.files.push_back(x.get<std::string>());
  }
  p.git_commit = row.Text(4);
  p.version = static_cast<int>(row.Int(5));
  p.owner = row.Text(6);
  p.updated_by = row.Text(7);
  p.created_at = row.Text(8);
  p.updated_at = row.Text(9);
  if (with_yaml) p.yaml = row.Text(10);
  TAKT_ASSIGN_OR_RETURN(p.schedule, LoadSchedule(p.name));
  return p;
}

Result<std::map<std::string, std::string>> TriggerService::LoadFiles(std::string_view name) const {
  TAKT_ASSIGN_OR_RETURN(
      auto row, db_->QueryOne("SELECT files_blob FROM saved_pipelines WHERE name = ?", {std::string(name)},
                              "pipeline " + std::string(name) + " is not saved"));
  std::map<std::string, std::string> files;
  if (row.Text(0).empty()) return files;
  TAKT_ASSIGN_OR_RETURN(std::string bundle_text, blobs_->Get(row.Text(0)));
  TAKT_ASSIGN_OR_RETURN(Json bundle, ParseJson(bundle_text, "code files of pipeline " + std::string(name)));
  for (const auto& [path, blob] : bundle.items()) {
    if (!blob.is_string()) return Internal("code files of pipeline " + std::string(name) + ": bad bundle");
    TAKT_ASSIGN_OR_RETURN(files[path], blobs_->Get(blob.get<std::string>()));
  }
  return files;
}

Result<SavedPipeline> TriggerService::Get(std::string_view name, const std::string& principal) const {
  TAKT_ASSIGN_OR_RETURN(SavedPipeline p, Load(name, true));
  TAKT_RETURN_IF_ERROR(CheckMember(p.project, principal));
  return p;
}

Result<std::vector<SavedPipeline>> TriggerService::List() const {
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT name FROM saved_pipelines ORDER BY name"));
  std::vector<SavedPipeline> out;
  for (const auto& r : rows) {
    TAKT_ASSIGN_OR_RETURN(SavedPipeline p, Load(r.Text(0), false));
    out.push_back(std::move(p));
  }
  return out;
}

Result<Run> TriggerService::Start(const StartRequest& request) {
  TAKT_ASSIGN_OR_RETURN(SavedPipeline saved, Load(request.pipeline, true));
  // Members only, before the code is even read.
  TAKT_RETURN_IF_ERROR(CheckMember(saved.project, request.principal));
  SubmitRequest sub;
  sub.yaml = saved.yaml;
  sub.principal = request.principal;
  sub.params = request.params.is_object() ? request.params : Json::object();
  sub.no_cache = request.no_cache;
  sub.git_commit = saved.git_commit;
  sub.trigger = request.trigger;
  TAKT_ASSIGN_OR_RETURN(sub.files, LoadFiles(saved.name));
  auto run = runs_->Submit(sub);
  if (!run) {
    return std::unexpected(run.error().WithContext("starting saved pipeline " + saved.name + " v" +
                                                   std::to_string(saved.version)));
  }
  return run;
}

Result<PipelineSchedule> TriggerService::SetSchedule(const ScheduleRequest& request) {
  TAKT_ASSIGN_OR_RETURN(SavedPipeline saved, Load(request.pipeline, true));
  TAKT_RETURN_IF_ERROR(CheckMember(saved.project, request.principal));
  auto cron = CronSchedule::Parse(request.cron);
  if (!cron) return InvalidArgument("schedule: " + cron.error().message());
  if (!request.params.is_object())
    return InvalidArgument("schedule: params must be an object of parameter names and values");
  // The overrides must fit the spec now, not fail at the first tick.
  auto spec = ParsePipeline(saved.yaml, request.params);
  if (!spec) return MakeError(spec.error().code(), "schedule: params: " + spec.error().message());
  Json params = Json::object();
  for (const auto& [name, _] : request.params.items()) params[name] = spec->params[name];
  const int64_t now = NowSeconds();
  auto next = cron->Next(now);
  if (!next) return InvalidArgument("schedule: " + next.error().message());
  const std::string at = FormatIsoMillis(clock_->NowMillis());
  TAKT_RETURN_IF_ERROR(db_->Exec(
      std::string("INSERT INTO pipeline_schedules (") + kScheduleColumns +
          ") VALUES (?, ?, ?, ?, ?, '', '', '', '', '', ?, ?, ?, ?) ON CONFLICT (pipeline) DO UPDATE SET "
          "cron "
          "= excluded.cron, params_json = excluded.params_json, enabled = excluded.enabled, next_run = "
          "excluded.next_run, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
      {saved.name, cron->expression(), params.dump(), int64_t{request.enabled ? 1 : 0}, *next,
       request.principal, at, request.principal, at}));
  TAKT_ASSIGN_OR_RETURN(auto s, LoadSchedule(saved.name));
  if (!s) return Internal("schedule of " + saved.name + " vanished as it was written");
  return *s;
}

Status TriggerService::DeleteSchedule(std::string_view pipeline, const std::string& principal) {
  TAKT_ASSIGN_OR_RETURN(SavedPipeline saved, Load(pipeline, false));
  TAKT_RETURN_IF_ERROR(CheckMember(saved.project, principal));
  TAKT_ASSIGN_OR_RETURN(int64_t n,
                        db_->Exec("DELETE FROM pipeline_schedules WHERE pipeline = ?", {saved.name}));
  if (n == 0) return NotFound("pipeline " + saved.name + " has no schedule");
  return Ok();
}

Status TriggerService::StartForEvent(const events::Event& event, const events::Rule& rule) {
  const std::string where = "rule " + rule.name;
  TAKT_ASSIGN_OR_RETURN(Json cfg, ParseJson(rule.target_config_json, where + ": target config"));
  if (!cfg.is_object() || !cfg.contains("pipeline") || !cfg["pipeline"].is_string() ||
      cfg["pipeline"].get<std::string>().empty()) {
    return InvalidArgument(where + ": target config needs \"pipeline\": the name of a saved pipeline");
  }
  const std::string name = cfg["pipeline"];
  Json params = cfg.value("params", Json::object());
  if (!params.is_object()) return InvalidArgument(where + ": target config: params must be an object");
  TAKT_ASSIGN_OR_RETURN(SavedPipeline saved, Load(name, true));
  if (cfg.contains("params_from")) {
    const Json& from = cfg["params_from"];
    if (!from.is_object())
      return InvalidArgument(where + ": target config: params_from must map parameters to \"data.<field>\"");
    TAKT_ASSIGN_OR_RETURN(Json data, ParseJson(event.data_json, "event " + event.id + ": data"));
    TAKT_ASSIGN_OR_RETURN(PipelineSpec spec, ParsePipeline(saved.yaml));
    for (const auto& [param, path_json] : from.items()) {
      const std::string here = where + ": params_from." + param;
      if (!path_json.is_string() || !path_json.get<std::string>().starts_with("data.") ||
          path_json.get<std::string>().size() <= 5) {
        return InvalidArgument(here + ": expected \"data.<field>\" (a field of the event's data)");
      }
      const std::string path = path_json;
      auto declared = std::find_if(spec.parameters.begin(), spec.parameters.end(),
                                   [&](const ParamSpec& p) { return p.name == param; });
      if (declared == spec.parameters.end())
        return InvalidArgument(here + ": pipeline " + name + " declares no parameter '" + param + "'");
      const Json* v = &data;
      size_t start = 5;
      while (start <= path.size()) {
        size_t dot = path.find('.', start);
        const std::string field =
            path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        if (!v->is_object() || !v->contains(field))
          return InvalidArgument(here + ": event " + event.id + " (" + event.type + ") has no " + path);
        v = &(*v)[field];
        if (dot == std::string::npos) break;
        start = dot + 1;
      }
      if (!FitsType(*v, declared->type)) {
        return InvalidArgument(here + ": " + path + " is " + JsonKind(*v) + " " + v->dump() +
                               " but parameter " + param + " is " + (declared->type == "int" ? "an " : "a ") +
                               declared->type);
      }
      params[param] = *v;
    }
  }
  StartRequest start;
  start.pipeline = name;
  start.params = std::move(params);
  start.principal = iam::ServicePrincipalName(saved.project);
  start.trigger = "event:" + event.id + "/" + rule.name;
  auto run = Start(start);
  AuditStart(*iam_, start.principal, name, run,
             "event " + event.id + " (" + event.type + "), rule " + rule.name);
  if (!run) return std::unexpected(run.error());
  spdlog::info("event {} ({}) rule {}: run {} of pipeline {}", event.id, event.type, rule.name, run->id,
               name);
  return Ok();
}

int TriggerService::RunDue(int64_t now) {
  auto due = db_->Query(
      "SELECT pipeline, cron, params_json, next_run FROM pipeline_schedules WHERE enabled = 1 AND next_run > "
      "0 "
      "AND next_run <= ? ORDER BY next_run, pipeline",
      {now});
  if (!due) {
    spdlog::error("pipeline schedules: {}", due.error().ToString());
    return 0;
  }
  int acted = 0;
  for (const auto& row : *due) {
    const std::string name = row.Text(0);
    const int64_t tick = row.Int(3);
    // However many ticks were missed, one run stands for them, keyed by the
    // first: a restart before the next tick is recorded repeats this key.
    const std::string trigger = "schedule:" + name + "@" + TickIso(tick);
    std::string status = "started", run_id, error;
    auto params = ParseJson(row.Text(2), "schedule params");
    auto saved = Load(name, false);
    Result<Run> run = !saved    ? Result<Run>(std::unexpected(saved.error()))
                      : !params ? Result<Run>(std::unexpected(params.error()))
                                : Start({.pipeline = name,
                                         .params = *params,
                                         .principal = iam::ServicePrincipalName(saved->project),
                                         .trigger = trigger});
    if (saved) {
      AuditStart(*iam_, iam::ServicePrincipalName(saved->project), name, run,
                 "schedule " + row.Text(1) + ", tick " + TickIso(tick));
    }
    if (run) {
      run_id = run->id;
      spdlog::info("pipeline schedule {} ({}): tick {} started run {}", name, row.Text(1), TickIso(tick),
                   run->id);
    } else {
      status = "error";
      error = run.error().ToString();
      spdlog::warn("pipeline schedule {} ({}): tick {}: {}", name, row.Text(1), TickIso(tick), error);
    }
    int64_t next = 0;
    auto cron = CronSchedule::Parse(row.Text(1));
    auto n = cron ? cron->Next(std::max(now, tick)) : Result<int64_t>(std::unexpected(cron.error()));
    if (n) {
      next = *n;
    } else {
      // Only a schedule edited behind the service's back gets here.
      status = "error";
      error += (error.empty() ? "" : "; ") + std::string("no next tick: ") + n.error().ToString();
    }
    // The next tick moves only if nobody changed the schedule meanwhile.
    auto updated = db_->Exec(
        "UPDATE pipeline_schedules SET next_run = CASE WHEN next_run = ? THEN ? ELSE next_run END, "
        "last_run_at = ?, last_tick = ?, last_run_id = ?, last_status = ?, last_error = ? WHERE pipeline = ?",
        {tick, next, FormatIsoMillis(clock_->NowMillis()), TickIso(tick), run_id, status, error, name});
    if (!updated) spdlog::error("pipeline schedule {}: recording tick: {}", name, updated.error().ToString());
    ++acted;
  }
  return acted;
}

void TriggerService::StartScheduler(std::chrono::milliseconds interval) {
  std::lock_guard lock(scheduler_mu_);
  if (scheduler_.joinable()) return;
  scheduler_stop_ = false;
  scheduler_ = std::thread([this, interval] {
    SetThreadName("takt-triggers");
    std::unique_lock lock(scheduler_mu_);
    while (!scheduler_stop_) {
      lock.unlock();
      RunDue(NowSeconds());
      lock.lock();
      scheduler_cv_.wait_for(lock, interval, [this] { return scheduler_stop_; });
    }
  });
}

void TriggerService::StopScheduler() {
  {
    std::lock_guard lock(scheduler_mu_);
    scheduler_stop_ = true;
  }
  scheduler_cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
}

}  // namespace takt::pipeline
