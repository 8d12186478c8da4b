// File: release/release.h
//
// Releases: one approved model version travelling the stages of its group's
// release pipeline (release/config.h). An approval event starts one (at most
// one per event: the event id is the release's unique trigger); a background
// worker moves each active release through its phases, persisting every
// step, so a restart resumes where it stopped:
//
//   per stage:  gates (quality, approval: waits for people, may time out)
//               → deploy (by the stage's strategy)
//               → smoke (the new variant, before it gets traffic)
//               → observe (canary share or blue/green bake, alarms watched)
//               → done: the stage's history gets a row; on to the next stage
//
// Whatever fails after a deploy puts the stage back as it was. Every stage's
// history (which version served from when to when, released by whom, approved
// by whom) answers "what served prod at T". Rejecting a version in the
// registry rolls each stage it serves back to the stage's latest earlier
// approved version and cancels its releases; approving it again starts a new
// release.
//
// Thread-safe: public methods may be called from any thread; the worker and
// the API serialise on one mutex per service.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/result.h"
#include "events/events.h"
#include "iam/iam.h"
#include "registry/registry.h"
#include "release/config.h"
#include "serving/serving.h"
#include "store/database.h"

namespace takt::release {

// Release statuses.
inline constexpr const char* kInProgress = "InProgress";
inline constexpr const char* kWaiting = "WaitingForApproval";
inline constexpr const char* kSucceeded = "Succeeded";
inline constexpr const char* kFailed = "Failed";
inline constexpr const char* kRolledBack = "RolledBack";
inline constexpr const char* kRejected = "Rejected";      // an approver said no
inline constexpr const char* kSuperseded = "Superseded";  // a newer version's release started
inline constexpr const char* kCancelled = "Cancelled";    // the version was rejected in the registry

inline constexpr const char* kReleaseStarted = "io.takt.release.started";
inline constexpr const char* kReleaseStageDone = "io.takt.release.stage.succeeded";
inline constexpr const char* kReleaseWaiting = "io.takt.release.approval.requested";
inline constexpr const char* kReleaseFinished = "io.takt.release.finished";

struct Approval {
  std::string stage;
  std::string principal;
  std::string decision;  // "approved" or "rejected"
  std::string comment;
  std::string time;
};

struct LogEntry {
  int64_t seq = 0;
  std::string time;
  std::string stage;
  std::string what;       // "started", "gate.quality.passed", "deployed", "smoke.passed", "rolled-back", ...
  std::string principal;  // who did it ("" for the release worker)
  std::string detail;
};

struct Release {
  std::string id;  // "rel-..."
  std::string group;
  int version = 0;
  std::string status = kInProgress;
  std::string stage;  // the stage it is in (or ended in)
  std::string phase;  // gates, approval, deploy, smoke, observe, done
  int64_t phase_started_ms = 0;
  std::string trigger;  // the event id that started it, or "manual:<principal>:<id>"
  std::string started_by;
  std::string created_at;
  std::string updated_at;
  std::string message;
  std::string previous_json = "[]";  // the stage's variants before this release deployed there
  std::vector<Approval> approvals;
  std::vector<LogEntry> log;  // filled by Get
};

// One row of a stage's history: `version` served `stage` from `from` until
// `to` ("" while it still does).
struct Served {
  std::string stage;
  int version = 0;
  std::string release_id;
  std::string from;
  std::string to;
  std::string how;  // "release", "rollback", "rejection"
  std::string by;   // who started it
  std::vector<std::string> approved_by;
  std::string run_id;  // lineage, from the registry
  std::string dataset;
  int dataset_version = 0;
  std::string ended_by;  // what ended it
};

struct StageStatus {
  std::string stage;
  std::string endpoint;
  int live_version = 0;  // 0: nothing serves
  std::vector<serving::Variant> variants;
  std::string since;
};

struct GroupStatus {
  std::string group;
  bool custom_config = false;
  std::vector<StageStatus> stages;
  std::vector<Release> active;  // in progress or waiting
  std::vector<Release> recent;  // the last few that ended
};

struct ReleaseOptions {
  std::chrono::milliseconds tick = std::chrono::milliseconds(250);
};

class ReleaseService {
 public:
  ReleaseService(store::Database* db, registry::RegistryService* registry, serving::ServingService* serving,
                 iam::IamService* iam, ReleaseOptions options = {})
      : db_(db), registry_(registry), serving_(serving), iam_(iam), options_(options) {}
  ~ReleaseService();

  Status Migrate();

  // The group's config; DefaultConfig when it has none.
  Result<ReleaseConfig> Config(const std::string& group) const;
  bool HasCustomConfig(const std::string& group) const;
  // Checks and stores a config (InvalidArgument for a bad one, naming the
  // place; also when it names a model_group other than `group`, or an
  // approval group that does not exist).
  Result<ReleaseConfig> PutConfig(const std::string& group, const std::string& yaml,
                                  const std::string& principal);

  // The event target: approved → Start, rejected → OnRejected. Idempotent on
  // the event id.
  Status OnEvent(const events::Event& event);

  // Starts releasing an Approved version (FailedPrecondition otherwise).
  // Returns the release the trigger started earlier if there is one.
  // Releases of older versions of the group still in progress are superseded.
  Result<Release> Start(const std::string& group, int version, const std::string& trigger,
                        const std::string& principal);

  // A stage approval by `principal`. Errors: NotFound (no active release of
  // the group), InvalidArgument (stage not in the config), FailedPrecondition
  // (the release is not waiting for approval at that stage), PermissionDenied
  // (the version's author, a principal without the gate's persona or group),
  // Conflict (already approved by this principal).
  Result<Release> Approve(const std::string& group, const std::string& stage, const std::string& principal,
                          const std::string& comment);
  // An approver says no: the release ends Rejected at that gate; nothing is
  // deployed to the stage.
  Result<Release> Reject(const std::string& group, const std::string& stage, const std::string& principal,
                         const std::string& comment);
  // Puts the stage back to its previous good version (or `to_version`), all at
  // once, and ends any release active in that stage as RolledBack.
  Result<Served> Rollback(const std::string& group, const std::string& stage, int to_version,
                          const std::string& principal, const std::string& comment);

  // The registry rejected `version`: roll back every stage it serves.
  Status OnRejected(const std::string& group, int version, const std::string& principal,
                    const std::string& event_id);

  Result<Release> Get(const std::string& id) const;
  Result<std::vector<Release>> List(const std::string& group, int limit) const;
  Result<GroupStatus> Describe(const std::string& group) const;
  // Every stage's history, newest first; with `at` (ISO time), only the rows
  // that were serving at that time.
  Result<std::vector<Served>> History(const std::string& group, const std::string& at,
                                      const std::string& stage) const;

  // Moves every active release as far as it can go now.
  takt::Status Tick();
  void Start();
  void Notify();
  void Stop();

 private:
  Result<Release> Decide(const std::string& group, const std::string& stage, const std::string& principal,
                         const std::string& comment, bool approve);
  takt::Status Advance(Release& r);
  takt::Status Save(store::Database& tx, const Release& r);
  takt::Status AddLog(store::Database& tx, const Release& r, const std::string& what,
                      const std::string& principal, const std::string& detail);
  takt::Status Finish(Release& r, const char* status, const std::string& message, const std::string& what);
  takt::Status StageDone(Release& r, const StageConfig& st);
  takt::Status RestorePrevious(const Release& r, const std::string& why);
  Result<std::string> CheckQuality(const Release& r, const StageConfig& st, bool* passed) const;
  Result<std::string> SmokeTest(const Release& r, const StageConfig& st, bool* passed) const;
  Result<std::vector<Approval>> Approvals(const std::string& release_id) const;
  Result<std::vector<LogEntry>> Log(const std::string& release_id) const;
  Result<std::vector<Release>> Query(const std::string& where, const std::vector<store::Value>& args,
                                     int limit) const;
  Result<Release> ActiveRelease(const std::string& group) const;
  int LiveVersion(const std::string& group, const std::string& stage) const;
  // The stage's latest version in its history, other than `except`, that is still Approved; 0 if none.
  Result<int> PreviousApproved(const std::string& group, const std::string& stage, int except) const;
  takt::Status RecordServed(store::Database& tx, const std::string& group, const std::string& stage,
                            int version, const std::string& release_id, const std::string& how,
                            const std::string& by, const std::vector<std::string>& approved_by,
                            const std::string& ended_by);

  store::Database* db_;
  registry::RegistryService* registry_;
  serving::ServingService* serving_;
  iam::IamService* iam_;
  ReleaseOptions options_;
  mutable std::recursive_mutex mu_;  // serialises state changes (API and worker)
  std::mutex wake_mu_;
  std::condition_variable cv_;
  bool wake_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace takt::release
