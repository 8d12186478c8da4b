// Orchestration overhead of takt's pipeline engine (local executor), next to
// peers measured in the same run on the same trivial job (/bin/true):
//   floor:    posix_spawn + waitpid of /bin/true
//   sandbox:  a bare sandbox::Run of /bin/true (minimal spec, and the spec a
//             command step builds: mounts, environment, disk quota, 1 CPU)
//   chain:    N `command: /bin/true` steps in a row → per-step time; engine
//             overhead = per-step time − bare sandbox time; the same chain
//             with cache hits, and a chain of `condition` steps (no sandbox)
//   fan-out:  one source, 198 parallel steps, one sink, with 2 and 4 slots,
//             next to a bare thread pool of the same size running the same
//             200 sandbox launches → makespan, pool utilisation
//   Slurm:    a throwaway single-node cluster (slurm::testing::Cluster):
//             sbatch of the same trivial job, submit → script start (the job
//             writes `date +%s.%N`) and submit → completion seen by squeue
// Medians of --repeat runs; wall times measured here (steady clock), per-step
// breakdowns from the engine's millisecond timestamps and log lines. Results
// go to --out (Markdown) and stdout. No timing is asserted.
//
//   build/bench/takt_pipeline_bench --chain 50 --repeat 5 --out bench/results/pipeline.md
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "blob/blob_store.h"
#include "catalog/catalog.h"
#include "core/temp_dir.h"
#include "core/time.h"
#include "crypto/keyring.h"
#include "events/events.h"
#include "iam/iam.h"
#include "pipeline/runs.h"
#include "pipeline/slurm_step.h"  // ExecSandboxJob, for the node side of executor: slurm
#include "registry/registry.h"
#include "sandbox/sandbox.h"
#include "slurm/slurm.h"
#include "slurm/testing_slurm.h"
#include "store/database.h"

extern char** environ;

namespace fs = std::filesystem;
using namespace takt;  // NOLINT

namespace {

double Steady() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double EpochSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
std::string Ms(double seconds) { return Fmt("%.1f", seconds * 1000); }

// "2026-11-24T18:30:00.123Z" → milliseconds since the epoch; -1 if not that form.
int64_t IsoMillis(const std::string& s) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &ms) != 7)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

std::string FirstLine(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char buf[512];
  std::string out = fgets(buf, sizeof buf, p) != nullptr ? buf : "";
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string MachineInfo() {
  std::string cpu;
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.starts_with("model name")) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  std::string mem;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);) {
    if (line.starts_with("MemTotal")) {
      mem = Fmt("%.1f GB", std::stod(line.substr(line.find(':') + 1)) / 1e6);
      break;
    }
  }
  std::string load;
  std::getline(std::ifstream("/proc/loadavg") >> std::ws, load);
  utsname u{};
  uname(&u);
  return "- CPU: " + cpu + ", " + std::to_string(std::thread::hardware_concurrency()) +
         " cores online; RAM " + mem + "\n- kernel: " + u.sysname + " " + u.release + "; " +
         FirstLine("bwrap --version 2>&1") + "; " + FirstLine("/usr/sbin/slurmctld -V 2>&1") +
         "\n- load average at the start: " + load +
         " (the box is shared; compare rows of the same run, not runs)\n- takt built RelWithDebInfo; SQLite "
         "store (WAL, synchronous=NORMAL)\n";
}

// --- peers without the engine ---------------------------------------------

double SpawnTrue() {
  const double t0 = Steady();
  pid_t pid;
  char arg0[] = "/bin/true";
  char* argv[] = {arg0, nullptr};
  if (posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return Steady() - t0;
}

// The sandbox spec a command step builds for `command: /bin/true` (runs in
// `root`, which gets the same folders).
sandbox::Spec CommandLikeSpec(const fs::path& root) {
  for (const char* d : {"code", "input/data", "input/config", "model", "output/data"})
    fs::create_directories(root / d);
  sandbox::Spec spec;
  spec.argv = {"/bin/true"};
  spec.env = {{"HOME", "/tmp"},
              {"LANG", "C.UTF-8"},
              {"PYTHONUNBUFFERED", "1"},
              {"PATH", "/usr/local/bin:/usr/bin:/bin"},
              {"TAKT_RUN_ID", "run-bench"},
              {"TAKT_STEP", "s"},
              {"TAKT_OUTPUT_DIR", "/opt/ml/output/data"},
              {"TAKT_MODEL_DIR", "/opt/ml/model"},
              {"SM_MODEL_DIR", "/opt/ml/model"},
              {"SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"},
              {"SM_OUTPUT_DIR", "/opt/ml/output"},
              {"SM_INPUT_DIR", "/opt/ml/input"},
              {"SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"},
              {"SM_HOSTS", "[\"algo-1\"]"},
              {"SM_CURRENT_HOST", "algo-1"},
              {"SM_NUM_CPUS", "1"},
              {"SM_NUM_GPUS", "0"},
              {"SM_MODULE_DIR", "/opt/ml/code"},
              {"SM_CHANNELS", "[]"},
              {"SM_HPS", "{}"},
              {"TAKT_HYPERPARAMETERS", "{}"}};
  spec.read_only = {{(root / "code").string(), "/opt/ml/code"}, {(root / "input").string(), "/opt/ml/input"}};
  spec.writable = {{(root / "model").string(), "/opt/ml/model"},
                   {(root / "output").string(), "/opt/ml/output"}};
  spec.cwd = "/opt/ml/code";
  spec.limits.disk_bytes = int64_t{10} << 30;
  spec.limits.cpus = 1;
  return spec;
}

double SandboxTrue(const sandbox::Spec& spec) {
  const double t0 = Steady();
  auto r = sandbox::Run(spec, [](std::string_view, std::string_view) {});
  const double t = Steady() - t0;
  if (!r || !r->ok()) {
    std::cerr << "bench: sandbox run failed: " << (r ? r->reason : r.error().ToString()) << "\n";
    return -1;
  }
  return t;
}

// `jobs` sandbox launches over `threads` threads: what a pool of that size
// does with no orchestration at all. Returns the makespan.
double BarePool(const fs::path& dir, int threads, int jobs) {
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  const double t0 = Steady();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const sandbox::Spec spec = CommandLikeSpec(dir / ("pool-" + std::to_string(t)));
      while (next.fetch_add(1) < jobs) SandboxTrue(spec);
    });
  }
  for (auto& th : pool) th.join();
  return Steady() - t0;
}

// --- the engine -------------------------------------------------------------

struct Timed {
  bool ok = false;
  double wall = 0;        // Submit → the driver reported the run finished (steady clock)
  int64_t submit_ms = 0;  // wall clock before Submit
  pipeline::Run run;      // with steps
  std::vector<pipeline::LogLine> logs;
};

class Takt {
 public:
  // With `slurm`, command steps may use `executor: slurm` on that cluster;
  // the node runs this binary's `internal sandbox-exec` (see main).
  Takt(const fs::path& dir, int slots, const slurm::testing::Cluster* slurm = nullptr) {
    fs::create_directories(dir);
    keyring_ = std::make_unique<crypto::Keyring>(crypto::Keyring::FromBytesForTest(std::string(32, 'p')));
    db_ = std::move(*store::OpenSqlite((dir / "takt.db").string()));
    blobs_ = std::move(*blob::BlobStore::Open(dir / "blobs", keyring_.get()));
    iam_ = std::make_unique<iam::IamService>(db_.get());
    IgnoreError(iam_->Migrate());
    IgnoreError(iam_->CreatePrincipal("bench", "user", {"data-scientist"}, {}));
    IgnoreError(iam_->CreateProject("bench", "", {"bench"}, "admin"));
    catalog_ = std::make_unique<catalog::CatalogService>(db_.get(), blobs_.get(), keyring_.get(), iam_.get());
    IgnoreError(catalog_->Migrate());
    bus_ = std::make_unique<events::EventBus>(db_.get());
    IgnoreError(bus_->Migrate());
    registry_ = std::make_unique<registry::RegistryService>(db_.get());
    IgnoreError(registry_->Migrate());
    pipeline::RunServiceOptions o;
    o.step_slots = slots;
    o.work_root = (dir / "work").string();
    if (slurm != nullptr) {
      o.slurm_conf = slurm->conf_path().string();
      o.slurm_partition = slurm->options().partition;
      o.step_exec = {fs::read_symlink("/proc/self/exe").string(), "internal", "sandbox-exec"};
    }
    runs_ = std::make_unique<pipeline::RunService>(db_.get(), blobs_.get(), catalog_.get(), registry_.get(),
                                                   iam_.get(), o);
    IgnoreError(runs_->Migrate());
    runs_->OnRunFinished([this](const std::string& id) {
      {
        std::lock_guard lock(mu_);
        finished_.insert(id);
      }
      cv_.notify_all();
    });
    runs_->Start(1);
  }
  ~Takt() { runs_->Stop(); }

  Timed Run(const std::string& yaml, bool no_cache, const std::map<std::string, std::string>& files = {}) {
    Timed t;
    pipeline::SubmitRequest req;
    req.yaml = yaml;
    req.principal = "bench";
    req.no_cache = no_cache;
    req.files = files;
    t.submit_ms = static_cast<int64_t>(EpochSeconds() * 1000);
    const double t0 = Steady();
    auto submitted = runs_->Submit(req);
    if (!submitted) {
      std::cerr << "bench: submit failed: " << submitted.error().ToString() << "\n";
      return t;
    }
    {
      std::unique_lock lock(mu_);
      if (!cv_.wait_for(lock, std::chrono::minutes(5), [&] { return finished_.contains(submitted->id); })) {
        std::cerr << "bench: run " << submitted->id << " did not finish in 5 minutes\n";
        return t;
      }
    }
    t.wall = Steady() - t0;
    auto run = runs_->Get(submitted->id);
    if (!run) return t;
    t.run = *run;
    if (auto logs = runs_->Logs(submitted->id, 0)) t.logs = *logs;
    t.ok = run->status == "succeeded";
    if (!t.ok) std::cerr << "bench: run " << run->id << " " << run->status << ": " << run->error << "\n";
    return t;
  }

  store::Database& db() { return *db_; }

 private:
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<blob::BlobStore> blobs_;
  std::unique_ptr<iam::IamService> iam_;
  std::unique_ptr<catalog::CatalogService> catalog_;
  std::unique_ptr<events::EventBus> bus_;
  std::unique_ptr<registry::RegistryService> registry_;
  std::unique_ptr<pipeline::RunService> runs_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> finished_;
};

// Submit → the driver picked the run up (runs.started_at), and the rest:
// picked up → reported finished. The pickup wait varies by up to 0.5 s (the
// run workers' poll), so per-step figures are computed from the rest.
double Pickup(const Timed& t) { return (IsoMillis(t.run.started_at) - t.submit_ms) / 1000.0; }
double Exec(const Timed& t) { return t.wall - Pickup(t); }

std::string StepName(int i) { return "s" + std::to_string(i); }

std::string ChainYaml(int n, const std::string& executor = "") {
  std::string y = "name: bench-chain\nproject: bench\nsteps:\n";
  for (int i = 0; i < n; ++i) {
    y += "  - name: " + StepName(i) + "\n    kind: command\n    command: /bin/true\n";
    if (!executor.empty()) y += "    executor: " + executor + "\n";
    if (i > 0) y += "    depends_on: [" + StepName(i - 1) + "]\n";
  }
  return y;
}

// One command step writing a metric, then n condition steps reading it; each
// condition gates the steps after it, so the conditions run one after another.
std::string ConditionChainYaml(int n) {
  std::string y =
      "name: bench-conditions\nproject: bench\nsteps:\n"
      "  - name: src\n    kind: command\n"
      "    command: ['/bin/sh', '-c', 'printf ''{\"x\": 1}'' > $TAKT_OUTPUT_DIR/metrics.json']\n";
  for (int i = 0; i < n; ++i) {
    y += "  - name: c" + std::to_string(i) + "\n    kind: condition\n    metrics: src.metrics\n" +
         "    expression: x >= 0\n";
  }
  return y;
}

std::string FanYaml(int width) {
  std::string y =
      "name: bench-fan\nproject: bench\nsteps:\n  - name: src\n    kind: command\n    command: /bin/true\n";
  std::string all;
  for (int i = 0; i < width; ++i) {
    const std::string n = "w" + std::to_string(i);
    y += "  - name: " + n + "\n    kind: command\n    command: /bin/true\n    depends_on: [src]\n";
    all += (all.empty() ? "" : ", ") + n;
  }
  y += "  - name: sink\n    kind: command\n    command: /bin/true\n    depends_on: [" + all + "]\n";
  return y;
}

// Per step: started (A), "$ …" logged just before sandbox::Run (B), "finished
// in X ms" logged just after (C, X), recorded succeeded (D). Milliseconds.
struct StepTimes {
  int64_t a = -1, b = -1, c = -1, d = -1;
  double sandbox_ms = -1;
};

std::map<std::string, StepTimes> TimesOf(const Timed& t) {
  std::map<std::string, StepTimes> out;
  for (const auto& s : t.run.steps) {
    out[s.name].a = IsoMillis(s.started_at);
    out[s.name].d = IsoMillis(s.finished_at);
  }
  for (const auto& l : t.logs) {
    if (!out.contains(l.step)) continue;
    StepTimes& st = out[l.step];
    if (l.line.starts_with("$ ")) st.b = IsoMillis(l.time);
    if (l.line.starts_with("finished in ")) {
      st.c = IsoMillis(l.time);
      st.sandbox_ms = std::stod(l.line.substr(12));
    }
  }
  return out;
}

// --- Slurm ------------------------------------------------------------------

struct SlurmFigures {
  std::string status;  // "" = measured; else why not
  double start_s = 0;
  std::vector<double> submit_call, to_start, to_done;
};

SlurmFigures MeasureSlurm(slurm::testing::Cluster& cluster, const fs::path& dir, int jobs) {
  SlurmFigures f;
  slurm::Client client(cluster.options());
  fs::create_directories(dir);
  for (int i = 0; i < jobs; ++i) {
    const fs::path stamp = dir / ("start-" + std::to_string(i));
    const fs::path script = dir / ("job-" + std::to_string(i) + ".sh");
    std::ofstream(script) << "#!/bin/bash\ndate +%s.%N > " << stamp.string() << "\n/bin/true\n";
    fs::permissions(script, fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
    slurm::JobSpec spec;
    spec.name = "bench-true-" + std::to_string(i);
    spec.script_path = script.string();
    spec.work_dir = dir.string();
    spec.stdout_path = (dir / ("job-" + std::to_string(i) + ".out")).string();
    spec.time_limit_minutes = 5;
    const double e0 = EpochSeconds(), t0 = Steady();
    auto id = client.Submit(spec);
    const double submitted = Steady() - t0;
    if (!id) {
      f.status = "sbatch failed: " + id.error().ToString();
      return f;
    }
    double done = -1;
    while (Steady() - t0 < 120) {
      auto st = client.Status(*id);
      if (st && st->finished()) {
        done = Steady() - t0;
        if (st->state != slurm::State::kCompleted) f.status = "job " + *id + " ended " + st->raw_state;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (done < 0) {
      f.status = "job " + *id + " did not finish within 2 minutes";
      return f;
    }
    std::ifstream in(stamp);
    double started = 0;
    if (!(in >> started)) {
      f.status = "job " + *id + " wrote no start time";
      return f;
    }
    f.submit_call.push_back(submitted);
    f.to_start.push_back(started - e0);
    f.to_done.push_back(done);
    std::cerr << "  slurm job " << *id << ": sbatch " << Ms(submitted) << " ms, start +" << Ms(started - e0)
              << " ms, done +" << Ms(done) << " ms\n";
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  // On a Slurm node, for the engine's `executor: slurm` steps: this binary
  // stands in for `takt internal sandbox-exec SPEC RESULT`.
  if (argc == 5 && std::string(argv[1]) == "internal" && std::string(argv[2]) == "sandbox-exec")
    return pipeline::ExecSandboxJob(argv[3], argv[4]);
  int chain = 50, repeat = 5, fan_repeat = 3, width = 198, slurm_jobs = 10, bare_n = 30, slurm_chain = 5;
  std::string out_path = "bench/results/pipeline.md";
  bool no_slurm = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : "0"; };
    if (a == "--chain")
      chain = std::max(2, std::stoi(next()));
    else if (a == "--repeat")
      repeat = std::max(1, std::stoi(next()));
    else if (a == "--fan-repeat")
      fan_repeat = std::max(1, std::stoi(next()));
    else if (a == "--width")
      width = std::max(1, std::stoi(next()));
    else if (a == "--slurm-jobs")
      slurm_jobs = std::max(1, std::stoi(next()));
    else if (a == "--no-slurm")
      no_slurm = true;
    else if (a == "--out")
      out_path = next();
    else {
      std::cerr << "usage: takt_pipeline_bench [--chain N] [--repeat N] [--fan-repeat N] [--width N] "
                   "[--slurm-jobs N] [--no-slurm] [--out FILE]\n";
      return 2;
    }
  }
  const double bench_start = Steady();
  if (auto ok = sandbox::Available(); !ok) {
    std::cerr << "bench: the sandbox is not usable here: " << ok.error().ToString() << "\n";
    return 1;
  }
  TempDir tmp("takt-pipeline-bench");
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  std::string report = "# Pipeline orchestration overhead (local executor, trivial step `/bin/true`)\n\n" +
                       MachineInfo() + "\n";

  // 1. Peers without the engine.
  std::cerr << "bench: bare launches of /bin/true ×" << bare_n << " …\n";
  std::vector<double> spawn, sb_min, sb_cmd, rm_used, rm_fresh;
  sandbox::Spec minimal;
  minimal.argv = {"/bin/true"};
  for (int i = 0; i < 3; ++i) SandboxTrue(CommandLikeSpec(tmp.path() / "warm"));  // warm the page cache
  auto timed_remove = [](const fs::path& dir) {
    const double t0 = Steady();
    std::error_code ec;
    fs::remove_all(dir, ec);
    return Steady() - t0;
  };
  for (int i = 0; i < bare_n; ++i) {
    spawn.push_back(SpawnTrue());
    sb_min.push_back(SandboxTrue(minimal));
    // A fresh work dir each time, removed afterwards as the command step does;
    // and, for comparison, the same folders never shown to a sandbox.
    const fs::path used = tmp.path() / ("bare-" + std::to_string(i));
    sb_cmd.push_back(SandboxTrue(CommandLikeSpec(used)));
    rm_used.push_back(timed_remove(used));
    const fs::path fresh = tmp.path() / ("fresh-" + std::to_string(i));
    CommandLikeSpec(fresh);
    rm_fresh.push_back(timed_remove(fresh));
  }
  const double bare = Median(sb_cmd);
  std::map<int, std::vector<double>> pool;
  for (int r = 0; r < fan_repeat; ++r)
    for (int slots : {2, 4}) pool[slots].push_back(BarePool(tmp.path() / "pool", slots, width + 2));

  // 2. Chains (one engine, 2 slots; the scenarios interleaved per repetition).
  std::cerr << "bench: chains of " << chain << " steps ×" << repeat << " …\n";
  std::vector<double> one, many, cached_one, cached_many, conds, pickup;
  std::vector<double> br_prep, br_sandbox, br_after_sandbox, br_record, br_next, br_cycle, br_x;
  std::vector<double> cond_held, hit_held;
  int cond_stalls = 0, hit_stalls = 0;
  std::vector<double> one_to_sandbox, one_to_done, one_pickup_to_sandbox, db_insert, db_tx;
  {
    Takt takt(tmp.path() / "chain", 2);
    takt.Run(ChainYaml(2), false);  // warm-up, and fills the step cache
    for (int r = 0; r < repeat; ++r) {
      Timed t1 = takt.Run(ChainYaml(1), true);
      Timed tn = takt.Run(ChainYaml(chain), true);
      Timed c1 = takt.Run(ChainYaml(1), false);
      Timed cn = takt.Run(ChainYaml(chain), false);
      Timed cc = takt.Run(ConditionChainYaml(chain), true);
      if (!t1.ok || !tn.ok || !c1.ok || !cn.ok || !cc.ok) return 1;
      one.push_back(Exec(t1));
      many.push_back(Exec(tn));
      cached_one.push_back(Exec(c1));
      cached_many.push_back(Exec(cn));
      conds.push_back(Exec(cc));
      for (const Timed* t : {&t1, &tn, &c1, &cn, &cc}) pickup.push_back(Pickup(*t));
      auto s1 = TimesOf(t1)[StepName(0)];
      one_to_sandbox.push_back((s1.b - t1.submit_ms) / 1000.0);
      one_pickup_to_sandbox.push_back((s1.b - IsoMillis(t1.run.started_at)) / 1000.0);
      one_to_done.push_back(t1.wall);
      // Steps without a sandbox: how long the driver took to notice each one.
      for (auto [t, held, stalls] :
           {std::tuple{&cc, &cond_held, &cond_stalls}, {&cn, &hit_held, &hit_stalls}}) {
        for (const auto& [name, st] : TimesOf(*t)) {
          if (name == "src" || st.a < 0 || st.d < 0) continue;
          held->push_back((st.d - st.a) / 1000.0);
          *stalls += st.d - st.a >= 90;
        }
      }
      auto times = TimesOf(tn);
      for (int i = 0; i < chain; ++i) {
        const StepTimes& s = times[StepName(i)];
        br_prep.push_back((s.b - s.a) / 1000.0);
        br_sandbox.push_back((s.c - s.b) / 1000.0);
        br_x.push_back(s.sandbox_ms / 1000.0);
        br_after_sandbox.push_back((s.c - s.b - s.sandbox_ms) / 1000.0);
        br_record.push_back((s.d - s.c) / 1000.0);
        if (i + 1 < chain) {
          const StepTimes& nx = times[StepName(i + 1)];
          br_next.push_back((nx.a - s.d) / 1000.0);
          br_cycle.push_back((nx.a - s.a) / 1000.0);
        }
      }
      std::cerr << "  rep " << r + 1 << " (picked up → finished): 1 step " << Ms(Exec(t1)) << " ms, " << chain
                << " steps " << Ms(Exec(tn)) << " ms, cached " << Ms(Exec(cn)) << " ms, conditions "
                << Ms(Exec(cc)) << " ms\n";
    }
    // The engine's writes, alone, on the same database: a log line
    // (RunService::Log) and a step's success transaction (lineage edge,
    // run_steps update, step_cache row).
    for (int i = 0; i < 100; ++i) {
      const std::string k = std::to_string(i);
      double t0 = Steady();
      IgnoreError(takt.db().Exec("INSERT INTO run_logs (run_id, time, step, line) VALUES (?, ?, ?, ?)",
                                 {std::string("run-probe"), NowIso(), std::string("s"), "probe line " + k}));
      db_insert.push_back(Steady() - t0);
      t0 = Steady();
      IgnoreError(takt.db().Transaction([&](store::Database& tx) -> Status {
        TAKT_RETURN_IF_ERROR(tx.Exec(
            "INSERT INTO lineage_edges (from_node, to_node, relation, label, time) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            {"run:run-probe", "artifact:" + k, std::string("wrote"), std::string("s/output"), NowIso()}));
        TAKT_RETURN_IF_ERROR(tx.Exec(
            "UPDATE run_steps SET status = 'succeeded', finished_at = ? WHERE run_id = ? AND name = ?",
            {NowIso(), std::string("run-probe"), std::string("s")}));
        TAKT_RETURN_IF_ERROR(tx.Exec(
            "INSERT INTO step_cache (cache_key, run_id, step, outputs_json, metrics_json, created_at) VALUES "
            "(?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            {"probe-" + k, std::string("run-probe"), std::string("s"), std::string("{}"), std::string("{}"),
             NowIso()}));
        return Ok();
      }));
      db_tx.push_back(Steady() - t0);
    }
  }
  const double per_step_total = Median(many) / chain;
  std::vector<double> slopes, cached_slopes, cond_slopes;
  for (int r = 0; r < repeat; ++r) {
    slopes.push_back((many[r] - one[r]) / (chain - 1));
    cached_slopes.push_back((cached_many[r] - cached_one[r]) / (chain - 1));
    cond_slopes.push_back((conds[r] - one[r]) / chain);
  }
  const double per_step = Median(slopes);
  const double overhead = per_step - bare;

  // 3. Fan-out / fan-in.
  struct Fan {
    std::vector<double> wall, makespan, occupancy, sandbox_busy, useful, max_conc;
  };
  std::map<int, Fan> fan;
  for (int slots : {2, 4}) {
    std::cerr << "bench: fan-out of " << width << " with " << slots << " slots ×" << fan_repeat << " …\n";
    Takt takt(tmp.path() / ("fan-" + std::to_string(slots)), slots);
    for (int r = 0; r < fan_repeat; ++r) {
      Timed t = takt.Run(FanYaml(width), true);
      if (!t.ok) return 1;
      auto times = TimesOf(t);
      int64_t first = INT64_MAX, last = 0;
      double busy = 0, sandbox_busy = 0;
      std::vector<std::pair<int64_t, int>> edges;
      for (const auto& [name, s] : times) {
        first = std::min(first, s.a);
        last = std::max(last, s.d);
        busy += (s.d - s.a) / 1000.0;
        sandbox_busy += s.sandbox_ms / 1000.0;
        edges.push_back({s.a, +1});
        edges.push_back({s.d, -1});
      }
      std::sort(edges.begin(), edges.end());  // ends before starts at the same millisecond
      int conc = 0, peak = 0;
      for (const auto& e : edges) peak = std::max(peak, conc += e.second);
      const double makespan = (last - first) / 1000.0;
      const double cap = slots * makespan;
      Fan& f = fan[slots];
      f.wall.push_back(t.wall);
      f.makespan.push_back(makespan);
      f.occupancy.push_back(busy / cap);
      f.sandbox_busy.push_back(sandbox_busy / cap);
      f.useful.push_back((width + 2) * bare / cap);
      f.max_conc.push_back(peak);
      std::cerr << "  rep " << r + 1 << ": wall " << Ms(t.wall) << " ms, makespan " << Ms(makespan)
                << " ms, slot occupancy " << Fmt("%.0f%%", 100 * busy / cap) << ", peak " << peak << "\n";
    }
  }

  // 4. Slurm.
  SlurmFigures sl;
  std::string slurm_exec = "not measured";
  if (no_slurm) {
    sl.status = "skipped (--no-slurm)";
  } else {
    std::cerr << "bench: starting a single-node Slurm cluster …\n";
    const double c0 = Steady();
    auto cluster = slurm::testing::Cluster::Start();
    if (!cluster) {
      sl.status = "the test cluster did not start: " + cluster.error().ToString();
    } else {
      const double started = Steady() - c0;
      sl = MeasureSlurm(**cluster, tmp.path() / "slurm-jobs", slurm_jobs);
      sl.start_s = started;
      // The engine's Slurm executor, if it dispatches `executor: slurm` steps.
      Takt takt(tmp.path() / "slurm-exec", 2, cluster->get());
      std::cerr << "bench: chains of " << slurm_chain << " `executor: slurm` steps …\n";
      std::vector<double> s1, sn;
      int dispatched = 0;
      for (int r = 0; r < 2 && slurm_exec == "not measured"; ++r) {
        Timed t1 = takt.Run(ChainYaml(1, "slurm"), true);
        Timed tn = takt.Run(ChainYaml(slurm_chain, "slurm"), true);
        if (auto rows = takt.db().Query("SELECT COUNT(*) FROM run_steps WHERE run_id = ? AND job_id <> ''",
                                        {tn.run.id});
            rows && !rows->empty())
          dispatched = static_cast<int>(rows->front().Int(0));
        if (!t1.ok || !tn.ok) {
          slurm_exec = "a chain of `executor: slurm` steps did not succeed (" + tn.run.status + ": " +
                       (t1.ok ? tn.run.error : t1.run.error) + ")";
        } else if (dispatched == 0) {
          slurm_exec =
              "not measured: the engine ran the `executor: slurm` steps locally (no Slurm job id recorded)";
        }
        s1.push_back(Exec(t1));
        sn.push_back(Exec(tn));
        std::cerr << "  rep " << r + 1 << " (picked up → finished): 1 step " << Ms(Exec(t1)) << " ms, "
                  << slurm_chain << " steps " << Ms(Exec(tn)) << " ms\n";
      }
      if (slurm_exec == "not measured") {
        const double per =
            Median(std::vector<double>{(sn[0] - s1[0]), (sn.back() - s1.back())}) / (slurm_chain - 1);
        slurm_exec = "a chain of " + std::to_string(slurm_chain) + " steps, each a Slurm job (" +
                     std::to_string(dispatched) + " job ids recorded), median of " +
                     std::to_string(sn.size()) + " runs: **" + Ms(per) + " ms per step** ((" +
                     std::to_string(slurm_chain) + "-step − 1-step) / " + std::to_string(slurm_chain - 1) +
                     "); 1-step run " + Ms(Median(s1)) + " ms picked up → finished; " +
                     Fmt("%.1f×", per / Median(sl.to_done)) + " a bare sbatch job's submit → completion";
      }
    }
    std::cerr << "  slurm executor: " << slurm_exec << "\n";
  }

  // The report.
  auto row = [](const std::string& what, double s, const std::string& note) {
    return "| " + what + " | " + Ms(s) + " | " + note + " |\n";
  };
  const double sm = Median(sb_min);
  report += "## Bare launches (no engine), median of " + std::to_string(bare_n) +
            "\n\n| launch of /bin/true | median ms | note |\n|---|---|---|\n" +
            row("posix_spawn + waitpid", Median(spawn), "the floor") +
            row("sandbox::Run, minimal spec", sm, Fmt("%.0f× the floor", sm / Median(spawn))) +
            row("sandbox::Run, a command step's spec", bare,
                "mounts, 21 env vars, 10 GiB disk quota, 1 CPU — **bare step time** below") +
            "\n| around a launch | median ms | note |\n|---|---|---|\n" +
            row("remove_all of the step's work dir after the sandbox used it", Median(rm_used),
                "what RunCommand does at its end (7 folders)") +
            row("remove_all of the same folders never mounted", Median(rm_fresh), "") +
            row("SQLite: one autocommit INSERT (a log line)", Median(db_insert),
                "RunService::Log; 3 per command step (2 log lines + the `running` update)") +
            row("SQLite: a step's success transaction (3 statements)", Median(db_tx), "1 per step") +
            row("⇒ the engine's database writes per command step", 3 * Median(db_insert) + Median(db_tx),
                "estimate: 3 × INSERT + 1 transaction");

  const std::string n = std::to_string(chain);
  report +=
      "\n## Chain of " + n + " trivial steps, 2 slots, median of " + std::to_string(repeat) +
      " runs\n\n| measure | median ms | note |\n|---|---|---|\n" +
      row("run submitted → picked up by a run worker", Median(pickup),
          "runs.started_at − submit; RunService::Start's 500 ms poll") +
      row("1-step run: picked up → finished", Median(one), "fixed cost of a run, incl. one step") +
      row(n + "-step run: picked up → finished", Median(many), "") +
      row("total per step (" + n + "-step run / " + n + ")", per_step_total, "") +
      row("**per step** ((" + n + "-step − 1-step) / " + std::to_string(chain - 1) + ")", per_step,
          Fmt("%.1f× the bare step time", per_step / bare)) +
      row("**engine overhead per step** (per step − bare step)", overhead,
          overhead < 0.020 ? "goal < 20 ms: **met**" : "goal < 20 ms: **not met**") +
      row("per step, cache hits (same chain, cache on)", Median(cached_slopes),
          "no sandbox: the engine alone") +
      row("per step, `condition` steps (built-in, near-zero work)", Median(cond_slopes),
          "no sandbox: the engine alone") +
      row("  cache-hit step: started → recorded", Median(hit_held),
          std::to_string(hit_stalls) + " of " + std::to_string(hit_held.size()) +
              " took ≥ 90 ms (the driver missed the step's wakeup and slept its 100 ms wait_for)") +
      row("  condition step: started → recorded", Median(cond_held),
          std::to_string(cond_stalls) + " of " + std::to_string(cond_held.size()) + " took ≥ 90 ms (same)") +
      "\nWhere a chain step's time goes (medians over " + std::to_string(repeat * chain) +
      " steps; from the steps' started_at/finished_at and their log lines, millisecond stamps):\n\n"
      "| phase | median ms | code |\n|---|---|---|\n" +
      row("started → `$ …` logged (work dir, cache key, folders)", Median(br_prep),
          "runs.cc launch + command_step.cc RunCommand up to sandbox::Run") +
      row("`$ …` → `finished in …` logged", Median(br_sandbox), "sandbox::Run + watcher join") +
      row("  of which sandbox::Run's own wall time", Median(br_x), "sandbox.cc") +
      row("  of which after sandbox::Run returned", Median(br_after_sandbox),
          "command_step.cc: `watcher.join()` (its 100 ms sleep loop)") +
      row("`finished in …` → recorded succeeded", Median(br_record),
          "StoreTree, remove_all; driver wakeup; success transaction") +
      row("recorded → next step started", Median(br_next), "driver loop: join, slots, next launch") +
      row("step start → next step start", Median(br_cycle), "the whole cycle");

  report += "\n## Fan-out/fan-in: 1 source, " + std::to_string(width) + " parallel steps, 1 sink (" +
            std::to_string(width + 2) + " steps), median of " + std::to_string(fan_repeat) +
            " runs\n\n"
            "| slots | takt makespan ms | bare pool makespan ms | takt / bare pool | ideal ms (steps × bare "
            "/ slots) | "
            "useful utilisation | slot occupancy | sandbox busy | peak running | submit → finished ms |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n";
  for (int slots : {2, 4}) {
    const Fan& f = fan[slots];
    const double ideal = (width + 2) * bare / slots;
    report += "| " + std::to_string(slots) + " | " + Ms(Median(f.makespan)) + " | " +
              Ms(Median(pool[slots])) + " | " + Fmt("%.1f×", Median(f.makespan) / Median(pool[slots])) +
              " | " + Ms(ideal) + " | " + Fmt("%.0f%%", 100 * Median(f.useful)) + " | " +
              Fmt("%.0f%%", 100 * Median(f.occupancy)) + " | " + Fmt("%.0f%%", 100 * Median(f.sandbox_busy)) +
              " | " + Fmt("%.0f", Median(f.max_conc)) + " | " + Ms(Median(f.wall)) + " |\n";
  }
  report +=
      "\nmakespan = first step started → last step recorded (step stamps). useful utilisation = steps × bare "
      "step time / (slots × makespan); slot occupancy = Σ (finished_at − started_at) / (slots × makespan); "
      "sandbox busy = Σ sandbox::Run wall time (from each step's `finished in` log line) / (slots × "
      "makespan). "
      "bare pool = the same " +
      std::to_string(width + 2) + " sandbox launches on a plain pool of `slots` threads. This machine has " +
      std::to_string(cores) + " cores, so 4 slots cannot beat the 2-core bound of steps × bare / 2.\n";

  report += "\n## Slurm, the same trivial job (sbatch of a bash script running /bin/true)\n\n";
  if (!sl.status.empty() && sl.to_start.empty()) {
    report += "Not measured: " + sl.status + "\n";
  } else {
    const double takt_start = Median(one_to_sandbox), takt_done = Median(one_to_done);
    const double takt_start_np = Median(one_pickup_to_sandbox), takt_done_np = Median(one);
    auto line = [](const std::string& what, double slurm, double takt, double takt_np) {
      return "| " + what + " | " + Ms(slurm) + " | " + Ms(takt) + " | " + Ms(takt_np) + " | " +
             Fmt("%.1f×", slurm / takt) + " | " + Fmt("%.0f×", slurm / std::max(takt_np, 1e-4)) + " |\n";
    };
    report +=
        "Median of " + std::to_string(sl.to_start.size()) + " jobs submitted one after another" +
        (sl.status.empty() ? "" : " (" + sl.status + ")") +
        "; completion seen by polling squeue every 20 ms; the cluster started in " + Fmt("%.2f", sl.start_s) +
        " s.\n\n| measure | Slurm ms | takt 1-step run ms | takt without the pickup wait ms | Slurm / takt "
        "| Slurm / takt without the wait |\n|---|---|---|---|---|---|\n" +
        line("submit → the job's program starts", Median(sl.to_start), takt_start, takt_start_np) +
        line("submit → completion seen", Median(sl.to_done), takt_done, takt_done_np) +
        "| the sbatch call itself | " + Ms(Median(sl.submit_call)) + " | - | - | - | - |\n" +
        "\ntakt's \"starts\" = Submit → the step's `$ …` log line (just before sandbox::Run); \"completion\" "
        "= "
        "Submit → the run reported finished.\n";
  }
  report += "\nEngine `executor: slurm`: " + slurm_exec + ".\n";

  report += "\n## Goals (issue 4)\n\n- engine overhead per step < 20 ms locally: " +
            std::string(overhead < 0.020 ? "**met**" : "**not met**") + " (" + Ms(overhead) + " ms; " +
            Ms(per_step) + " ms per step against a bare sandbox launch of " + Ms(bare) + " ms)\n" +
            "- full use of the worker pool (200-step fan-out): useful utilisation " +
            Fmt("%.0f%%", 100 * Median(fan[2].useful)) + " with 2 slots, " +
            Fmt("%.0f%%", 100 * Median(fan[4].useful)) + " with 4; slot occupancy " +
            Fmt("%.0f%%", 100 * Median(fan[2].occupancy)) + " / " +
            Fmt("%.0f%%", 100 * Median(fan[4].occupancy)) + "; makespan " +
            Fmt("%.1f×", Median(fan[2].makespan) / Median(pool[2])) + " / " +
            Fmt("%.1f×", Median(fan[4].makespan) / Median(pool[4])) + " a bare pool's\n" +
            "\nWhole benchmark: " + Fmt("%.0f", Steady() - bench_start) + " s; load average at the end: " +
            [] {
              std::string l;
              std::getline(std::ifstream("/proc/loadavg") >> std::ws, l);
              return l;
            }() +
            ".\n";

  std::cout << report;
  fs::create_directories(fs::path(out_path).parent_path().empty() ? "." : fs::path(out_path).parent_path());
  std::ofstream(out_path) << report;
  return 0;
}
