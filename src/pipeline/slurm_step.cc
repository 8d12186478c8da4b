// The Slurm executor of command steps: see slurm_step.h.
#include "pipeline/slurm_step.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <thread>

#include "slurm/slurm.h"

namespace takt::pipeline {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr sandbox::Outcome kOutcomes[] = {sandbox::Outcome::kExited,      sandbox::Outcome::kSignaled,
                                          sandbox::Outcome::kTimedOut,    sandbox::Outcome::kCpuLimit,
                                          sandbox::Outcome::kMemoryLimit, sandbox::Outcome::kDiskQuota,
                                          sandbox::Outcome::kCancelled,   sandbox::Outcome::kStartFailed};

Json MountsToJson(const std::vector<sandbox::Mount>& mounts) {
  Json out = Json::array();
  for (const auto& m : mounts) out.push_back({{"host", m.host}, {"inside", m.inside}});
  return out;
}

Result<std::vector<sandbox::Mount>> MountsFromJson(const Json& j, const char* what) {
  std::vector<sandbox::Mount> out;
  if (!j.is_array()) return InvalidArgument(std::string("sandbox spec: ") + what + " must be a list");
  for (const auto& m : j) {
    if (!m.is_object() || !m.contains("host") || !m.contains("inside") || !m["host"].is_string() ||
        !m["inside"].is_string()) {
      return InvalidArgument(std::string("sandbox spec: every entry of ") + what + " needs host and inside");
    }
    out.push_back({m["host"].get<std::string>(), m["inside"].get<std::string>()});
  }
  return out;
}

Status WriteFileAtomically(const fs::path& path, std::string_view content, mode_t mode) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Internal("cannot write " + tmp.string() + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return Internal("cannot write " + tmp.string() + ": " + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Internal("cannot rename " + tmp.string() + ": " + ec.message());
  return Ok();
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Slurm job names: letters, digits and . _ - + : @.
std::string JobName(const std::string& run_id, const std::string& step) {
  std::string name = "takt-" + run_id + "-" + step;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) &&
        std::string_view("._-+:@").find(c) == std::string::npos)
      c = '_';
  }
  return name.substr(0, 200);
}

// Reads what was appended to `path` since `*offset`; calls `line` for every complete line.
void Tail(const fs::path& path, uint64_t* offset, std::string* partial,
          const std::function<void(std::string_view)>& line, bool flush) {
  std::ifstream in(path, std::ios::binary);
  if (in) {
    in.seekg(static_cast<std::streamoff>(*offset));
    char buf[64 * 1024];
    while (in) {
      in.read(buf, sizeof buf);
      const auto n = in.gcount();
      if (n <= 0) break;
      *offset += static_cast<uint64_t>(n);
      partial->append(buf, static_cast<size_t>(n));
    }
  }
  size_t start = 0;
  for (size_t nl; (nl = partial->find('\n', start)) != std::string::npos; start = nl + 1) {
    line(std::string_view(*partial).substr(start, nl - start));
  }
  partial->erase(0, start);
  if (flush && !partial->empty()) {
    line(*partial);
    partial->clear();
  }
}

std::atomic<bool> g_cancel{false};
extern "C" void OnTerm(int) { g_cancel.store(true); }

}  // namespace

Json SandboxSpecToJson(const sandbox::Spec& spec) {
  const auto& l = spec.limits;
  return {{"argv", spec.argv},
          {"env", spec.env},
          {"read_only", MountsToJson(spec.read_only)},
          {"writable", MountsToJson(spec.writable)},
          {"cwd", spec.cwd},
          {"network", spec.network},
          {"limits",
           {{"wall_seconds", l.wall_seconds},
            {"grace_seconds", l.grace_seconds},
            {"cpu_seconds", l.cpu_seconds},
            {"memory_bytes", l.memory_bytes},
            {"disk_bytes", l.disk_bytes},
            {"tmp_bytes", l.tmp_bytes},
            {"log_bytes", l.log_bytes},
            {"cpus", l.cpus}}}};
}

Result<sandbox::Spec> SandboxSpecFromJson(const Json& j) {
  if (!j.is_object()) return InvalidArgument("sandbox spec: not a JSON object");
  sandbox::Spec spec;
  try {
    spec.argv = j.at("argv").get<std::vector<std::string>>();
    spec.env = j.at("env").get<std::map<std::string, std::string>>();
    TAKT_ASSIGN_OR_RETURN(spec.read_only, MountsFromJson(j.at("read_only"), "read_only"));
    TAKT_ASSIGN_OR_RETURN(spec.writable, MountsFromJson(j.at("writable"), "writable"));
    spec.cwd = j.value("cwd", "");
    spec.network = j.value("network", false);
    const Json& l = j.at("limits");
    spec.limits.wall_seconds = l.value("wall_seconds", 0.0);
    spec.limits.grace_seconds = l.value("grace_seconds", 2.0);
    spec.limits.cpu_seconds = l.value("cpu_seconds", 0.0);
    spec.limits.memory_bytes = l.value("memory_bytes", int64_t{0});
    spec.limits.disk_bytes = l.value("disk_bytes", int64_t{0});
    spec.limits.tmp_bytes = l.value("tmp_bytes", int64_t{0});
    spec.limits.log_bytes = l.value("log_bytes", int64_t{0});
    spec.limits.cpus = l.value("cpus", 0);
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("sandbox spec: ") + e.what());
  }
  return spec;
}

Json RunResultToJson(const sandbox::RunResult& r) {
  return {{"outcome", std::string(sandbox::OutcomeName(r.outcome))},
          {"exit_code", r.exit_code},
          {"signal", r.signal},
          {"wall_seconds", r.wall_seconds},
          {"cpu_seconds", r.cpu_seconds},
          {"max_rss_bytes", r.max_rss_bytes},
          {"log_lines", r.log_lines},
          {"dropped_log_lines", r.dropped_log_lines},
          {"binary_lines", r.binary_lines},
          {"reason", r.reason}};
}

Result<sandbox::RunResult> RunResultFromJson(const Json& j) {
  if (!j.is_object() || !j.contains("outcome") || !j["outcome"].is_string())
    return InvalidArgument("step result: no outcome");
  sandbox::RunResult r;
  const std::string name = j["outcome"];
  bool known = false;
  for (auto o : kOutcomes) {
    if (sandbox::OutcomeName(o) == name) {
      r.outcome = o;
      known = true;
    }
  }
  if (!known) return InvalidArgument("step result: unknown outcome '" + name + "'");
  try {
    r.exit_code = j.value("exit_code", -1);
    r.signal = j.value("signal", 0);
    r.wall_seconds = j.value("wall_seconds", 0.0);
    r.cpu_seconds = j.value("cpu_seconds", 0.0);
    r.max_rss_bytes = j.value("max_rss_bytes", int64_t{0});
    r.log_lines = j.value("log_lines", int64_t{0});
    r.dropped_log_lines = j.value("dropped_log_lines", int64_t{0});
    r.binary_lines = j.value("binary_lines", int64_t{0});
    r.reason = j.value("reason", "");
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("step result: ") + e.what());
  }
  return r;
}

int ExecSandboxJob(const std::string& spec_path, const std::string& result_path) {
  auto fail = [&](const std::string& why) {
    sandbox::RunResult r;
    r.outcome = sandbox::Outcome::kStartFailed;
    r.reason = "could not start: " + why;
    IgnoreError(WriteFileAtomically(result_path, RunResultToJson(r).dump(), 0600));
    std::fprintf(stderr, "takt sandbox-exec: %s\n", why.c_str());
    return 2;
  };
  std::ifstream in(spec_path, std::ios::binary);
  if (!in) return fail("cannot read the sandbox spec " + spec_path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto spec = SandboxSpecFromJson(Json::parse(text, nullptr, false));
  if (!spec) return fail(spec.error().message());
  // scancel sends SIGTERM: the sandbox's own cancellation (SIGTERM, grace, SIGKILL) takes over.
  struct sigaction sa {};
  sa.sa_handler = OnTerm;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  auto emit = [](std::string_view stream, std::string_view line) {
    std::string out;
    out.reserve(line.size() + 3);
    out += stream == "stderr" ? "e " : "o ";
    out += line;
    out += '\n';
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::write(STDOUT_FILENO, out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  };
  auto result = sandbox::Run(*spec, emit, &g_cancel);
  if (!result && g_cancel.load()) {
    // scancel signals every process of the job, the sandbox's monitor too.
    sandbox::RunResult r;
    r.outcome = sandbox::Outcome::kCancelled;
    r.reason = "was cancelled";
    IgnoreError(WriteFileAtomically(result_path, RunResultToJson(r).dump(), 0600));
    return 1;
  }
  if (!result) return fail(result.error().message());
  if (auto s = WriteFileAtomically(result_path, RunResultToJson(*result).dump(), 0600); !s) {
    std::fprintf(stderr, "takt sandbox-exec: %s\n", s.error().message().c_str());
    return 2;
  }
  return result->ok() ? 0 : 1;
}

Result<sandbox::RunResult> RunSandboxOnSlurm(StepEnv& env, const sandbox::Spec& spec, const fs::path& job_dir,
                                             const sandbox::LineSink& on_line) {
  const StepSpec& step = *env.step;
  if (env.slurm == nullptr) {
    return FailedPrecondition("step " + step.name +
                              " asks for the slurm executor, but this server has none configured (set "
                              "slurm-conf / TAKT_SLURM_CONF)");
  }
  const slurm::Client& slurm = *env.slurm;
  const fs::path spec_path = job_dir / "spec.json", script = job_dir / "step.sh", out = job_dir / "out.log",
                 result_path = job_dir / "result.json";
  std::string job = env.slurm_job;
  if (job.empty()) {
    if (env.step_exec.empty()) return FailedPrecondition("no step executable configured for Slurm jobs");
    std::error_code ec;
    fs::create_directories(job_dir, ec);
    if (ec) return Internal("cannot create " + job_dir.string() + ": " + ec.message());
    fs::remove(result_path, ec);
    fs::remove(out, ec);
    TAKT_RETURN_IF_ERROR(WriteFileAtomically(spec_path, SandboxSpecToJson(spec).dump(), 0600));
    std::string command;
    for (const auto& w : env.step_exec) command += ShellQuote(w) + " ";
    command +=
        ShellQuote(fs::absolute(spec_path).string()) + " " + ShellQuote(fs::absolute(result_path).string());
    TAKT_RETURN_IF_ERROR(WriteFileAtomically(
        script,
        "#!/bin/bash\n# takt: run " + env.run->id + ", step " + step.name + "\nexec " + command + "\n",
        0700));
    slurm::JobSpec js;
    js.name = JobName(env.run->id, step.name);
    js.script_path = fs::absolute(script).string();
    js.work_dir = fs::absolute(job_dir).string();
    js.stdout_path = fs::absolute(out).string();
    js.cpus = std::max(1, step.resources.cpus);
    if (step.resources.memory_bytes > 0) js.memory_mb = (step.resources.memory_bytes + (1 << 20) - 1) >> 20;
    // resources.time (by default the timeout), plus a minute: the sandbox's own limit ends the
    // step first, with a clear reason; Slurm's is the backstop.
    const double limit = std::max(step.resources.time_seconds, step.timeout_seconds);
    if (limit > 0) js.time_limit_minutes = static_cast<int>(std::ceil(limit / 60)) + 1;
    auto submitted = slurm.Submit(js);
    if (!submitted)
      return std::unexpected(submitted.error().WithContext("submitting step " + step.name + " to Slurm"));
    job = *submitted;
    if (env.on_job_submitted) env.on_job_submitted(job);
    env.log(
        "submitted to Slurm as job " + job + " (" + std::to_string(js.cpus) + " CPU" +
        (js.cpus == 1 ? "" : "s") +
        (js.memory_mb > 0 ? ", " + std::to_string(js.memory_mb) + " MiB" : std::string()) +
        (js.time_limit_minutes > 0 ? ", " + std::to_string(js.time_limit_minutes) + " min" : std::string()) +
        ")");
  } else {
    env.log("reattached to Slurm job " + job + "; its output so far follows again");
  }

  // Follow the job: its output as it comes, its state every half second.
  std::vector<std::string> slurm_lines;  // what Slurm (not the program) printed
  auto dispatch = [&](std::string_view line) {
    if (line.starts_with("o ")) {
      on_line("stdout", line.substr(2));
    } else if (line.starts_with("e ")) {
      on_line("stderr", line.substr(2));
    } else if (!line.empty()) {
      const std::string clean = sandbox::SanitizeLine(line);
      on_line("stderr", "slurm: " + clean);
      slurm_lines.push_back(clean);
      if (slurm_lines.size() > 5) slurm_lines.erase(slurm_lines.begin());
    }
  };
  uint64_t offset = 0;
  std::string partial;
  bool cancel_sent = false;
  std::string stop_reason;
  Clock::time_point cancel_at{}, next_status = Clock::now(), unreachable_since{}, timeout_seen_at{};
  slurm::JobStatus status;
  bool gone = false;
  while (true) {
    Tail(out, &offset, &partial, dispatch, false);
    const auto now = Clock::now();
    if (!cancel_sent && env.detaching && env.detaching()) {
      return Unavailable("the server is stopping; Slurm job " + job +
                         " keeps running and is reattached when the server starts again");
    }
    if (!cancel_sent && env.should_stop && env.should_stop()) {
      stop_reason = env.stop_reason ? env.stop_reason() : "cancelled";
      // Past the timeout while running: the sandbox on the node enforces it and reports it itself;
      // give it a moment before cancelling the job.
      if (stop_reason == "timeout" && status.state == slurm::State::kRunning) {
        if (timeout_seen_at == Clock::time_point{}) timeout_seen_at = now;
        if (now - timeout_seen_at < std::chrono::seconds(15)) stop_reason.clear();
      }
    }
    if (!cancel_sent && !stop_reason.empty()) {
      if (auto c = slurm.Cancel(job); !c) env.log("scancel " + job + ": " + c.error().message());
      env.log("cancelling Slurm job " + job + " (" + stop_reason + ")");
      cancel_sent = true;
      cancel_at = now;
    }
    if (now >= next_status) {
      next_status = now + std::chrono::milliseconds(500);
      auto s = slurm.Status(job);
      if (s) {
        unreachable_since = {};
        status = *s;
        if (status.finished()) break;
      } else if (s.error().code() == Code::kNotFound) {
        gone = true;
        break;
      } else {
        if (unreachable_since == Clock::time_point{}) {
          unreachable_since = now;
          env.log("cannot reach Slurm (" + s.error().message() + "); still trying");
        } else if (now - unreachable_since > std::chrono::minutes(5)) {
          env.failure = "lost";
          return Unavailable("Slurm was unreachable for 5 minutes while job " + job +
                             " ran: " + s.error().message());
        }
      }
    }
    if (cancel_sent && now - cancel_at > std::chrono::seconds(60)) {
      env.failure = stop_reason == "timeout" ? "timeout" : "cancelled";
      return Unavailable("Slurm job " + job + " did not end within 60 s of scancel");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // The output file may lag the job's end by a moment on a shared filesystem.
  for (int i = 0; i < 5 && !fs::exists(result_path) && !gone; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  Tail(out, &offset, &partial, dispatch, true);

  sandbox::RunResult r;
  std::ifstream in(result_path, std::ios::binary);
  if (in) {
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto parsed = RunResultFromJson(Json::parse(text, nullptr, false));
    if (!parsed) return Internal("Slurm job " + job + ": " + parsed.error().message());
    r = *parsed;
  } else {
    std::string tail;
    for (const auto& l : slurm_lines) tail += (tail.empty() ? "" : " | ") + l;
    tail = tail.empty() ? "" : "; it printed: " + tail;
    if (gone) {
      env.failure = "lost";
      return FailedPrecondition("Slurm job " + job +
                                " is gone: the controller no longer knows it and it left no result" + tail);
    }
    switch (status.state) {
      case slurm::State::kTimeout:
        r.outcome = sandbox::Outcome::kTimedOut;
        r.reason = "was stopped by Slurm at the job's time limit";
        break;
      case slurm::State::kOutOfMemory:
        r.outcome = sandbox::Outcome::kMemoryLimit;
        r.reason = "was killed by Slurm for exceeding the job's memory";
        break;
      case slurm::State::kCancelled:
        r.outcome = sandbox::Outcome::kCancelled;
        r.reason = "was cancelled in Slurm (scancel)";
        break;
      case slurm::State::kNodeFail:
        env.failure = "lost";
        return FailedPrecondition("Slurm job " + job + " ended with its node failing" + tail);
      default:
        r.outcome = sandbox::Outcome::kStartFailed;
        r.exit_code = status.exit_code;
        r.signal = status.signal;
        r.reason = "could not start on the Slurm node: job " + job + " ended " + status.raw_state +
                   (status.reason.empty() ? "" : " (" + status.reason + ")") +
                   " without running the sandbox" + tail;
    }
  }
  if (cancel_sent && !r.ok()) {
    if (stop_reason == "timeout") {
      r.outcome = sandbox::Outcome::kTimedOut;
      r.reason = "was stopped after its time limit of " +
                 std::to_string(static_cast<int>(step.timeout_seconds)) + " s (queue time in Slurm included)";
    } else {
      r.outcome = sandbox::Outcome::kCancelled;
      r.reason = "was cancelled";
    }
  }
  return r;
}

}  // namespace takt::pipeline
