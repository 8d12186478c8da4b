#include "serving/metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace takt::serving {
namespace {

// The code labels, in the order of VariantMetrics::requests_.
constexpr std::array<std::string_view, kStatusLabelCount> kStatusLabels = {
    "200", "400", "401", "403", "404", "408", "413", "415", "422",  "429",
    "500", "503", "504", "1xx", "2xx", "3xx", "4xx", "5xx", "other"};

size_t StatusIndex(int status) {
  switch (status) {
    case 200:
      return 0;
    case 400:
      return 1;
    case 401:
      return 2;
    case 403:
      return 3;
    case 404:
      return 4;
    case 408:
      return 5;
    case 413:
      return 6;
    case 415:
      return 7;
    case 422:
      return 8;
    case 429:
      return 9;
    case 500:
      return 10;
    case 503:
      return 11;
    case 504:
      return 12;
    default:
      break;
  }
  if (status >= 100 && status < 600) return 13 + static_cast<size_t>(status / 100 - 1);
  return kStatusLabelCount - 1;
}

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool ValidMetricName(std::string_view name) {
  if (name.empty() || !(IsNameStart(name[0]) || name[0] == ':')) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return IsNameStart(c) || IsDigit(c) || c == ':'; });
}

bool ValidLabelName(std::string_view name) {
  if (name.empty() || !IsNameStart(name[0])) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return IsNameStart(c) || IsDigit(c); });
}

void AppendEscaped(std::string* out, std::string_view text, bool quote) {
  for (char c : text) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"' && quote) {
      out->append("\\\"");
    } else {
      out->push_back(c);
    }
  }
}

void AppendNumber(std::string* out, double v) {
  if (std::isnan(v)) {
    out->append("NaN");
    return;
  }
  if (std::isinf(v)) {
    out->append(v > 0 ? "+Inf" : "-Inf");
    return;
  }
  char buf[64];
  std::to_chars_result r;
  if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    r = std::to_chars(buf, buf + sizeof(buf), static_cast<int64_t>(v));
  } else {
    r = std::to_chars(buf, buf + sizeof(buf), v);
  }
  out->append(buf, r.ptr);
}

void AppendUint(std::string* out, uint64_t v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, r.ptr);
}

void AppendSampleLine(std::string* out, std::string_view name, std::span<const MetricWriter::Label> labels,
                      std::string_view extra_name = {}, std::string_view extra_value = {}) {
  out->append(name);
  if (!labels.empty() || !extra_name.empty()) {
    out->push_back('{');
    bool first = true;
    auto add = [&](std::string_view n, std::string_view v) {
      if (!first) out->push_back(',');
      first = false;
      out->append(n);
      out->append("=\"");
      AppendEscaped(out, v, /*quote=*/true);
      out->push_back('"');
    };
    for (const auto& l : labels) add(l.name, l.value);
    if (!extra_name.empty()) add(extra_name, extra_value);
    out->push_back('}');
  }
  out->push_back(' ');
}

void AppendHeader(std::string* out, std::string_view name, std::string_view type, std::string_view help) {
  out->append("# HELP ");
  out->append(name);
  out->push_back(' ');
  AppendEscaped(out, help, /*quote=*/false);
  out->append("\n# TYPE ");
  out->append(name);
  out->push_back(' ');
  out->append(type);
  out->push_back('\n');
}

void AppendHistogram(std::string* out, std::string_view name, std::span<const MetricWriter::Label> labels,
                     const Histogram::Snapshot& s) {
  const std::string bucket_name = std::string(name) + "_bucket";
  for (size_t i = 0; i < s.cumulative.size(); ++i) {
    std::string le = "+Inf";
    if (i < s.bounds.size()) {
      le.clear();
      AppendNumber(&le, s.bounds[i]);
    }
    AppendSampleLine(out, bucket_name, labels, "le", le);
    AppendUint(out, s.cumulative[i]);
    out->push_back('\n');
  }
  AppendSampleLine(out, std::string(name) + "_sum", labels);
  AppendNumber(out, s.sum);
  out->push_back('\n');
  AppendSampleLine(out, std::string(name) + "_count", labels);
  AppendUint(out, s.count);
  out->push_back('\n');
}

}  // namespace

std::string_view StatusCodeLabel(int status) { return kStatusLabels[StatusIndex(status)]; }

std::string_view ErrorTypeName(ErrorType type) {
  switch (type) {
    case ErrorType::kInvalidInput:
      return "invalid_input";
    case ErrorType::kModel:
      return "model";
    case ErrorType::kTimeout:
      return "timeout";
    case ErrorType::kInternal:
      return "internal";
  }
  return "internal";
}

std::string_view RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kQueueFull:
      return "queue_full";
    case RejectReason::kOverloaded:
      return "overloaded";
    case RejectReason::kUnavailable:
      return "unavailable";
  }
  return "unavailable";
}

// ---- Histogram ----

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds), counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds.size() + 1)) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  size_t i = bounds_.size();  // +Inf, also for NaN
  if (!std::isnan(value)) {
    i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  }
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.bounds = bounds_;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

// ---- VariantMetrics ----

VariantMetrics::VariantMetrics()
    : duration_(kDurationBuckets), model_duration_(kDurationBuckets), batch_size_(kBatchSizeBuckets) {}

void VariantMetrics::Observe(int status, double seconds) {
  requests_[StatusIndex(status)].fetch_add(1, kRelaxed);
  duration_.Observe(seconds);
}

uint64_t VariantMetrics::requests(int status) const { return requests_[StatusIndex(status)].load(kRelaxed); }

uint64_t VariantMetrics::requests_total() const {
  uint64_t total = 0;
  for (const auto& c : requests_) total += c.load(kRelaxed);
  return total;
}

// ---- MetricWriter ----

void MetricWriter::Family(std::string_view name, std::string_view type, std::string_view help) {
  if (!ValidMetricName(name)) return;
  AppendHeader(out_, name, type, help);
}

void MetricWriter::Sample(std::string_view name, std::initializer_list<Label> labels, double value) {
  Sample(name, std::span<const Label>(labels.begin(), labels.size()), value);
}

void MetricWriter::Sample(std::string_view name, std::span<const Label> labels, double value) {
  if (!ValidMetricName(name)) return;
  for (const auto& l : labels) {
    if (!ValidLabelName(l.name) || l.name.starts_with("__")) return;
  }
  AppendSampleLine(out_, name, labels);
  AppendNumber(out_, value);
  out_->push_back('\n');
}

// ---- Metrics ----

Metrics::Metrics() = default;
Metrics::~Metrics() = default;

VariantMetrics* Metrics::ForVariant(std::string_view endpoint, std::string_view variant) {
  std::lock_guard lock(mu_);
  auto& slot = variants_[Key(endpoint, variant)];
  if (!slot) slot = std::make_unique<VariantMetrics>();
  slot->retired_ = false;
  return slot.get();
}

EndpointMetrics* Metrics::ForEndpoint(std::string_view endpoint) {
  std::lock_guard lock(mu_);
  auto it = endpoints_.find(endpoint);
  if (it == endpoints_.end()) {
    it = endpoints_.emplace(std::string(endpoint), std::make_unique<EndpointMetrics>()).first;
  }
  it->second->retired_ = false;
  return it->second.get();
}

void Metrics::Retire(std::string_view endpoint) {
  std::lock_guard lock(mu_);
  for (auto it = variants_.lower_bound(Key(endpoint, ""));
       it != variants_.end() && it->first.first == endpoint; ++it) {
    it->second->retired_ = true;
  }
  if (auto it = endpoints_.find(endpoint); it != endpoints_.end()) it->second->retired_ = true;
}

void Metrics::RetireVariant(std::string_view endpoint, std::string_view variant) {
  std::lock_guard lock(mu_);
  if (auto it = variants_.find(Key(endpoint, variant)); it != variants_.end()) it->second->retired_ = true;
}

int Metrics::AddCollector(Collector collector) {
  std::lock_guard lock(mu_);
  int id = next_collector_id_++;
  collectors_.emplace_back(id, std::move(collector));
  return id;
}

void Metrics::RemoveCollector(int id) {
  std::lock_guard lock(mu_);
  std::erase_if(collectors_, [id](const auto& c) { return c.first == id; });
}

std::string Metrics::RenderText() const {
  using Label = MetricWriter::Label;
  std::string out;
  out.reserve(16 * 1024);
  std::lock_guard lock(mu_);

  std::vector<std::pair<std::array<Label, 2>, const VariantMetrics*>> live;
  for (const auto& [key, m] : variants_) {
    if (!m->retired_) live.push_back({{Label{"endpoint", key.first}, Label{"variant", key.second}}, m.get()});
  }
  std::vector<std::pair<std::array<Label, 1>, const EndpointMetrics*>> live_endpoints;
  for (const auto& [name, m] : endpoints_) {
    if (!m->retired_) live_endpoints.push_back({{Label{"endpoint", name}}, m.get()});
  }

  AppendHeader(&out, "takt_inference_requests_total", "counter",
               "Inference requests served, by HTTP status code.");
  for (const auto& [labels, m] : live) {
    for (size_t i = 0; i < kStatusLabelCount; ++i) {
      uint64_t n = m->requests_[i].load(std::memory_order_relaxed);
      if (n == 0) continue;
      AppendSampleLine(&out, "takt_inference_requests_total", labels, "code", kStatusLabels[i]);
      AppendUint(&out, n);
      out.push_back('\n');
    }
  }

  AppendHeader(&out, "takt_inference_errors_total", "counter", "Failed inference requests, by cause.");
  for (const auto& [labels, m] : live) {
    for (size_t i = 0; i < kErrorTypeCount; ++i) {
      AppendSampleLine(&out, "takt_inference_errors_total", labels, "type",
                       ErrorTypeName(static_cast<ErrorType>(i)));
      AppendUint(&out, m->errors_[i].load(std::memory_order_relaxed));
      out.push_back('\n');
    }
  }

  struct HistogramFamily {
    std::string_view name;
    std::string_view help;
    const Histogram VariantMetrics::*member;
  };
  const HistogramFamily histograms[] = {
      {"takt_inference_request_duration_seconds", "Time from request received to response ready.",
       &VariantMetrics::duration_},
      {"takt_inference_model_duration_seconds", "Time spent in the model call alone.",
       &VariantMetrics::model_duration_},
      {"takt_inference_batch_size", "Rows per model call.", &VariantMetrics::batch_size_},
  };
  for (const auto& h : histograms) {
    AppendHeader(&out, h.name, "histogram", h.help);
    for (const auto& [labels, m] : live) AppendHistogram(&out, h.name, labels, (m->*h.member).Read());
  }

  struct GaugeFamily {
    std::string_view name;
    std::string_view help;
    const std::atomic<int64_t> VariantMetrics::*member;
  };
  const GaugeFamily gauges[] = {
      {"takt_endpoint_replicas", "Replicas of the variant that are ready.", &VariantMetrics::replicas_},
      {"takt_endpoint_replicas_desired", "Replicas the autoscaler wants for the variant.",
       &VariantMetrics::replicas_desired_},
      {"takt_endpoint_in_flight_requests", "Requests being served now.", &VariantMetrics::in_flight_},
      {"takt_endpoint_queue_depth", "Requests waiting in the batching queue.", &VariantMetrics::queue_depth_},
  };
  for (const auto& g : gauges) {
    AppendHeader(&out, g.name, "gauge", g.help);
    for (const auto& [labels, m] : live) {
      AppendSampleLine(&out, g.name, labels);
      AppendNumber(&out, static_cast<double>((m->*g.member).load(std::memory_order_relaxed)));
      out.push_back('\n');
    }
  }

  AppendHeader(&out, "takt_endpoint_rejected_requests_total", "counter",
               "Requests turned away before reaching a model, by reason.");
  for (const auto& [labels, m] : live_endpoints) {
    for (size_t i = 0; i < kRejectReasonCount; ++i) {
      AppendSampleLine(&out, "takt_endpoint_rejected_requests_total", labels, "reason",
                       RejectReasonName(static_cast<RejectReason>(i)));
      AppendUint(&out, m->rejected_[i].load(std::memory_order_relaxed));
      out.push_back('\n');
    }
  }

  struct CounterFamily {
    std::string_view name;
    std::string_view help;
    const std::atomic<uint64_t> EndpointMetrics::*member;
  };
  const CounterFamily capture[] = {
      {"takt_capture_records_total", "Captured inference records written to segments.",
       &EndpointMetrics::capture_records_},
      {"takt_capture_dropped_total", "Sampled inference records lost (queue full or write failed).",
       &EndpointMetrics::capture_dropped_},
      {"takt_capture_bytes_total", "Bytes of capture segments written.", &EndpointMetrics::capture_bytes_},
  };
  for (const auto& c : capture) {
    AppendHeader(&out, c.name, "counter", c.help);
    for (const auto& [labels, m] : live_endpoints) {
      AppendSampleLine(&out, c.name, labels);
      AppendUint(&out, (m->*c.member).load(std::memory_order_relaxed));
      out.push_back('\n');
    }
  }

  MetricWriter writer(&out);
  for (const auto& [id, collector] : collectors_) collector(writer);
  return out;
}

// ---- Process metrics ----

namespace {

// Seconds since the epoch at which this process started, from /proc; the
// fallback is `fallback`.
double ProcessStartTime(double fallback) {
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (!std::getline(stat, line)) return fallback;
  // Field 2 (comm) may hold spaces: the fields after it start past the last ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return fallback;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // Fields 3.. : starttime is field 22, i.e. the 20th after comm.
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return fallback;
  }
  double ticks = 0;
  if (std::from_chars(field.data(), field.data() + field.size(), ticks).ec != std::errc()) return fallback;
  std::ifstream proc_stat("/proc/stat");
  std::string key;
  double btime = 0;
  while (proc_stat >> key) {
    if (key == "btime") {
      proc_stat >> btime;
      break;
    }
  }
  long hz = ::sysconf(_SC_CLK_TCK);
  if (btime <= 0 || hz <= 0) return fallback;
  return btime + ticks / static_cast<double>(hz);
}

}  // namespace

int AddProcessCollector(Metrics& metrics, std::string_view version) {
  double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  double start = ProcessStartTime(now);
  return metrics.AddCollector([start, version = std::string(version)](MetricWriter& w) {
    w.Family("process_start_time_seconds", "gauge",
             "Start time of the process since the Unix epoch in seconds.");
    w.Sample("process_start_time_seconds", {}, start);

    rusage usage{};
    if (::getrusage(RUSAGE_SELF, &usage) == 0) {
      double cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                   static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
      w.Family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
      w.Sample("process_cpu_seconds_total", {}, cpu);
    }

    std::ifstream statm("/proc/self/statm");
    double pages_total = 0, pages_resident = 0;
    if (statm >> pages_total >> pages_resident) {
      w.Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
      w.Sample("process_resident_memory_bytes", {},
               pages_resident * static_cast<double>(::sysconf(_SC_PAGESIZE)));
    }

    std::error_code ec;
    std::filesystem::directory_iterator fds("/proc/self/fd", ec);
    if (!ec) {
      double n = 0;
      for (; fds != std::filesystem::directory_iterator(); fds.increment(ec)) {
        if (ec) break;
        ++n;
      }
      w.Family("process_open_fds", "gauge", "Number of open file descriptors.");
      w.Sample("process_open_fds", {}, n);
    }

    w.Family("takt_build_info", "gauge", "Always 1; the labels name the takt build.");
    w.Sample("takt_build_info", {{"version", version}}, 1);
  });
}

}  // namespace takt::serving
