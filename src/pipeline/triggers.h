// File: pipeline/triggers.h
//
// What starts runs besides a person with a YAML file: saved pipelines, cron
// schedules and the "run" target of event rules.
//
// A saved pipeline is a spec kept on the server under its name (the spec's
// `name`, unique across projects) with the code files its command steps name
// (content in the blob store) and the git commit it was saved from. Saving
// validates the spec (ParsePipeline: a bad line is InvalidArgument and nothing
// is written) and needs the saver to be a member of the spec's project; each
// save of the same name bumps its version. Start() runs the current version.
//
// A schedule (at most one per saved pipeline) is a cron expression (UTC,
// core/cron.h) with parameter overrides. The scheduler starts a due schedule
// as the project's service identity `svc.<project>`, never as the person who
// scheduled it, with the trigger key "schedule:<pipeline>@<tick, ISO time>":
// RunService::Submit starts at most one run per key, so a tick processed
// twice (a restart between starting the run and recording it) starts one
// run. Ticks missed while the server was down are caught up by ONE run
// carrying the first missed tick's time; the next tick is then computed from
// now. A start that fails (the dataset is gone, the parameters no longer
// fit) is recorded as last_status "error" with the message, and the next
// tick is still computed: one bad night does not stop the schedule.
//
// The "run" event target (StartForEvent) reads the rule's target config
//   {"pipeline": "<saved name>", "params": {...},
//    "params_from": {"<parameter>": "data.<field>[.<field>...]"}}
// and starts the saved pipeline as svc.<project> with the trigger key
// "event:<event id>/<rule name>", so a redelivered event starts no second run.
// params_from copies scalar fields of the event's data into declared
// parameters; the JSON type must fit the parameter's type (int, number,
// bool, string), else InvalidArgument.
//
// Runs started by a schedule or an event act as the service identity, which
// does not hold pipeline:network: steps that ask for network are refused.
// Each such start (or failure to start) leaves an audit record as that
// identity (action pipeline:run), since no HTTP request carries it.
//
// Thread-safe: every public method may be called from any thread; the
// service keeps no state outside the database, the blob store and the
// scheduler thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "blob/blob_store.h"
#include "core/result.h"
#include "core/time.h"
#include "events/events.h"
#include "iam/iam.h"
#include "pipeline/runs.h"
#include "store/database.h"

namespace takt::pipeline {

struct PipelineSchedule {
  std::string pipeline;
  std::string cron;
  std::string params_json = "{}";  // overrides of declared parameters
  bool enabled = true;
  int64_t next_run = 0;     // epoch seconds of the next tick; 0 = none
  std::string last_run_at;  // when the scheduler last acted
  std::string last_tick;    // the tick it acted for (ISO)
  std::string last_run_id;
  std::string last_status;  // "" (never run), "started", "error"
  std::string last_error;
  std::string last_run_status;  // the status of last_run_id now (filled on read)
  std::string created_by;
  std::string created_at;
  std::string updated_by;
  std::string updated_at;
};

struct SavedPipeline {
  std::string name;
  std::string project;
  std::string description;
  std::string yaml;
  std::vector<std::string> files;  // paths of the code files kept with it
  std::string git_commit;
  int version = 0;         // 1 on the first save, +1 on each later one
  std::string owner;       // who saved it first
  std::string updated_by;  // who saved the current version
  std::string created_at;
  std::string updated_at;
  std::optional<PipelineSchedule> schedule;
};

struct SaveRequest {
  std::string yaml;
  std::map<std::string, std::string> files;  // code of command steps: relative path → content
  std::string git_commit;
  std::string principal;
};

struct StartRequest {
  std::string pipeline;          // saved name
  Json params = Json::object();  // overrides
  std::string principal;
  std::string trigger;  // idempotency key; "" for a person's start
  bool no_cache = false;
};

struct ScheduleRequest {
  std::string pipeline;
  std::string cron;
  Json params = Json::object();
  bool enabled = true;
  std::string principal;
};

class TriggerService {
 public:
  // None of the pointers is owned; all must outlive the service. `clock`
  // (nullptr = the real one) decides when schedules are due.
  TriggerService(store::Database* db, blob::BlobStore* blobs, RunService* runs, iam::IamService* iam,
                 const Clock* clock = nullptr);
  ~TriggerService();

  Status Migrate();

  // Saves a new pipeline or a new version of one. InvalidArgument for a bad
  // spec (naming the line) or a missing code file; NotFound for an unknown
  // project; PermissionDenied for a non-member; Conflict when the name is
  // saved in another project. Nothing is written on error.
  Result<SavedPipeline> Save(const SaveRequest& request);
  // With its yaml. Members of its project and admins only (PermissionDenied).
  Result<SavedPipeline> Get(std::string_view name, const std::string& principal) const;
  // Every saved pipeline, without yaml, by name.
  Result<std::vector<SavedPipeline>> List() const;

  // Submits a run of the current version (RunService::Submit: membership,
  // data access and parameters are checked there).
  Result<Run> Start(const StartRequest& request);

  // Sets (creates or replaces) the schedule of a saved pipeline; the next
  // tick is computed from now. InvalidArgument naming `cron` for a bad or
  // never-matching expression, or naming the parameter for a bad override.
  Result<PipelineSchedule> SetSchedule(const ScheduleRequest& request);
  // NotFound when the pipeline has no schedule.
  Status DeleteSchedule(std::string_view pipeline, const std::string& principal);

  // The "run" event target (see the top of this file).
  Status StartForEvent(const events::Event& event, const events::Rule& rule);

  // Starts every enabled schedule due at `now` (epoch seconds), once each.
  // Returns how many it acted on (started or recorded an error).
  int RunDue(int64_t now);
  // Calls RunDue(clock now) every `interval` on a thread of its own.
  void StartScheduler(std::chrono::milliseconds interval = std::chrono::seconds(5));
  void StopScheduler();

 private:
  Result<SavedPipeline> Load(std::string_view name, bool with_yaml) const;
  Result<std::map<std::string, std::string>> LoadFiles(std::string_view name) const;
  Status CheckMember(const std::string& project, const std::string& principal) const;
  Result<std::optional<PipelineSchedule>> LoadSchedule(std::string_view name) const;
  int64_t NowSeconds() const;

  store::Database* db_;
  blob::BlobStore* blobs_;
  RunService* runs_;
  iam::IamService* iam_;
  const Clock* clock_;

  std::mutex scheduler_mu_;
  std::condition_variable scheduler_cv_;
  bool scheduler_stop_ = false;
  std::thread scheduler_;
};

}  // namespace takt::pipeline
