#include "serving/runtime.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "ml/xgboost_model.h"
#include "serving/serving.h"

namespace takt::serving {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr size_t kF = 3;

// A small binary:logistic model over kF features, trained once.
const std::string& TinyModelJson() {
  static const std::string json = [] {
    ml::Matrix x;
    x.rows = 200;
    x.cols = kF;
    std::vector<float> y;
    uint64_t s = 42;
    for (size_t i = 0; i < x.rows * kF; ++i) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      x.values.push_back(static_cast<float>((s >> 40) & 0xFFFF) / 65536.0f);
    }
    for (size_t r = 0; r < x.rows; ++r) y.push_back(x.values[r * kF] > 0.5f ? 1.0f : 0.0f);
    ml::TrainOptions opts;
    opts.params = {{"objective", "binary:logistic"}, {"max_depth", "3"}, {"seed", "1"}};
    opts.num_rounds = 5;
    opts.nthread = 1;
    auto trained = ml::Train(x, y, nullptr, nullptr, opts);
    EXPECT_TRUE(trained.has_value());
    return trained ? trained->model_json : std::string();
  }();
  return json;
}

std::shared_ptr<LoadedModel> TinyModelMetadata() {
  auto m = std::make_shared<LoadedModel>();
  m->endpoint = "weld-pm-dev";
  m->variant = "weld-pm-v1";
  m->group = "weld-pm";
  m->version = 1;
  m->feature_names = {"a", "b", "c"};
  return m;
}

// The model with its scorer pinned (no reload).
std::shared_ptr<const LoadedModel> TinyModel() {
  auto m = TinyModelMetadata();
  auto scorer = MakeScorer(TinyModelJson());
  EXPECT_TRUE(scorer.has_value());
  m->SetScorer(*scorer);
  return m;
}

// A job whose completion can be waited for.
struct Waitable {
  std::vector<float> rows;
  std::vector<float> out;
  Job job;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status = Ok();
  size_t batch = 0;

  explicit Waitable(size_t n, float v = 0.25f) : rows(n * kF, v), out(n, -1) {
    job.rows = rows.data();
    job.n = n;
    job.out = out.data();
    job.done = [this](Status s, size_t b) {
      std::lock_guard lock(mu);
      status = std::move(s);
      batch = b;
      done = true;
      cv.notify_all();
    };
  }
  bool Wait(std::chrono::milliseconds t = 5s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, t, [&] { return done; });
  }
};

TEST(RuntimeSettingsTest, ParsesReleaseSettingsAndNamesBadFields) {
  auto s = ParseRuntimeSettings(
      R"({"replicas":{"min":2,"max":5},"autoscaling":{"target_in_flight":8,"scale_to_zero":false},
          "batching":{"max_batch_size":16,"max_wait_us":300},"queue":{"capacity":50},"capture_percent":20})");
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  EXPECT_EQ(s->min_replicas, 2);
  EXPECT_EQ(s->max_replicas, 5);
  EXPECT_EQ(s->target_in_flight, 8);
  EXPECT_EQ(s->max_batch_size, 16);
  EXPECT_EQ(s->max_batch_wait, 300us);
  EXPECT_EQ(s->queue_capacity, 50);
  EXPECT_EQ(s->capture_percent, 20);
  auto bad = ParseRuntimeSettings(R"({"batching":{"max_batch_size":"many"}})");
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message(), HasSubstr("batching.max_batch_size"));
  bad = ParseRuntimeSettings(R"({"replicas":{"max":0}})");
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message(), HasSubstr("replicas.max"));
  EXPECT_TRUE(ParseRuntimeSettings("").has_value());
  EXPECT_FALSE(ParseRuntimeSettings("[1]").has_value());
}

TEST(RuntimeTest, ScoresLikeTheModel) {
  auto model = TinyModel();
  RuntimeSettings settings;
  VariantRuntime rt(model, settings);
  Waitable w(4, 0.8f);
  ASSERT_TRUE(rt.Submit(&w.job).has_value());
  ASSERT_TRUE(w.Wait());
  ASSERT_TRUE(w.status.has_value());
  std::vector<float> expect(4);
  ASSERT_TRUE(model->Score(w.rows.data(), 4, expect.data()).has_value());
  EXPECT_EQ(w.out, expect);
  EXPECT_EQ(rt.Stats().replicas, 1);
  EXPECT_EQ(rt.Stats().in_flight, 0);
}

TEST(RuntimeTest, BatchesQueuedJobsUpToTheLimit) {
  auto model = TinyModel();
  RuntimeSettings settings;
  settings.max_batch_size = 8;
  settings.max_batch_wait = 50ms;  // long enough for every job below to arrive
  VariantRuntime rt(model, settings);
  std::vector<std::unique_ptr<Waitable>> jobs;
  for (int i = 0; i < 8; ++i) jobs.push_back(std::make_unique<Waitable>(1, 0.1f * static_cast<float>(i)));
  for (auto& j : jobs) ASSERT_TRUE(rt.Submit(&j->job).has_value());
  for (auto& j : jobs) {
    ASSERT_TRUE(j->Wait());
    ASSERT_TRUE(j->status.has_value());
    float expect = 0;
    ASSERT_TRUE(model->Score(j->rows.data(), 1, &expect).has_value());
    EXPECT_EQ(j->out[0], expect);  // each job gets its own row's prediction back
  }
  RuntimeStats st = rt.Stats();
  EXPECT_EQ(st.batched_rows, 8);
  EXPECT_LT(st.batches, 8);  // at least some were scored together
  EXPECT_EQ(jobs[0]->batch, 8u);
}

TEST(RuntimeTest, FullQueuesRefuseAtOnce) {
  auto model = TinyModel();
  RuntimeSettings settings;
  settings.queue_capacity = 2;
  settings.max_batch_size = 8;
  settings.max_batch_wait = 200ms;  // the worker waits for a batch: the queue fills
  VariantRuntime rt(model, settings);
  Waitable a(1), b(1), c(1);
  ASSERT_TRUE(rt.Submit(&a.job).has_value());
  ASSERT_TRUE(rt.Submit(&b.job).has_value());
  auto refused = rt.Submit(&c.job);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), Code::kResourceExhausted);
  EXPECT_THAT(refused.error().message(), HasSubstr("saturated"));
  EXPECT_TRUE(a.Wait());
  EXPECT_TRUE(b.Wait());
  EXPECT_FALSE(c.done);  // a refused job is never completed
  EXPECT_EQ(rt.Stats().rejected, 1);
}

TEST(RuntimeTest, AutoscalerScalesOutWithLoadAndInAfterTheCooldown) {
  auto model = TinyModel();
  RuntimeSettings settings;
  settings.min_replicas = 1;
  settings.max_replicas = 4;
  settings.target_in_flight = 2;
  settings.scale_out_cooldown = 0ms;
  settings.scale_in_cooldown = 1000ms;
  settings.window = 1000ms;
  settings.max_batch_wait = 500ms;  // jobs stay in flight while the test samples
  settings.max_batch_size = 64;
  VariantRuntime rt(model, settings);
  std::vector<std::unique_ptr<Waitable>> jobs;
  for (int i = 0; i < 7; ++i) {
    jobs.push_back(std::make_unique<Waitable>(1));
    ASSERT_TRUE(rt.Submit(&jobs.back()->job).has_value());
  }
  auto t0 = VariantRuntime::Clock::now();
  rt.Tick(t0);  // 7 in flight / 2 per replica → 4 replicas
  EXPECT_EQ(rt.Stats().desired, 4);
  EXPECT_EQ(rt.Stats().replicas, 4);
  for (auto& j : jobs) ASSERT_TRUE(j->Wait());
  // Idle now: the window still remembers the load, then the count comes down one at a time.
  rt.Tick(t0 + 500ms);
  EXPECT_EQ(rt.Stats().replicas, 4);  // within the scale-in cooldown
  rt.Tick(t0 + 1600ms);
  EXPECT_EQ(rt.Stats().replicas, 3);
  rt.Tick(t0 + 2700ms);
  EXPECT_EQ(rt.Stats().replicas, 2);
  rt.Tick(t0 + 3800ms);
  rt.Tick(t0 + 4900ms);
  EXPECT_EQ(rt.Stats().replicas, 1);  // never below min
  rt.Tick(t0 + 9000ms);
  EXPECT_EQ(rt.Stats().replicas, 1);
}

// At most two replicas, none when idle for 100 ms.
RuntimeSettings ScaleToZeroSettings() {
  RuntimeSettings settings;
  settings.min_replicas = 0;
  settings.max_replicas = 2;
  settings.scale_to_zero = true;
  settings.idle_to_zero = 100ms;
  return settings;
}

TEST(RuntimeTest, ScalesToZeroWhenIdleAndColdStartsOnTheNextRequest) {
  auto model = TinyModel();
  VariantRuntime rt(model, ScaleToZeroSettings());
  EXPECT_EQ(rt.Stats().replicas, 0);
  Waitable a(1);
  ASSERT_TRUE(rt.Submit(&a.job).has_value());
  ASSERT_TRUE(a.Wait());
  EXPECT_TRUE(a.status.has_value());
  EXPECT_EQ(rt.Stats().cold_starts, 1);
  EXPECT_EQ(rt.Stats().replicas, 1);
  auto now = VariantRuntime::Clock::now();
  rt.Tick(now);
  EXPECT_EQ(rt.Stats().replicas, 1);  // just used
  rt.Tick(now + 200ms);
  EXPECT_EQ(rt.Stats().replicas, 0);
  Waitable b(1);
  ASSERT_TRUE(rt.Submit(&b.job).has_value());
  ASSERT_TRUE(b.Wait());
  EXPECT_EQ(rt.Stats().cold_starts, 2);
}

// TinyModel's metadata with a scorer that is loaded (and counted) through
// `reload`, as the serving service sets models up: nothing pins it.
// The model as the serving service sets it up: its scorer is loaded (and
// counted) through `reload`, and nothing pins it.
std::shared_ptr<const LoadedModel> ReloadableModel(std::atomic<int>* loads, std::atomic<bool>* fail) {
  auto m = TinyModelMetadata();
  m->reload = [loads, fail]() -> Result<std::shared_ptr<const Scorer>> {
    ++*loads;
    if (fail->load()) return Unavailable("the blob store is unreachable");
    return MakeScorer(TinyModelJson());
  };
  return m;
}

TEST(RuntimeTest, AtZeroReplicasTheModelIsFreedAndTheNextRequestLoadsItAgain) {
  std::atomic<int> loads{0};
  std::atomic<bool> fail{false};
  auto model = ReloadableModel(&loads, &fail);
  VariantRuntime rt(model, ScaleToZeroSettings());
  EXPECT_EQ(model->Resident(), nullptr);  // nothing loaded at zero replicas

  Waitable a(1);
  ASSERT_TRUE(rt.Submit(&a.job).has_value());
  ASSERT_TRUE(a.Wait());
  ASSERT_TRUE(a.status.has_value()) << a.status.error().ToString();
  EXPECT_EQ(loads.load(), 1);  // the cold start's replica loaded it
  std::vector<float> want(1);
  ASSERT_TRUE(TinyModel()->Score(a.rows.data(), 1, want.data()).has_value());
  EXPECT_EQ(a.out[0], want[0]);
  EXPECT_NE(model->Resident(), nullptr);
  EXPECT_EQ(rt.ReplicasHoldingModel(), 1);

  // The worker counts the job finished just after its completion ran.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (rt.Stats().in_flight > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  auto now = VariantRuntime::Clock::now();
  rt.Tick(now + 200ms);  // idle: to zero
  EXPECT_EQ(rt.Stats().replicas, 0);
  deadline = std::chrono::steady_clock::now() + 5s;
  while (rt.ReplicasHoldingModel() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(rt.ReplicasHoldingModel(), 0);
  EXPECT_EQ(model->Resident(), nullptr);  // freed: no replica holds it

  // A failing reload fails the request with the reason; nothing crashes.
  fail = true;
  Waitable b(1);
  ASSERT_TRUE(rt.Submit(&b.job).has_value());
  ASSERT_TRUE(b.Wait());
  ASSERT_FALSE(b.status.has_value());
  EXPECT_NE(b.status.error().message().find("blob store is unreachable"), std::string::npos)
      << b.status.error().ToString();

  // Once the store is back, the next batch loads it.
  fail = false;
  Waitable c(1);
  ASSERT_TRUE(rt.Submit(&c.job).has_value());
  ASSERT_TRUE(c.Wait());
  ASSERT_TRUE(c.status.has_value()) << c.status.error().ToString();
  EXPECT_EQ(c.out[0], want[0]);
  EXPECT_EQ(loads.load(), 3);
  EXPECT_EQ(rt.Stats().cold_starts, 2);
}

// `threads` threads submit `jobs` jobs each (1..max_rows rows, values cycling
// over `values` steps of [0, 1)) and check every answer against the model.
void SubmitFromThreads(VariantRuntime& rt, const LoadedModel& model, int threads, int jobs, int max_rows,
                       int values) {
  std::atomic<int> wrong{0}, failed{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < jobs; ++i) {
        Waitable w(1 + (i % max_rows),
                   static_cast<float>((t * jobs + i) % values) / static_cast<float>(values));
        if (!rt.Submit(&w.job).has_value() || !w.Wait() || !w.status.has_value()) {
          ++failed;
          continue;
        }
        std::vector<float> expect(w.job.n);
        if (!model.Score(w.rows.data(), w.job.n, expect.data()).has_value() || expect != w.out) ++wrong;
      }
    });
  }
  for (auto& t : pool) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

TEST(RuntimeTest, ManyThreadsGetTheirOwnAnswers) {
  auto model = TinyModel();
  RuntimeSettings settings;
  settings.max_replicas = 3;
  settings.min_replicas = 3;
  settings.max_batch_size = 16;
  settings.max_batch_wait = 100us;
  settings.queue_capacity = 1000;
  VariantRuntime rt(model, settings);
  SubmitFromThreads(rt, *model, /*threads=*/6, /*jobs=*/200, /*max_rows=*/3, /*values=*/97);
  EXPECT_EQ(rt.Stats().jobs, 1200);
}

// No batch wait: submitters score on the caller's thread, queue behind jobs
// the worker was woken for, and take batches of each other's jobs.
TEST(RuntimeTest, ManyThreadsSharingOneReplicaWithoutBatchWaitGetTheirOwnAnswers) {
  auto model = TinyModel();
  RuntimeSettings settings;
  settings.max_batch_size = 4;
  settings.max_batch_wait = 0us;
  settings.queue_capacity = 1000;
  VariantRuntime rt(model, settings);
  SubmitFromThreads(rt, *model, /*threads=*/8, /*jobs=*/500, /*max_rows=*/2, /*values=*/89);
  const RuntimeStats stats = rt.Stats();
  EXPECT_EQ(stats.jobs, 4000);
  EXPECT_EQ(stats.in_flight, 0);
  EXPECT_EQ(stats.queued, 0);
}

TEST(RuntimeTest, StopScoresWhatIsQueuedAndRefusesNewJobs) {
  auto model = TinyModel();
  RuntimeSettings settings;
  settings.max_batch_wait = 300ms;
  VariantRuntime rt(model, settings);
  Waitable a(1);
  ASSERT_TRUE(rt.Submit(&a.job).has_value());
  rt.Stop();
  EXPECT_TRUE(a.done);
  EXPECT_TRUE(a.status.has_value());
  Waitable b(1);
  auto refused = rt.Submit(&b.job);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), Code::kUnavailable);
}

}  // namespace
}  // namespace takt::serving
