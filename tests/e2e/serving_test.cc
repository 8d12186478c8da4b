// Online serving through the real binary: a model trained in a notebook is
// released to weld-pm-dev and called the ways users' clients call it — Open
// Inference Protocol v2 (JSON), the SageMaker runtime (CSV and JSON) and
// MLflow's scoring formats — with the same predictions everywhere; bad input
// gets a precise 4xx; /metrics counts the requests in Prometheus format; the
// requests are captured (encrypted) and read back with `takt endpoint capture`.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/json.h"
#include "e2e/serving_fixture.h"
#include "http/client.h"

namespace takt::testkit {
namespace {

class ServingE2eTest : public WeldPmServingTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(StartServerWithProject());
    ASSERT_NO_FATAL_FAILURE(
        ReleaseVersion1("model_group: weld-pm\n"
                        "stages:\n"
                        "  - name: dev\n"
                        "    replicas: {min: 1, max: 3}\n"
                        "    autoscaling: {target_in_flight: 2}\n"
                        "    batching: {max_batch_size: 16}\n"
                        "    queue: {capacity: 64}\n"
                        "    capture: 100\n"));
  }
};

TEST_F(ServingE2eTest, EveryProtocolGivesTheSamePredictions) {
  http::Client c = ClientAs(sam_);
  // The features are force_kn, current_ka, temp_c; the second row has a missing value.
  const std::string csv = "4.2,11.5,61.0\n3.9,,75.5\n";
  auto sm = c.Send("POST", "/endpoints/weld-pm-dev/invocations", csv, "text/csv");
  ASSERT_TRUE(sm.has_value());
  ASSERT_EQ(sm->status, 200) << sm->body;
  EXPECT_EQ(sm->headers["x-amzn-invoked-production-variant"], "weld-pm-v1");
  std::vector<std::string> lines;
  {
    std::string line;
    for (char ch : sm->body) {
      if (ch == '\n') {
        lines.push_back(line);
        line.clear();
      } else {
        line += ch;
      }
    }
    if (!line.empty()) lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 2u) << sm->body;
  const double p0 = std::stod(lines[0]), p1 = std::stod(lines[1]);

  auto expect_json_predictions = [&](const std::string& what, const http::ClientResponse& r) {
    ASSERT_EQ(r.status, 200) << what << ": " << r.body;
    Json j = ParseBody(r.body);
    ASSERT_TRUE(j.contains("predictions")) << what << ": " << r.body;
    ASSERT_EQ(j["predictions"].size(), 2u) << what;
    EXPECT_NEAR(j["predictions"][0].get<double>(), p0, 1e-6) << what;
    EXPECT_NEAR(j["predictions"][1].get<double>(), p1, 1e-6) << what;
  };
  const std::vector<std::pair<std::string, std::string>> json_bodies = {
      {"sagemaker instances", R"({"instances": [[4.2, 11.5, 61.0], [3.9, null, 75.5]]})"},
      {"bare rows", R"([[4.2, 11.5, 61.0], [3.9, null, 75.5]])"},
      {"mlflow dataframe_split",
       R"({"dataframe_split": {"columns": ["temp_c", "force_kn", "current_ka"],
                               "data": [[61.0, 4.2, 11.5], [75.5, 3.9, null]]}})"},
      {"mlflow dataframe_records",
       R"({"dataframe_records": [{"force_kn": 4.2, "current_ka": 11.5, "temp_c": 61.0},
                                 {"force_kn": 3.9, "current_ka": null, "temp_c": 75.5}]})"},
      {"mlflow inputs",
       R"({"inputs": {"force_kn": [4.2, 3.9], "current_ka": [11.5, null], "temp_c": [61.0, 75.5]}})"},
  };
  for (const auto& [what, body] : json_bodies) {
    auto r = c.Send("POST", "/endpoints/weld-pm-dev/invocations", body, "application/json");
    ASSERT_TRUE(r.has_value()) << what;
    expect_json_predictions(what, *r);
  }

  // OIP v2: one [2, 3] FP32 input, and one input per feature.
  auto oip = c.Send("POST", "/v2/models/weld-pm-dev/infer",
                    R"({"id": "req-7", "inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32",
                        "data": [4.2, 11.5, 61.0, 3.9, null, 75.5]}]})",
                    "application/json");
  ASSERT_TRUE(oip.has_value());
  ASSERT_EQ(oip->status, 200) << oip->body;
  Json o = ParseBody(oip->body);
  EXPECT_EQ(o["model_name"], "weld-pm-dev");
  EXPECT_EQ(o["id"], "req-7");
  ASSERT_EQ(o["outputs"].size(), 1u);
  EXPECT_NEAR(o["outputs"][0]["data"][0].get<double>(), p0, 1e-6);
  EXPECT_NEAR(o["outputs"][0]["data"][1].get<double>(), p1, 1e-6);
  auto per_feature =
      c.Send("POST", "/v2/models/weld-pm-dev/versions/1/infer",
             R"({"inputs": [{"name": "temp_c", "shape": [1], "datatype": "FP64", "data": [61.0]},
                                {"name": "force_kn", "shape": [1], "datatype": "FP64", "data": [4.2]},
                                {"name": "current_ka", "shape": [1], "datatype": "FP64", "data": [11.5]}]})",
             "application/json");
  ASSERT_TRUE(per_feature.has_value());
  ASSERT_EQ(per_feature->status, 200) << per_feature->body;
  EXPECT_NEAR(ParseBody(per_feature->body)["outputs"][0]["data"][0].get<double>(), p0, 1e-6);

  // Metadata, versions, health.
  auto meta = c.Send("GET", "/v2/models/weld-pm-dev");
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ(meta->status, 200) << meta->body;
  EXPECT_EQ(ParseBody(meta->body)["versions"], Json({"1"}));
  auto ready = c.Send("GET", "/v2/models/weld-pm-dev/versions/1/ready");
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->status, 200) << ready->body;
  auto missing_version = c.Send("GET", "/v2/models/weld-pm-dev/versions/9");
  ASSERT_TRUE(missing_version.has_value());
  EXPECT_EQ(missing_version->status, 404);
  EXPECT_TRUE(ParseBody(missing_version->body)["error"].is_string()) << missing_version->body;
  http::Client anonymous = ClientAs("");
  for (const char* path : {"/v2/health/live", "/v2/health/ready", "/v2"}) {
    auto h = anonymous.Send("GET", path);
    ASSERT_TRUE(h.has_value()) << path;
    EXPECT_EQ(h->status, 200) << path << ": " << h->body;
  }
}

TEST_F(ServingE2eTest, BadInputIsAPrecise4xxAndChangesNothing) {
  http::Client c = ClientAs(sam_);
  struct Case {
    std::string what, method, path, body, content_type;
    int status;
    std::string message;  // part of the error text
  };
  const std::vector<Case> cases = {
      {"empty body", "POST", "/endpoints/weld-pm-dev/invocations", "", "text/csv", 400, "empty"},
      {"too few columns", "POST", "/endpoints/weld-pm-dev/invocations", "1,2\n", "text/csv", 400, "3"},
      {"not a number", "POST", "/endpoints/weld-pm-dev/invocations", "1,abc,3\n", "text/csv", 400, "abc"},
      {"nan", "POST", "/endpoints/weld-pm-dev/invocations", "1,nan,3\n", "text/csv", 400, "nan"},
      {"infinity", "POST", "/endpoints/weld-pm-dev/invocations", R"({"instances": [[1, 1e999, 3]]})",
       "application/json", 400, "finite"},
      {"unknown column", "POST", "/endpoints/weld-pm-dev/invocations",
       R"({"dataframe_records": [{"force_kn": 1, "current_ka": 2, "temp_c": 3, "humidity": 4}]})",
       "application/json", 400, "humidity"},
      {"missing feature", "POST", "/endpoints/weld-pm-dev/invocations",
       R"({"dataframe_split": {"columns": ["force_kn", "current_ka"], "data": [[1, 2]]}})",
       "application/json", 400, "temp_c"},
      {"bad JSON", "POST", "/endpoints/weld-pm-dev/invocations", R"({"instances": [[1, 2, 3]})",
       "application/json", 400, ""},
      {"media type", "POST", "/endpoints/weld-pm-dev/invocations", "1,2,3", "text/plain", 415, "text/plain"},
      {"unknown endpoint", "POST", "/endpoints/nope-dev/invocations", "1,2,3\n", "text/csv", 404, "nope-dev"},
      {"oip wrong shape", "POST", "/v2/models/weld-pm-dev/infer",
       R"({"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3]}]})",
       "application/json", 400, "shape"},
      {"oip wrong datatype", "POST", "/v2/models/weld-pm-dev/infer",
       R"({"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "BYTES", "data": ["a", "b", "c"]}]})",
       "application/json", 400, "BYTES"},
      {"oip unknown version", "POST", "/v2/models/weld-pm-dev/versions/5/infer",
       R"({"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})",
       "application/json", 404, "version 5"},
  };
  for (const auto& k : cases) {
    auto r = c.Send(k.method, k.path, k.body, k.content_type);
    ASSERT_TRUE(r.has_value()) << k.what;
    EXPECT_EQ(r->status, k.status) << k.what << ": " << r->body;
    EXPECT_NE(r->body.find(k.message), std::string::npos) << k.what << ": " << r->body;
    if (k.path.rfind("/endpoints/", 0) == 0 && k.status != 404) {
      EXPECT_FALSE(r->headers["x-amzn-errortype"].empty()) << k.what;
    }
  }
  // A target variant the endpoint does not serve.
  c.SetHeader("X-Amzn-SageMaker-Target-Variant", "weld-pm-v9");
  auto variant = c.Send("POST", "/endpoints/weld-pm-dev/invocations", "1,2,3\n", "text/csv");
  ASSERT_TRUE(variant.has_value());
  EXPECT_EQ(variant->status, 404);
  EXPECT_NE(variant->body.find("weld-pm-v1"), std::string::npos) << variant->body;  // names what it serves
  // Huge bodies: refused before the handler.
  http::Client plain = ClientAs(sam_);
  auto huge =
      plain.Send("POST", "/endpoints/weld-pm-dev/invocations", std::string(17 << 20, '1'), "text/csv");
  ASSERT_TRUE(huge.has_value());
  EXPECT_EQ(huge->status, 413);
  // The endpoint still serves.
  auto ok = plain.Send("POST", "/endpoints/weld-pm-dev/invocations", "1,2,3\n", "text/csv");
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->status, 200) << ok->body;
}

TEST_F(ServingE2eTest, MetricsCountRequestsAndCaptureKeepsThem) {
  http::Client c = ClientAs(sam_);
  c.SetHeader("X-Amzn-SageMaker-Inference-Id", "inf-e2e-1");
  c.SetHeader("X-Amzn-SageMaker-Custom-Attributes", "trace=42");
  for (int i = 0; i < 5; ++i) {
    auto r = c.Send("POST", "/endpoints/weld-pm-dev/invocations", "4.2,11.5," + std::to_string(60 + i) + "\n",
                    "text/csv");
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->headers["x-amzn-sagemaker-custom-attributes"], "trace=42");
    EXPECT_EQ(r->headers["x-amzn-sagemaker-inference-id"], "inf-e2e-1");
  }
  auto bad = c.Send("POST", "/endpoints/weld-pm-dev/invocations", "1,2\n", "text/csv");
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->status, 400);

  // /metrics: for principals with metrics:read (ML engineers, a monitoring identity), not data scientists.
  EXPECT_EQ(ClientAs(sam_).Send("GET", "/metrics")->status, 403);
  EXPECT_EQ(ClientAs("").Send("GET", "/metrics")->status, 401);
  auto m = ClientAs(eve_).Send("GET", "/metrics");
  ASSERT_TRUE(m.has_value());
  ASSERT_EQ(m->status, 200) << m->body;
  EXPECT_NE(m->content_type.find("text/plain"), std::string::npos);
  EXPECT_NE(m->body.find(
                R"(takt_inference_requests_total{endpoint="weld-pm-dev",variant="weld-pm-v1",code="200"} 5)"),
            std::string::npos)
      << m->body;
  EXPECT_NE(m->body.find(
                R"(takt_inference_requests_total{endpoint="weld-pm-dev",variant="weld-pm-v1",code="400"} 1)"),
            std::string::npos);
  EXPECT_NE(m->body.find("takt_inference_request_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(m->body.find(R"(takt_endpoint_replicas{endpoint="weld-pm-dev",variant="weld-pm-v1"})"),
            std::string::npos);
  EXPECT_NE(m->body.find("process_start_time_seconds"), std::string::npos);

  // The five good requests were captured; the capture is a data read, audited.
  CliResult cap = server_.Cli(sam_, {"endpoint", "capture", "weld-pm-dev", "-o", "json"});
  ASSERT_EQ(cap.exit_code, 0) << cap.err;
  Json j = ParseBody(cap.out);
  ASSERT_EQ(j["records"].size(), 5u) << cap.out;
  EXPECT_EQ(j["records"][0]["inference_id"], "inf-e2e-1");
  EXPECT_EQ(j["records"][0]["variant"], "weld-pm-v1");
  EXPECT_EQ(j["records"][4]["input"][0]["temp_c"], 64.0);
  EXPECT_EQ(j["records"][0]["output"].size(), 1u);
  CliResult table = server_.Cli(sam_, {"endpoint", "capture", "weld-pm-dev"});
  EXPECT_NE(table.out.find("inf-e2e-1"), std::string::npos) << table.out;
  CliResult audit = server_.Cli(server_.admin_token(),
                                {"audit", "list", "--action", "endpoint:read-capture", "-o", "json"});
  EXPECT_NE(audit.out.find("endpoints/weld-pm-dev/capture"), std::string::npos) << audit.out << audit.err;
  // No segment holds the captured values in the clear.
  for (const auto& f : std::filesystem::recursive_directory_iterator(server_.data_dir() + "/capture")) {
    if (!f.is_regular_file()) continue;
    EXPECT_EQ(ReadFileOrEmpty(f.path().string()).find("inf-e2e-1"), std::string::npos) << f.path();
  }

  // endpoint show: replicas and queues.
  CliResult show = server_.Cli(sam_, {"endpoint", "show", "weld-pm-dev"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("REPLICAS"), std::string::npos) << show.out;
}

}  // namespace
}  // namespace takt::testkit
