#include "serving/metrics.h"

#include <gtest/gtest.h>

#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace takt::serving {
namespace {

// A strict reader of the text exposition format 0.0.4, enough to check what
// RenderText writes: every line is a HELP, a TYPE or a sample; HELP and TYPE
// come once per family, before its samples, and a family's samples are
// contiguous.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;  // family -> type
  std::map<std::string, std::string> helps;
};

bool NameChar(char c, bool first) {
  bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
  return first ? alpha : alpha || (c >= '0' && c <= '9');
}

// The family a sample name belongs to, given the declared types.
std::string FamilyOf(const std::string& name, const std::map<std::string, std::string>& types) {
  if (types.contains(name)) return name;
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (name.ends_with(suffix)) {
      std::string base = name.substr(0, name.size() - suffix.size());
      auto it = types.find(base);
      if (it != types.end() && (it->second == "histogram" || it->second == "summary")) return base;
    }
  }
  return name;
}

std::optional<double> ParseValue(std::string_view text) {
  if (text == "+Inf") return INFINITY;
  if (text == "-Inf") return -INFINITY;
  if (text == "NaN") return NAN;
  double v = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

// Fails the test (with the line) on anything outside the grammar.
Exposition Parse(const std::string& text) {
  Exposition e;
  EXPECT_TRUE(text.empty() || text.back() == '\n') << "the exposition must end with a newline";
  std::set<std::string> finished;  // families whose samples ended
  std::string current;             // the family of the previous line
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    SCOPED_TRACE("line: " + line);
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      bool help = line[2] == 'H';
      std::string rest = line.substr(7);
      size_t sp = rest.find(' ');
      EXPECT_NE(sp, std::string::npos);
      std::string name = rest.substr(0, sp);
      std::string arg = sp == std::string::npos ? "" : rest.substr(sp + 1);
      auto& map = help ? e.helps : e.types;
      EXPECT_FALSE(map.contains(name)) << (help ? "HELP" : "TYPE") << " twice for " << name;
      EXPECT_FALSE(finished.contains(name)) << "family " << name << " declared after its samples";
      if (!help) {
        EXPECT_TRUE(arg == "counter" || arg == "gauge" || arg == "histogram" || arg == "summary" ||
                    arg == "untyped")
            << arg;
      }
      map[name] = arg;
      if (current != name && !current.empty()) finished.insert(current);
      current = name;
      continue;
    }
    EXPECT_FALSE(line.empty() || line[0] == '#') << "unexpected line";
    Sample s;
    size_t i = 0;
    while (i < line.size() && NameChar(line[i], i == 0)) ++i;
    s.name = line.substr(0, i);
    EXPECT_FALSE(s.name.empty());
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t start = i;
        while (i < line.size() && NameChar(line[i], i == start) && line[i] != ':') ++i;
        std::string label = line.substr(start, i - start);
        EXPECT_FALSE(label.empty());
        EXPECT_TRUE(i + 1 < line.size() && line[i] == '=' && line[i + 1] == '"');
        i += 2;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\') {
            EXPECT_LT(i, line.size());
            char esc = line[i++];
            EXPECT_TRUE(esc == '\\' || esc == '"' || esc == 'n') << "bad escape \\" << esc;
            value.push_back(esc == 'n' ? '\n' : esc);
          } else {
            value.push_back(c);
          }
        }
        EXPECT_TRUE(closed);
        EXPECT_FALSE(s.labels.contains(label)) << "label twice: " << label;
        s.labels[label] = value;
        if (i < line.size() && line[i] == ',') ++i;
      }
      EXPECT_LT(i, line.size());
      ++i;  // '}'
    }
    EXPECT_TRUE(i < line.size() && line[i] == ' ');
    auto v = ParseValue(std::string_view(line).substr(i + 1));
    EXPECT_TRUE(v.has_value()) << "bad value";
    s.value = v.value_or(0);
    std::string family = FamilyOf(s.name, e.types);
    EXPECT_TRUE(e.types.contains(family)) << "sample before its TYPE: " << s.name;
    EXPECT_FALSE(finished.contains(family)) << "samples of " << family << " are not contiguous";
    if (current != family && !current.empty()) finished.insert(current);
    current = family;
    e.samples.push_back(std::move(s));
  }
  return e;
}

const Sample* Find(const Exposition& e, std::string_view name,
                   const std::map<std::string, std::string>& labels) {
  for (const auto& s : e.samples) {
    if (s.name == name && s.labels == labels) return &s;
  }
  return nullptr;
}

// Checks every histogram: le ascending and ending in +Inf, cumulative counts
// non-decreasing, _count == the +Inf bucket. Returns how many it checked.
int CheckHistograms(const Exposition& e) {
  std::map<std::pair<std::string, std::map<std::string, std::string>>, std::vector<std::pair<double, double>>>
      buckets;
  for (const auto& s : e.samples) {
    if (!s.name.ends_with("_bucket")) continue;
    auto labels = s.labels;
    EXPECT_TRUE(labels.contains("le")) << s.name;
    double le = ParseValue(labels["le"]).value_or(NAN);
    labels.erase("le");
    buckets[{s.name.substr(0, s.name.size() - 7), labels}].push_back({le, s.value});
  }
  for (const auto& [key, list] : buckets) {
    SCOPED_TRACE(key.first);
    EXPECT_FALSE(list.empty());
    for (size_t i = 1; i < list.size(); ++i) {
      EXPECT_LT(list[i - 1].first, list[i].first) << "le not ascending";
      EXPECT_LE(list[i - 1].second, list[i].second) << "buckets not cumulative";
    }
    EXPECT_TRUE(std::isinf(list.back().first)) << "no +Inf bucket";
    const Sample* count = Find(e, key.first + "_count", key.second);
    const Sample* sum = Find(e, key.first + "_sum", key.second);
    EXPECT_NE(sum, nullptr);
    EXPECT_NE(count, nullptr);
    if (count) {
      EXPECT_EQ(count->value, list.back().second);
    }
  }
  return static_cast<int>(buckets.size());
}

TEST(MetricsTest, RenderIsValidExpositionWithAllFamilies) {
  Metrics metrics;
  VariantMetrics* v3 = metrics.ForVariant("weld-pm-prod", "weld-pm-v3");
  VariantMetrics* v4 = metrics.ForVariant("weld-pm-prod", "weld-pm-v4");
  for (int i = 0; i < 90; ++i) v3->Observe(200, 0.002);
  for (int i = 0; i < 10; ++i) v4->Observe(200, 0.004);
  v4->Observe(500, 0.5);
  v4->ObserveError(ErrorType::kModel);
  v3->ObserveModel(0.001);
  v3->ObserveBatch(8);
  v3->SetReplicas(2);
  v3->SetDesiredReplicas(3);
  v3->SetQueueDepth(5);
  {
    VariantMetrics::InFlightScope scope(v3);
    EXPECT_EQ(v3->in_flight(), 1);
  }
  EndpointMetrics* ep = metrics.ForEndpoint("weld-pm-prod");
  ep->Reject(RejectReason::kQueueFull);
  ep->AddCaptureRecords(7);
  ep->AddCaptureDropped(1);
  ep->AddCaptureBytes(1234);

  std::string text = metrics.RenderText();
  Exposition e = Parse(text);
  for (std::string_view family :
       {"takt_inference_requests_total", "takt_inference_errors_total",
        "takt_inference_request_duration_seconds", "takt_inference_model_duration_seconds",
        "takt_inference_batch_size", "takt_endpoint_replicas", "takt_endpoint_replicas_desired",
        "takt_endpoint_in_flight_requests", "takt_endpoint_queue_depth",
        "takt_endpoint_rejected_requests_total", "takt_capture_records_total", "takt_capture_dropped_total",
        "takt_capture_bytes_total"}) {
    EXPECT_TRUE(e.types.contains(std::string(family))) << family;
    EXPECT_TRUE(e.helps.contains(std::string(family))) << family;
  }
  EXPECT_EQ(e.types["takt_inference_request_duration_seconds"], "histogram");
  EXPECT_EQ(e.types["takt_endpoint_replicas"], "gauge");
  EXPECT_EQ(e.types["takt_capture_bytes_total"], "counter");
  EXPECT_EQ(CheckHistograms(e), 6);  // 3 histograms x 2 variants

  using L = std::map<std::string, std::string>;
  auto value = [&](std::string_view name, const L& labels) {
    const Sample* s = Find(e, name, labels);
    EXPECT_NE(s, nullptr) << name;
    return s ? s->value : -1;
  };
  EXPECT_EQ(value("takt_inference_requests_total",
                  L{{"endpoint", "weld-pm-prod"}, {"variant", "weld-pm-v3"}, {"code", "200"}}),
            90);
  EXPECT_EQ(value("takt_inference_requests_total",
                  L{{"endpoint", "weld-pm-prod"}, {"variant", "weld-pm-v4"}, {"code", "500"}}),
            1);
  EXPECT_EQ(Find(e, "takt_inference_requests_total",
                 L{{"endpoint", "weld-pm-prod"}, {"variant", "weld-pm-v3"}, {"code", "500"}}),
            nullptr)
      << "codes never seen are not rendered";
  EXPECT_EQ(value("takt_inference_errors_total",
                  L{{"endpoint", "weld-pm-prod"}, {"variant", "weld-pm-v4"}, {"type", "model"}}),
            1);
  EXPECT_EQ(value("takt_inference_errors_total",
                  L{{"endpoint", "weld-pm-prod"}, {"variant", "weld-pm-v3"}, {"type", "timeout"}}),
            0);
  L v3l{{"endpoint", "weld-pm-prod"}, {"variant", "weld-pm-v3"}};
  EXPECT_EQ(value("takt_inference_request_duration_seconds_count", v3l), 90);
  EXPECT_NEAR(value("takt_inference_request_duration_seconds_sum", v3l), 0.18, 1e-9);
  L le{v3l};
  le["le"] = "0.001";
  EXPECT_EQ(value("takt_inference_request_duration_seconds_bucket", le), 0);
  le["le"] = "0.0025";
  EXPECT_EQ(value("takt_inference_request_duration_seconds_bucket", le), 90);
  le["le"] = "5e-05";
  EXPECT_EQ(value("takt_inference_request_duration_seconds_bucket", le), 0) << "the 50 µs bucket";
  le["le"] = "8";
  EXPECT_EQ(value("takt_inference_batch_size_bucket", le), 1);
  EXPECT_EQ(value("takt_endpoint_replicas", v3l), 2);
  EXPECT_EQ(value("takt_endpoint_replicas_desired", v3l), 3);
  EXPECT_EQ(value("takt_endpoint_queue_depth", v3l), 5);
  EXPECT_EQ(value("takt_endpoint_in_flight_requests", v3l), 0);
  EXPECT_EQ(value("takt_endpoint_rejected_requests_total",
                  L{{"endpoint", "weld-pm-prod"}, {"reason", "queue_full"}}),
            1);
  EXPECT_EQ(value("takt_endpoint_rejected_requests_total",
                  L{{"endpoint", "weld-pm-prod"}, {"reason", "overloaded"}}),
            0);
  EXPECT_EQ(value("takt_capture_records_total", L{{"endpoint", "weld-pm-prod"}}), 7);
  EXPECT_EQ(value("takt_capture_dropped_total", L{{"endpoint", "weld-pm-prod"}}), 1);
  EXPECT_EQ(value("takt_capture_bytes_total", L{{"endpoint", "weld-pm-prod"}}), 1234);
}

TEST(MetricsTest, EmptyRegistryStillRendersValidFamilies) {
  Metrics metrics;
  Exposition e = Parse(metrics.RenderText());
  EXPECT_TRUE(e.samples.empty());
  EXPECT_TRUE(e.types.contains("takt_inference_requests_total"));
}

TEST(MetricsTest, StatusCodeLabelsAreBounded) {
  EXPECT_EQ(StatusCodeLabel(200), "200");
  EXPECT_EQ(StatusCodeLabel(429), "429");
  EXPECT_EQ(StatusCodeLabel(503), "503");
  EXPECT_EQ(StatusCodeLabel(201), "2xx");
  EXPECT_EQ(StatusCodeLabel(302), "3xx");
  EXPECT_EQ(StatusCodeLabel(418), "4xx");
  EXPECT_EQ(StatusCodeLabel(599), "5xx");
  EXPECT_EQ(StatusCodeLabel(0), "other");
  EXPECT_EQ(StatusCodeLabel(1000), "other");
  std::set<std::string_view> labels;
  for (int s = -5; s < 1100; ++s) labels.insert(StatusCodeLabel(s));
  EXPECT_EQ(labels.size(), kStatusLabelCount);
  VariantMetrics m;
  m.Observe(418, 0.01);
  m.Observe(451, 0.01);
  EXPECT_EQ(m.requests(400 + 99), 2u) << "418 and 451 share 4xx";
  EXPECT_EQ(m.requests_total(), 2u);
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  Metrics metrics;
  const std::string nasty = "we\"ld\\pm\nprod";
  metrics.ForVariant(nasty, "v\"1")->Observe(200, 0.01);
  metrics.AddCollector([](MetricWriter& w) {
    w.Family("takt_test_info", "gauge", "help with \\ and\nnewline");
    w.Sample("takt_test_info", {{"path", "C:\\dir\n\"x\""}}, 1);
  });
  std::string text = metrics.RenderText();
  EXPECT_NE(text.find(R"(endpoint="we\"ld\\pm\nprod")"), std::string::npos) << text;
  EXPECT_NE(text.find("# HELP takt_test_info help with \\\\ and\\nnewline\n"), std::string::npos) << text;
  Exposition e = Parse(text);
  const Sample* s =
      Find(e, "takt_inference_requests_total", {{"endpoint", nasty}, {"variant", "v\"1"}, {"code", "200"}});
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->value, 1);
  s = Find(e, "takt_test_info", {{"path", "C:\\dir\n\"x\""}});
  ASSERT_NE(s, nullptr);
}

TEST(MetricsTest, CollectorsWriteFamiliesAndInvalidNamesAreLeftOut) {
  Metrics metrics;
  int id = metrics.AddCollector([](MetricWriter& w) {
    w.Family("takt_widgets_total", "counter", "Widgets.");
    w.Sample("takt_widgets_total", {{"kind", "a"}}, 3);
    w.Sample("takt_widgets_total", {{"kind", "b"}}, 1.5);
    w.Family("9bad", "gauge", "invalid name");
    w.Sample("9bad", {}, 1);
    w.Sample("takt_widgets_total", {{"bad-label", "x"}}, 1);
    w.Sample("takt_widgets_total", {{"__reserved", "x"}}, 1);
  });
  std::string text = metrics.RenderText();
  Exposition e = Parse(text);
  EXPECT_EQ(Find(e, "takt_widgets_total", {{"kind", "a"}})->value, 3);
  EXPECT_EQ(Find(e, "takt_widgets_total", {{"kind", "b"}})->value, 1.5);
  EXPECT_EQ(text.find("9bad"), std::string::npos);
  EXPECT_EQ(text.find("bad-label"), std::string::npos);
  EXPECT_EQ(text.find("__reserved"), std::string::npos);
  metrics.RemoveCollector(id);
  EXPECT_EQ(metrics.RenderText().find("takt_widgets_total"), std::string::npos);
}

TEST(MetricsTest, ProcessCollectorReportsPlausibleValues) {
  Metrics metrics;
  AddProcessCollector(metrics, "0.1.0");
  Exposition e = Parse(metrics.RenderText());
  const Sample* start = Find(e, "process_start_time_seconds", {});
  ASSERT_NE(start, nullptr);
  double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(start->value, now + 1);
  EXPECT_GT(start->value, now - 24 * 3600) << "a test process started within the day";
  ASSERT_NE(Find(e, "process_resident_memory_bytes", {}), nullptr);
  EXPECT_GT(Find(e, "process_resident_memory_bytes", {})->value, 0);
  ASSERT_NE(Find(e, "process_open_fds", {}), nullptr);
  ASSERT_NE(Find(e, "takt_build_info", {{"version", "0.1.0"}}), nullptr);
  EXPECT_EQ(e.types["process_cpu_seconds_total"], "counter");
}

TEST(MetricsTest, RetiredSeriesAreNotRenderedAndComeBackOnLookup) {
  Metrics metrics;
  VariantMetrics* v3 = metrics.ForVariant("weld-pm-prod", "weld-pm-v3");
  VariantMetrics* v4 = metrics.ForVariant("weld-pm-prod", "weld-pm-v4");
  VariantMetrics* dev = metrics.ForVariant("weld-pm-dev", "weld-pm-v4");
  metrics.ForEndpoint("weld-pm-prod")->Reject(RejectReason::kOverloaded);
  v3->Observe(200, 0.01);
  v4->Observe(200, 0.01);
  dev->Observe(200, 0.01);
  EXPECT_EQ(metrics.ForVariant("weld-pm-prod", "weld-pm-v3"), v3) << "stable handle";

  metrics.RetireVariant("weld-pm-prod", "weld-pm-v3");
  std::string text = metrics.RenderText();
  EXPECT_EQ(text.find("weld-pm-v3"), std::string::npos);
  EXPECT_NE(text.find("weld-pm-v4"), std::string::npos);

  metrics.Retire("weld-pm-prod");
  text = metrics.RenderText();
  EXPECT_EQ(text.find("weld-pm-prod"), std::string::npos) << text;
  EXPECT_NE(text.find("weld-pm-dev"), std::string::npos);
  v4->Observe(200, 0.01);  // a request finishing on a retired variant is harmless

  EXPECT_EQ(metrics.ForVariant("weld-pm-prod", "weld-pm-v4"), v4);
  Exposition e = Parse(metrics.RenderText());
  const Sample* s = Find(e, "takt_inference_requests_total",
                         {{"endpoint", "weld-pm-prod"}, {"variant", "weld-pm-v4"}, {"code", "200"}});
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->value, 2) << "the counter kept its count";
}

TEST(MetricsTest, HistogramEdgesAreInclusiveAndNanGoesToInf) {
  static constexpr std::array<double, 3> kBounds = {1, 2, 4};
  Histogram h(kBounds);
  h.Observe(1);  // le="1" is inclusive
  h.Observe(1.5);
  h.Observe(4);
  h.Observe(100);
  h.Observe(-3);
  auto s = h.Read();
  ASSERT_EQ(s.cumulative.size(), 4u);
  EXPECT_EQ(s.cumulative[0], 2u);  // -3, 1
  EXPECT_EQ(s.cumulative[1], 3u);
  EXPECT_EQ(s.cumulative[2], 4u);
  EXPECT_EQ(s.cumulative[3], 5u);
  EXPECT_EQ(s.count, 5u);
  EXPECT_DOUBLE_EQ(s.sum, 103.5);
  h.Observe(NAN);
  EXPECT_EQ(h.Read().cumulative[2], 4u);
  EXPECT_EQ(h.Read().count, 6u);
}

TEST(MetricsTest, ConcurrentRecordingKeepsExactTotals) {
  Metrics metrics;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50000;
  std::atomic<bool> done{false};
  // A scraper renders all along; every render must be valid.
  std::thread scraper([&] {
    int renders = 0;
    while (!done.load() || renders == 0) {
      std::string text = metrics.RenderText();
      Exposition e = Parse(text);
      CheckHistograms(e);
      ++renders;
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Two variants shared by all threads, looked up concurrently too.
      VariantMetrics* m = metrics.ForVariant("weld-pm-prod", t % 2 ? "weld-pm-v3" : "weld-pm-v4");
      EndpointMetrics* ep = metrics.ForEndpoint("weld-pm-prod");
      for (int i = 0; i < kPerThread; ++i) {
        VariantMetrics::InFlightScope scope(m);
        m->Observe(i % 10 == 0 ? 503 : 200, 0.25);  // 0.25 sums exactly in a double
        m->ObserveBatch(4);
        ep->AddCaptureBytes(3);
      }
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  scraper.join();

  Exposition e = Parse(metrics.RenderText());
  for (std::string variant : {"weld-pm-v3", "weld-pm-v4"}) {
    std::map<std::string, std::string> l{{"endpoint", "weld-pm-prod"}, {"variant", variant}};
    const double per_variant = kThreads / 2.0 * kPerThread;
    EXPECT_EQ(Find(e, "takt_inference_request_duration_seconds_count", l)->value, per_variant);
    EXPECT_EQ(Find(e, "takt_inference_request_duration_seconds_sum", l)->value, per_variant * 0.25);
    EXPECT_EQ(Find(e, "takt_inference_batch_size_sum", l)->value, per_variant * 4);
    EXPECT_EQ(Find(e, "takt_endpoint_in_flight_requests", l)->value, 0);
    auto with_code = [&](const char* code) {
      auto lc = l;
      lc["code"] = code;
      return Find(e, "takt_inference_requests_total", lc)->value;
    };
    EXPECT_EQ(with_code("200"), per_variant * 0.9);
    EXPECT_EQ(with_code("503"), per_variant * 0.1);
  }
  EXPECT_EQ(Find(e, "takt_capture_bytes_total", {{"endpoint", "weld-pm-prod"}})->value,
            3.0 * kThreads * kPerThread);
}

}  // namespace
}  // namespace takt::serving
