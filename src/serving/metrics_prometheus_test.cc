// A real Prometheus (the Debian package's /usr/bin/prometheus) scrapes
// Metrics::RenderText from an http::Server on loopback: the target must come
// up (Prometheus's own parser accepted the exposition), the counters must read
// back through PromQL, and histogram_quantile must work on the duration
// histogram. Skipped when Prometheus is not installed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/temp_dir.h"
#include "http/testing.h"
#include "http/url.h"
#include "serving/metrics.h"

extern char** environ;

namespace takt::serving {
namespace {

constexpr const char* kPrometheus = "/usr/bin/prometheus";

// A loopback port that was free a moment ago (Prometheus needs a fixed one).
uint16_t FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// A child process, terminated (SIGTERM, then SIGKILL) and reaped on scope exit.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const std::filesystem::path& log) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~ChildProcess() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 50; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool started() const { return pid_ > 0; }
  bool running() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  pid_t pid_ = -1;
};

std::string ReadLog(const std::filesystem::path& log) {
  std::ifstream in(log);
  std::stringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
}

// GET `target` from Prometheus's API as JSON; null on any failure.
nlohmann::json GetJson(http::Client& client, const std::string& target) {
  auto response = client.Send("GET", target);
  if (!response || response->status != 200) return nullptr;
  return nlohmann::json::parse(response->body, nullptr, /*allow_exceptions=*/false);
}

// Polls `check` every 200 ms until it is true or `timeout` passed.
bool Eventually(std::chrono::seconds timeout, const std::function<bool()>& check) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (check()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return check();
}

// The instant vector of a PromQL query: (labels, value) per series.
std::vector<std::pair<nlohmann::json, double>> Query(http::Client& client, const std::string& promql) {
  std::vector<std::pair<nlohmann::json, double>> out;
  nlohmann::json j = GetJson(client, "/api/v1/query?query=" + http::PercentEncode(promql));
  if (!j.is_object() || j.value("status", "") != "success") return out;
  for (const auto& r : j["data"]["result"]) {
    out.emplace_back(r["metric"], std::stod(r["value"][1].get<std::string>()));
  }
  return out;
}

TEST(MetricsPrometheusTest, RealPrometheusScrapesAndQueries) {
  if (!std::filesystem::exists(kPrometheus)) GTEST_SKIP() << kPrometheus << " is not installed";

  Metrics metrics;
  AddProcessCollector(metrics, "0.1.0-test");
  VariantMetrics* v3 = metrics.ForVariant("weld-pm-prod", "weld-pm-v3");
  VariantMetrics* v4 = metrics.ForVariant("weld-pm-prod", "weld-pm-v4");
  for (int i = 0; i < 40; ++i) v3->Observe(200, 0.003);  // all in (0.0025, 0.005]
  for (int i = 0; i < 2; ++i) v3->Observe(503, 0.0001);
  for (int i = 0; i < 5; ++i) v4->Observe(200, 0.02);
  v3->ObserveBatch(16);
  v3->SetReplicas(2);
  metrics.ForEndpoint("weld-pm-prod")->Reject(RejectReason::kQueueFull);
  // A label value that needs escaping must not break the scrape.
  metrics.ForVariant("odd\"end\\point\nx", "v1")->Observe(200, 1);

  auto router = std::make_shared<http::Router>();
  router->Add(http::Route{
      .method = "GET", .pattern = "/metrics", .is_public = true, .handler = [&metrics](http::Request&) {
        http::Response r;
        r.content_type = std::string(kMetricsContentType);
        r.body = metrics.RenderText();
        return r;
      }});
  auto server = http::testing::StartServer(router);
  ASSERT_NE(server, nullptr);

  TempDir dir("takt-prom");
  ASSERT_FALSE(dir.path().empty());
  const auto config = dir.path() / "prometheus.yml";
  {
    std::ofstream out(config);
    out << "global:\n"
           "  scrape_interval: 1s\n"
           "  evaluation_interval: 1s\n"
           "scrape_configs:\n"
           "  - job_name: takt\n"
           "    scrape_interval: 1s\n"
           "    scrape_timeout: 900ms\n"
           "    static_configs:\n"
           "      - targets: ['127.0.0.1:"
        << server->port() << "']\n";
  }
  const uint16_t prom_port = FreePort();
  ASSERT_NE(prom_port, 0);
  const auto log = dir.path() / "prometheus.log";
  ChildProcess prometheus({kPrometheus, "--config.file=" + config.string(),
                           "--storage.tsdb.path=" + (dir.path() / "tsdb").string(),
                           "--web.listen-address=127.0.0.1:" + std::to_string(prom_port), "--log.level=warn"},
                          log);
  ASSERT_TRUE(prometheus.started());

  auto client = *http::Client::Create("http://127.0.0.1:" + std::to_string(prom_port));
  client.SetTimeout(std::chrono::seconds(2));

  std::string last_error;
  bool up = Eventually(std::chrono::seconds(30), [&] {
    if (!prometheus.running()) return false;
    nlohmann::json j = GetJson(client, "/api/v1/targets");
    if (!j.is_object()) return false;
    for (const auto& t : j["data"]["activeTargets"]) {
      last_error = t.value("lastError", "");
      if (t.value("health", "") == "up") return true;
    }
    return false;
  });
  ASSERT_TRUE(up) << "target never up; last scrape error: " << last_error << "\nprometheus log:\n"
                  << ReadLog(log);

  // The counters as Prometheus stored them.
  bool matched = Eventually(std::chrono::seconds(15), [&] {
    auto series = Query(client, R"(takt_inference_requests_total{endpoint="weld-pm-prod"})");
    std::map<std::string, double> by_key;
    for (const auto& [labels, value] : series) {
      by_key[labels.value("variant", "") + "/" + labels.value("code", "")] = value;
    }
    return by_key == std::map<std::string, double>{
                         {"weld-pm-v3/200", 40}, {"weld-pm-v3/503", 2}, {"weld-pm-v4/200", 5}};
  });
  EXPECT_TRUE(matched) << ReadLog(log);

  // histogram_quantile over the cumulative buckets: v3's median lies in the
  // (2.5 ms, 5 ms] bucket where its 40 successful requests fell.
  auto p50 = Query(
      client,
      R"(histogram_quantile(0.5, takt_inference_request_duration_seconds_bucket{endpoint="weld-pm-prod",variant="weld-pm-v3"}))");
  ASSERT_EQ(p50.size(), 1u);
  EXPECT_GT(p50[0].second, 0.0025);
  EXPECT_LE(p50[0].second, 0.005);
  auto p99_v4 = Query(
      client,
      R"(histogram_quantile(0.99, sum by (le) (takt_inference_request_duration_seconds_bucket{variant="weld-pm-v4"})))");
  ASSERT_EQ(p99_v4.size(), 1u);
  EXPECT_GT(p99_v4[0].second, 0.01);
  EXPECT_LE(p99_v4[0].second, 0.025);

  // Per-endpoint, escaped and collector series arrived too.
  auto rejected = Query(client, R"(takt_endpoint_rejected_requests_total{reason="queue_full"})");
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].second, 1);
  auto odd = Query(client, "takt_inference_requests_total{endpoint=\"odd\\\"end\\\\point\\nx\"}");
  ASSERT_EQ(odd.size(), 1u);
  EXPECT_EQ(odd[0].second, 1);
  auto build = Query(client, R"(takt_build_info{version="0.1.0-test"})");
  ASSERT_EQ(build.size(), 1u);
  EXPECT_EQ(Query(client, "takt_endpoint_replicas{variant=\"weld-pm-v3\"}").at(0).second, 2);
}

}  // namespace
}  // namespace takt::serving
