// File: slurm/slurm.h
//
// A client for a Slurm cluster, through Slurm's own commands (sbatch, squeue,
// sacct, scancel, sinfo): the pipeline engine runs a step as a batch job.
// The engine writes a bash script into the run's directory (on the
// filesystem the cluster shares), submits it with the step's CPUs, memory and
// time, polls its state, may cancel it, and reads the job's stdout/stderr
// files back as logs.
//
//   slurm::Client slurm({.slurm_conf = "/etc/slurm/slurm.conf"});
//   TAKT_ASSIGN_OR_RETURN(std::string id, slurm.Submit({.name = "run-12-train", ...}));
//   TAKT_ASSIGN_OR_RETURN(slurm::JobStatus st, slurm.Status(id));
//   if (st.finished() && st.state != slurm::State::kCompleted) ... st.reason ...
//
// Commands are run with posix_spawn and an argv, never through a shell, each
// with a timeout (Options::command_timeout_seconds) after which it is killed.
// Every command gets a fresh, minimal environment (PATH, and SLURM_CONF when
// Options::slurm_conf is set), so nothing of the calling process leaks into
// Slurm or into jobs.
//
// The job's environment is exactly JobSpec::env, plus PATH (a standard one if
// env has none), plus the variables Slurm adds (SLURM_*, TMPDIR, HOSTNAME,
// ENVIRONMENT=BATCH). The values reach sbatch through an in-memory file on
// its fd 3 (--export-file), never its command line, where any local user
// could read them, nor its own environment. Jobs are submitted with
// --no-requeue: a node failure ends the job as NODE_FAIL instead of running
// the step a second time.
//
// Errors: InvalidArgument for a bad spec or job id, or when Slurm refuses the
// job (its reason, e.g. "Requested node configuration is not available");
// NotFound for a job id the cluster does not know; Unavailable when the
// controller cannot be reached (Slurm's message, trimmed) or a command times
// out; FailedPrecondition when a Slurm command or the configured slurm.conf
// is missing.
//
// Thread safety: a Client holds only its Options; any number of threads may
// call it at once.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace takt::slurm {

struct CommandOutput;  // slurm/command.h

// How to reach a cluster.
struct Options {
  std::string bin_dir = "/usr/bin";     // sbatch, squeue, sacct, scancel, sinfo
  std::string slurm_conf;               // SLURM_CONF for every command ("" = the system default)
  std::string partition;                // "" = the cluster default
  double command_timeout_seconds = 30;  // each sbatch/squeue/... call
};

struct JobSpec {
  std::string name;            // --job-name: letters, digits and . _ - + : @, at most 200
  std::string script_path;     // an existing bash script ("#!" first), absolute, on the shared filesystem
  std::string work_dir;        // --chdir: an existing directory, absolute
  std::string stdout_path;     // absolute, in an existing directory; no '%' (Slurm would expand it)
  std::string stderr_path;     // "" = into stdout_path
  int cpus = 1;                // --cpus-per-task
  int64_t memory_mb = 0;       // --mem (0 = not set: the partition's default)
  int time_limit_minutes = 0;  // --time (0 = the partition's default)
  std::map<std::string, std::string> env;  // given to the job; names SLURM_* and SBATCH_* are refused
};

enum class State {
  kPending,      // waiting for resources, a dependency, ... (JobStatus::reason says which)
  kRunning,      // running, suspended, or completing (the script has ended, cleanup runs)
  kCompleted,    // the script exited 0
  kFailed,       // non-zero exit, or Slurm could not start it (FAILED, BOOT_FAIL, DEADLINE, PREEMPTED)
  kCancelled,    // scancel, by us or an administrator
  kTimeout,      // ran past its time limit and was killed
  kOutOfMemory,  // killed for exceeding its memory
  kNodeFail,     // its node failed
  kUnknown,      // a state word this client does not know (JobStatus::raw_state)
};

struct JobStatus {
  State state = State::kUnknown;
  // Once finished: the script's exit status and the signal that ended it, as
  // in Slurm's ExitCode=<exit>:<signal> (a job killed by SIGTERM has 0 and 15).
  // -1 and 0 while not finished.
  int exit_code = -1;
  int signal = 0;
  std::string raw_state;  // Slurm's word: "COMPLETED", "FAILED", "TIMEOUT", ...
  std::string reason;     // the pending reason ("Resources"), or a sentence on how it ended

  // Completed, failed, cancelled, timed out, out of memory or node failed.
  bool finished() const;
};

// "PENDING", "RUNNING", "COMPLETED", ...: the state in JSON and messages.
std::string_view StateName(State s);

class Client {
 public:
  explicit Client(Options options);

  // sbatch --parsable ...; returns the job id. InvalidArgument for a bad spec
  // (naming the field) or a job Slurm refuses; Unavailable, with sbatch's
  // stderr, when the controller cannot be reached.
  Result<std::string> Submit(const JobSpec& spec) const;

  // Looked up in this order:
  //  1. squeue --states=all: jobs the controller still holds, live ones and
  //     those finished less than MinJobAge ago (state, reason, exit status);
  //  2. sacct: older jobs, when the cluster keeps accounting (slurmdbd).
  // NotFound if neither knows the id; InvalidArgument if it is not a job id.
  Result<JobStatus> Status(const std::string& job_id) const;

  // scancel. Cancelling a job that has already finished is Ok; NotFound if the
  // controller does not know the id (never submitted, or purged after
  // MinJobAge, in which case it has long finished).
  takt::Status Cancel(const std::string& job_id) const;

  // Ok when sinfo answers and at least one node of the partition is usable
  // (idle, mixed or allocated, and responding); Unavailable otherwise, the
  // message saying why ("no usable node in partition batch: n1 down* (Not
  // responding)").
  takt::Status Ping() const;

  const Options& options() const { return options_; }

 private:
  // Validates options_, then runs a Slurm command from bin_dir.
  Result<CommandOutput> Run(std::string_view tool, std::vector<std::string> args,
                            const std::string* fd3 = nullptr) const;
  std::vector<std::string> BaseEnv() const;

  Options options_;
};

}  // namespace takt::slurm
