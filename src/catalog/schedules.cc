// Scheduled ingest: a cron expression and a server-side source. The source
// (a connection URL may hold a password) is sealed at rest; a run makes a new
// version only when the data changed.
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

#include "catalog/catalog.h"
#include "catalog/internal.h"
#include "core/cron.h"
#include "core/json.h"
#include "core/posix.h"
#include "core/time.h"
#include "crypto/crypto.h"
#include "crypto/keyring.h"

namespace takt::catalog {
namespace {

constexpr const char* kScheduleColumns =
    "id, dataset, cron, source_sealed, options_json, owner, created_at, next_run, last_run_at, last_status";

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Json OptionsToJson(const IngestOptions& o) {
  Json types = Json::object();
  for (const auto& [k, t] : o.text.types) types[k] = std::string(frame::TypeName(t));
  return {{"format", o.format},
          {"delimiter", std::string(1, o.text.delimiter)},
          {"types", types},
          {"on_error", o.text.on_error == frame::OnError::kSkip ? "skip" : "fail"},
          {"partition_by", o.partition_by},
          {"append", o.append}};
}

Result<IngestOptions> OptionsFromJson(const Json& j) {
  IngestOptions o;
  o.format = j.value("format", "csv");
  std::string d = j.value("delimiter", ",");
  o.text.delimiter = d.empty() ? ',' : d[0];
  if (j.contains("types") && j["types"].is_object()) {
    for (const auto& [k, v] : j["types"].items()) {
      TAKT_ASSIGN_OR_RETURN(frame::Type t, frame::ParseType(v.get<std::string>()));
      o.text.types[k] = t;
    }
  }
  o.text.on_error = j.value("on_error", "fail") == "skip" ? frame::OnError::kSkip : frame::OnError::kFail;
  o.partition_by = j.value("partition_by", "");
  o.append = j.value("append", false);
  return o;
}

}  // namespace

Result<IngestSchedule> CatalogService::CreateSchedule(IngestSchedule s, const std::string& principal) {
  TAKT_RETURN_IF_ERROR(ValidateDatasetName(s.dataset));
  TAKT_ASSIGN_OR_RETURN(CronSchedule cron, CronSchedule::Parse(s.cron));
  if (s.source.kind != "file" && s.source.kind != "dir" && s.source.kind != "sqlite" &&
      s.source.kind != "postgres") {
    return InvalidArgument("a schedule needs a server-side source: file, dir, sqlite or postgres (not '" +
                           s.source.kind + "')");
  }
  if (s.source.kind == "file" || s.source.kind == "dir" || s.source.kind == "sqlite") {
    TAKT_RETURN_IF_ERROR(ResolveLandingPath(s.source.path));
  }
  if ((s.source.kind == "sqlite" || s.source.kind == "postgres") && s.source.query.empty())
    return InvalidArgument(s.source.kind + " source: a query is required");
  if (s.source.kind == "postgres" && s.source.url.empty())
    return InvalidArgument("postgres source: a connection URL is required");
  TAKT_ASSIGN_OR_RETURN(s.next_run, cron.Next(NowSeconds()));
  s.id = NewId("s");
  s.owner = principal;
  s.created_at = NowIso();
  s.last_status = "never run";
  Json source = {
      {"kind", s.source.kind}, {"path", s.source.path}, {"url", s.source.url}, {"query", s.source.query}};
  TAKT_ASSIGN_OR_RETURN(std::string sealed,
                        crypto::Seal(keyring_->DeriveKey("catalog:sources"), source.dump(), s.id));
  TAKT_RETURN_IF_ERROR(
      db_->Exec(std::string("INSERT INTO ingest_schedules (") + kScheduleColumns +
                    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                {s.id, s.dataset, s.cron, crypto::HexEncode(sealed), OptionsToJson(s.options).dump(), s.owner,
                 s.created_at, s.next_run, std::string(""), s.last_status}));
  return s;
}

Result<std::vector<IngestSchedule>> CatalogService::ListSchedules(std::string_view dataset) const {
  std::string sql = std::string("SELECT ") + kScheduleColumns + " FROM ingest_schedules";
  std::vector<store::Value> params;
  if (!dataset.empty()) {
    sql += " WHERE dataset = ?";
    params.push_back(std::string(dataset));
  }
  sql += " ORDER BY created_at, id";
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  std::vector<IngestSchedule> out;
  for (const auto& r : rows) {
    IngestSchedule s;
    s.id = r.Text(0);
    s.dataset = r.Text(1);
    s.cron = r.Text(2);
    TAKT_ASSIGN_OR_RETURN(std::string sealed, crypto::HexDecode(r.Text(3)));
    TAKT_ASSIGN_OR_RETURN(std::string plain,
                          crypto::Open(keyring_->DeriveKey("catalog:sources"), sealed, s.id));
    TAKT_ASSIGN_OR_RETURN(Json src, ParseJson(plain, "schedule source"));
    s.source = {src.value("kind", ""), src.value("path", ""), src.value("url", ""), src.value("query", "")};
    TAKT_ASSIGN_OR_RETURN(Json opts, ParseJson(r.Text(4), "schedule options"));
    TAKT_ASSIGN_OR_RETURN(s.options, OptionsFromJson(opts));
    s.owner = r.Text(5);
    s.created_at = r.Text(6);
    s.next_run = r.Int(7);
    s.last_run_at = r.Text(8);
    s.last_status = r.Text(9);
    out.push_back(std::move(s));
  }
  return out;
}

Status CatalogService::DeleteSchedule(std::string_view id) {
  TAKT_ASSIGN_OR_RETURN(int64_t n, db_->Exec("DELETE FROM ingest_schedules WHERE id = ?", {std::string(id)}));
  if (n == 0) return NotFound("schedule " + std::string(id) + " does not exist");
  return Ok();
}

Result<IngestResult> CatalogService::RunSchedule(std::string_view id) {
  TAKT_ASSIGN_OR_RETURN(auto all, ListSchedules());
  const IngestSchedule* s = nullptr;
  for (const auto& x : all)
    if (x.id == id) s = &x;
  if (s == nullptr) return NotFound("schedule " + std::string(id) + " does not exist");
  IngestOptions options = s->options;
  options.only_if_changed = true;
  options.source_label = s->source.Describe() + " (schedule " + s->id + ")";
  auto result = IngestFrom(s->dataset, s->source, options, s->owner);
  std::string status;
  if (result) {
    status = result->created ? "created v" + std::to_string(result->version.version)
                             : "unchanged (v" + std::to_string(result->version.version) + ")";
  } else {
    status = "failed: " + result.error().ToString();
  }
  int64_t next = s->next_run;
  if (auto cron = CronSchedule::Parse(s->cron)) {
    if (auto n = cron->Next(NowSeconds())) next = *n;
  }
  IgnoreError(
      db_->Exec("UPDATE ingest_schedules SET last_run_at = ?, last_status = ?, next_run = ? WHERE id = ?",
                {NowIso(), status, next, s->id}));
  return result;
}

void CatalogService::RunDue(int64_t now) {
  auto all = ListSchedules();
  if (!all) {
    spdlog::error("scheduled ingest: {}", all.error().ToString());
    return;
  }
  for (const auto& s : *all) {
    if (s.next_run > now) continue;
    auto r = RunSchedule(s.id);
    if (!r) {
      spdlog::warn("scheduled ingest {} of {}: {}", s.id, s.dataset, r.error().ToString());
    } else {
      spdlog::info("scheduled ingest {} of {}: {}", s.id, s.dataset,
                   r->created ? "v" + std::to_string(r->version.version) : "unchanged");
    }
  }
}

void CatalogService::StartScheduler(int tick_seconds) {
  std::lock_guard lock(scheduler_mu_);
  if (scheduler_.joinable()) return;
  scheduler_stop_ = false;
  scheduler_ = std::thread([this, tick_seconds] {
    SetThreadName("takt-schedules");
    std::unique_lock lock(scheduler_mu_);
    while (!scheduler_stop_) {
      lock.unlock();
      RunDue(NowSeconds());
      lock.lock();
      scheduler_cv_.wait_for(lock, std::chrono::seconds(tick_seconds), [this] { return scheduler_stop_; });
    }
  });
}

void CatalogService::StopScheduler() {
  {
    std::lock_guard lock(scheduler_mu_);
    scheduler_stop_ = true;
  }
  scheduler_cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
}

}  // namespace takt::catalog
