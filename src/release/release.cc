#include "release/release.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>

#include "core/json.h"
#include "core/posix.h"
#include "core/time.h"
#include "ml/xgboost_model.h"

namespace takt::release {
namespace {

constexpr const char* kReleaseColumns =
    "id, model_group, version, status, stage, phase, phase_started_ms, trigger_key, started_by, created_at, "
    "updated_at, message, previous_json";

Release FromRow(const store::Row& r) {
  Release x;
  x.id = r.Text(0);
  x.group = r.Text(1);
  x.version = static_cast<int>(r.Int(2));
  x.status = r.Text(3);
  x.stage = r.Text(4);
  x.phase = r.Text(5);
  x.phase_started_ms = r.Int(6);
  x.trigger = r.Text(7);
  x.started_by = r.Text(8);
  x.created_at = r.Text(9);
  x.updated_at = r.Text(10);
  x.message = r.Text(11);
  x.previous_json = r.Text(12);
  return x;
}

bool Active(const Release& r) { return r.status == kInProgress || r.status == kWaiting; }

std::string V(int version) { return "v" + std::to_string(version); }

std::string Ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, ms < 10 ? "%.2f ms" : "%.0f ms", ms);
  return buf;
}

std::string Num(double d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", d);
  return buf;
}

std::string Seconds(double s) {
  if (s >= 3600 && std::fmod(s, 3600) == 0) return std::to_string(static_cast<int64_t>(s / 3600)) + "h";
  if (s >= 60 && std::fmod(s, 60) == 0) return std::to_string(static_cast<int64_t>(s / 60)) + "m";
  return Num(s) + "s";
}

std::vector<serving::Variant> ParseVariants(const std::string& text) {
  std::vector<serving::Variant> out;
  auto j = ParseJson(text, "variants");
  if (!j || !j->is_array()) return out;
  for (const auto& v : *j) out.push_back({v.value("name", ""), v.value("version", 0), v.value("weight", 0)});
  return out;
}

std::string VariantsText(const std::vector<serving::Variant>& vs) {
  Json a = Json::array();
  for (const auto& v : vs)
    a.push_back({{"name", v.name}, {"version", v.model_version}, {"weight", v.weight}});
  return a.dump();
}

int Stable(const std::vector<serving::Variant>& vs) {
  int best = 0, weight = -1;
  for (const auto& v : vs) {
    if (v.weight > weight) best = v.model_version, weight = v.weight;
  }
  return best;
}

// "2026-11-20", "2026-11-20T10:00Z", "2026-11-20T10:00:00Z", with or without
// milliseconds → "2026-11-20T10:00:00.000Z", comparable with stored times.
Result<std::string> NormalizeTime(std::string t) {
  if (!t.empty() && (t.back() == 'Z' || t.back() == 'z')) t.pop_back();
  auto digits = [&](size_t at, size_t n) {
    if (at + n > t.size()) return false;
    for (size_t i = at; i < at + n; ++i)
      if (!std::isdigit(static_cast<unsigned char>(t[i]))) return false;
    return true;
  };
  bool ok = digits(0, 4) && t.size() >= 10 && t[4] == '-' && digits(5, 2) && t[7] == '-' && digits(8, 2);
  std::string out = ok ? t.substr(0, 10) : "";
  std::string clock = "00:00:00.000";
  if (ok && t.size() > 10) {
    ok = (t[10] == 'T' || t[10] == ' ') && digits(11, 2) && t.size() >= 16 && t[13] == ':' && digits(14, 2);
    if (ok) clock.replace(0, 5, t.substr(11, 5));
    if (ok && t.size() > 16) {
      ok = t[16] == ':' && digits(17, 2);
      if (ok) clock.replace(6, 2, t.substr(17, 2));
      if (ok && t.size() > 19) {
        ok = t[19] == '.' && t.size() <= 23 && digits(20, t.size() - 20);
        if (ok) clock.replace(9, t.size() - 20, t.substr(20));
      }
    }
  }
  if (!ok) {
    return InvalidArgument("'" + t +
                           "' is not a time (use e.g. 2026-11-20T10:00Z or 2026-11-20T10:00:00.000Z, UTC)");
  }
  return out + "T" + clock + "Z";
}

int64_t Now() { return RealClock().NowMillis(); }

}  // namespace

ReleaseService::~ReleaseService() { Stop(); }

takt::Status ReleaseService::Migrate() {
  return store::Migrate(
      *db_, "release",
      {{1, "releases",
        "CREATE TABLE release_configs (model_group TEXT PRIMARY KEY, yaml TEXT NOT NULL, updated_by TEXT NOT "
        "NULL, updated_at TEXT NOT NULL);"
        "CREATE TABLE releases (id TEXT PRIMARY KEY, model_group TEXT NOT NULL, version INTEGER NOT NULL, "
        "status "
        "TEXT NOT NULL, stage TEXT NOT NULL, phase TEXT NOT NULL, phase_started_ms INTEGER NOT NULL, "
        "trigger_key "
        "TEXT NOT NULL UNIQUE, started_by TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
        "message TEXT NOT NULL, previous_json TEXT NOT NULL);"
        "CREATE INDEX releases_by_group ON releases (model_group, created_at);"
        "CREATE TABLE release_approvals (release_id TEXT NOT NULL, stage TEXT NOT NULL, principal TEXT NOT "
        "NULL, decision TEXT NOT NULL, comment TEXT NOT NULL, time TEXT NOT NULL, PRIMARY KEY (release_id, "
        "stage, principal));"
        "CREATE TABLE release_log (seq INTEGER PRIMARY KEY, release_id TEXT NOT NULL, stage TEXT NOT NULL, "
        "what TEXT NOT NULL, principal TEXT NOT NULL, detail TEXT NOT NULL, time TEXT NOT NULL);"
        "CREATE INDEX release_log_by_release ON release_log (release_id, seq);"
        "CREATE TABLE stage_history (seq INTEGER PRIMARY KEY, model_group TEXT NOT NULL, stage TEXT NOT "
        "NULL, "
        "version INTEGER NOT NULL, release_id TEXT NOT NULL, from_time TEXT NOT NULL, to_time TEXT NOT NULL, "
        "how TEXT NOT NULL, by_principal TEXT NOT NULL, approved_by TEXT NOT NULL, ended_by TEXT NOT NULL);"
        "CREATE TABLE release_triggers (trigger_key TEXT PRIMARY KEY, time TEXT NOT NULL);"}});
}

Result<ReleaseConfig> ReleaseService::Config(const std::string& group) const {
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT yaml FROM release_configs WHERE model_group = ?", {group}));
  if (rows.empty()) return DefaultConfig(group);
  auto cfg = ParseConfig(rows.front().Text(0), group + "'s stored release config");
  if (!cfg) return std::unexpected(cfg.error());
  return cfg;
}

bool ReleaseService::HasCustomConfig(const std::string& group) const {
  auto rows = db_->Query("SELECT 1 FROM release_configs WHERE model_group = ?", {group});
  return rows && !rows->empty();
}

Result<ReleaseConfig> ReleaseService::PutConfig(const std::string& group, const std::string& yaml,
                                                const std::string& principal) {
  TAKT_ASSIGN_OR_RETURN(ReleaseConfig cfg, ParseConfig(yaml));
  if (cfg.model_group != group) {
    return InvalidArgument("release.yaml: model_group is '" + cfg.model_group +
                           "' but the config is being put for '" + group + "'");
  }
  for (const auto& st : cfg.stages) {
    if (st.approval && !st.approval->group.empty()) {
      auto g = iam_->GetGroup(st.approval->group);
      if (!g) {
        return InvalidArgument("release.yaml: stage " + st.name + ": approval group '" + st.approval->group +
                               "' does not exist (create it with `takt group create`)");
      }
    }
    if (st.approval) {
      const auto& personas = iam::PersonaNames();
      if (std::find(personas.begin(), personas.end(), st.approval->persona) == personas.end()) {
        return InvalidArgument("release.yaml: stage " + st.name + ": approval persona '" +
                               st.approval->persona + "' is not a persona");
      }
    }
  }
  std::lock_guard lock(mu_);
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> takt::Status {
    TAKT_RETURN_IF_ERROR(tx.Exec("DELETE FROM release_configs WHERE model_group = ?", {group}));
    TAKT_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO release_configs VALUES (?, ?, ?, ?)", {group, yaml, principal, NowIso()}));
    return Ok();
  }));
  return cfg;
}

takt::Status ReleaseService::OnEvent(const events::Event& e) {
  if (e.type != events::kModelVersionApproved && e.type != events::kModelVersionRejected) return Ok();
  TAKT_ASSIGN_OR_RETURN(Json data, ParseJson(e.data_json, "event data"));
  std::string group = data.value("group", "");
  int version = data.value("version", 0);
  if (group.empty() || version < 1) return InvalidArgument("event " + e.id + " names no model version");
  if (e.type == events::kModelVersionRejected) {
    return OnRejected(group, version, data.value("decided_by", ""), e.id);
  }
  auto r = Start(group, version, e.id, data.value("decided_by", ""));
  if (!r) {
    // A version rejected again before its approval event came through: nothing to release.
    if (r.error().code() == Code::kFailedPrecondition) {
      spdlog::warn("release of {} v{} not started: {}", group, version, r.error().message());
      return Ok();
    }
    return std::unexpected(r.error());
  }
  return Ok();
}

takt::Status ReleaseService::Save(store::Database& tx, const Release& r) {
  TAKT_RETURN_IF_ERROR(
      tx.Exec("UPDATE releases SET status = ?, stage = ?, phase = ?, phase_started_ms = ?, updated_at = ?, "
              "message = ?, "
              "previous_json = ? WHERE id = ?",
              {r.status, r.stage, r.phase, r.phase_started_ms, NowIso(), r.message, r.previous_json, r.id}));
  return Ok();
}

takt::Status ReleaseService::AddLog(store::Database& tx, const Release& r, const std::string& what,
                                    const std::string& principal, const std::string& detail) {
  TAKT_RETURN_IF_ERROR(tx.Exec(
      "INSERT INTO release_log (release_id, stage, what, principal, detail, time) VALUES (?, ?, ?, ?, ?, ?)",
      {r.id, r.stage, what, principal, detail, NowIso()}));
  spdlog::info("release {} ({} {}) {}: {} {}", r.id, r.group, V(r.version), r.stage, what, detail);
  return Ok();
}

namespace {
takt::Status Emit(store::Database& tx, const Release& r, const char* type, const std::string& detail) {
  auto e = events::Append(tx, {.type = type,
                               .source = "/releases",
                               .subject = "models/" + r.group + "/releases/" + r.id,
                               .data_json = Json{
                                   {"release", r.id},
                                   {"group", r.group},
                                   {"version", r.version},
                                   {"stage", r.stage},
                                   {"status", r.status},
                                   {"detail",
                                    detail}}.dump()});
  if (!e) return std::unexpected(e.error());
  return Ok();
}
}  // namespace

Result<Release> ReleaseService::Start(const std::string& group, int version, const std::string& trigger,
                                      const std::string& principal) {
  std::lock_guard lock(mu_);
  TAKT_ASSIGN_OR_RETURN(
      auto done, db_->Query(std::string("SELECT ") + kReleaseColumns + " FROM releases WHERE trigger_key = ?",
                            {trigger}));
  if (!done.empty()) return FromRow(done.front());
  TAKT_ASSIGN_OR_RETURN(registry::ModelVersion mv, registry_->GetVersion(group, version));
  if (mv.status != registry::kApproved) {
    return FailedPrecondition(group + " " + V(version) + " is " + mv.status +
                              "; only Approved versions are released");
  }
  TAKT_ASSIGN_OR_RETURN(ReleaseConfig cfg, Config(group));
  // Releases of the group still going are superseded by this newer decision.
  TAKT_ASSIGN_OR_RETURN(
      auto older, Query("model_group = ? AND status IN ('InProgress', 'WaitingForApproval')", {group}, 100));
  for (auto& o : older) {
    if (o.phase == "deploy" || o.phase == "smoke" || o.phase == "smoked" || o.phase == "observe") {
      TAKT_RETURN_IF_ERROR(RestorePrevious(o, "superseded"));
    }
    TAKT_RETURN_IF_ERROR(Finish(o, kSuperseded, "superseded by the release of " + V(version), "superseded"));
  }
  Release r;
  r.id = NewId("rel");
  r.group = group;
  r.version = version;
  r.stage = cfg.stages.front().name;
  r.phase = "gates";
  r.phase_started_ms = Now();
  r.trigger = trigger;
  r.started_by = principal;
  r.created_at = r.updated_at = NowIso();
  r.message = "started";
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> takt::Status {
    TAKT_RETURN_IF_ERROR(
        tx.Exec(std::string("INSERT INTO releases (") + kReleaseColumns +
                    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                {r.id, r.group, int64_t{r.version}, r.status, r.stage, r.phase, r.phase_started_ms, r.trigger,
                 r.started_by, r.created_at, r.updated_at, r.message, r.previous_json}));
    TAKT_RETURN_IF_ERROR(
        AddLog(tx, r, "started", principal,
               "stages " + cfg.StageNames() + (trigger.rfind("ev-", 0) == 0 ? "; event " + trigger : "")));
    return Emit(tx, r, kReleaseStarted, "stages " + cfg.StageNames());
  }));
  Notify();
  return r;
}

takt::Status ReleaseService::Finish(Release& r, const char* status, const std::string& message,
                                    const std::string& what) {
  r.status = status;
  r.message = message;
  if (r.phase != "done") r.phase = "done";
  return db_->Transaction([&](store::Database& tx) -> takt::Status {
    TAKT_RETURN_IF_ERROR(Save(tx, r));
    TAKT_RETURN_IF_ERROR(AddLog(tx, r, what, "", message));
    return Emit(tx, r, kReleaseFinished, message);
  });
}

takt::Status ReleaseService::RestorePrevious(const Release& r, const std::string& why) {
  std::string endpoint = r.group + "-" + r.stage;
  auto previous = ParseVariants(r.previous_json);
  if (previous.empty()) {
    auto e = serving_->Get(endpoint);
    if (!e) return Ok();  // nothing was created
    return serving_->Remove(endpoint, r.id + ": " + why);
  }
  auto back = serving_->SetVariants(r.group, r.stage, previous, "", "", r.id + ": " + why);
  if (!back) return std::unexpected(back.error().WithContext("putting " + endpoint + " back"));
  return Ok();
}

int ReleaseService::LiveVersion(const std::string& group, const std::string& stage) const {
  auto rows =
      db_->Query("SELECT version FROM stage_history WHERE model_group = ? AND stage = ? AND to_time = ''",
                 {group, stage});
  if (!rows || rows->empty()) return 0;
  return static_cast<int>(rows->front().Int(0));
}

takt::Status ReleaseService::RecordServed(store::Database& tx, const std::string& group,
                                          const std::string& stage, int version,
                                          const std::string& release_id, const std::string& how,
                                          const std::string& by, const std::vector<std::string>& approved_by,
                                          const std::string& ended_by) {
  std::string now = NowIso();
  TAKT_RETURN_IF_ERROR(
      tx.Exec("UPDATE stage_history SET to_time = ?, ended_by = ? WHERE model_group = ? AND stage = ? AND "
              "to_time = ''",
              {now, ended_by, group, stage}));
  if (version < 1) return Ok();
  std::string approvers;
  for (const auto& a : approved_by) approvers += (approvers.empty() ? "" : ",") + a;
  TAKT_RETURN_IF_ERROR(
      tx.Exec("INSERT INTO stage_history (model_group, stage, version, release_id, from_time, to_time, how, "
              "by_principal, "
              "approved_by, ended_by) VALUES (?, ?, ?, ?, ?, '', ?, ?, ?, '')",
              {group, stage, int64_t{version}, release_id, now, how, by, approvers}));
  return Ok();
}

Result<std::string> ReleaseService::CheckQuality(const Release& r, const StageConfig& st,
                                                 bool* passed) const {
  const QualityGate& q = *st.quality;
  *passed = true;
  int baseline = LiveVersion(r.group, q.compare_to);
  if (baseline == 0)
    return "no version serves " + q.compare_to + " yet: nothing to compare " + q.metric + " with";
  if (baseline == r.version) return V(r.version) + " already serves " + q.compare_to;
  TAKT_ASSIGN_OR_RETURN(registry::ModelVersion cand, registry_->GetVersion(r.group, r.version));
  TAKT_ASSIGN_OR_RETURN(registry::ModelVersion base, registry_->GetVersion(r.group, baseline));
  auto metric = [&](const registry::ModelVersion& v, double* out) {
    auto m = ParseJson(v.metrics_json, "metrics");
    if (!m || !m->is_object() || !m->contains(q.metric) || !(*m)[q.metric].is_number()) return false;
    *out = (*m)[q.metric].get<double>();
    return true;
  };
  double c = 0, b = 0;
  if (!metric(cand, &c)) {
    *passed = false;
    return V(r.version) + " registered no metric '" + q.metric + "' to compare with " + q.compare_to + "'s " +
           V(baseline);
  }
  if (!metric(base, &b))
    return q.compare_to + "'s " + V(baseline) + " has no metric '" + q.metric + "': passed";
  double worse_by = q.higher_is_better ? b - c : c - b;
  std::string shown =
      q.metric + " " + Num(c) + " vs " + Num(b) + " for " + q.compare_to + "'s " + V(baseline);
  if (worse_by > q.max_regression + 1e-12) {
    *passed = false;
    return shown + ": worse by " + Num(worse_by) + ", more than the " + Num(q.max_regression) + " allowed";
  }
  return shown + " (at most " + Num(q.max_regression) + " worse allowed)";
}

Result<std::string> ReleaseService::SmokeTest(const Release& r, const StageConfig& st, bool* passed) const {
  *passed = false;
  std::string endpoint = r.group + "-" + r.stage;
  TAKT_ASSIGN_OR_RETURN(auto model,
                        serving_->FindVariant(endpoint, serving::VariantName(r.group, r.version)));
  TAKT_ASSIGN_OR_RETURN(registry::ModelVersion mv, registry_->GetVersion(r.group, r.version));
  const size_t cols = model->feature_names.size();
  std::vector<std::vector<float>> samples;
  for (const auto& row : mv.sample_rows) {
    if (row.size() != cols) continue;
    std::vector<float> f;
    for (double d : row) f.push_back(static_cast<float>(d));
    samples.push_back(std::move(f));
  }
  std::string source = samples.empty()
                           ? "rows of missing values (the version registered no sample rows)"
                           : std::to_string(samples.size()) + " sample rows of its validation data";
  if (samples.empty()) samples.push_back(std::vector<float>(cols, std::numeric_limits<float>::quiet_NaN()));
  const int n = st.smoke_test->requests;
  std::vector<double> latencies;
  for (int i = 0; i < n; ++i) {
    const std::vector<float>& row = samples[static_cast<size_t>(i) % samples.size()];
    if (row.size() != cols)
      return "sample row " + std::to_string(i + 1) + " does not have " + std::to_string(cols) + " values";
    std::vector<float> p;
    auto t0 = std::chrono::steady_clock::now();
    // On the new variant's replicas, through its queue: what a request gets.
    Status scored = serving_->Invoke(endpoint, model->variant, row, 1, &p);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    latencies.push_back(ms);
    if (!scored)
      return "request " + std::to_string(i + 1) + " of " + std::to_string(n) +
             " failed: " + scored.error().message();
    if (p.empty()) return "request " + std::to_string(i + 1) + " returned no prediction";
    for (float x : p) {
      if (!std::isfinite(x)) return "request " + std::to_string(i + 1) + " returned " + std::to_string(x);
    }
  }
  std::sort(latencies.begin(), latencies.end());
  double p99 =
      latencies[std::min(latencies.size() - 1,
                         static_cast<size_t>(std::ceil(0.99 * static_cast<double>(latencies.size()))) - 1)];
  std::string shown = std::to_string(n) + " requests from " + source + ", p99 " + Ms(p99);
  if (p99 > st.smoke_test->max_p99_latency_ms)
    return shown + " > " + Ms(st.smoke_test->max_p99_latency_ms) + " allowed";
  *passed = true;
  return shown;
}

takt::Status ReleaseService::StageDone(Release& r, const StageConfig& st) {
  TAKT_ASSIGN_OR_RETURN(ReleaseConfig cfg, Config(r.group));
  std::vector<std::string> approvers;
  TAKT_ASSIGN_OR_RETURN(auto approvals, Approvals(r.id));
  for (const auto& a : approvals) {
    if (a.stage == st.name && a.decision == "approved") approvers.push_back(a.principal);
  }
  const StageConfig* next = nullptr;
  for (size_t i = 0; i + 1 < cfg.stages.size(); ++i) {
    if (cfg.stages[i].name == st.name) next = &cfg.stages[i + 1];
  }
  int before = LiveVersion(r.group, st.name);
  return db_->Transaction([&](store::Database& tx) -> takt::Status {
    TAKT_RETURN_IF_ERROR(RecordServed(tx, r.group, st.name, r.version, r.id, "release", r.started_by,
                                      approvers, "replaced by " + V(r.version) + " (release " + r.id + ")"));
    std::string detail = V(r.version) + " serves " + st.name + (before ? ", replacing " + V(before) : "");
    TAKT_RETURN_IF_ERROR(AddLog(tx, r, "stage.succeeded", "", detail));
    TAKT_RETURN_IF_ERROR(Emit(tx, r, kReleaseStageDone, detail));
    if (next) {
      r.stage = next->name;
      r.phase = "gates";
      r.phase_started_ms = Now();
      r.previous_json = "[]";
      r.message = "entering " + next->name;
    } else {
      r.phase = "done";
      r.status = kSucceeded;
      r.message = V(r.version) + " serves " + cfg.StageNames();
      TAKT_RETURN_IF_ERROR(AddLog(tx, r, "succeeded", "", r.message));
      TAKT_RETURN_IF_ERROR(Emit(tx, r, kReleaseFinished, r.message));
    }
    return Save(tx, r);
  });
}

takt::Status ReleaseService::Advance(Release& r) {
  TAKT_ASSIGN_OR_RETURN(ReleaseConfig cfg, Config(r.group));
  const StageConfig* st = cfg.Stage(r.stage);
  if (!st) {
    return Finish(
        r, kFailed,
        "stage " + r.stage + " is no longer in " + r.group + "'s release config (" + cfg.StageNames() + ")",
        "failed");
  }
  const std::string endpoint = r.group + "-" + r.stage;
  const int64_t now = Now();
  auto set_phase = [&](const std::string& phase, const std::string& what, const std::string& detail,
                       const char* event = nullptr) {
    r.phase = phase;
    r.phase_started_ms = Now();
    return db_->Transaction([&](store::Database& tx) -> takt::Status {
      TAKT_RETURN_IF_ERROR(Save(tx, r));
      if (!what.empty()) TAKT_RETURN_IF_ERROR(AddLog(tx, r, what, "", detail));
      if (event) TAKT_RETURN_IF_ERROR(Emit(tx, r, event, detail));
      return Ok();
    });
  };
  // The stage's variants now, remembered before this release changes them.
  auto enter_deploy = [&](const std::string& what, const std::string& detail) {
    auto e = serving_->Get(endpoint);
    r.previous_json = e ? VariantsText(e->variants) : "[]";
    r.status = kInProgress;
    return set_phase("deploy", what, detail);
  };

  if (r.phase == "gates") {
    if (st->quality) {
      bool passed = false;
      TAKT_ASSIGN_OR_RETURN(std::string detail, CheckQuality(r, *st, &passed));
      if (!passed)
        return Finish(r, kFailed, "quality gate at " + r.stage + ": " + detail, "gate.quality.failed");
      TAKT_RETURN_IF_ERROR(db_->Transaction(
          [&](store::Database& tx) { return AddLog(tx, r, "gate.quality.passed", "", detail); }));
    }
    if (st->approval) {
      r.status = kWaiting;
      std::string who = std::to_string(st->approval->approvers) + " approver" +
                        (st->approval->approvers > 1 ? "s" : "") + " with persona " + st->approval->persona +
                        (st->approval->group.empty() ? "" : " in group " + st->approval->group) + " within " +
                        Seconds(st->approval->timeout_seconds);
      r.message = "waiting for approval at " + r.stage + ": " + who;
      return set_phase("approval", "approval.requested", who, kReleaseWaiting);
    }
    return enter_deploy("", "");
  }
  if (r.phase == "approval") {
    double waited = static_cast<double>(now - r.phase_started_ms) / 1000.0;
    if (waited > st->approval->timeout_seconds) {
      return Finish(r, kFailed,
                    "approval at " + r.stage + " timed out after " + Seconds(st->approval->timeout_seconds),
                    "approval.timed-out");
    }
    return Ok();
  }
  const std::string mine = serving::VariantName(r.group, r.version);
  const int stable = Stable(ParseVariants(r.previous_json));
  const bool beside = stable != 0 && stable != r.version && st->strategy != Strategy::kAllAtOnce;
  if (r.phase == "deploy") {
    std::vector<serving::Variant> variants;
    std::string how;
    if (!beside) {
      variants = {{mine, r.version, 100}};
      how = mine + " takes all traffic";
    } else if (st->strategy == Strategy::kCanary) {
      variants = {{"", stable, 100 - st->canary_percent}, {mine, r.version, st->canary_percent}};
      how = mine + " at " + std::to_string(st->canary_percent) + " % beside " + V(stable) + " (canary)";
    } else {
      variants = {{"", stable, 100}, {mine, r.version, 0}};
      how = mine + " loaded beside " + V(stable) + " at 0 % (blue/green)";
    }
    auto e = serving_->SetVariants(r.group, r.stage, variants, r.id + "/" + r.stage + "/deploy",
                                   EndpointSettingsJson(*st), "release " + r.id);
    if (!e) {
      TAKT_RETURN_IF_ERROR(RestorePrevious(r, "deploy failed"));
      return Finish(r, kFailed, "deploying " + mine + " to " + r.stage + " failed: " + e.error().message(),
                    "deploy.failed");
    }
    return set_phase(st->smoke_test ? "smoke" : "smoked", "deployed", how);
  }
  if (r.phase == "smoke") {
    bool passed = false;
    auto detail = SmokeTest(r, *st, &passed);
    if (!detail || !passed) {
      std::string why = detail ? *detail : detail.error().message();
      TAKT_RETURN_IF_ERROR(RestorePrevious(r, "smoke test failed"));
      return Finish(r, kFailed,
                    "smoke test of " + mine + " at " + r.stage + " failed: " + why +
                        (stable ? "; " + V(stable) + " serves again" : "; the endpoint is removed"),
                    "smoke.failed");
    }
    r.phase = "smoked";
    TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> takt::Status {
      TAKT_RETURN_IF_ERROR(AddLog(tx, r, "smoke.passed", "", *detail));
      return Save(tx, r);
    }));
  }
  if (r.phase == "smoked") {
    if (!beside) return StageDone(r, *st);
    if (st->strategy == Strategy::kBlueGreen) {
      auto e = serving_->SetVariants(r.group, r.stage, {{mine, r.version, 100}, {"", stable, 0}},
                                     r.id + "/" + r.stage + "/flip", "", "release " + r.id);
      if (!e) {
        TAKT_RETURN_IF_ERROR(RestorePrevious(r, "traffic flip failed"));
        return Finish(r, kFailed, "flipping traffic to " + mine + " failed: " + e.error().message(),
                      "deploy.failed");
      }
    }
    r.message =
        (st->strategy == Strategy::kCanary ? "canary: " + std::to_string(st->canary_percent) + " % on "
                                           : "blue/green: all traffic on ") +
        mine + " for " + Seconds(st->duration_seconds);
    return set_phase("observe", "observing", r.message);
  }
  if (r.phase == "observe") {
    serving::VariantStats s = serving_->Stats(endpoint, mine, r.phase_started_ms);
    std::string alarm;
    if (s.requests >= st->min_requests) {
      if (s.error_rate > st->max_error_rate) {
        alarm = "error rate " + Num(s.error_rate) + " > " + Num(st->max_error_rate);
      } else if (s.p99_ms > st->max_p99_latency_ms) {
        alarm = "p99 latency " + Ms(s.p99_ms) + " > " + Ms(st->max_p99_latency_ms);
      }
    }
    if (!alarm.empty()) {
      TAKT_RETURN_IF_ERROR(RestorePrevious(r, "alarm: " + alarm));
      return Finish(r, kRolledBack,
                    mine + " rolled back at " + r.stage + ": " + alarm + " over " +
                        std::to_string(s.requests) + " requests; " + V(stable) + " takes all traffic again",
                    "rolled-back");
    }
    if (static_cast<double>(now - r.phase_started_ms) / 1000.0 < st->duration_seconds) return Ok();
    auto e = serving_->SetVariants(r.group, r.stage, {{mine, r.version, 100}},
                                   r.id + "/" + r.stage + "/promote", "", "release " + r.id);
    if (!e) return std::unexpected(e.error().WithContext("promoting " + mine));
    TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) {
      return AddLog(tx, r, "promoted", "",
                    std::to_string(s.requests) + " requests on " + mine + ", error rate " +
                        Num(s.error_rate) + ", p99 " + Ms(s.p99_ms) + "; " + V(stable) + " retired");
    }));
    return StageDone(r, *st);
  }
  return Ok();
}

takt::Status ReleaseService::Tick() {
  std::lock_guard lock(mu_);
  TAKT_ASSIGN_OR_RETURN(auto active, Query("status IN ('InProgress', 'WaitingForApproval')", {}, 1000));
  for (auto& r : active) {
    // As far as it goes now: a few phases per tick, until it waits.
    for (int step = 0; step < 12 && Active(r); ++step) {
      std::string before = r.stage + "/" + r.phase + "/" + r.status;
      auto s = Advance(r);
      if (!s) {
        spdlog::error("release {}: {}", r.id, s.error().ToString());
        break;
      }
      if (r.stage + "/" + r.phase + "/" + r.status == before) break;
    }
  }
  return Ok();
}

void ReleaseService::Start() {
  stop_ = false;
  thread_ = std::thread([this] {
    SetThreadName("takt-release");
    while (!stop_) {
      auto s = Tick();
      if (!s) spdlog::error("release worker: {}", s.error().ToString());
      std::unique_lock lock(wake_mu_);
      cv_.wait_for(lock, options_.tick, [this] { return wake_ || stop_.load(); });
      wake_ = false;
    }
  });
}

void ReleaseService::Notify() {
  {
    std::lock_guard lock(wake_mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void ReleaseService::Stop() {
  {
    std::lock_guard lock(wake_mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<Release> ReleaseService::ActiveRelease(const std::string& group) const {
  TAKT_ASSIGN_OR_RETURN(auto g, registry_->ListVersions(group));  // NotFound for an unknown group
  (void)g;
  TAKT_ASSIGN_OR_RETURN(
      auto active, Query("model_group = ? AND status IN ('InProgress', 'WaitingForApproval')", {group}, 1));
  if (active.empty()) {
    return NotFound("no release of " + group + " is in progress (`takt release status " + group +
                    "` shows the last ones)");
  }
  return active.front();
}

Result<Release> ReleaseService::Approve(const std::string& group, const std::string& stage,
                                        const std::string& principal, const std::string& comment) {
  return Decide(group, stage, principal, comment, true);
}

Result<Release> ReleaseService::Reject(const std::string& group, const std::string& stage,
                                       const std::string& principal, const std::string& comment) {
  return Decide(group, stage, principal, comment, false);
}

Result<Release> ReleaseService::Decide(const std::string& group, const std::string& stage,
                                       const std::string& principal, const std::string& comment,
                                       bool approve) {
  std::lock_guard lock(mu_);
  TAKT_ASSIGN_OR_RETURN(ReleaseConfig cfg, Config(group));
  const StageConfig* st = cfg.Stage(stage);
  if (!st) {
    return InvalidArgument("stage '" + stage + "' is not in " + group + "'s release pipeline (" +
                           cfg.StageNames() + ")");
  }
  if (!st->approval) return FailedPrecondition("stage " + stage + " of " + group + " has no approval gate");
  TAKT_ASSIGN_OR_RETURN(Release r, ActiveRelease(group));
  if (r.stage != stage || r.phase != "approval") {
    return FailedPrecondition(group + " " + V(r.version) + " is not waiting for approval at " + stage +
                              ": it is at " + r.stage + " (" + r.phase + ")");
  }
  TAKT_ASSIGN_OR_RETURN(registry::ModelVersion mv, registry_->GetVersion(group, r.version));
  if (mv.created_by == principal) {
    return PermissionDenied(principal + " is the author of " + group + " " + V(r.version) +
                            (mv.run_id.empty() ? "" : " (started run " + mv.run_id + ")") + " and may not " +
                            (approve ? "approve" : "reject") + " its release; another approver must");
  }
  TAKT_ASSIGN_OR_RETURN(iam::Principal who, iam_->Get(principal));
  if (std::find(who.personas.begin(), who.personas.end(), st->approval->persona) == who.personas.end()) {
    return PermissionDenied(principal + " does not hold persona " + st->approval->persona + ", which the " +
                            stage + " approval of " + group + " needs");
  }
  if (!st->approval->group.empty()) {
    TAKT_ASSIGN_OR_RETURN(iam::Group g, iam_->GetGroup(st->approval->group));
    if (std::find(g.members.begin(), g.members.end(), principal) == g.members.end()) {
      return PermissionDenied(principal + " is not in group " + g.name + ", whose members approve " + group +
                              " at " + stage);
    }
  }
  TAKT_ASSIGN_OR_RETURN(auto approvals, Approvals(r.id));
  int count = 0;
  for (const auto& a : approvals) {
    if (a.stage != stage) continue;
    if (a.principal == principal) {
      return Conflict(principal + " approved " + group + " " + V(r.version) + " for " + stage + " already; " +
                      stage + " needs " + std::to_string(st->approval->approvers) + " distinct approvers");
    }
    ++count;
  }
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) -> takt::Status {
    TAKT_RETURN_IF_ERROR(
        tx.Exec("INSERT INTO release_approvals VALUES (?, ?, ?, ?, ?, ?)",
                {r.id, stage, principal, std::string(approve ? "approved" : "rejected"), comment, NowIso()}));
    return AddLog(tx, r, approve ? "approved" : "rejected", principal, comment);
  }));
  if (!approve) {
    TAKT_RETURN_IF_ERROR(Finish(
        r, kRejected, "rejected at " + stage + " by " + principal + (comment.empty() ? "" : ": " + comment),
        "rejected"));
    return Get(r.id);
  }
  if (count + 1 >= st->approval->approvers) {
    auto e = serving_->Get(r.group + "-" + r.stage);
    r.previous_json = e ? VariantsText(e->variants) : "[]";
    r.status = kInProgress;
    r.phase = "deploy";
    r.phase_started_ms = Now();
    r.message = "approved for " + stage;
    TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) { return Save(tx, r); }));
    Notify();
  } else {
    r.message = "waiting for approval at " + stage + ": " + std::to_string(count + 1) + " of " +
                std::to_string(st->approval->approvers) + " approvers so far";
    TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) { return Save(tx, r); }));
  }
  return Get(r.id);
}

Result<int> ReleaseService::PreviousApproved(const std::string& group, const std::string& stage,
                                             int except) const {
  TAKT_ASSIGN_OR_RETURN(
      auto rows,
      db_->Query("SELECT version FROM stage_history WHERE model_group = ? AND stage = ? ORDER BY seq DESC",
                 {group, stage}));
  for (const auto& row : rows) {
    int v = static_cast<int>(row.Int(0));
    if (v == except) continue;
    auto mv = registry_->GetVersion(group, v);
    if (mv && mv->status == registry::kApproved) return v;
  }
  return 0;
}

Result<Served> ReleaseService::Rollback(const std::string& group, const std::string& stage, int to_version,
                                        const std::string& principal, const std::string& comment) {
  std::lock_guard lock(mu_);
  TAKT_ASSIGN_OR_RETURN(ReleaseConfig cfg, Config(group));
  if (!cfg.Stage(stage)) {
    return InvalidArgument("stage '" + stage + "' is not in " + group + "'s release pipeline (" +
                           cfg.StageNames() + ")");
  }
  const std::string endpoint = group + "-" + stage;
  auto e = serving_->Get(endpoint);
  if (!e) return NotFound("nothing serves " + group + " at " + stage + "; there is nothing to roll back");
  int current = LiveVersion(group, stage);
  if (current == 0) current = e->model_version;
  int target = to_version;
  if (target == 0) {
    TAKT_ASSIGN_OR_RETURN(target, PreviousApproved(group, stage, current));
    if (target == 0) {
      return FailedPrecondition("no earlier approved version served " + group + " at " + stage + " (" +
                                V(current) + " is the only one); name one with --to");
    }
  } else if (target == current) {
    return FailedPrecondition(V(target) + " already serves " + group + " at " + stage);
  }
  // An active release in this stage ends here.
  TAKT_ASSIGN_OR_RETURN(
      auto active, Query("model_group = ? AND status IN ('InProgress', 'WaitingForApproval')", {group}, 10));
  TAKT_ASSIGN_OR_RETURN(
      auto set, serving_->SetVariants(group, stage, {{"", target, 100}}, "", "", "rollback by " + principal));
  (void)set;
  for (auto& r : active) {
    if (r.stage == stage && r.phase != "gates" && r.phase != "approval") {
      TAKT_RETURN_IF_ERROR(
          Finish(r, kRolledBack, "rolled back at " + stage + " by " + principal, "rolled-back"));
    }
  }
  TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) {
    return RecordServed(tx, group, stage, target, "", "rollback", principal, {},
                        "rolled back by " + principal + (comment.empty() ? "" : ": " + comment));
  }));
  TAKT_ASSIGN_OR_RETURN(auto rows, History(group, "", stage));
  if (rows.empty()) return Internal("rollback left no history row");
  return rows.front();
}

takt::Status ReleaseService::OnRejected(const std::string& group, int version, const std::string& principal,
                                        const std::string& event_id) {
  std::lock_guard lock(mu_);
  TAKT_ASSIGN_OR_RETURN(auto done,
                        db_->Query("SELECT 1 FROM release_triggers WHERE trigger_key = ?", {event_id}));
  if (!done.empty()) return Ok();
  const std::string why =
      V(version) + " was rejected in the registry" + (principal.empty() ? "" : " by " + principal);
  TAKT_ASSIGN_OR_RETURN(auto active, Query("model_group = ? AND version = ? AND status IN ('InProgress', "
                                           "'WaitingForApproval')",
                                           {group, int64_t{version}}, 10));
  for (auto& r : active) {
    if (r.phase == "deploy" || r.phase == "smoke" || r.phase == "smoked" || r.phase == "observe") {
      TAKT_RETURN_IF_ERROR(RestorePrevious(r, why));
    }
    TAKT_RETURN_IF_ERROR(Finish(r, kCancelled, why, "cancelled"));
  }
  TAKT_ASSIGN_OR_RETURN(auto endpoints, serving_->List());
  for (const auto& e : endpoints) {
    if (e.model_group != group) continue;
    bool serves = false;
    for (const auto& v : e.variants) serves = serves || v.model_version == version;
    if (!serves) continue;
    // The stage's latest earlier version that is still approved.
    TAKT_ASSIGN_OR_RETURN(int target, PreviousApproved(group, e.stage, version));
    if (target) {
      TAKT_ASSIGN_OR_RETURN(auto set,
                            serving_->SetVariants(group, e.stage, {{"", target, 100}}, "", "", why));
      (void)set;
    } else {
      TAKT_RETURN_IF_ERROR(serving_->Remove(e.name, why));
    }
    TAKT_RETURN_IF_ERROR(db_->Transaction([&](store::Database& tx) {
      return RecordServed(tx, group, e.stage, target, "", "rejection", principal, {}, why);
    }));
    spdlog::info("{} at {}: {}; {}", group, e.stage, why,
                 target ? V(target) + " serves again" : "endpoint removed");
  }
  TAKT_RETURN_IF_ERROR(db_->Exec("INSERT INTO release_triggers VALUES (?, ?)", {event_id, NowIso()}));
  return Ok();
}

Result<std::vector<Approval>> ReleaseService::Approvals(const std::string& release_id) const {
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT stage, principal, decision, comment, time FROM "
                                              "release_approvals WHERE release_id = ? ORDER BY time",
                                              {release_id}));
  std::vector<Approval> out;
  for (const auto& r : rows) out.push_back({r.Text(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4)});
  return out;
}

Result<std::vector<LogEntry>> ReleaseService::Log(const std::string& release_id) const {
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT seq, time, stage, what, principal, detail FROM release_log "
                                   "WHERE release_id = ? ORDER BY seq",
                                   {release_id}));
  std::vector<LogEntry> out;
  for (const auto& r : rows) out.push_back({r.Int(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Text(5)});
  return out;
}

Result<std::vector<Release>> ReleaseService::Query(const std::string& where,
                                                   const std::vector<store::Value>& args, int limit) const {
  std::vector<store::Value> params = args;
  params.push_back(int64_t{limit});
  TAKT_ASSIGN_OR_RETURN(
      auto rows, db_->Query(std::string("SELECT ") + kReleaseColumns + " FROM releases WHERE " + where +
                                " ORDER BY created_at DESC, rowid DESC LIMIT ?",
                            params));
  std::vector<Release> out;
  for (const auto& r : rows) {
    out.push_back(FromRow(r));
    TAKT_ASSIGN_OR_RETURN(out.back().approvals, Approvals(out.back().id));
  }
  return out;
}

Result<Release> ReleaseService::Get(const std::string& id) const {
  TAKT_ASSIGN_OR_RETURN(auto rows, Query("id = ?", {id}, 1));
  if (rows.empty()) return NotFound("release " + id + " does not exist");
  TAKT_ASSIGN_OR_RETURN(rows.front().log, Log(id));
  return rows.front();
}

Result<std::vector<Release>> ReleaseService::List(const std::string& group, int limit) const {
  if (group.empty()) return Query("1 = 1", {}, limit);
  return Query("model_group = ?", {group}, limit);
}

Result<GroupStatus> ReleaseService::Describe(const std::string& group) const {
  if (!HasCustomConfig(group)) {
    TAKT_ASSIGN_OR_RETURN(auto versions, registry_->ListVersions(group));  // NotFound for an unknown group
    (void)versions;
  }
  TAKT_ASSIGN_OR_RETURN(ReleaseConfig cfg, Config(group));
  GroupStatus out;
  out.group = group;
  out.custom_config = HasCustomConfig(group);
  for (const auto& st : cfg.stages) {
    StageStatus s;
    s.stage = st.name;
    s.endpoint = group + "-" + st.name;
    if (auto e = serving_->Get(s.endpoint)) s.variants = e->variants;
    TAKT_ASSIGN_OR_RETURN(auto rows,
                          db_->Query("SELECT version, from_time FROM stage_history WHERE model_group = ? "
                                     "AND stage = ? AND to_time = ''",
                                     {group, st.name}));
    if (!rows.empty()) {
      s.live_version = static_cast<int>(rows.front().Int(0));
      s.since = rows.front().Text(1);
    }
    out.stages.push_back(std::move(s));
  }
  TAKT_ASSIGN_OR_RETURN(auto all, List(group, 20));
  for (auto& r : all) {
    TAKT_ASSIGN_OR_RETURN(r.log, Log(r.id));
    if (Active(r)) {
      out.active.push_back(std::move(r));
    } else if (out.recent.size() < 5) {
      out.recent.push_back(std::move(r));
    }
  }
  return out;
}

Result<std::vector<Served>> ReleaseService::History(const std::string& group, const std::string& at,
                                                    const std::string& stage) const {
  std::string sql =
      "SELECT stage, version, release_id, from_time, to_time, how, by_principal, approved_by, ended_by FROM "
      "stage_history WHERE model_group = ?";
  std::vector<store::Value> params = {group};
  if (!stage.empty()) {
    sql += " AND stage = ?";
    params.push_back(stage);
  }
  if (!at.empty()) {
    TAKT_ASSIGN_OR_RETURN(std::string t, NormalizeTime(at));
    sql += " AND from_time <= ? AND (to_time = '' OR to_time > ?)";
    params.push_back(t);
    params.push_back(t);
  }
  sql += " ORDER BY seq DESC";
  TAKT_ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  std::vector<Served> out;
  for (const auto& r : rows) {
    Served s;
    s.stage = r.Text(0);
    s.version = static_cast<int>(r.Int(1));
    s.release_id = r.Text(2);
    s.from = r.Text(3);
    s.to = r.Text(4);
    s.how = r.Text(5);
    s.by = r.Text(6);
    std::string approvers = r.Text(7);
    for (size_t pos = 0; !approvers.empty() && pos != std::string::npos;) {
      size_t comma = approvers.find(',', pos);
      s.approved_by.push_back(approvers.substr(pos, comma == std::string::npos ? comma : comma - pos));
      pos = comma == std::string::npos ? comma : comma + 1;
    }
    s.ended_by = r.Text(8);
    if (auto mv = registry_->GetVersion(group, s.version)) {
      s.run_id = mv->run_id;
      s.dataset = mv->dataset;
      s.dataset_version = mv->dataset_version;
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace takt::release
