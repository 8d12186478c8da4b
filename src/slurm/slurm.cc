#include "slurm/slurm.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "slurm/command.h"

namespace takt::slurm {
namespace {

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr size_t kMaxEnvName = 255;         // Slurm's export-file parser keeps 255
constexpr size_t kMaxEnvValue = 128 << 10;  // well below Slurm's ENV_BUFSIZE
constexpr int kMaxCpus = 1 << 20;

bool Contains(std::string_view text, std::string_view needle) { return text.find(needle) != text.npos; }

std::string Trim(std::string_view s) {
  const size_t begin = s.find_first_not_of(" \t\r\n");
  if (begin == s.npos) return "";
  const size_t end = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(begin, end - begin + 1));
}

// A Slurm command's stderr for a message: lines joined by "; ", the end kept.
std::string Brief(std::string_view err) {
  std::string joined;
  std::istringstream lines{std::string(err)};
  std::string line;
  while (std::getline(lines, line)) {
    line = Trim(line);
    if (line.empty()) continue;
    if (!joined.empty()) joined += "; ";
    joined += line;
  }
  if (joined.size() > 600) joined = "..." + joined.substr(joined.size() - 600);
  return joined.empty() ? "(no message)" : joined;
}

// Whether a Slurm command's message says the controller (or munge, which
// every request goes through) cannot be reached.
bool Unreachable(std::string_view err) {
  static constexpr std::array<std::string_view, 15> kSigns = {
      "Unable to contact slurm controller",
      "Socket timed out",
      "Connection refused",
      "Connection reset",
      "Zero Bytes were transmitted",
      "Communication connection failure",
      "Transport endpoint is not connected",
      "Protocol authentication error",
      "Invalid authentication credential",
      "Munge",
      "munge",
      "Could not establish a configuration source",
      "backup controller in standby",
      "Slurmctld is down",
      "Unable to establish persistent connection",
  };
  for (std::string_view sign : kSigns) {
    if (Contains(err, sign)) return true;
  }
  return false;
}

// The error for a Slurm command that exited non-zero without an answer we
// understand.
std::unexpected<Error> CommandFailed(std::string_view tool, const CommandOutput& out) {
  std::string message = std::string(tool) + ": " + Brief(out.err.empty() ? out.out : out.err);
  if (Unreachable(out.err)) return Unavailable(std::move(message));
  return Internal(message + " (exit " + std::to_string(out.exit_code) + ")");
}

bool HasControlChar(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// An absolute path without control characters (no newline: Slurm's
// line-oriented outputs must stay parseable).
Status CheckAbsolutePath(std::string_view field, std::string_view path) {
  const std::string f(field);
  if (path.empty()) return InvalidArgument(f + " is empty");
  if (path.size() >= 4096) return InvalidArgument(f + " is longer than 4095 bytes");
  if (HasControlChar(path)) return InvalidArgument(f + " contains a newline or another control character");
  if (path.front() != '/') return InvalidArgument(f + " must be an absolute path, not " + std::string(path));
  return Ok();
}

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// stdout/stderr files: absolute, in an existing directory, no '%' (Slurm
// expands %j, %x, ... in these names).
Status CheckOutputPath(std::string_view field, const std::string& path) {
  TAKT_RETURN_IF_ERROR(CheckAbsolutePath(field, path));
  const std::string f(field);
  if (Contains(path, "%")) {
    return InvalidArgument(f + " " + path + " contains '%', which Slurm would expand as a file name pattern");
  }
  if (path.back() == '/' || IsDirectory(path)) return InvalidArgument(f + " " + path + " is a directory");
  const std::string parent = path.substr(0, std::max<size_t>(path.rfind('/'), 1));
  if (!IsDirectory(parent)) return InvalidArgument(f + " " + path + ": no directory " + parent);
  return Ok();
}

Status CheckJobName(std::string_view name) {
  if (name.empty()) return InvalidArgument("job name is empty");
  if (HasControlChar(name))
    return InvalidArgument("job name contains a newline or another control character");
  if (name.size() > 200) return InvalidArgument("job name is longer than 200 characters");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-' || c == '+' || c == ':' || c == '@';
    if (!ok) {
      return InvalidArgument("job name \"" + std::string(name) +
                             "\" may hold only letters, digits and . _ - + : @");
    }
  }
  return Ok();
}

Status CheckEnv(const std::map<std::string, std::string>& env) {
  for (const auto& [name, value] : env) {
    bool ok = !name.empty() && name.size() <= kMaxEnvName && !(name[0] >= '0' && name[0] <= '9');
    for (char c : name) {
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
    }
    if (!ok) {
      return InvalidArgument("env: \"" + (HasControlChar(name) ? std::string("<control characters>") : name) +
                             "\" is not a variable name ([A-Za-z_][A-Za-z0-9_]*, at most 255)");
    }
    if (name.starts_with("SLURM_") || name.starts_with("SBATCH_")) {
      return InvalidArgument("env: " + name + ": names starting with SLURM_ or SBATCH_ belong to Slurm");
    }
    if (name == "DISPLAY" || name == "ENVIRONMENT" || name == "HOSTNAME") {
      return InvalidArgument("env: " + name + " is one of the names Slurm drops from a job's environment");
    }
    if (value.find('\0') != std::string::npos)
      return InvalidArgument("env: " + name + " contains a NUL byte");
    if (value.size() > kMaxEnvValue) return InvalidArgument("env: " + name + " is longer than 128 KiB");
  }
  return Ok();
}

Status CheckScript(const std::string& path) {
  TAKT_RETURN_IF_ERROR(CheckAbsolutePath("script_path", path));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return InvalidArgument("script_path " + path + " is not a file");
  }
  std::ifstream in(path, std::ios::binary);
  char magic[2] = {};
  if (!in.read(magic, 2) || magic[0] != '#' || magic[1] != '!') {
    return InvalidArgument("script_path " + path +
                           " is not readable or does not start with #! (sbatch needs one)");
  }
  return Ok();
}

// Job ids as sbatch prints them: 1234, or an array task 1234_7.
Status CheckJobId(std::string_view id) {
  const size_t underscore = id.find('_');
  auto digits = [](std::string_view s) {
    if (s.empty() || s.size() > 20) return false;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
    }
    return true;
  };
  const bool ok = underscore == id.npos
                      ? digits(id)
                      : digits(id.substr(0, underscore)) && digits(id.substr(underscore + 1));
  if (!ok) {
    return InvalidArgument("\"" +
                           (HasControlChar(id) ? std::string("<control characters>") : std::string(id)) +
                           "\" is not a Slurm job id");
  }
  return Ok();
}

// Slurm's state word (squeue's "CANCELLED", sacct's "CANCELLED by 0",
// "RUNNING+") as a State.
State ParseState(std::string_view raw) {
  static constexpr std::array<std::pair<std::string_view, State>, 27> kStates = {{
      {"PENDING", State::kPending},           {"CONFIGURING", State::kPending},
      {"REQUEUED", State::kPending},          {"REQUEUE_HOLD", State::kPending},
      {"REQUEUE_FED", State::kPending},       {"RESV_DEL_HOLD", State::kPending},
      {"SPECIAL_EXIT", State::kPending},      {"POWER_UP_NODE", State::kPending},
      {"RUNNING", State::kRunning},           {"COMPLETING", State::kRunning},
      {"SUSPENDED", State::kRunning},         {"STOPPED", State::kRunning},
      {"SIGNALING", State::kRunning},         {"STAGE_OUT", State::kRunning},
      {"RESIZING", State::kRunning},          {"UPDATE_DB", State::kRunning},
      {"COMPLETED", State::kCompleted},       {"FAILED", State::kFailed},
      {"BOOT_FAIL", State::kFailed},          {"DEADLINE", State::kFailed},
      {"PREEMPTED", State::kFailed},          {"REVOKED", State::kFailed},
      {"CANCELLED", State::kCancelled},       {"TIMEOUT", State::kTimeout},
      {"OUT_OF_MEMORY", State::kOutOfMemory}, {"NODE_FAIL", State::kNodeFail},
      {"LAUNCH_FAILED", State::kFailed},
  }};
  for (const auto& [word, state] : kStates) {
    if (raw == word) return state;
  }
  return State::kUnknown;
}

// Fills reason: Slurm's word while the job waits or runs; a sentence once it
// has ended other than by completing.
void Describe(JobStatus& status, std::string_view slurm_reason) {
  std::string reason = slurm_reason == "None" || slurm_reason == "(null)" ? "" : std::string(slurm_reason);
  auto with_reason = [&](std::string sentence) {
    return reason.empty() ? sentence : sentence + " (" + reason + ")";
  };
  switch (status.state) {
    case State::kPending:
    case State::kRunning:
    case State::kUnknown:
      status.reason = reason;
      return;
    case State::kCompleted:
      status.reason = "";
      return;
    case State::kFailed:
      if (status.signal != 0) {
        status.reason = with_reason("the script was killed by signal " + std::to_string(status.signal));
      } else if (status.exit_code > 0) {
        status.reason = with_reason("the script exited with code " + std::to_string(status.exit_code));
      } else {
        status.reason = with_reason("Slurm could not run the job (" + status.raw_state + ")");
      }
      return;
    case State::kCancelled:
      status.reason = with_reason("cancelled");
      return;
    case State::kTimeout:
      status.reason = with_reason("killed at its time limit");
      return;
    case State::kOutOfMemory:
      status.reason = with_reason("killed for using more memory than it asked for");
      return;
    case State::kNodeFail:
      status.reason = with_reason("its node failed");
      return;
  }
}

}  // namespace

bool JobStatus::finished() const {
  switch (state) {
    case State::kCompleted:
    case State::kFailed:
    case State::kCancelled:
    case State::kTimeout:
    case State::kOutOfMemory:
    case State::kNodeFail:
      return true;
    case State::kPending:
    case State::kRunning:
    case State::kUnknown:
      return false;
  }
  return false;
}

std::string_view StateName(State s) {
  switch (s) {
    case State::kPending:
      return "PENDING";
    case State::kRunning:
      return "RUNNING";
    case State::kCompleted:
      return "COMPLETED";
    case State::kFailed:
      return "FAILED";
    case State::kCancelled:
      return "CANCELLED";
    case State::kTimeout:
      return "TIMEOUT";
    case State::kOutOfMemory:
      return "OUT_OF_MEMORY";
    case State::kNodeFail:
      return "NODE_FAIL";
    case State::kUnknown:
      return "UNKNOWN";
  }
  return "UNKNOWN";
}

Client::Client(Options options) : options_(std::move(options)) {}

std::vector<std::string> Client::BaseEnv() const {
  std::vector<std::string> env = {std::string("PATH=") + kDefaultPath};
  if (!options_.slurm_conf.empty()) env.push_back("SLURM_CONF=" + options_.slurm_conf);
  return env;
}

Result<CommandOutput> Client::Run(std::string_view tool, std::vector<std::string> args,
                                  const std::string* fd3) const {
  TAKT_RETURN_IF_ERROR(CheckAbsolutePath("slurm bin_dir", options_.bin_dir));
  if (!options_.slurm_conf.empty()) {
    TAKT_RETURN_IF_ERROR(CheckAbsolutePath("slurm_conf", options_.slurm_conf));
    struct stat st {};
    // Slurm's commands retry a missing slurm.conf for a minute; say it now.
    if (::stat(options_.slurm_conf.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return FailedPrecondition("slurm_conf " + options_.slurm_conf + " does not exist");
    }
  }
  if (!std::isfinite(options_.command_timeout_seconds) || options_.command_timeout_seconds <= 0) {
    return InvalidArgument("slurm command_timeout_seconds must be positive");
  }
  std::string program = options_.bin_dir;
  if (program.back() != '/') program += '/';
  program += tool;
  args.insert(args.begin(), program);
  auto out = RunCommand(args, BaseEnv(), options_.command_timeout_seconds, fd3);
  if (!out && out.error().code() == Code::kFailedPrecondition) {
    return FailedPrecondition(out.error().message() + " (install slurm-client, or set the Slurm bin_dir)");
  }
  if (!out && out.error().code() == Code::kUnavailable) {
    return std::unexpected(out.error().WithContext(
        "the Slurm controller" +
        (options_.slurm_conf.empty() ? std::string() : " of " + options_.slurm_conf) + " does not answer"));
  }
  return out;
}

Result<std::string> Client::Submit(const JobSpec& spec) const {
  TAKT_RETURN_IF_ERROR(CheckJobName(spec.name));
  TAKT_RETURN_IF_ERROR(CheckScript(spec.script_path));
  TAKT_RETURN_IF_ERROR(CheckAbsolutePath("work_dir", spec.work_dir));
  if (!IsDirectory(spec.work_dir))
    return InvalidArgument("work_dir " + spec.work_dir + " is not a directory");
  TAKT_RETURN_IF_ERROR(CheckOutputPath("stdout_path", spec.stdout_path));
  if (!spec.stderr_path.empty()) TAKT_RETURN_IF_ERROR(CheckOutputPath("stderr_path", spec.stderr_path));
  if (spec.cpus < 1 || spec.cpus > kMaxCpus) {
    return InvalidArgument("cpus must be between 1 and " + std::to_string(kMaxCpus) + ", not " +
                           std::to_string(spec.cpus));
  }
  if (spec.memory_mb < 0) return InvalidArgument("memory_mb must not be negative");
  if (spec.time_limit_minutes < 0) return InvalidArgument("time_limit_minutes must not be negative");
  TAKT_RETURN_IF_ERROR(CheckEnv(spec.env));
  const std::string& partition = options_.partition;
  for (char c : partition) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-' || c == '.')) {
      return InvalidArgument("partition \"" +
                             (HasControlChar(partition) ? "<control characters>" : partition) +
                             "\" may hold only letters, digits and _ - .");
    }
  }

  // The job's variables go through fd 3 (--export-file), NUL-separated: not
  // on the command line, and not in sbatch's own environment either. With an
  // export file the job gets exactly these plus Slurm's SLURM_* variables.
  std::string env_file;
  if (!spec.env.contains("PATH")) {
    env_file += std::string("PATH=") + kDefaultPath;
    env_file += '\0';
  }
  for (const auto& [name, value] : spec.env) {
    env_file += name;
    env_file += '=';
    env_file += value;
    env_file += '\0';
  }
  std::vector<std::string> args = {
      "--parsable",
      "--no-requeue",
      "--export=ALL",  // sbatch's own environment is only PATH and SLURM_CONF (BaseEnv)
      "--export-file=3",
      "--job-name=" + spec.name,
      "--chdir=" + spec.work_dir,
      "--output=" + spec.stdout_path,
      "--nodes=1",
      "--ntasks=1",
      "--cpus-per-task=" + std::to_string(spec.cpus),
  };
  if (!spec.stderr_path.empty()) args.push_back("--error=" + spec.stderr_path);
  if (spec.memory_mb > 0) args.push_back("--mem=" + std::to_string(spec.memory_mb) + "M");
  if (spec.time_limit_minutes > 0) args.push_back("--time=" + std::to_string(spec.time_limit_minutes));
  if (!partition.empty()) args.push_back("--partition=" + partition);
  args.push_back(spec.script_path);

  const std::string context = "submitting job " + spec.name;
  auto out = Run("sbatch", std::move(args), &env_file);
  if (!out) return std::unexpected(out.error().WithContext(context));
  if (out->exit_code != 0) {
    const std::string message = context + ": " + Brief(out->err);
    if (Unreachable(out->err)) return Unavailable(message);
    if (Contains(out->err, "MaxSubmit") || Contains(out->err, "submit limit")) {
      return ResourceExhausted(message);  // QOS or association limits on queued jobs
    }
    if (Contains(out->err, "Batch job submission failed") || Contains(out->err, "error:")) {
      return InvalidArgument(message);
    }
    return Internal(message + " (sbatch exit " + std::to_string(out->exit_code) + ")");
  }
  // "1234" or "1234;cluster"
  std::string id = Trim(out->out);
  if (const size_t nl = id.rfind('\n'); nl != id.npos) id = id.substr(nl + 1);
  if (const size_t semi = id.find(';'); semi != id.npos) id.resize(semi);
  if (!CheckJobId(id)) return Internal(context + ": sbatch printed no job id: " + Brief(out->out));
  return id;
}

Result<JobStatus> Client::Status(const std::string& job_id) const {
  TAKT_RETURN_IF_ERROR(CheckJobId(job_id));
  const std::string context = "status of Slurm job " + job_id;

  // 1. squeue: jobs the controller holds, finished ones until MinJobAge.
  //    exit_code is the raw wait status; Reason comes last (it is free text).
  auto queue = Run("squeue", {"--noheader", "--states=all", "--jobs=" + job_id,
                              "--Format=JobID:|,State:|,exit_code:|,Reason:"});
  if (!queue) return std::unexpected(queue.error().WithContext(context));
  if (queue->exit_code == 0) {
    std::istringstream lines(queue->out);
    std::string line;
    while (std::getline(lines, line)) {
      std::array<std::string, 4> fields;
      size_t start = 0;
      for (size_t i = 0; i < 3; ++i) {
        const size_t bar = line.find('|', start);
        if (bar == line.npos) break;
        fields[i] = Trim(line.substr(start, bar - start));
        start = bar + 1;
      }
      fields[3] = Trim(line.substr(std::min(start, line.size())));
      if (fields[0] != job_id) continue;
      JobStatus status;
      status.raw_state = fields[1];
      status.state = ParseState(status.raw_state);
      if (status.finished()) {
        const int raw = std::atoi(fields[2].c_str());
        status.exit_code = (raw >> 8) & 0xff;
        status.signal = raw & 0x7f;
      }
      Describe(status, fields[3]);
      return status;
    }
  } else if (!Contains(queue->err, "Invalid job id specified")) {
    return std::unexpected(CommandFailed("squeue", *queue).error().WithContext(context));
  }

  // 2. sacct: jobs the controller has forgotten, if the cluster keeps accounting.
  auto acct = Run("sacct", {"--noheader", "--parsable2", "--allocations", "--jobs=" + job_id,
                            "--format=JobID,State,ExitCode"});
  if (!acct) return std::unexpected(acct.error().WithContext(context));
  if (acct->exit_code != 0) {
    if (Contains(acct->err, "accounting storage is disabled")) {
      return NotFound(context +
                      ": the controller does not know the job, and the cluster keeps no accounting "
                      "(jobs are forgotten MinJobAge after they end)");
    }
    return std::unexpected(CommandFailed("sacct", *acct).error().WithContext(context));
  }
  std::istringstream lines(acct->out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string id, state, exit;
    std::getline(fields, id, '|');
    std::getline(fields, state, '|');
    std::getline(fields, exit, '|');
    if (id != job_id) continue;
    JobStatus status;
    status.raw_state = state.substr(0, state.find(' '));  // "CANCELLED by 0"
    if (!status.raw_state.empty() && status.raw_state.back() == '+') status.raw_state.pop_back();
    status.state = ParseState(status.raw_state);
    if (status.finished()) {
      const size_t colon = exit.find(':');
      status.exit_code = std::atoi(exit.substr(0, colon).c_str());
      status.signal = colon == exit.npos ? 0 : std::atoi(exit.substr(colon + 1).c_str());
    }
    Describe(status, "");
    return status;
  }
  return NotFound(context + ": neither the controller nor accounting knows the job");
}

takt::Status Client::Cancel(const std::string& job_id) const {
  TAKT_RETURN_IF_ERROR(CheckJobId(job_id));
  const std::string context = "cancelling Slurm job " + job_id;
  // --verbose: without it scancel is silent, exit 0, even for an unknown id.
  auto out = Run("scancel", {"--verbose", job_id});
  if (!out) return std::unexpected(out.error().WithContext(context));
  if (Contains(out->err, "Invalid job id specified")) {
    return NotFound(context + ": the controller does not know the job");
  }
  if (Contains(out->err, "already completing or completed")) return Ok();
  if (Contains(out->err, "Access/permission denied"))
    return PermissionDenied(context + ": " + Brief(out->err));
  if (Unreachable(out->err)) return Unavailable(context + ": " + Brief(out->err));
  if (out->exit_code != 0 || Contains(out->err, "error:")) {
    return std::unexpected(CommandFailed("scancel", *out).error().WithContext(context));
  }
  return Ok();
}

takt::Status Client::Ping() const {
  std::vector<std::string> args = {"--noheader", "--Node", "--format=%N|%T|%E"};
  if (!options_.partition.empty()) args.push_back("--partition=" + options_.partition);
  const std::string where = options_.partition.empty() ? "" : " in partition " + options_.partition;
  auto out = Run("sinfo", std::move(args));
  if (!out) return std::unexpected(out.error().WithContext("pinging the Slurm cluster"));
  if (out->exit_code != 0) {
    auto failed = CommandFailed("sinfo", *out);
    return Unavailable(failed.error().message());  // whatever the cause, the cluster cannot be used
  }
  std::istringstream lines(out->out);
  std::string line;
  std::vector<std::string> unusable;
  while (std::getline(lines, line)) {
    if (Trim(line).empty()) continue;
    std::istringstream fields(line);
    std::string node, state, reason;
    std::getline(fields, node, '|');
    std::getline(fields, state, '|');
    std::getline(fields, reason);
    // "idle", "mixed", "allocated", "completing", with flags such as "*"
    // (not responding), "~" (powered down, boots on demand), "#", "!".
    std::string base = state;
    while (!base.empty() && !std::isalpha(static_cast<unsigned char>(base.back()))) base.pop_back();
    const bool responding = state.find('*') == state.npos;
    if (responding && (base == "idle" || base == "mixed" || base == "allocated" || base == "completing")) {
      return Ok();
    }
    reason = Trim(reason);
    unusable.push_back(node + " " + state + (reason.empty() || reason == "none" ? "" : " (" + reason + ")"));
  }
  if (unusable.empty()) {
    return Unavailable("sinfo lists no node" + where +
                       (where.empty() ? "" : " (is there such a partition?)"));
  }
  std::string message = "no usable node" + where + ":";
  for (size_t i = 0; i < unusable.size() && i < 10; ++i) message += (i == 0 ? " " : ", ") + unusable[i];
  if (unusable.size() > 10) message += ", ...";
  return Unavailable(message);
}

}  // namespace takt::slurm
