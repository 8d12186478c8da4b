// File: pipeline/runs.h
//
// Runs: one execution of a pipeline spec, and the experiment record it leaves.
//
// A run belongs to the spec's project: only its members (or an admin) may
// start one, and its steps read data as the project's service identity, with
// the project's grants, never with the launcher's. Submit validates the spec
// (with the launch's parameter overrides) and records a queued run with its
// steps in one transaction.
//
// Execution is a DAG: a driver per run launches every step whose upstream
// steps succeeded, up to `step_slots` steps at a time across all runs (the
// local executor's pool), so independent steps run in parallel. A failed
// step is retried per its policy (attempts, exponential backoff, which
// failures); when it finally fails, steps that depend on it are `skipped`,
// and with on_failure: stop (the default) steps not yet started are
// `cancelled` while running ones finish; with on_failure: continue the rest
// of the DAG goes on. A step's timeout is enforced (cooperatively inside
// built-in steps, by the sandbox for command steps). Cancel() stops a run.
//
// Step caching: a step's key is the SHA-256 of its kind, its resolved
// configuration, the content hashes of its input artifacts (and, for dataset
// reads, the dataset version and the project's access plan), and the code it
// runs. A later step with the same key reuses the outputs and says so in its
// log ("cache hit"); `no_cache` turns lookups off for a launch. Register and
// condition steps are never cached.
//
// Experiments: every run records its parameters, per-step metrics, curves
// (a metric per boosting round), artifacts, the dataset versions read and
// its code version (spec hash, git commit when the launcher sends one).
// Search() filters runs by a metric; Metrics() returns them for comparison.
//
// After a crash, RecoverInterrupted() puts runs left `running` back in the
// queue: their succeeded steps are kept; a step that was running counts as a
// `lost` attempt and is retried if its policy allows, else failed with a
// reason. No run stays running forever.
//
// States: run queued → running → succeeded | failed | cancelled; step
// queued → running → (retrying →) succeeded | failed | skipped | cancelled.
//
// Thread-safe: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "blob/blob_store.h"
#include "catalog/catalog.h"
#include "core/json.h"
#include "core/result.h"
#include "frame/table.h"
#include "iam/iam.h"
#include "registry/registry.h"
#include "store/database.h"

namespace takt::slurm {
class Client;
}

namespace takt::pipeline {

struct StepRun {
  std::string name;
  std::string kind;
  std::string status;  // queued, running, retrying, succeeded, failed, skipped, cancelled
  std::string started_at;
  std::string finished_at;
  std::string error;
  std::string outputs_json = "{}";  // {"features": "<blob id>", ...}
  std::string metrics_json = "{}";
  int attempt = 0;          // attempts made so far
  std::string failure;      // error, timeout, crash, memory, disk, lost, upstream, cancelled
  std::string cached_from;  // "run-…/step" when the outputs were reused
  std::string executor;     // local | slurm
  std::string job_id;       // slurm: the job of the current attempt
  std::vector<std::string> upstream;
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
  std::string params_json = "{}";
  std::string git_commit;
  std::string parent_run;         // tune trials: the run of the tune step; reruns: the run they repeat
  std::string kind = "pipeline";  // pipeline | trial
  bool no_cache = false;
  std::string trigger;  // what started it: "schedule:<pipeline>@<time>", "event:<id>/<rule>", "" = a person
  std::vector<StepRun> steps;
};

struct LogLine {
  int64_t seq = 0;
  std::string time;
  std::string step;
  std::string line;
};

// One recorded metric value: a final value (round = -1) or a point of a curve.
struct MetricPoint {
  std::string run_id;
  std::string step;
  std::string name;
  int round = -1;
  double value = 0;
};

struct SubmitRequest {
  std::string yaml;
  std::string principal;
  Json params = Json::object();  // overrides of declared parameters
  bool no_cache = false;
  std::string git_commit;
  std::map<std::string, std::string> files;  // code of command steps: relative path → content
  // Rerun: copy the outputs of `rerun_of`'s steps that `from_step` does not
  // depend on, and run `from_step` and everything downstream of it again.
  std::string rerun_of;
  std::string from_step;
  // Idempotency key of an automatic start (a schedule tick, an event
  // delivery): a second Submit with the same trigger starts nothing and
  // returns the run the first one started.
  std::string trigger;
};

struct RunServiceOptions {
  int step_slots = 2;           // local executor: steps running at once, across runs
  std::string work_root;        // scratch space for command steps (<data-dir>/work)
  std::string slurm_conf;       // "" = no Slurm executor configured
  std::string slurm_partition;  // "" = the cluster's default
  // The command a Slurm node runs for a command step: {"/usr/bin/takt", "internal", "sandbox-exec"}
  // (the spec and result paths are appended). The platform uses its own binary.
  std::vector<std::string> step_exec;
};

class RunService {
 public:
  RunService(store::Database* db, blob::BlobStore* blobs, catalog::CatalogService* catalog,
             registry::RegistryService* registry, iam::IamService* iam, RunServiceOptions options = {});
  ~RunService();

  Status Migrate();

  // Validates and queues a run. InvalidArgument names the bad line (or the
  // bad parameter); NotFound when a step's dataset or the project does not
  // exist; PermissionDenied when `principal` is not a member of the project or
  // the project has no grant for a step's data or columns. Nothing is written
  // on error.
  Result<Run> Submit(const SubmitRequest& request);
  Result<Run> Submit(std::string_view yaml, const std::string& principal);
  // A new run of `id`'s spec, parameters and code: the steps `from_step`
  // does not lead to keep their outputs; it and what follows run again.
  Result<Run> Rerun(std::string_view id, const std::string& from_step, const std::string& principal,
                    bool no_cache);
  Result<Run> Get(std::string_view id) const;
  Result<std::vector<Run>> List(int limit) const;  // newest first, without steps
  Result<std::vector<LogLine>> Logs(std::string_view id, int64_t after_seq) const;
  // Requests cancellation: queued runs end at once; running steps are stopped.
  // FailedPrecondition for a run that already finished.
  Status Cancel(std::string_view id, const std::string& principal);
  // A table a step wrote (e.g. features/latest), decoded. Only members of
  // the run's project (or an admin) may read it: PermissionDenied otherwise.
  Result<frame::Table> OutputTable(std::string_view run_id, std::string_view step, std::string_view output,
                                   const std::string& principal) const;
  // Members of the run's project and admins.
  Status CheckProjectAccess(const Run& run, const std::string& principal) const;

  // Every metric of the runs (final values and curves), for compare and plots.
  Result<std::vector<MetricPoint>> Metrics(const std::vector<std::string>& run_ids, bool curves) const;
  // Runs whose final metric `name` (any step) lies in [min, max], best first.
  Result<std::vector<std::pair<Run, double>>> Search(const std::string& metric, std::optional<double> min,
                                                     std::optional<double> max, const std::string& pipeline,
                                                     int limit) const;

  // Puts runs left running by a previous process back in the queue (see above).
  Status RecoverInterrupted();
  // Starts `workers` run drivers (runs executing at once).
  void Start(int workers);
  void Stop();
  // Called after each finished run (for tests and the event bus).
  void OnRunFinished(std::function<void(const std::string& run_id)> fn) { on_finished_ = std::move(fn); }

  // Runs one queued run to its end on the calling thread (tests). false if none.
  bool RunOnce();

  // Internal: the engine's shared state (defined in runs.cc).
  struct Engine;

 private:
  Status Execute(const std::string& run_id);
  // Removes scratch folders no step needs any more (after a crash).
  Status SweepWorkFolders();
  void Log(const std::string& run_id, const std::string& step, const std::string& line);

  store::Database* db_;
  blob::BlobStore* blobs_;
  catalog::CatalogService* catalog_;
  registry::RegistryService* registry_;
  iam::IamService* iam_;
  RunServiceOptions options_;
  std::unique_ptr<slurm::Client> slurm_;  // when slurm_conf is set
  std::unique_ptr<Engine> engine_;
  std::function<void(const std::string&)> on_finished_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  bool queued_ = false;  // a run was submitted since the workers last looked (guarded by mu_)
  std::vector<std::thread> workers_;
};

}  // namespace takt::pipeline
