// File: pipeline/runs.h
//
// Runs: one execution of a pipeline spec. A run belongs to the spec's
// project: only its members (or an admin) may start one, and its steps read
// data as the project's service identity, with the project's grants, never
// with the launcher's. Each run records its lineage (dataset versions read,
// artifacts written, the model version registered). Submit validates the spec and
// records a queued run with its steps in one transaction; a pool of worker
// threads claims queued runs and executes their steps in order, passing
// artifacts (encrypted, content-addressed blobs) from step to step. States:
// queued → running → succeeded | failed; a step that is never reached is
// `skipped`. Each step writes log lines that `takt run logs` shows.
//
// After a crash, runs left `running` are failed on restart with a reason
// (resuming them is the pipelines issue's work).
//
// Thread-safe: Submit/Get/List may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "blob/blob_store.h"
#include "catalog/catalog.h"
#include "core/result.h"
#include "frame/table.h"
#include "iam/iam.h"
#include "registry/registry.h"
#include "store/database.h"

namespace takt::pipeline {

struct StepRun {
  std::string name;
  std::string kind;
  std::string status;  // queued, running, succeeded, failed, skipped
  std::string started_at;
  std::string finished_at;
  std::string error;
  std::string outputs_json = "{}";  // {"features": "<blob id>", ...}
  std::string metrics_json = "{}";
};

struct Run {
  std::string id;
  std::string pipeline;
  std::string project;
  std::string status;
  std::string created_by;
  std::string created_at;
  std::string started_at;
  std::string finished_at;
  std::string error;
  std::string spec_hash;
  std::vector<StepRun> steps;
};

struct LogLine {
  int64_t seq = 0;
  std::string time;
  std::string step;
  std::string line;
};

class RunService {
 public:
  RunService(store::Database* db, blob::BlobStore* blobs, catalog::CatalogService* catalog,
             registry::RegistryService* registry, iam::IamService* iam)
      : db_(db), blobs_(blobs), catalog_(catalog), registry_(registry), iam_(iam) {}
  ~RunService();

  Status Migrate();

  // Validates `yaml` and queues a run. InvalidArgument names the bad line;
  // NotFound when a step's dataset or the project does not exist;
  // PermissionDenied when `principal` is not a member of the project or the
  // project has no grant for a step's data or columns. Nothing is written on
  // error.
  Result<Run> Submit(std::string_view yaml, const std::string& principal);
  Result<Run> Get(std::string_view id) const;
  Result<std::vector<Run>> List(int limit) const;  // newest first, without steps
  Result<std::vector<LogLine>> Logs(std::string_view id, int64_t after_seq) const;
  // A table a step wrote (e.g. features/latest), decoded. Only members of
  // the run's project (or an admin) may read it: PermissionDenied otherwise.
  Result<frame::Table> OutputTable(std::string_view run_id, std::string_view step, std::string_view output,
                                   const std::string& principal) const;
  // Members of the run's project and admins.
  Status CheckProjectAccess(const Run& run, const std::string& principal) const;

  // Marks runs left running by a previous process as failed.
  Status RecoverInterrupted();
  // Starts `workers` threads executing queued runs.
  void Start(int workers);
  void Stop();
  // Called after each finished run (for tests and the event bus).
  void OnRunFinished(std::function<void(const std::string& run_id)> fn) { on_finished_ = std::move(fn); }

  // Runs one queued run to its end on the calling thread (tests). false if none.
  bool RunOnce();

 private:
  Status Execute(const std::string& run_id);
  void Log(const std::string& run_id, const std::string& step, const std::string& line);

  store::Database* db_;
  blob::BlobStore* blobs_;
  catalog::CatalogService* catalog_;
  registry::RegistryService* registry_;
  iam::IamService* iam_;
  std::function<void(const std::string&)> on_finished_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> workers_;
};

}  // namespace takt::pipeline
