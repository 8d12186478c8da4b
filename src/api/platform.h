// File: api/platform.h
//
// One installation of takt, opened from its data directory: the metadata
// database, the master key, the encrypted artifact store and every service
// built on them. `takt init` creates it; `takt server` opens it and serves it.
//
// Layout of the data directory (mode 0700):
//   takt.db        SQLite metadata (WAL)
//   master.key     32 random bytes, mode 0600 (or TAKT_MASTER_KEY_FILE)
//   blobs/         content-addressed artifacts, AES-256-GCM, envelope-encrypted
#pragma once

#include <memory>
#include <string>

#include "blob/blob_store.h"
#include "catalog/catalog.h"
#include "core/config.h"
#include "core/result.h"
#include "crypto/keyring.h"
#include "events/events.h"
#include "iam/iam.h"
#include "pipeline/runs.h"
#include "pipeline/triggers.h"
#include "registry/registry.h"
#include "release/release.h"
#include "serving/serving.h"
#include "store/database.h"

namespace takt::api {

struct Platform {
  Config config;
  std::unique_ptr<crypto::Keyring> keyring;
  std::unique_ptr<store::Database> db;
  std::unique_ptr<blob::BlobStore> blobs;
  std::unique_ptr<iam::IamService> iam;
  std::unique_ptr<catalog::CatalogService> catalog;
  std::unique_ptr<events::EventBus> events;
  std::unique_ptr<registry::RegistryService> registry;
  std::unique_ptr<serving::ServingService> serving;
  std::unique_ptr<release::ReleaseService> releases;  // release pipelines dev → int → prod
  std::unique_ptr<pipeline::RunService> runs;
  std::unique_ptr<pipeline::TriggerService> triggers;  // saved pipelines, schedules, the run target

  // Opens an initialised data directory and applies pending migrations.
  // FailedPrecondition with "run `takt init`" when it is not initialised.
  static Result<std::unique_ptr<Platform>> Open(const Config& config);

  // Wires event targets (deploy, run) and starts the background work: event
  // delivery, pipeline workers, the ingest and pipeline schedulers. Stop()
  // ends it; the destructor calls Stop.
  void Start();
  void Stop();
  ~Platform();
};

struct InitResult {
  std::string data_dir;
  std::string master_key_file;
  std::string admin_name;
  std::string admin_token;  // shown once
};

// Creates the data directory, the master key (unless it exists and is named
// by TAKT_MASTER_KEY_FILE), the database and an admin principal.
// AlreadyExists if the directory is already initialised.
Result<InitResult> Initialize(const Config& config, const std::string& admin_name);

}  // namespace takt::api
