#include "serving/runtime.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/json.h"
#include "core/posix.h"
#include "serving/metrics.h"
#include "serving/serving.h"

namespace takt::serving {
namespace {

int64_t Nanos(VariantRuntime::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

Result<double> NumberAt(const Json& obj, const char* key, std::string_view where, double lo, double hi,
                        double fallback) {
  if (!obj.contains(key)) return fallback;
  const Json& v = obj[key];
  if (!v.is_number()) return InvalidArgument(std::string(where) + "." + key + ": expected a number");
  double d = v.get<double>();
  if (!(d >= lo && d <= hi)) {
    return InvalidArgument(std::string(where) + "." + key + ": " + v.dump() + " is not between " +
                           Json(lo).dump() + " and " + Json(hi).dump());
  }
  return d;
}

}  // namespace

Result<RuntimeSettings> ParseRuntimeSettings(std::string_view settings_json) {
  RuntimeSettings s;
  if (settings_json.empty()) return s;
  TAKT_ASSIGN_OR_RETURN(Json j, ParseJson(settings_json, "endpoint settings"));
  if (!j.is_object()) return InvalidArgument("endpoint settings: expected an object");
  auto object = [&](const char* key) -> Result<Json> {
    if (!j.contains(key)) return Json::object();
    if (!j[key].is_object())
      return InvalidArgument(std::string("endpoint settings.") + key + ": expected an object");
    return j[key];
  };
  TAKT_ASSIGN_OR_RETURN(Json replicas, object("replicas"));
  TAKT_ASSIGN_OR_RETURN(Json scaling, object("autoscaling"));
  TAKT_ASSIGN_OR_RETURN(Json batching, object("batching"));
  TAKT_ASSIGN_OR_RETURN(Json queue, object("queue"));
  TAKT_ASSIGN_OR_RETURN(double min_r, NumberAt(replicas, "min", "replicas", 0, 256, s.min_replicas));
  TAKT_ASSIGN_OR_RETURN(double max_r, NumberAt(replicas, "max", "replicas", 1, 256, s.max_replicas));
  TAKT_ASSIGN_OR_RETURN(s.target_in_flight,
                        NumberAt(scaling, "target_in_flight", "autoscaling", 0.1, 10000, s.target_in_flight));
  if (scaling.contains("scale_to_zero")) {
    if (!scaling["scale_to_zero"].is_boolean())
      return InvalidArgument("autoscaling.scale_to_zero: expected true or false");
    s.scale_to_zero = scaling["scale_to_zero"].get<bool>();
  }
  auto ms = [&](const char* key, std::chrono::milliseconds fallback) -> Result<std::chrono::milliseconds> {
    TAKT_ASSIGN_OR_RETURN(double v, NumberAt(scaling, key, "autoscaling", 0, 7 * 86400e3,
                                             static_cast<double>(fallback.count())));
    return std::chrono::milliseconds(static_cast<int64_t>(v));
  };
  TAKT_ASSIGN_OR_RETURN(s.scale_out_cooldown, ms("scale_out_cooldown_ms", s.scale_out_cooldown));
  TAKT_ASSIGN_OR_RETURN(s.scale_in_cooldown, ms("scale_in_cooldown_ms", s.scale_in_cooldown));
  TAKT_ASSIGN_OR_RETURN(s.idle_to_zero, ms("idle_to_zero_ms", s.idle_to_zero));
  TAKT_ASSIGN_OR_RETURN(s.window, ms("window_ms", s.window));
  TAKT_ASSIGN_OR_RETURN(double batch,
                        NumberAt(batching, "max_batch_size", "batching", 1, 4096, s.max_batch_size));
  TAKT_ASSIGN_OR_RETURN(double wait_us, NumberAt(batching, "max_wait_us", "batching", 0, 1e6, 0));
  TAKT_ASSIGN_OR_RETURN(double capacity, NumberAt(queue, "capacity", "queue", 1, 1e6, s.queue_capacity));
  TAKT_ASSIGN_OR_RETURN(double capture, NumberAt(j, "capture_percent", "endpoint settings", 0, 100, 0));
  s.min_replicas = static_cast<int>(min_r);
  s.max_replicas = std::max(static_cast<int>(max_r), std::max(s.min_replicas, 1));
  s.max_batch_size = static_cast<int>(batch);
  s.max_batch_wait = std::chrono::microseconds(static_cast<int64_t>(wait_us));
  s.queue_capacity = static_cast<int>(capacity);
  s.capture_percent = static_cast<int>(capture);
  if (s.min_replicas == 0 && !s.scale_to_zero) s.min_replicas = 1;
  return s;
}

VariantRuntime::VariantRuntime(std::shared_ptr<const LoadedModel> model, RuntimeSettings settings,
                               VariantMetrics* metrics)
    : model_(std::move(model)), settings_(settings), metrics_(metrics) {
  settings_.max_replicas = std::max(settings_.max_replicas, std::max(settings_.min_replicas, 1));
  replicas_.reserve(static_cast<size_t>(settings_.max_replicas));
  for (int i = 0; i < settings_.max_replicas; ++i) replicas_.push_back(std::make_unique<Replica>());
  last_job_ns_ = Nanos(Clock::now());
  std::lock_guard lock(control_mu_);
  SetReplicas(settings_.min_replicas, Clock::now());
  desired_ = settings_.min_replicas;
}

VariantRuntime::~VariantRuntime() { Stop(); }

void VariantRuntime::SetReplicas(int count, Clock::time_point now) {
  count = std::clamp(count, 0, settings_.max_replicas);
  int current = active_.load();
  for (int i = current; i < count; ++i) {  // scale out: enable (and start) replicas
    Replica& r = *replicas_[static_cast<size_t>(i)];
    std::unique_lock lock(r.mu);
    r.enabled = true;
    r.stop = false;
    if (!r.running) {
      if (r.thread.joinable()) {
        lock.unlock();
        r.thread.join();
        lock.lock();
      }
      r.running = true;
      // The model in memory if someone holds it; else the worker loads it.
      if (!r.scorer) r.scorer = model_->Resident();
      r.thread = std::thread([this, &r] {
        SetThreadName("takt-replica");
        Work(r);
      });
    }
  }
  for (int i = current; i-- > count;) {  // scale in: stop taking jobs, drain, end the thread
    Replica& r = *replicas_[static_cast<size_t>(i)];
    std::unique_lock lock(r.mu);
    r.enabled = false;
    r.stop = true;
    r.cv.notify_all();
  }
  active_ = count;
  if (metrics_) metrics_->SetReplicas(count);
  if (count != current) {
    last_change_ = now;
    ++scale_events_;
    if (current > 0 || count > 0) spdlog::debug("{} replicas {} → {}", model_->variant, current, count);
  }
  // Threads of replicas scaled in end once their queue is empty; reap them.
  for (int i = count; i < settings_.max_replicas; ++i) {
    Replica& r = *replicas_[static_cast<size_t>(i)];
    bool done = false;
    {
      std::lock_guard lock(r.mu);
      done = !r.running;
    }
    if (done && r.thread.joinable()) r.thread.join();
  }
}

Status VariantRuntime::Submit(Job* job) {
  if (stopped_.load(std::memory_order_acquire)) return Unavailable(model_->variant + " is stopping");
  job->enqueued = Clock::now();
  last_job_ns_.store(Nanos(job->enqueued), std::memory_order_relaxed);
  for (int attempt = 0; attempt < 3; ++attempt) {
    int active = active_.load(std::memory_order_acquire);
    if (active == 0) {
      // Scaled to zero: this job starts a replica.
      std::lock_guard lock(control_mu_);
      if (stopped_) return Unavailable(model_->variant + " is stopping");
      if (active_.load() == 0) {
        SetReplicas(1, job->enqueued);
        desired_ = std::max(desired_.load(), 1);
        ++cold_starts_;
      }
      continue;
    }
    // The least busy of (at most) two replicas: cheap and close to the best.
    Replica* best = replicas_[0].get();
    if (active > 1) {
      static thread_local uint32_t seed =
          0x9e3779b9u ^ static_cast<uint32_t>(reinterpret_cast<uintptr_t>(&seed));
      seed = seed * 1664525u + 1013904223u;
      Replica* a = replicas_[(seed >> 8) % static_cast<uint32_t>(active)].get();
      Replica* b = replicas_[(seed >> 20) % static_cast<uint32_t>(active)].get();
      // Unlocked peeks; the choice is re-checked under the lock below.
      best = a->load.load(std::memory_order_relaxed) <= b->load.load(std::memory_order_relaxed) ? a : b;
    }
    std::unique_lock lock(best->mu);
    if (!best->enabled) continue;  // scaled in meanwhile
    if (best->queue.size() >= static_cast<size_t>(settings_.queue_capacity)) {
      ++rejected_;
      return ResourceExhausted(model_->variant + " is saturated: " + std::to_string(active) +
                               " replica(s) with " + std::to_string(settings_.queue_capacity) +
                               " queued requests each; retry later");
    }
    ++jobs_;
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    if (metrics_) metrics_->AddInFlight(1);
    if (!best->busy && best->scorer && settings_.max_batch_wait.count() == 0) {
      // Idle replica, no batch to wait for: score here, on the caller's
      // thread. Jobs already queued (the worker was woken for them but has
      // not run yet) go first, in this thread's batches: waking the worker
      // for them costs a thread switch, more than the model on a busy machine.
      best->busy = true;
      best->load.fetch_add(1, std::memory_order_relaxed);
      const bool behind = !best->queue.empty();
      if (behind) {
        best->queue.push_back(job);
        queued_.fetch_add(1, std::memory_order_relaxed);
      }
      const Scorer* scorer = best->scorer.get();  // not reset while busy
      // The thread's batch vector keeps its capacity (no allocation per
      // request); a nested Submit from a job's callback gets a fresh one.
      thread_local std::vector<Job*> reused;
      thread_local bool reused_taken = false;
      std::vector<Job*> fresh;
      const bool mine = !reused_taken;
      std::vector<Job*>& batch = mine ? reused : fresh;
      reused_taken = true;
      struct Release {
        bool mine;
        ~Release() {
          if (mine) reused_taken = false;
        }
      } release{mine};
      size_t done = 0;
      if (!behind) {
        lock.unlock();
        batch.assign(1, job);
        Score(scorer, batch);
        lock.lock();
        best->load.fetch_sub(1, std::memory_order_relaxed);
        done = 1;
      }
      // Batches off the queue: up to and including this thread's own job if
      // it queued behind others, then one more of the jobs that queued while
      // it scored, before it lets the replica go.
      bool pending = behind;
      int more = 1;
      while (!best->queue.empty() && (pending || more-- > 0)) {
        TakeBatch(*best, batch);
        if (pending && std::find(batch.begin(), batch.end(), job) != batch.end()) pending = false;
        lock.unlock();
        Score(scorer, batch);  // `job` may be gone after this
        lock.lock();
        best->load.fetch_sub(static_cast<int>(batch.size()), std::memory_order_relaxed);
        done += batch.size();
      }
      best->busy = false;
      if (!best->queue.empty() || best->stop) best->cv.notify_one();
      lock.unlock();
      Finished(done);  // last: a retired runtime is stopped only once nothing is in flight
      return Ok();
    }
    best->queue.push_back(job);
    best->load.fetch_add(1, std::memory_order_relaxed);
    queued_.fetch_add(1, std::memory_order_relaxed);
    if (!best->busy) best->cv.notify_one();
    return Ok();
  }
  ++rejected_;
  return Unavailable(model_->variant + " has no replica taking requests; retry");
}

void VariantRuntime::Work(Replica& r) {
  std::vector<Job*> batch;
  const size_t max_batch = static_cast<size_t>(std::max(1, settings_.max_batch_size));
  std::unique_lock lock(r.mu);
  Status missing = Ok();
  for (;;) {
    r.cv.wait(lock, [&] { return (!r.queue.empty() && !r.busy) || (r.stop && r.queue.empty() && !r.busy); });
    if (r.queue.empty()) {  // stopped and drained
      r.running = false;
      r.scorer.reset();  // the last replica to end frees the model
      return;
    }
    if (!r.scorer) {
      // A cold start: load the model here, not on the submitting thread. Jobs
      // wait in the queue meanwhile (the submitters' fast path needs a scorer).
      r.busy = true;
      lock.unlock();
      auto scorer = model_->Acquire();
      lock.lock();
      r.busy = false;
      if (scorer) {
        r.scorer = std::move(*scorer);
        missing = Ok();
      } else {
        missing = std::unexpected(scorer.error());
        spdlog::error("{}: {}", model_->variant, scorer.error().ToString());
      }
    }
    if (settings_.max_batch_wait.count() > 0 && r.queue.size() < max_batch && !r.stop) {
      // Let a batch fill, up to max_batch_wait after its first job arrived.
      auto deadline = r.queue.front()->enqueued + settings_.max_batch_wait;
      r.cv.wait_until(lock, deadline, [&] { return r.queue.size() >= max_batch || r.stop; });
      if (r.busy) continue;  // the submitter's fast path took the replica meanwhile
    }
    if (r.queue.empty()) continue;
    TakeBatch(r, batch);
    r.busy = true;
    const Scorer* scorer = r.scorer.get();
    lock.unlock();
    Score(scorer, batch, missing);
    lock.lock();
    r.busy = false;
    r.load.fetch_sub(static_cast<int>(batch.size()), std::memory_order_relaxed);
    Finished(batch.size());
  }
}

void VariantRuntime::TakeBatch(Replica& r, std::vector<Job*>& batch) {
  const size_t max_batch = static_cast<size_t>(std::max(1, settings_.max_batch_size));
  batch.clear();
  size_t rows = 0;
  while (!r.queue.empty() && batch.size() < max_batch &&
         (batch.empty() || rows + r.queue.front()->n <= max_batch)) {
    rows += r.queue.front()->n;
    batch.push_back(r.queue.front());
    r.queue.pop_front();
  }
  queued_.fetch_sub(static_cast<int>(batch.size()), std::memory_order_relaxed);
}

void VariantRuntime::Score(const Scorer* scorer, std::vector<Job*>& jobs, const Status& missing) {
  const size_t features = model_->feature_names.size();
  const size_t outputs = model_->num_outputs;
  Status status = Ok();
  size_t total = 0;
  for (Job* j : jobs) total += j->n;
  auto started = Clock::now();
  if (scorer == nullptr) {
    status = missing;
    if (status) status = Unavailable(model_->variant + ": the model is not loaded");
    for (Job* j : jobs) j->done(status, total);
    return;
  }
  if (jobs.size() == 1) {
    status = scorer->Score(jobs[0]->rows, jobs[0]->n, jobs[0]->out);
  } else {
    thread_local std::vector<float> in, out;
    in.resize(total * features);
    out.resize(total * outputs);
    size_t at = 0;
    for (Job* j : jobs) {
      std::memcpy(in.data() + at * features, j->rows, j->n * features * sizeof(float));
      at += j->n;
    }
    status = scorer->Score(in.data(), total, out.data());
    at = 0;
    for (Job* j : jobs) {
      if (status) std::memcpy(j->out, out.data() + at * outputs, j->n * outputs * sizeof(float));
      at += j->n;
    }
  }
  ++batches_;
  batched_rows_ += static_cast<int64_t>(total);
  if (metrics_) {
    metrics_->ObserveModel(std::chrono::duration<double>(Clock::now() - started).count());
    metrics_->ObserveBatch(total);
  }
  for (Job* j : jobs) j->done(status, total);  // `j` may be gone after this
}

void VariantRuntime::Finished(size_t n_jobs) {
  in_flight_.fetch_sub(static_cast<int>(n_jobs), std::memory_order_relaxed);
  if (metrics_) metrics_->AddInFlight(-static_cast<int64_t>(n_jobs));
}

void VariantRuntime::Tick(Clock::time_point now) {
  if (stopped_) return;
  samples_.emplace_back(now, in_flight_.load(std::memory_order_relaxed));
  while (!samples_.empty() && samples_.front().first < now - settings_.window) samples_.pop_front();
  double sum = 0;
  for (const auto& [t, v] : samples_) sum += v;
  double mean = samples_.empty() ? 0 : sum / static_cast<double>(samples_.size());
  int desired = static_cast<int>(std::ceil(mean / settings_.target_in_flight - 1e-9));
  int floor = settings_.scale_to_zero ? 0 : std::max(settings_.min_replicas, 1);
  desired = std::clamp(desired, std::max(floor, settings_.min_replicas), settings_.max_replicas);
  bool idle =
      now - Clock::time_point(std::chrono::nanoseconds(last_job_ns_.load())) >= settings_.idle_to_zero &&
      in_flight_.load() == 0;
  if (settings_.scale_to_zero) {
    if (!idle)
      desired = std::max(desired, std::max(settings_.min_replicas, 1));
    else
      desired = 0;
  }
  desired_ = desired;
  if (metrics_) {
    metrics_->SetDesiredReplicas(desired);
    metrics_->SetQueueDepth(queued_.load(std::memory_order_relaxed));
  }
  std::lock_guard lock(control_mu_);
  int active = active_.load();
  if (desired > active && now - last_change_ >= settings_.scale_out_cooldown) {
    SetReplicas(desired, now);  // out: as many as wanted at once
  } else if (desired < active && (now - last_change_ >= settings_.scale_in_cooldown || desired == 0)) {
    SetReplicas(desired == 0 ? 0 : active - 1, now);  // in: one at a time
  } else {
    SetReplicas(active, now);  // reaps threads of replicas scaled in earlier
  }
}

void VariantRuntime::Stop() {
  if (stopped_.exchange(true)) return;
  std::lock_guard lock(control_mu_);
  for (auto& r : replicas_) {
    std::lock_guard rl(r->mu);
    r->enabled = false;
    r->stop = true;
    r->cv.notify_all();
  }
  for (auto& r : replicas_) {
    if (r->thread.joinable()) r->thread.join();
  }
  active_ = 0;
}

int VariantRuntime::ReplicasHoldingModel() const {
  int n = 0;
  for (const auto& r : replicas_) {
    std::lock_guard lock(r->mu);
    if (r->scorer) ++n;
  }
  return n;
}

RuntimeStats VariantRuntime::Stats() const {
  RuntimeStats s;
  s.replicas = active_.load();
  s.desired = desired_.load();
  s.in_flight = in_flight_.load();
  s.queued = queued_.load();
  s.jobs = jobs_.load();
  s.rejected = rejected_.load();
  s.batches = batches_.load();
  s.batched_rows = batched_rows_.load();
  s.cold_starts = cold_starts_.load();
  s.scale_events = scale_events_.load();
  return s;
}

}  // namespace takt::serving
