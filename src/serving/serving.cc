#include "serving/serving.h"

#include <spdlog/spdlog.h>

#include <mutex>

#include "core/time.h"
#include "lineage/lineage.h"

namespace takt::serving {
namespace {

constexpr const char* kColumns =
    "name, stage, model_group, model_version, status, created_at, updated_at, last_event_id, message";

Endpoint FromRow(const store::Row& r) {
  return {r.Text(0), r.Text(1), r.Text(2), static_cast<int>(r.Int(3)), r.Text(4), r.Text(5),
          r.Text(6), r.Text(7), r.Text(8)};
}

}  // namespace

bool IsStage(std::string_view stage) { return stage == "dev" || stage == "int" || stage == "prod"; }

Status ServingService::Migrate() {
  TAKT_RETURN_IF_ERROR(lineage::Migrate(*db_));  // deploys record lineage edges
  return store::Migrate(
      *db_, "serving",
      {{1, "endpoints",
        "CREATE TABLE endpoints (name TEXT PRIMARY KEY, stage TEXT NOT NULL, model_group TEXT NOT "
        "NULL, model_version INTEGER NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, "
        "updated_at TEXT NOT NULL, last_event_id TEXT NOT NULL, message TEXT NOT NULL);"
        "CREATE TABLE deployments (event_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, model_group "
        "TEXT NOT NULL, model_version INTEGER NOT NULL, time TEXT NOT NULL);"}});
}

Result<std::shared_ptr<const LoadedModel>> ServingService::Load(const std::string& endpoint,
                                                                const registry::ModelVersion& v) {
  auto bytes = blobs_->Get(v.blob_id);
  if (!bytes)
    return std::unexpected(
        bytes.error().WithContext("loading " + v.group + " v" + std::to_string(v.version)));
  TAKT_ASSIGN_OR_RETURN(auto model, ml::XgbModel::Load(*bytes));
  if (model->num_features() != v.feature_names.size()) {
    return FailedPrecondition(v.group + " v" + std::to_string(v.version) + ": the model expects " +
                              std::to_string(model->num_features()) + " features but the registry lists " +
                              std::to_string(v.feature_names.size()));
  }
  auto loaded = std::make_shared<LoadedModel>();
  loaded->endpoint = endpoint;
  loaded->group = v.group;
  loaded->version = v.version;
  loaded->feature_names = v.feature_names;
  loaded->model = std::move(model);
  return std::shared_ptr<const LoadedModel>(std::move(loaded));
}

Result<Endpoint> ServingService::Deploy(const std::string& group, int version, const std::string& stage,
                                        const std::string& event_id) {
  if (!IsStage(stage)) return InvalidArgument("stage '" + stage + "' is not one of dev, int, prod");
  std::string name = group + "-" + stage;
  // One deploy at a time: check, load, commit and swap must not interleave,
  // or the database and the served model could disagree.
  std::lock_guard<std::mutex> deploy_lock(deploy_mu_);
  if (!event_id.empty()) {
    TAKT_ASSIGN_OR_RETURN(auto done,
                          db_->Query("SELECT endpoint FROM deployments WHERE event_id = ?", {event_id}));
    if (!done.empty()) return Get(name);
  }
  TAKT_ASSIGN_OR_RETURN(registry::ModelVersion v, registry_->GetVersion(group, version));
  if (v.status != registry::kApproved) {
    return FailedPrecondition(group + " v" + std::to_string(version) + " is " + v.status +
                              "; only Approved versions are deployed");
  }
  // Load (and so validate) before anything is recorded or swapped.
  TAKT_ASSIGN_OR_RETURN(auto loaded, Load(name, v));
  std::string now = NowIso();
  Status committed = db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(auto existing, tx.Query("SELECT created_at FROM endpoints WHERE name = ?", {name}));
    std::string created = existing.empty() ? now : existing.front().Text(0);
    TAKT_RETURN_IF_ERROR(tx.Exec("DELETE FROM endpoints WHERE name = ?", {name}));
    TAKT_RETURN_IF_ERROR(
        tx.Exec(std::string("INSERT INTO endpoints (") + kColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                {name, stage, group, int64_t{version}, std::string("InService"), created, now, event_id,
                 std::string()}));
    if (!event_id.empty()) {
      // Another process sharing the database may have taken this event.
      TAKT_ASSIGN_OR_RETURN(auto done,
                            tx.Query("SELECT endpoint FROM deployments WHERE event_id = ?", {event_id}));
      if (!done.empty()) return AlreadyExists("event " + event_id + " was deployed already");
      TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO deployments VALUES (?, ?, ?, ?, ?)",
                                   {event_id, name, group, int64_t{version}, now}));
    }
    return lineage::Record(tx, {"model:" + group + "@" + std::to_string(version), "endpoint:" + name,
                                "deployed to", stage, now});
  });
  if (!committed) {
    if (committed.error().code() == Code::kAlreadyExists && !event_id.empty()) return Get(name);
    return std::unexpected(committed.error());
  }
  {
    std::unique_lock lock(mu_);
    live_[name] = std::move(loaded);
  }
  spdlog::info("endpoint {} serves {} v{}", name, group, version);
  return Get(name);
}

Status ServingService::LoadAll() {
  TAKT_ASSIGN_OR_RETURN(auto endpoints, List());
  for (const auto& e : endpoints) {
    if (e.status != "InService") continue;
    auto v = registry_->GetVersion(e.model_group, e.model_version);
    if (!v) return std::unexpected(v.error().WithContext("endpoint " + e.name));
    auto loaded = Load(e.name, *v);
    if (!loaded) {
      spdlog::error("endpoint {}: {}", e.name, loaded.error().ToString());
      continue;
    }
    std::unique_lock lock(mu_);
    live_[e.name] = std::move(*loaded);
  }
  return Ok();
}

Result<std::vector<Endpoint>> ServingService::List() const {
  TAKT_ASSIGN_OR_RETURN(auto rows,
                        db_->Query(std::string("SELECT ") + kColumns + " FROM endpoints ORDER BY name"));
  std::vector<Endpoint> out;
  for (const auto& r : rows) out.push_back(FromRow(r));
  return out;
}

Result<Endpoint> ServingService::Get(std::string_view name) const {
  TAKT_ASSIGN_OR_RETURN(
      auto r, db_->QueryOne(std::string("SELECT ") + kColumns + " FROM endpoints WHERE name = ?",
                            {std::string(name)}, "endpoint " + std::string(name) + " does not exist"));
  return FromRow(r);
}

Result<std::shared_ptr<const LoadedModel>> ServingService::Find(std::string_view name) const {
  std::shared_lock lock(mu_);
  auto it = live_.find(name);
  if (it == live_.end()) return NotFound("endpoint " + std::string(name) + " is not serving");
  return it->second;
}

}  // namespace takt::serving
