// A real Prometheus (the Debian package's /usr/bin/prometheus) scrapes the
// real `takt server`'s /metrics the way an operator sets it up: with the
// bearer token of a principal that has the monitoring persona. After the test
// has sent inference requests to weld-pm-dev, PromQL over what Prometheus
// stored must give exactly that many requests, in the request counter and in
// the duration histogram. Two more jobs scrape the same target with a data
// scientist's token (no metrics:read) and with no token: takt refuses them
// (403, 401), so they are down and store no takt series. Skipped when
// Prometheus is not installed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/json.h"
#include "e2e/serving_fixture.h"
#include "http/client.h"
#include "http/url.h"

namespace takt::testkit {
namespace {

constexpr const char* kPrometheus = "/usr/bin/prometheus";
constexpr auto kWaitLimit = std::chrono::seconds(60);  // a deadline for waiting, never an assertion

// A loopback port that was free a moment ago (Prometheus needs a fixed one).
int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// Polls `check` every 200 ms until it holds or `limit` has passed.
bool WaitFor(std::chrono::seconds limit, const std::function<bool()>& check) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (check()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return check();
}

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One series of a PromQL instant vector.
struct Sample {
  Json labels;
  double value = 0;
};

// A Prometheus server in its own process group over a temporary directory
// (configuration, TSDB, log). The destructor stops it (SIGTERM to the group,
// SIGKILL after 10 s) and removes the directory.
class PrometheusServer {
 public:
  PrometheusServer() : dir_(MakeTempDir("takt-e2e-prometheus")) {}
  ~PrometheusServer() {
    Stop();
    if (!dir_.empty() && !std::getenv("TAKT_KEEP_TEST_DIRS")) std::filesystem::remove_all(dir_);
  }
  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  const std::string& dir() const { return dir_; }

  // Starts Prometheus with `config` (prometheus.yml) and waits until it is
  // ready; false with the reason in `error` otherwise.
  bool Start(const std::string& config, std::string* error) {
    if (dir_.empty()) return *error = "no temporary directory", false;
    const std::string config_path = dir_ + "/prometheus.yml";
    WriteFile(config_path, config);
    const int port = FreeLoopbackPort();
    if (port == 0) return *error = "no free loopback port", false;
    url_ = "http://127.0.0.1:" + std::to_string(port);
    std::vector<std::string> args = {
        kPrometheus, "--config.file=" + config_path, "--storage.tsdb.path=" + dir_ + "/tsdb",
        "--web.listen-address=127.0.0.1:" + std::to_string(port), "--log.level=info"};
    const std::string log_path = LogPath();
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      FILE* o = std::freopen(log_path.c_str(), "w", stdout);
      FILE* e = std::freopen(log_path.c_str(), "a", stderr);
      FILE* i = std::freopen("/dev/null", "r", stdin);
      (void)o;
      (void)e;
      (void)i;
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(kPrometheus, argv.data());
      std::_Exit(127);
    }
    if (pid_ < 0) return *error = "fork failed", false;
    ::setpgid(pid_, pid_);  // also here, so that Stop() finds the group whoever runs first
    auto client = http::Client::Create(url_);
    if (!client) return *error = client.error().ToString(), false;
    client_.emplace(std::move(*client));
    client_->SetTimeout(std::chrono::seconds(5));
    bool ready = WaitFor(kWaitLimit, [&] {
      if (!Running()) return true;
      auto r = client_->Send("GET", "/-/ready");
      return r.has_value() && r->status == 200;
    });
    if (!Running()) return *error = "prometheus exited:\n" + Log(), false;
    if (!ready) return *error = "prometheus not ready within the deadline:\n" + Log(), false;
    return true;
  }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(-pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  bool Running() {
    if (pid_ <= 0) return false;
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  // The end of Prometheus's log, for failure messages.
  std::string Log() const {
    std::string text = ReadFileOrEmpty(LogPath());
    return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
  }

  // GET `target` of the HTTP API as JSON; null on any failure.
  Json GetJson(const std::string& target) {
    if (!client_) return nullptr;
    auto r = client_->Send("GET", target);
    if (!r || r->status != 200) return nullptr;
    return Json::parse(r->body, nullptr, false);
  }

  // An instant query through /api/v1/query; nullopt if the query failed.
  std::optional<std::vector<Sample>> Query(const std::string& promql) {
    Json j = GetJson("/api/v1/query?query=" + http::PercentEncode(promql));
    if (!j.is_object() || j.value("status", "") != "success") return std::nullopt;
    std::vector<Sample> out;
    for (const auto& r : j["data"]["result"]) {
      // Prometheus writes sample values as strings ("7", "NaN", "+Inf").
      out.push_back({r["metric"], std::strtod(r["value"][1].get<std::string>().c_str(), nullptr)});
    }
    return out;
  }

  // The active targets of `job` from /api/v1/targets.
  std::vector<Json> Targets(const std::string& job) {
    std::vector<Json> out;
    Json j = GetJson("/api/v1/targets?state=active");
    if (!j.is_object()) return out;
    for (const auto& t : j["data"]["activeTargets"]) {
      if (t["labels"].value("job", "") == job) out.push_back(t);
    }
    return out;
  }

 private:
  std::string LogPath() const { return dir_ + "/prometheus.log"; }

  std::string dir_, url_;
  pid_t pid_ = -1;
  std::optional<http::Client> client_;
};

class PrometheusScrapeTest : public WeldPmServingTest {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kPrometheus))
      GTEST_SKIP() << kPrometheus << " is not installed (scripts/install-deps.sh installs it)";
    ASSERT_NO_FATAL_FAILURE(StartServerWithProject());
    ASSERT_NO_FATAL_FAILURE(ReleaseVersion1("model_group: weld-pm\nstages:\n  - name: dev\n"));
    scraper_ = server_.CreatePrincipal("prometheus", {"monitoring"});
    ASSERT_FALSE(scraper_.empty());
  }

  // The value of a query that must give exactly one series; NaN otherwise.
  double OneValue(const std::string& promql) {
    auto r = prometheus_.Query(promql);
    if (!r || r->size() != 1) return std::numeric_limits<double>::quiet_NaN();
    return (*r)[0].value;
  }

  PrometheusServer prometheus_;
  std::string scraper_;  // the monitoring principal's token
};

TEST_F(PrometheusScrapeTest, MonitoringTokenScrapesExactCountsAndOthersAreRefused) {
  // The monitoring token from a file, as an operator deploys it; the data
  // scientist's inline. All three jobs scrape the same takt server.
  const std::string token_file = prometheus_.dir() + "/takt.token";
  WriteFile(token_file, scraper_ + "\n");
  ::chmod(token_file.c_str(), 0600);
  const std::string target = "127.0.0.1:" + std::to_string(server_.port());
  auto job = [&](const std::string& name, const std::string& authorization) {
    return "  - job_name: " + name +
           "\n"
           "    metrics_path: /metrics\n" +
           authorization + "    static_configs:\n      - targets: ['" + target + "']\n";
  };
  const std::string config =
      "global:\n"
      "  scrape_interval: 1s\n"
      "  scrape_timeout: 900ms\n"
      "  evaluation_interval: 1s\n"
      "scrape_configs:\n" +
      job("takt", "    authorization:\n      type: Bearer\n      credentials_file: " + token_file + "\n") +
      job("takt-data-scientist",
          "    authorization:\n      type: Bearer\n      credentials: '" + sam_ + "'\n") +
      job("takt-anonymous", "");
  std::string error;
  ASSERT_TRUE(prometheus_.Start(config, &error)) << error;

  // A first good scrape, before any request: the duration histogram exists,
  // empty, so that rate() later sees it grow.
  bool scraped = WaitFor(kWaitLimit, [&] {
    return OneValue(R"(up{job="takt"})") == 1 &&
           OneValue(R"(takt_inference_request_duration_seconds_count{job="takt",endpoint="weld-pm-dev"})") ==
               0;
  });
  ASSERT_TRUE(scraped) << "targets: " << Json(prometheus_.Targets("takt")).dump() << "\nprometheus log:\n"
                       << prometheus_.Log();

  // Seven successful requests, OIP v2 and SageMaker CSV.
  constexpr int kRequests = 7;
  http::Client c = ClientAs(sam_);
  for (int i = 0; i < kRequests; ++i) {
    const std::string temp = std::to_string(60 + i);
    const std::string oip =
        R"({"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [4.2, 11.5, )" +
        temp + "]}]}";
    auto r = i % 2 == 0 ? c.Send("POST", "/v2/models/weld-pm-dev/infer", oip, "application/json")
                        : c.Send("POST", "/endpoints/weld-pm-dev/invocations", "4.2,11.5," + temp + "\n",
                                 "text/csv");
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
    ASSERT_EQ(r->status, 200) << r->body;
  }
  // Wait for a scrape that began after the last reply (takt counts a request
  // before it replies). The margin covers Prometheus aligning scrape timestamps
  // to its schedule by a few milliseconds.
  const double sent = UnixNow() + 0.1;
  bool rescraped = WaitFor(kWaitLimit, [&] {
    double t = OneValue(R"(timestamp(up{job="takt"}))");
    return !std::isnan(t) && t > sent;
  });
  ASSERT_TRUE(rescraped) << "no scrape after the requests\nprometheus log:\n" << prometheus_.Log();
  EXPECT_EQ(OneValue(R"(up{job="takt"})"), 1);

  // The request counter: one series, code 200, exactly the requests sent.
  auto requests = prometheus_.Query(R"(takt_inference_requests_total{job="takt",endpoint="weld-pm-dev"})");
  ASSERT_TRUE(requests.has_value());
  ASSERT_EQ(requests->size(), 1u) << [&] {
    std::string labels;
    for (const auto& r : *requests) labels += r.labels.dump() + "\n";
    return labels;
  }();
  EXPECT_EQ((*requests)[0].labels.value("code", ""), "200") << (*requests)[0].labels.dump();
  EXPECT_EQ((*requests)[0].labels.value("variant", ""), "weld-pm-v1") << (*requests)[0].labels.dump();
  EXPECT_EQ((*requests)[0].value, kRequests);

  // The duration histogram agrees: its count and its +Inf bucket.
  EXPECT_EQ(OneValue(R"(takt_inference_request_duration_seconds_count{job="takt",endpoint="weld-pm-dev"})"),
            kRequests);
  EXPECT_EQ(
      OneValue(
          R"(takt_inference_request_duration_seconds_bucket{job="takt",endpoint="weld-pm-dev",le="+Inf"})"),
      kRequests);

  // histogram_quantile over the rate of the buckets lies in the bucket where
  // the 99th percentile of the stored bucket counts falls (no assumption about
  // how fast the model is).
  auto buckets = prometheus_.Query(
      R"(takt_inference_request_duration_seconds_bucket{job="takt",endpoint="weld-pm-dev"})");
  ASSERT_TRUE(buckets.has_value());
  std::map<double, double> cumulative;  // le -> count
  for (const auto& b : *buckets) cumulative[std::strtod(b.labels.value("le", "").c_str(), nullptr)] = b.value;
  ASSERT_EQ(cumulative.size(), 18u);                       // 17 bounds and +Inf
  const double rank = 0.99 * cumulative.rbegin()->second;  // of the +Inf bucket, the total
  double lower = 0, upper = 0;
  for (const auto& [le, n] : cumulative) {
    upper = le;
    if (n >= rank) break;
    lower = le;
  }
  if (std::isinf(upper)) upper = lower;  // histogram_quantile answers the highest finite bound then
  const double p99 = OneValue(
      R"(histogram_quantile(0.99, sum by (le) (rate(takt_inference_request_duration_seconds_bucket{job="takt",endpoint="weld-pm-dev"}[5m]))))");
  ASSERT_FALSE(std::isnan(p99)) << "no p99";
  EXPECT_GE(p99, lower);
  EXPECT_LE(p99, upper);

  // The data scientist's token (403) and no token (401): takt refuses the
  // scrape, so those jobs are down and stored none of takt's series.
  const std::map<std::string, std::string> refused = {{"takt-data-scientist", "403"},
                                                      {"takt-anonymous", "401"}};
  for (const auto& [name, status] : refused) {
    std::string last_error;
    bool seen = WaitFor(kWaitLimit, [&] {
      auto t = prometheus_.Targets(name);
      if (t.size() != 1 || t[0].value("health", "") == "unknown") return false;
      last_error = t[0].value("lastError", "");
      return true;
    });
    ASSERT_TRUE(seen) << name << " never scraped\nprometheus log:\n" << prometheus_.Log();
    EXPECT_EQ(OneValue(R"(up{job=")" + name + R"("})"), 0) << name;
    EXPECT_NE(last_error.find("HTTP status " + status), std::string::npos) << name << ": " << last_error;
    auto stored = prometheus_.Query(R"({job=")" + name + R"(",__name__=~"takt_.*|process_.*"})");
    ASSERT_TRUE(stored.has_value());
    EXPECT_TRUE(stored->empty()) << name << " stored " << stored->size() << " series";
    EXPECT_EQ(OneValue(R"(scrape_samples_scraped{job=")" + name + R"("})"), 0) << name;
  }
  // The monitoring job itself had no error.
  auto good = prometheus_.Targets("takt");
  ASSERT_EQ(good.size(), 1u);
  EXPECT_EQ(good[0].value("health", ""), "up");
  EXPECT_EQ(good[0].value("lastError", ""), "");
}

}  // namespace
}  // namespace takt::testkit
