// File: serving/runtime.h
//
// The serving workers of one endpoint variant (a loaded model version):
// replicas, dynamic batching, bounded queues and the autoscaler's arithmetic.
//
// A replica is an independent worker with a queue of its own. Submit puts a
// job (rows in, predictions out) on the least busy enabled replica; that
// replica scores it alone or with other queued jobs as one batch (up to
// max_batch_size rows, waiting at most max_batch_wait for a batch to fill).
// When a replica is idle and batching does not wait, the submitting thread
// scores the job itself (no hand-off to the worker): at low load a request
// costs no thread switch, at high load jobs queue while the replica is busy
// and the worker takes them as batches. A submitter that finds the replica
// idle but jobs queued (the worker woken, not yet running) queues its job
// behind them and scores batches until its own is done; then, like any
// submitter that scored, one more batch of the jobs that queued meanwhile
// before it lets the replica go (instead of waking the worker).
//
// Bounded: each replica queues at most queue_capacity jobs; when the least
// busy replica is full, Submit refuses at once (ResourceExhausted → 429)
// instead of queueing without limit. At zero replicas (scaled to zero) the
// first Submit starts one (a cold start, counted) and is queued on it.
//
// Scaling: Tick(now) samples the in-flight jobs (queued + scoring); the
// desired replica count is ceil(mean in-flight over the window /
// target_in_flight), clamped to [min, max]; scale-out waits
// scale_out_cooldown since the last change, scale-in scale_in_cooldown, one
// replica at a time. With scale_to_zero, no job for idle_to_zero brings the
// count to 0. A replica scaled in stops taking jobs, finishes its queue and
// its thread ends.
//
// Memory: each running replica holds the model's Scorer; the runtime itself
// does not. At zero replicas the scorer is released (freed, unless another
// holder has it), and the first replica of a cold start loads it again on its
// own thread (LoadedModel::Acquire) while its jobs wait in its queue.
//
// Thread safety: Submit from any number of threads; Tick from one thread (the
// autoscaler); Stop once. The model is immutable and shared by the replicas.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/result.h"

namespace takt::serving {

struct LoadedModel;
struct Scorer;
class VariantMetrics;

// How an endpoint runs its variants: from the endpoint settings the release
// config writes (`ParseRuntimeSettings`), defaults otherwise.
struct RuntimeSettings {
  int min_replicas = 1;
  int max_replicas = 1;
  double target_in_flight = 4;  // in-flight jobs per replica the autoscaler aims at
  bool scale_to_zero = false;
  std::chrono::milliseconds scale_out_cooldown{10'000};
  std::chrono::milliseconds scale_in_cooldown{60'000};
  std::chrono::milliseconds idle_to_zero{300'000};  // with scale_to_zero
  std::chrono::milliseconds window{10'000};         // in-flight samples averaged over this
  int max_batch_size = 32;                          // rows per scoring call; 1 = no batching
  std::chrono::microseconds max_batch_wait{0};      // 0: score what is queued, never wait
  int queue_capacity = 128;                         // jobs waiting per replica; more → 429
  int capture_percent = 0;
};

// Reads {"replicas":{min,max},"autoscaling":{target_in_flight,scale_to_zero,
// scale_out_cooldown_ms,scale_in_cooldown_ms,idle_to_zero_ms},"batching":
// {max_batch_size,max_wait_us},"queue":{capacity},"capture_percent"}; missing
// fields keep the defaults. InvalidArgument naming a field of the wrong type
// or range.
Result<RuntimeSettings> ParseRuntimeSettings(std::string_view settings_json);

// One request's work. The submitter owns it until `done` ran; `rows` (n x
// num_features) and `out` (n x num_outputs) stay valid until then.
struct Job {
  const float* rows = nullptr;
  size_t n = 0;
  float* out = nullptr;
  // Called exactly once, on a replica's thread or the submitter's, with the
  // scoring status and the number of rows of the batch it was scored in.
  std::function<void(Status, size_t batch_rows)> done;
  std::chrono::steady_clock::time_point enqueued{};
};

struct RuntimeStats {
  int replicas = 0;          // enabled replicas
  int desired = 0;           // what the autoscaler wants
  int in_flight = 0;         // jobs queued or being scored
  int queued = 0;            // jobs waiting in queues
  int64_t jobs = 0;          // admitted since start
  int64_t rejected = 0;      // refused: queues full
  int64_t batches = 0;       // scoring calls
  int64_t batched_rows = 0;  // rows scored in those calls
  int64_t cold_starts = 0;   // scale-ups from zero
  int64_t scale_events = 0;  // replica count changes
};

class VariantRuntime {
 public:
  using Clock = std::chrono::steady_clock;
  // Starts settings.min_replicas replicas (at least one unless scale_to_zero).
  // `metrics` (may be null) receives batch sizes, model time, replicas and
  // queue depth; it must outlive the runtime.
  VariantRuntime(std::shared_ptr<const LoadedModel> model, RuntimeSettings settings,
                 VariantMetrics* metrics = nullptr);
  ~VariantRuntime();  // Stop()
  VariantRuntime(const VariantRuntime&) = delete;
  VariantRuntime& operator=(const VariantRuntime&) = delete;

  const LoadedModel& model() const { return *model_; }
  const std::shared_ptr<const LoadedModel>& model_ptr() const { return model_; }
  const RuntimeSettings& settings() const { return settings_; }
  VariantMetrics* metrics() const { return metrics_; }

  // Admits `job` (Ok: `done` will run exactly once) or refuses it at once
  // (`done` never runs): ResourceExhausted when the queues are full,
  // Unavailable once stopped.
  Status Submit(Job* job);

  // One autoscaler step at `now` (called about every 250 ms).
  void Tick(Clock::time_point now);
  // Stops taking jobs, scores what is queued, joins the workers. Idempotent.
  void Stop();

  RuntimeStats Stats() const;
  // Replicas that hold the scorer now (0 at zero replicas: the model may be freed).
  int ReplicasHoldingModel() const;

 private:
  struct Replica {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Job*> queue;
    bool enabled = false;      // takes new jobs
    bool busy = false;         // a thread is scoring for it
    bool stop = false;         // the worker ends once the queue is empty
    bool running = false;      // the worker thread has not returned
    std::atomic<int> load{0};  // queued + busy, for the unlocked choice of a replica
    // Set while the worker runs (null until a cold start loaded it); never
    // reset while busy, so a scoring thread may use it unlocked.
    std::shared_ptr<const Scorer> scorer;
    std::thread thread;
  };

  void Work(Replica& r);
  // Scores `jobs` as one batch with `scorer` (null: fails them with
  // `missing`) and completes them.
  void Score(const Scorer* scorer, std::vector<Job*>& jobs, const Status& missing = Ok());
  // Moves the next batch (at most max_batch_size rows) off r's queue; r.mu held.
  void TakeBatch(Replica& r, std::vector<Job*>& batch);
  void SetReplicas(int count, Clock::time_point now);  // under control_mu_
  void Finished(size_t n_jobs);

  std::shared_ptr<const LoadedModel> model_;
  RuntimeSettings settings_;
  VariantMetrics* metrics_;
  std::vector<std::unique_ptr<Replica>> replicas_;  // max_replicas, fixed; [0, active_) enabled
  std::atomic<int> active_{0};
  std::atomic<int> in_flight_{0};
  std::atomic<int> queued_{0};
  std::atomic<bool> stopped_{false};
  std::atomic<int64_t> jobs_{0}, rejected_{0}, batches_{0}, batched_rows_{0}, cold_starts_{0},
      scale_events_{0};
  std::atomic<int64_t> last_job_ns_{0};  // steady clock, for idle_to_zero

  std::mutex control_mu_;  // replica count changes
  Clock::time_point last_change_{};
  std::deque<std::pair<Clock::time_point, int>> samples_;  // in-flight samples, Tick's thread only
  std::atomic<int> desired_{0};
};

}  // namespace takt::serving
