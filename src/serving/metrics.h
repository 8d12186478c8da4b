// File: serving/metrics.h
//
// Serving metrics for Prometheus: request counts, latency and batch-size
// histograms, replica / in-flight / queue gauges per endpoint variant, and
// rejection and capture counters per endpoint, rendered in the text
// exposition format 0.0.4 (`GET /metrics`, content type kMetricsContentType).
//
// Hot path: look a handle up once (when a variant is loaded), then record
// through it. Recording is a few relaxed atomic adds: no lock, no allocation.
//   VariantMetrics* m = metrics.ForVariant("weld-pm-prod", "weld-pm-v3");
//   ...
//   m->Observe(200, elapsed_seconds);
//
// Families (all with labels endpoint and variant unless noted):
//   takt_inference_requests_total{code}         counter; code is the exact status for the
//                                               common ones, else "2xx".."5xx" (bounded)
//   takt_inference_errors_total{type}           counter; type: ErrorType names
//   takt_inference_request_duration_seconds     histogram, 50 µs .. 10 s
//   takt_inference_model_duration_seconds       histogram, model time only
//   takt_inference_batch_size                   histogram, rows per model call, 1 .. 1024
//   takt_endpoint_replicas                      gauge
//   takt_endpoint_replicas_desired              gauge
//   takt_endpoint_in_flight_requests            gauge
//   takt_endpoint_queue_depth                   gauge
//   takt_endpoint_rejected_requests_total{endpoint,reason}   counter (no variant label)
//   takt_capture_records_total{endpoint}        counter, records written to capture segments
//   takt_capture_dropped_total{endpoint}        counter, sampled records lost (queue full, write failed)
//   takt_capture_bytes_total{endpoint}          counter, segment bytes written
// A code that was never recorded is not rendered (no zero series for every
// status); every other series of a variant or endpoint is, from the moment it
// is looked up (zeros included, so rate() starts from 0).
//
// Lifetime: handles are never freed while the Metrics lives. Retire() stops
// rendering an endpoint's (or one variant's) series; a retired handle may still
// be recorded through (harmlessly, unseen), and looking it up again revives it
// with its counts (a counter never goes backwards for the same series).
//
// Collectors: AddCollector() registers a callback that writes extra families
// at render time (process metrics, takt_build_info); AddProcessCollector()
// registers the standard process ones.
//
// Thread safety: everything may be called from any thread. RenderText() takes
// a mutex shared with the look-ups and collector registration, never with the
// recording calls. Collectors run under that mutex: they must not call back
// into the Metrics.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace takt::serving {

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Upper bounds (seconds) of the duration histograms: 50 µs .. 10 s.
inline constexpr std::array<double, 17> kDurationBuckets = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
// Upper bounds of the batch-size histogram (rows per model call).
inline constexpr std::array<double, 11> kBatchSizeBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

// A histogram over fixed upper bounds (the `le` labels; +Inf is implicit).
// Observe is lock-free; Read gives a consistent-enough snapshot whose count is
// exactly the +Inf bucket (the sum may lag by observations in progress).
class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double value);

  struct Snapshot {
    std::span<const double> bounds;
    std::vector<uint64_t> cumulative;  // bounds.size() + 1 entries; the last is +Inf
    double sum = 0;
    uint64_t count = 0;  // == cumulative.back()
  };
  Snapshot Read() const;

 private:
  std::span<const double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative
  std::atomic<double> sum_{0};
};

// Why an inference failed, for takt_inference_errors_total{type}.
enum class ErrorType {
  kInvalidInput = 0,  // the request did not fit the model (4xx)
  kModel,             // the model call failed
  kTimeout,           // a deadline passed
  kInternal,          // anything else (5xx)
};
inline constexpr size_t kErrorTypeCount = 4;
std::string_view ErrorTypeName(ErrorType type);  // "invalid_input", "model", "timeout", "internal"

// Why a request was turned away before it reached a model, for
// takt_endpoint_rejected_requests_total{reason}.
enum class RejectReason {
  kQueueFull = 0,  // the batching queue is full (429)
  kOverloaded,     // the in-flight limit is reached (503)
  kUnavailable,    // no replica is ready / the endpoint is stopping (503)
};
inline constexpr size_t kRejectReasonCount = 3;
std::string_view RejectReasonName(RejectReason reason);  // "queue_full", "overloaded", "unavailable"

// The `code` label for an HTTP status: "200", "400", ... for the common ones,
// "2xx".."5xx" for the others of a class, "other" outside 100-599.
std::string_view StatusCodeLabel(int status);
inline constexpr size_t kStatusLabelCount = 19;  // the distinct labels StatusCodeLabel returns

// The series of one endpoint variant. Obtained from Metrics::ForVariant.
class VariantMetrics {
 public:
  VariantMetrics();
  VariantMetrics(const VariantMetrics&) = delete;
  VariantMetrics& operator=(const VariantMetrics&) = delete;

  // One finished request: its HTTP status and its whole duration.
  void Observe(int status, double seconds);
  void ObserveError(ErrorType type) { errors_[static_cast<size_t>(type)].fetch_add(1, kRelaxed); }
  // The model call alone (one per batch).
  void ObserveModel(double seconds) { model_duration_.Observe(seconds); }
  // Rows in one model call (1 without batching).
  void ObserveBatch(size_t rows) { batch_size_.Observe(static_cast<double>(rows)); }

  void SetReplicas(int64_t n) { replicas_.store(n, kRelaxed); }
  void SetDesiredReplicas(int64_t n) { replicas_desired_.store(n, kRelaxed); }
  void SetQueueDepth(int64_t n) { queue_depth_.store(n, kRelaxed); }
  void AddInFlight(int64_t delta) { in_flight_.fetch_add(delta, kRelaxed); }

  // Counts one request in flight for its scope.
  class InFlightScope {
   public:
    explicit InFlightScope(VariantMetrics* m) : m_(m) { m_->AddInFlight(1); }
    ~InFlightScope() { m_->AddInFlight(-1); }
    InFlightScope(const InFlightScope&) = delete;
    InFlightScope& operator=(const InFlightScope&) = delete;

   private:
    VariantMetrics* m_;
  };

  // Reads, for tests and the autoscaler.
  uint64_t requests(int status) const;  // with the same code label as `status`
  uint64_t requests_total() const;
  int64_t in_flight() const { return in_flight_.load(kRelaxed); }

 private:
  friend class Metrics;
  static constexpr auto kRelaxed = std::memory_order_relaxed;

  std::array<std::atomic<uint64_t>, kStatusLabelCount> requests_{};
  std::array<std::atomic<uint64_t>, kErrorTypeCount> errors_{};
  Histogram duration_;
  Histogram model_duration_;
  Histogram batch_size_;
  std::atomic<int64_t> replicas_{0};
  std::atomic<int64_t> replicas_desired_{0};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> queue_depth_{0};
  bool retired_ = false;  // guarded by Metrics::mu_
};

// The per-endpoint series (no variant label). Obtained from Metrics::ForEndpoint.
class EndpointMetrics {
 public:
  EndpointMetrics() = default;
  EndpointMetrics(const EndpointMetrics&) = delete;
  EndpointMetrics& operator=(const EndpointMetrics&) = delete;

  void Reject(RejectReason reason) { rejected_[static_cast<size_t>(reason)].fetch_add(1, kRelaxed); }
  void AddCaptureRecords(uint64_t n) { capture_records_.fetch_add(n, kRelaxed); }
  void AddCaptureDropped(uint64_t n) { capture_dropped_.fetch_add(n, kRelaxed); }
  void AddCaptureBytes(uint64_t n) { capture_bytes_.fetch_add(n, kRelaxed); }

  uint64_t rejected(RejectReason reason) const {
    return rejected_[static_cast<size_t>(reason)].load(kRelaxed);
  }
  uint64_t capture_records() const { return capture_records_.load(kRelaxed); }
  uint64_t capture_dropped() const { return capture_dropped_.load(kRelaxed); }
  uint64_t capture_bytes() const { return capture_bytes_.load(kRelaxed); }

 private:
  friend class Metrics;
  static constexpr auto kRelaxed = std::memory_order_relaxed;

  std::array<std::atomic<uint64_t>, kRejectReasonCount> rejected_{};
  std::atomic<uint64_t> capture_records_{0};
  std::atomic<uint64_t> capture_dropped_{0};
  std::atomic<uint64_t> capture_bytes_{0};
  bool retired_ = false;  // guarded by Metrics::mu_
};

// Writes families in the text format for a collector. Call Family() once per
// family, then its samples; a family's samples must follow it directly. Names
// must match [a-zA-Z_:][a-zA-Z0-9_:]* (label names without ':'): a sample or
// family with an invalid name is left out, so the output stays valid. Label
// values are escaped here.
class MetricWriter {
 public:
  struct Label {
    std::string_view name;
    std::string_view value;
  };
  explicit MetricWriter(std::string* out) : out_(out) {}

  // `type`: "counter", "gauge", "histogram", "summary" or "untyped".
  void Family(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, std::initializer_list<Label> labels, double value);
  void Sample(std::string_view name, std::span<const Label> labels, double value);

 private:
  std::string* out_;
};

class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The handle for (endpoint, variant), created on first use; the same pointer
  // every time. Revives a retired one.
  VariantMetrics* ForVariant(std::string_view endpoint, std::string_view variant);
  EndpointMetrics* ForEndpoint(std::string_view endpoint);

  // Stops rendering the endpoint's series (its variants' included).
  void Retire(std::string_view endpoint);
  // Stops rendering one variant's series (it left the endpoint's set).
  void RetireVariant(std::string_view endpoint, std::string_view variant);

  // Runs at every render, after the built-in families, in registration order.
  // Returns an id for RemoveCollector.
  using Collector = std::function<void(MetricWriter&)>;
  int AddCollector(Collector collector);
  void RemoveCollector(int id);

  // The exposition text (format 0.0.4), HELP and TYPE once per family.
  std::string RenderText() const;

 private:
  using Key = std::pair<std::string, std::string>;

  mutable std::mutex mu_;
  std::map<Key, std::unique_ptr<VariantMetrics>> variants_;
  std::map<std::string, std::unique_ptr<EndpointMetrics>, std::less<>> endpoints_;
  std::vector<std::pair<int, Collector>> collectors_;
  int next_collector_id_ = 1;
};

// Registers process_start_time_seconds, process_cpu_seconds_total,
// process_resident_memory_bytes, process_open_fds and
// takt_build_info{version} (value 1). Returns the collector id.
int AddProcessCollector(Metrics& metrics, std::string_view version);

}  // namespace takt::serving
