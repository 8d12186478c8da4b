#include "serving/serving.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <random>
#include <set>

#include "core/json.h"
#include "core/posix.h"
#include "core/time.h"
#include "lineage/lineage.h"
#include "serving/capture.h"
#include "serving/runtime.h"

namespace takt::serving {
namespace {

constexpr const char* kColumns =
    "name, stage, model_group, model_version, status, created_at, updated_at, last_event_id, message, "
    "variants_json, settings_json";

Json VariantsJson(const std::vector<Variant>& variants) {
  Json a = Json::array();
  for (const auto& v : variants)
    a.push_back({{"name", v.name}, {"version", v.model_version}, {"weight", v.weight}});
  return a;
}

Endpoint FromRow(const store::Row& r) {
  Endpoint e{r.Text(0), r.Text(1), r.Text(2), static_cast<int>(r.Int(3)), r.Text(4), r.Text(5),
             r.Text(6), r.Text(7), r.Text(8)};
  auto variants = ParseJson(r.Text(9), "variants");
  if (variants && variants->is_array()) {
    for (const auto& v : *variants) {
      e.variants.push_back({v.value("name", ""), v.value("version", 0), v.value("weight", 0)});
    }
  }
  if (e.variants.empty())
    e.variants.push_back({VariantName(e.model_group, e.model_version), e.model_version, 100});
  e.settings_json = r.Text(10).empty() ? "{}" : r.Text(10);
  return e;
}

int Primary(const std::vector<Variant>& variants) {
  const Variant* best = &variants.front();
  for (const auto& v : variants) {
    if (v.weight > best->weight) best = &v;
  }
  return best->model_version;
}

// Generations are unique across ServingService instances, so a thread's
// cached snapshot is never taken for another instance's.
std::atomic<uint64_t> g_generations{1};

struct ThreadSnapshot {
  const void* owner = nullptr;
  uint64_t generation = 0;
  std::shared_ptr<const void> snapshot;
};

}  // namespace

Status Scorer::Score(const float* rows, size_t n, float* out) const {
  if (engine) {
    engine->Predict(rows, n, out);
    return Ok();
  }
  if (!model) return Internal("the scorer holds no model");
  ml::Matrix m;
  m.rows = n;
  m.cols = num_features;
  m.values.assign(rows, rows + n * m.cols);
  TAKT_ASSIGN_OR_RETURN(std::vector<float> p, model->Predict(m));
  if (p.size() != n * num_outputs)
    return Internal("the model returned " + std::to_string(p.size()) + " values for " + std::to_string(n) +
                    " rows");
  std::copy(p.begin(), p.end(), out);
  return Ok();
}

Result<std::shared_ptr<const Scorer>> MakeScorer(std::string_view bytes) {
  auto scorer = std::make_shared<Scorer>();
  if (auto engine = ml::TreeEnsemble::Load(bytes)) {
    scorer->num_features = (*engine)->num_features();
    scorer->num_outputs = (*engine)->num_outputs();
    scorer->engine = std::move(*engine);
  } else {
    // Not a tree model the engine compiles (e.g. gblinear): XGBoost serves it.
    TAKT_ASSIGN_OR_RETURN(auto model, ml::XgbModel::Load(bytes));
    spdlog::debug("served by XGBoost: {}", engine.error().message());
    scorer->num_features = model->num_features();
    scorer->model = std::move(model);
  }
  return std::shared_ptr<const Scorer>(std::move(scorer));
}

void LoadedModel::SetScorer(std::shared_ptr<const Scorer> scorer) const {
  std::lock_guard lock(mu_);
  weak_ = scorer;
  if (!reload) pinned_ = std::move(scorer);
}

std::shared_ptr<const Scorer> LoadedModel::Resident() const {
  std::lock_guard lock(mu_);
  return weak_.lock();
}

Result<std::shared_ptr<const Scorer>> LoadedModel::Acquire() const {
  // Under the lock, so that concurrent cold starts load the model once.
  std::lock_guard lock(mu_);
  if (auto held = weak_.lock()) return held;
  if (!reload) return FailedPrecondition(variant + ": the model is not loaded");
  auto started = std::chrono::steady_clock::now();
  TAKT_ASSIGN_OR_RETURN(std::shared_ptr<const Scorer> scorer, reload());
  if (scorer->num_features != feature_names.size() || scorer->num_outputs != num_outputs) {
    return FailedPrecondition(variant + ": the reloaded model has " + std::to_string(scorer->num_features) +
                              " features and " + std::to_string(scorer->num_outputs) + " outputs, not " +
                              std::to_string(feature_names.size()) + " and " + std::to_string(num_outputs));
  }
  weak_ = scorer;
  spdlog::info("{}: model loaded again after scale to zero ({:.0f} ms)", variant,
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
  return scorer;
}

Status LoadedModel::Score(const float* rows, size_t n, float* out) const {
  TAKT_ASSIGN_OR_RETURN(std::shared_ptr<const Scorer> scorer, Acquire());
  return scorer->Score(rows, n, out);
}

VariantRuntime* LiveEndpoint::Pick(double pick) const {
  double acc = 0;
  for (size_t i = 0; i < variants.size(); ++i) {
    acc += weights[i];
    if (pick < acc) return variants[i].get();
  }
  // Rounding at the top end: the last variant with traffic.
  for (size_t i = variants.size(); i-- > 0;) {
    if (weights[i] > 0) return variants[i].get();
  }
  return variants.front().get();
}

VariantRuntime* LiveEndpoint::Named(std::string_view variant) const {
  for (const auto& v : variants) {
    if (v->model().variant == variant) return v.get();
  }
  return nullptr;
}

std::string LiveEndpoint::VariantNames() const {
  std::string known;
  for (const auto& v : variants) known += (known.empty() ? "" : ", ") + v->model().variant;
  return known;
}

ServingService::ServingService(store::Database* db, blob::BlobStore* blobs,
                               registry::RegistryService* registry)
    : db_(db),
      blobs_(blobs),
      registry_(registry),
      metrics_(std::make_unique<Metrics>()),
      generation_(g_generations.fetch_add(1)) {}

void ServingService::EnableCapture(std::filesystem::path root, const crypto::Keyring* keyring) {
  std::lock_guard lock(deploy_mu_);
  capture_root_ = std::move(root);
  keyring_ = keyring;
}

ServingService::~ServingService() { Stop(); }

bool IsStage(std::string_view stage) { return stage == "dev" || stage == "int" || stage == "prod"; }

std::string VariantName(std::string_view group, int version) {
  return std::string(group) + "-v" + std::to_string(version);
}

Status ServingService::Migrate() {
  TAKT_RETURN_IF_ERROR(lineage::Migrate(*db_));  // deploys record lineage edges
  return store::Migrate(
      *db_, "serving",
      {{1, "endpoints",
        "CREATE TABLE endpoints (name TEXT PRIMARY KEY, stage TEXT NOT NULL, model_group TEXT NOT "
        "NULL, model_version INTEGER NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, "
        "updated_at TEXT NOT NULL, last_event_id TEXT NOT NULL, message TEXT NOT NULL);"
        "CREATE TABLE deployments (event_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, model_group "
        "TEXT NOT NULL, model_version INTEGER NOT NULL, time TEXT NOT NULL);"},
       {2, "endpoint-variants",
        "ALTER TABLE endpoints ADD COLUMN variants_json TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE endpoints ADD COLUMN settings_json TEXT NOT NULL DEFAULT '{}';"}});
}

Result<ServingService::Loaded> ServingService::Load(const std::string& endpoint,
                                                    const registry::ModelVersion& v) {
  const std::string what = v.group + " v" + std::to_string(v.version);
  blob::BlobStore* blobs = blobs_;
  std::string blob_id = v.blob_id;
  auto load = [blobs, blob_id, what]() -> Result<std::shared_ptr<const Scorer>> {
    auto bytes = blobs->Get(blob_id);
    if (!bytes) return std::unexpected(bytes.error().WithContext("loading " + what));
    auto scorer = MakeScorer(*bytes);
    if (!scorer) return std::unexpected(scorer.error().WithContext("loading " + what));
    return scorer;
  };
  TAKT_ASSIGN_OR_RETURN(std::shared_ptr<const Scorer> scorer, load());
  if (scorer->model) spdlog::info("{}: served by XGBoost (not a tree model the engine compiles)", what);
  if (scorer->num_features != v.feature_names.size()) {
    return FailedPrecondition(what + ": the model expects " + std::to_string(scorer->num_features) +
                              " features but the registry lists " + std::to_string(v.feature_names.size()));
  }
  auto loaded = std::make_shared<LoadedModel>();
  loaded->endpoint = endpoint;
  loaded->variant = VariantName(v.group, v.version);
  loaded->group = v.group;
  loaded->version = v.version;
  loaded->feature_names = v.feature_names;
  loaded->num_outputs = scorer->num_outputs;
  loaded->reload = std::move(load);
  loaded->SetScorer(scorer);
  return Loaded{std::shared_ptr<const LoadedModel>(std::move(loaded)), std::move(scorer)};
}

Result<std::shared_ptr<const LiveEndpoint>> ServingService::LoadVariants(const std::string& endpoint,
                                                                         const std::string& stage,
                                                                         const std::string& group,
                                                                         const std::vector<Variant>& variants,
                                                                         const std::string& settings_json) {
  TAKT_ASSIGN_OR_RETURN(RuntimeSettings settings, ParseRuntimeSettings(settings_json));
  std::shared_ptr<const LiveEndpoint> current;
  if (auto it = Current()->find(endpoint); it != Current()->end()) current = it->second;
  auto live = std::make_shared<LiveEndpoint>();
  live->name = endpoint;
  live->stage = stage;
  live->group = group;
  live->settings_json = settings_json;
  live->metrics = metrics_->ForEndpoint(endpoint);
  if (settings.capture_percent > 0 && keyring_ != nullptr) {
    auto it = captures_.find(endpoint);
    if (it == captures_.end()) {
      CaptureOptions options;
      options.root = capture_root_;
      options.endpoint = endpoint;
      options.sample_percent = settings.capture_percent;
      options.metrics = live->metrics;
      TAKT_ASSIGN_OR_RETURN(auto writer, CaptureWriter::Create(options, *keyring_));
      it = captures_.emplace(endpoint, std::shared_ptr<CaptureWriter>(std::move(writer))).first;
    }
    it->second->SetSamplePercent(settings.capture_percent);
    live->capture = it->second;
  } else if (auto it = captures_.find(endpoint); it != captures_.end()) {
    it->second->SetSamplePercent(0);  // kept: its queue may still hold records
  }
  for (const auto& v : variants) {
    std::shared_ptr<VariantRuntime> runtime;
    std::shared_ptr<const LoadedModel> model;
    std::shared_ptr<const Scorer> scorer;  // held until the new runtime's replicas hold it
    if (current) {
      // A variant that keeps serving keeps its model, and its replicas when
      // the settings stay the same.
      for (const auto& r : current->variants) {
        if (r->model().version != v.model_version) continue;
        model = r->model_ptr();
        if (current->settings_json == settings_json) runtime = r;
      }
    }
    if (!model) {
      TAKT_ASSIGN_OR_RETURN(registry::ModelVersion mv, registry_->GetVersion(group, v.model_version));
      if (mv.status != registry::kApproved) {
        return FailedPrecondition(group + " v" + std::to_string(v.model_version) + " is " + mv.status +
                                  "; only Approved versions are deployed");
      }
      TAKT_ASSIGN_OR_RETURN(Loaded loaded, Load(endpoint, mv));
      model = std::move(loaded.model);
      scorer = std::move(loaded.scorer);
    }
    if (!runtime) {
      // Ready before it takes traffic: replicas started, the model run once.
      if (!scorer) {
        TAKT_ASSIGN_OR_RETURN(scorer, model->Acquire());
      }
      std::vector<float> row(model->feature_names.size(), std::numeric_limits<float>::quiet_NaN());
      std::vector<float> out(model->num_outputs);
      TAKT_RETURN_IF_ERROR(scorer->Score(row.data(), 1, out.data()));
      runtime =
          std::make_shared<VariantRuntime>(model, settings, metrics_->ForVariant(endpoint, model->variant));
    }
    if (live->capture) live->capture->SetSchema(model->variant, {model->feature_names, {"prediction"}});
    live->variants.push_back(std::move(runtime));
    live->weights.push_back(v.weight);
  }
  return std::shared_ptr<const LiveEndpoint>(std::move(live));
}

std::shared_ptr<const ServingService::Snapshot> ServingService::Current() const {
  thread_local ThreadSnapshot cache;
  uint64_t gen = generation_.load(std::memory_order_acquire);
  if (cache.owner != this || cache.generation != gen) {
    std::lock_guard lock(publish_mu_);
    cache.owner = this;
    cache.generation = generation_.load(std::memory_order_acquire);
    cache.snapshot = snapshot_;
  }
  return std::static_pointer_cast<const Snapshot>(cache.snapshot);
}

void ServingService::Publish(const std::string& name, std::shared_ptr<const LiveEndpoint> live) {
  std::lock_guard lock(publish_mu_);
  auto next = std::make_shared<Snapshot>(*snapshot_);
  std::shared_ptr<const LiveEndpoint> old;
  if (auto it = next->find(name); it != next->end()) old = it->second;
  if (live) {
    (*next)[name] = live;
  } else {
    next->erase(name);
  }
  if (old) {
    for (const auto& r : old->variants) {
      bool kept = false;
      if (live) {
        for (const auto& n : live->variants) kept = kept || n == r;
      }
      if (!kept) retired_.push_back({r, RealClock().NowMillis()});
    }
  }
  snapshot_ = std::move(next);
  generation_.store(g_generations.fetch_add(1), std::memory_order_release);
}

Result<std::shared_ptr<const LiveEndpoint>> ServingService::Live(std::string_view name) const {
  auto snap = Current();
  auto it = snap->find(name);
  if (it == snap->end()) return NotFound("endpoint " + std::string(name) + " is not serving");
  return it->second;
}

std::vector<std::shared_ptr<const LiveEndpoint>> ServingService::LiveEndpoints() const {
  std::vector<std::shared_ptr<const LiveEndpoint>> out;
  for (const auto& [name, e] : *Current()) out.push_back(e);
  return out;
}

Status ServingService::FlushCapture(std::string_view endpoint) {
  std::shared_ptr<CaptureWriter> writer;
  {
    std::lock_guard lock(deploy_mu_);
    if (auto it = captures_.find(endpoint); it != captures_.end()) writer = it->second;
  }
  if (!writer) return Ok();
  return writer->Flush();
}

void ServingService::Start() {
  std::lock_guard lock(autoscaler_mu_);
  if (autoscaler_.joinable()) return;
  autoscaler_stop_ = false;
  autoscaler_ = std::thread([this] {
    SetThreadName("takt-autoscale");
    Autoscale();
  });
}

void ServingService::Stop() {
  {
    std::lock_guard lock(autoscaler_mu_);
    autoscaler_stop_ = true;
    autoscaler_cv_.notify_all();
  }
  if (autoscaler_.joinable()) autoscaler_.join();
  std::vector<std::shared_ptr<VariantRuntime>> all;
  {
    std::lock_guard lock(publish_mu_);
    for (const auto& [name, e] : *snapshot_) {
      for (const auto& r : e->variants) all.push_back(r);
    }
    for (const auto& r : retired_) all.push_back(r.runtime);
  }
  for (const auto& r : all) r->Stop();
  std::lock_guard lock(deploy_mu_);
  for (auto& [name, writer] : captures_) {
    if (auto s = writer->Close(); !s) spdlog::error("endpoint {}: capture: {}", name, s.error().ToString());
  }
}

void ServingService::Autoscale() {
  // A retired runtime stops once nothing used it for this long (a request
  // that picked it just before the swap still finishes on it).
  constexpr int64_t kRetireGraceMs = 2000;
  std::unique_lock lock(autoscaler_mu_);
  while (!autoscaler_stop_) {
    autoscaler_cv_.wait_for(lock, std::chrono::milliseconds(250), [this] { return autoscaler_stop_; });
    if (autoscaler_stop_) break;
    lock.unlock();
    auto now = VariantRuntime::Clock::now();
    std::shared_ptr<const Snapshot> snap;
    std::vector<std::shared_ptr<VariantRuntime>> stop;
    {
      std::lock_guard pl(publish_mu_);
      snap = snapshot_;
      int64_t now_ms = RealClock().NowMillis();
      for (size_t i = 0; i < retired_.size();) {
        if (retired_[i].runtime->Stats().in_flight == 0 && now_ms - retired_[i].since_ms >= kRetireGraceMs) {
          stop.push_back(std::move(retired_[i].runtime));
          retired_.erase(retired_.begin() + static_cast<std::ptrdiff_t>(i));
        } else {
          ++i;
        }
      }
    }
    for (const auto& r : stop) {
      r->Stop();
      const LoadedModel& m = r->model();
      bool still_served = false;
      if (auto it = snap->find(m.endpoint); it != snap->end())
        still_served = it->second->Named(m.variant) != nullptr;
      if (!still_served) metrics_->RetireVariant(m.endpoint, m.variant);
    }
    stop.clear();
    for (const auto& [name, e] : *snap) {
      for (const auto& r : e->variants) r->Tick(now);
    }
    snap.reset();
    lock.lock();
  }
}

Result<Endpoint> ServingService::Deploy(const std::string& group, int version, const std::string& stage,
                                        const std::string& event_id) {
  return SetVariants(group, stage, {{VariantName(group, version), version, 100}}, event_id);
}

Result<Endpoint> ServingService::SetVariants(const std::string& group, const std::string& stage,
                                             std::vector<Variant> variants, const std::string& key,
                                             const std::string& settings_json, const std::string& message) {
  if (!IsStage(stage)) return InvalidArgument("stage '" + stage + "' is not one of dev, int, prod");
  if (variants.empty()) return InvalidArgument("an endpoint needs at least one variant");
  int total = 0;
  std::set<int> seen;
  for (auto& v : variants) {
    if (v.model_version < 1)
      return InvalidArgument("variant version " + std::to_string(v.model_version) +
                             " is not a version number");
    if (v.weight < 0 || v.weight > 100) {
      return InvalidArgument("variant " + std::to_string(v.model_version) + ": weight " +
                             std::to_string(v.weight) + " is not between 0 and 100");
    }
    if (!seen.insert(v.model_version).second) {
      return InvalidArgument(group + " v" + std::to_string(v.model_version) + " is listed twice");
    }
    v.name = VariantName(group, v.model_version);
    total += v.weight;
  }
  if (total != 100) return InvalidArgument("variant weights sum to " + std::to_string(total) + ", not 100");
  if (!settings_json.empty())
    if (auto j = ParseJson(settings_json, "endpoint settings"); !j) return std::unexpected(j.error());
  std::string name = group + "-" + stage;
  // One change at a time: check, load, commit and swap must not interleave,
  // or the database and the served models could disagree.
  std::lock_guard<std::mutex> deploy_lock(deploy_mu_);
  if (!key.empty()) {
    TAKT_ASSIGN_OR_RETURN(auto done,
                          db_->Query("SELECT endpoint FROM deployments WHERE event_id = ?", {key}));
    if (!done.empty()) return Get(name);
  }
  std::string effective_settings = settings_json;
  if (effective_settings.empty()) {
    auto e = Get(name);
    effective_settings = e ? e->settings_json : "{}";
  }
  // Load (and so validate) every variant before anything is recorded or swapped.
  TAKT_ASSIGN_OR_RETURN(auto live, LoadVariants(name, stage, group, variants, effective_settings));
  std::string now = NowIso();
  int primary = Primary(variants);
  Status committed = db_->Transaction([&](store::Database& tx) -> Status {
    TAKT_ASSIGN_OR_RETURN(
        auto existing,
        tx.Query("SELECT created_at, variants_json, settings_json FROM endpoints WHERE name = ?", {name}));
    std::string created = existing.empty() ? now : existing.front().Text(0);
    std::string settings = !settings_json.empty() ? settings_json
                           : existing.empty()     ? std::string("{}")
                                                  : existing.front().Text(2);
    std::set<int> before;
    if (!existing.empty()) {
      auto old = ParseJson(existing.front().Text(1), "variants");
      if (old && old->is_array()) {
        for (const auto& v : *old) before.insert(v.value("version", 0));
      }
    }
    TAKT_RETURN_IF_ERROR(tx.Exec("DELETE FROM endpoints WHERE name = ?", {name}));
    TAKT_RETURN_IF_ERROR(tx.Exec(
        std::string("INSERT INTO endpoints (") + kColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {name, stage, group, int64_t{primary}, std::string("InService"), created, now, key, message,
         VariantsJson(variants).dump(), settings}));
    if (!key.empty()) {
      // Another process sharing the database may have taken this key.
      TAKT_ASSIGN_OR_RETURN(auto done,
                            tx.Query("SELECT endpoint FROM deployments WHERE event_id = ?", {key}));
      if (!done.empty()) return AlreadyExists("event " + key + " was deployed already");
      TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO deployments VALUES (?, ?, ?, ?, ?)",
                                   {key, name, group, int64_t{primary}, now}));
    }
    for (const auto& v : variants) {
      if (before.contains(v.model_version)) continue;
      TAKT_RETURN_IF_ERROR(lineage::Record(tx, {"model:" + group + "@" + std::to_string(v.model_version),
                                                "endpoint:" + name, "deployed to", stage, now}));
    }
    return Ok();
  });
  if (!committed) {
    if (committed.error().code() == Code::kAlreadyExists && !key.empty()) return Get(name);
    return std::unexpected(committed.error());
  }
  Publish(name, std::move(live));
  std::string shown;
  for (const auto& v : variants)
    shown += (shown.empty() ? "" : ", ") + v.name + " " + std::to_string(v.weight) + "%";
  spdlog::info("endpoint {} serves {}", name, shown);
  return Get(name);
}

Status ServingService::Remove(const std::string& name, const std::string& message) {
  std::lock_guard<std::mutex> deploy_lock(deploy_mu_);
  if (auto e = Get(name); !e) return std::unexpected(e.error());
  TAKT_RETURN_IF_ERROR(db_->Exec("DELETE FROM endpoints WHERE name = ?", {name}));
  Publish(name, nullptr);
  metrics_->Retire(name);
  if (auto it = captures_.find(name); it != captures_.end()) {
    if (auto s = it->second->Close(); !s)
      spdlog::error("endpoint {}: capture: {}", name, s.error().ToString());
    captures_.erase(it);
  }
  spdlog::info("endpoint {} removed: {}", name, message);
  return Ok();
}

Status ServingService::LoadAll() {
  TAKT_ASSIGN_OR_RETURN(auto endpoints, List());
  for (const auto& e : endpoints) {
    if (e.status != "InService") continue;
    std::lock_guard<std::mutex> deploy_lock(deploy_mu_);
    auto live = LoadVariants(e.name, e.stage, e.model_group, e.variants, e.settings_json);
    if (!live) {
      spdlog::error("endpoint {}: {}", e.name, live.error().ToString());
      continue;
    }
    Publish(e.name, std::move(*live));
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
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return Route(name, std::uniform_real_distribution<double>(0, 100)(rng));
}

Result<std::shared_ptr<const LoadedModel>> ServingService::Route(std::string_view name, double pick) const {
  TAKT_ASSIGN_OR_RETURN(auto live, Live(name));
  return live->Pick(pick)->model_ptr();
}

Status ServingService::Invoke(std::string_view name, std::string_view variant, const std::vector<float>& rows,
                              size_t n, std::vector<float>* out) const {
  TAKT_ASSIGN_OR_RETURN(auto live, Live(name));  // held: the runtime stays alive until the answer
  VariantRuntime* runtime = live->Named(variant);
  if (runtime == nullptr) {
    return NotFound("endpoint " + std::string(name) + " has no variant '" + std::string(variant) +
                    "' (it serves " + live->VariantNames() + ")");
  }
  const LoadedModel& m = runtime->model();
  if (rows.size() != n * m.feature_names.size()) {
    return InvalidArgument(std::to_string(rows.size()) + " values are not " + std::to_string(n) +
                           " rows of " + std::to_string(m.feature_names.size()) + " features");
  }
  out->assign(n * m.num_outputs, 0.0f);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status = Ok();
  Job job;
  job.rows = rows.data();
  job.n = n;
  job.out = out->data();
  job.done = [&](Status s, size_t) {
    std::lock_guard lock(mu);
    status = std::move(s);
    done = true;
    cv.notify_all();
  };
  TAKT_RETURN_IF_ERROR(runtime->Submit(&job));
  // An admitted job is always completed (scored, failed, or scored by Stop), so this ends.
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done; });
  return status;
}

Result<std::shared_ptr<const LoadedModel>> ServingService::FindVariant(std::string_view name,
                                                                       std::string_view variant) const {
  TAKT_ASSIGN_OR_RETURN(auto live, Live(name));
  if (VariantRuntime* r = live->Named(variant)) return r->model_ptr();
  return NotFound("endpoint " + std::string(name) + " has no variant '" + std::string(variant) +
                  "' (it serves " + live->VariantNames() + ")");
}

void ServingService::Record(std::string_view endpoint, std::string_view variant, int status,
                            double latency_ms, std::string_view error) {
  int64_t now = RealClock().NowMillis();
  std::lock_guard<std::mutex> lock(stats_mu_);
  auto it = requests_.find(endpoint);
  if (it == requests_.end()) {
    it = requests_.emplace(std::string(endpoint), std::vector<RequestRecord>{}).first;
    next_.emplace(std::string(endpoint), 0);
  }
  size_t& next = next_.find(endpoint)->second;
  if (it->second.size() < kWindow) {
    it->second.push_back({now, std::string(variant), status, latency_ms, std::string(error)});
  } else {
    // Reuses the slot's strings: no allocation once the ring is full.
    RequestRecord& slot = it->second[next];
    slot.time_ms = now;
    slot.variant.assign(variant);
    slot.status = status;
    slot.latency_ms = latency_ms;
    slot.error.assign(error);
  }
  next = (next + 1) % kWindow;
}

VariantStats ServingService::Stats(std::string_view endpoint, std::string_view variant,
                                   int64_t since_ms) const {
  std::vector<double> latencies;
  VariantStats s;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    auto it = requests_.find(endpoint);
    if (it == requests_.end()) return s;
    for (const auto& r : it->second) {
      if (r.variant != variant || r.time_ms < since_ms) continue;
      ++s.requests;
      if (r.status >= 400) ++s.errors;
      latencies.push_back(r.latency_ms);
    }
  }
  if (s.requests == 0) return s;
  s.error_rate = static_cast<double>(s.errors) / static_cast<double>(s.requests);
  std::sort(latencies.begin(), latencies.end());
  auto at = [&](double q) {
    size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(latencies.size()))) - 1;
    return latencies[std::min(i, latencies.size() - 1)];
  };
  s.p50_ms = at(0.5);
  s.p99_ms = at(0.99);
  return s;
}

std::vector<RequestRecord> ServingService::RecentRequests(std::string_view endpoint, size_t limit) const {
  std::vector<RequestRecord> out;
  std::lock_guard<std::mutex> lock(stats_mu_);
  auto it = requests_.find(endpoint);
  if (it == requests_.end()) return out;
  const auto& ring = it->second;
  size_t next = next_.find(endpoint)->second;
  for (size_t k = 0; k < ring.size() && out.size() < limit; ++k) {
    size_t i = (next + ring.size() - 1 - k) % ring.size();
    out.push_back(ring[i]);
  }
  return out;
}

}  // namespace takt::serving
