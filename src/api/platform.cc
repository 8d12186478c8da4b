#include "api/platform.h"

#include <cstdlib>
#include <thread>

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <filesystem>

#include "core/cpus.h"
#include "core/json.h"
#include "events/webhook.h"
#include "lineage/lineage.h"
#include "serving/metrics.h"

namespace takt::api {
namespace fs = std::filesystem;

namespace {

std::string DbPath(const Config& c) { return (fs::path(c.data_dir) / "takt.db").string(); }

Status MigrateAll(Platform& p) {
  TAKT_RETURN_IF_ERROR(p.iam->Migrate());
  TAKT_RETURN_IF_ERROR(lineage::Migrate(*p.db));
  TAKT_RETURN_IF_ERROR(p.catalog->Migrate());
  TAKT_RETURN_IF_ERROR(p.events->Migrate());
  TAKT_RETURN_IF_ERROR(p.registry->Migrate());
  TAKT_RETURN_IF_ERROR(p.serving->Migrate());
  TAKT_RETURN_IF_ERROR(p.releases->Migrate());
  TAKT_RETURN_IF_ERROR(p.runs->Migrate());
  TAKT_RETURN_IF_ERROR(p.triggers->Migrate());
  return Ok();
}

Result<std::unique_ptr<Platform>> Assemble(const Config& config) {
  auto p = std::make_unique<Platform>();
  p->config = config;
  TAKT_ASSIGN_OR_RETURN(crypto::Keyring keyring, crypto::Keyring::Load(config.MasterKeyPath()));
  p->keyring = std::make_unique<crypto::Keyring>(std::move(keyring));
  TAKT_ASSIGN_OR_RETURN(p->db, store::OpenSqlite(DbPath(config)));
  TAKT_ASSIGN_OR_RETURN(p->blobs,
                        blob::BlobStore::Open(fs::path(config.data_dir) / "blobs", p->keyring.get()));
  p->iam = std::make_unique<iam::IamService>(p->db.get());
  p->iam->SetKeyring(p->keyring.get());  // seals access-key secrets
  p->catalog =
      std::make_unique<catalog::CatalogService>(p->db.get(), p->blobs.get(), p->keyring.get(), p->iam.get(),
                                                catalog::CatalogOptions{config.LandingPath()});
  p->events = std::make_unique<events::EventBus>(
      p->db.get(),
      events::EventBusOptions{.base_backoff = std::chrono::milliseconds(config.event_base_backoff_ms),
                              .max_attempts = config.event_max_attempts,
                              .keyring = p->keyring.get()});
  p->registry = std::make_unique<registry::RegistryService>(p->db.get());
  p->serving = std::make_unique<serving::ServingService>(p->db.get(), p->blobs.get(), p->registry.get());
  // Sampled inference requests, encrypted, for monitoring (serving/capture.h).
  p->serving->EnableCapture(fs::path(config.data_dir) / "capture", p->keyring.get());
  serving::AddProcessCollector(p->serving->metrics(), "0.1.0");
  p->releases = std::make_unique<release::ReleaseService>(p->db.get(), p->registry.get(), p->serving.get(),
                                                          p->iam.get());
  pipeline::RunServiceOptions run_options;
  run_options.step_slots = config.step_slots > 0 ? config.step_slots : std::max(2, UsableCpuCount());
  run_options.work_root = fs::absolute(fs::path(config.data_dir) / "work").string();
  run_options.slurm_conf = config.slurm_conf;
  run_options.slurm_partition = config.slurm_partition;
  {
    // Slurm nodes run command steps with this same binary (a shared install on a cluster).
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) run_options.step_exec = {self.string(), "internal", "sandbox-exec"};
  }
  p->runs = std::make_unique<pipeline::RunService>(p->db.get(), p->blobs.get(), p->catalog.get(),
                                                   p->registry.get(), p->iam.get(), run_options);
  p->triggers =
      std::make_unique<pipeline::TriggerService>(p->db.get(), p->blobs.get(), p->runs.get(), p->iam.get());
  TAKT_RETURN_IF_ERROR(MigrateAll(*p));
  return p;
}

}  // namespace

Result<std::unique_ptr<Platform>> Platform::Open(const Config& config) {
  if (!fs::exists(DbPath(config))) {
    return FailedPrecondition("data directory " + config.data_dir +
                              " is not initialised: run `takt init --data-dir " + config.data_dir +
                              "` first");
  }
  return Assemble(config);
}

void Platform::Start() {
  events->RegisterTarget("deploy", [this](const events::Event& e, const events::Rule& rule) -> Status {
    TAKT_ASSIGN_OR_RETURN(Json data, ParseJson(e.data_json, "event data"));
    TAKT_ASSIGN_OR_RETURN(Json cfg, ParseJson(rule.target_config_json, "rule target config"));
    std::string stage = cfg.value("stage", "dev");
    TAKT_RETURN_IF_ERROR(serving->Deploy(data.value("group", ""), data.value("version", 0), stage, e.id));
    return Ok();
  });
  // Starts a saved pipeline as its project's service identity, once per (event, rule).
  events->RegisterTarget("run", [this](const events::Event& e, const events::Rule& rule) -> Status {
    return triggers->StartForEvent(e, rule);
  });
  // Approval and rejection events move releases (idempotent on the event id).
  // TAKT_FAULT_RELEASE_DELAY_MS holds each delivery to the release target that
  // long first: a fault-injection seam, so a crash test can kill the server
  // between the outbox write and the delivery (tests/e2e/release_crash_test.cc).
  int64_t release_delay_ms = 0;
  if (const char* d = std::getenv("TAKT_FAULT_RELEASE_DELAY_MS")) release_delay_ms = std::atoll(d);
  events->RegisterTarget(
      "release", [this, release_delay_ms](const events::Event& e, const events::Rule&) -> Status {
        if (release_delay_ms > 0) {
          spdlog::warn("fault injection: holding event {} for {} ms before the release target", e.id,
                       release_delay_ms);
          std::this_thread::sleep_for(std::chrono::milliseconds(release_delay_ms));
        }
        return releases->OnEvent(e);
      });
  // POSTs events to a URL, signed (events/webhook.h); its secret is sealed with the keyring.
  events->RegisterTarget(events::kWebhookKind, events::WebhookTarget());
  runs->OnRunFinished([this](const std::string&) { events->Notify(); });
  if (auto s = serving->LoadAll(); !s) spdlog::error("loading endpoints: {}", s.error().ToString());
  serving->Start();  // the autoscaler
  if (auto s = runs->RecoverInterrupted(); !s) spdlog::error("recovering runs: {}", s.error().ToString());
  events->Start();
  releases->Start();
  runs->Start(config.workers);
  catalog->StartScheduler();
  triggers->StartScheduler();
}

void Platform::Stop() {
  if (triggers) triggers->StopScheduler();
  if (catalog) catalog->StopScheduler();
  if (runs) runs->Stop();
  if (releases) releases->Stop();
  if (events) events->Stop();
  if (serving) serving->Stop();  // queued requests are scored first
}

Platform::~Platform() { Stop(); }

Result<InitResult> Initialize(const Config& config, const std::string& admin_name) {
  std::error_code ec;
  if (fs::exists(DbPath(config))) {
    return AlreadyExists("data directory " + config.data_dir + " is already initialised");
  }
  fs::create_directories(config.data_dir, ec);
  if (ec) return Unavailable("cannot create data directory " + config.data_dir + ": " + ec.message());
  ::chmod(config.data_dir.c_str(), 0700);
  fs::create_directories(config.LandingPath(), ec);
  if (ec) return Unavailable("cannot create landing directory " + config.LandingPath() + ": " + ec.message());
  std::string key_path = config.MasterKeyPath();
  bool key_given = !config.master_key_file.empty() && fs::exists(key_path);
  if (!key_given) TAKT_RETURN_IF_ERROR(crypto::Keyring::CreateMasterKeyFile(key_path));
  TAKT_ASSIGN_OR_RETURN(auto platform, Assemble(config));
  auto created = platform->iam->CreatePrincipal(admin_name, "user", {"admin"}, {});
  if (!created) return std::unexpected(created.error().WithContext("creating the admin principal"));
  IgnoreError(platform->iam->Audit({.principal = admin_name,
                                    .action = "principal:create",
                                    .resource = "principals/" + admin_name,
                                    .allowed = true,
                                    .status = 201,
                                    .detail = "takt init"}));
  return InitResult{config.data_dir, key_path, admin_name, created->second};
}

}  // namespace takt::api
