// One enforcement point: every path that returns dataset rows goes through the
// governed reader. For each path this test proves that a non-granted column is
// absent, a masked column never appears in plaintext, and filtered rows are
// absent — in outputs, run artifacts, logs, errors and the audit log alike.
#include <gtest/gtest.h>

#include <filesystem>

#include "connectors/testing_postgres.h"
#include "core/json.h"
#include "e2e/testkit.h"
#include "http/client.h"
#include "http/url.h"

namespace takt::testkit {
namespace {

namespace fs = std::filesystem;

// Serials that must never reach the data scientist in plaintext, a column he
// is not granted, and a plant whose rows his grant filters out.
constexpr const char* kSerialPrefix = "WG-SECRET-";
constexpr const char* kHiddenColumn = "operator_badge";
constexpr const char* kHiddenBadge = "BADGE-77341";
constexpr const char* kFilteredPlant = "PLANT-HIDDEN";

std::string Telemetry() {
  std::string csv =
      "timestamp,plant,robot_serial,operator_badge,motor_current_a,motor_temp_c,fails_within_24h\n";
  for (int robot = 0; robot < 6; ++robot) {
    const std::string plant = robot < 4 ? (robot % 2 ? "P1" : "P2") : kFilteredPlant;
    for (int h = 0; h < 48; ++h) {
      char line[256];
      std::snprintf(line, sizeof line, "2026-01-%02dT%02d:00:00Z,%s,%s%04d,%s,%.2f,%.2f,%d\n", 1 + h / 24,
                    h % 24, plant.c_str(), kSerialPrefix, robot, kHiddenBadge, 10.0 + robot + h * 0.05,
                    60.0 + h * 0.1, h > 40 && robot == 1 ? 1 : 0);
      csv += line;
    }
  }
  return csv;
}

class GovernanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(server_.Start(&error)) << error;
    admin_ = server_.admin_token();
    dana_ = server_.CreatePrincipal("dana", {"data-engineer"});
    sam_ = server_.CreatePrincipal("sam", {"data-scientist"});
    eve_ = server_.CreatePrincipal("eve", {"data-scientist"});
    WriteFile(server_.dir() + "/t.csv", Telemetry());
    Must(server_.Cli(dana_, {"dataset", "ingest", "weld-telemetry", server_.dir() + "/t.csv", "--tag",
                             "robot_serial=pii"}));
    Must(server_.Cli(admin_, {"project", "create", "weld-pm", "--member", "sam"}));
    Must(server_.Cli(dana_, {"grant", "create", "--to", "project:weld-pm", "--dataset", "weld-telemetry",
                             "--exclude", kHiddenColumn, "--where",
                             std::string("plant != '") + kFilteredPlant + "'", "--mask", "tag:pii=hash"}));
  }

  void Must(const CliResult& r) { ASSERT_EQ(r.exit_code, 0) << r.out << r.err; }

  // The three properties, on any text a path returned.
  void ExpectGoverned(const std::string& what, const std::string& text) {
    EXPECT_EQ(text.find(kSerialPrefix), std::string::npos) << what << " shows a serial in plaintext";
    EXPECT_EQ(text.find(kHiddenBadge), std::string::npos) << what << " shows a non-granted column's value";
    EXPECT_EQ(text.find(kHiddenColumn), std::string::npos) << what << " names the non-granted column";
    EXPECT_EQ(text.find(kFilteredPlant), std::string::npos) << what << " shows a filtered-out row";
  }

  TaktServer server_;
  std::string admin_, dana_, sam_, eve_;
};

TEST_F(GovernanceTest, EveryReadPathReturnsOnlyTheGrantedMaskedFilteredRows) {
  // The owner sees everything (so the data really is there).
  CliResult owner = server_.Cli(dana_, {"dataset", "head", "weld-telemetry", "-n", "300", "-o", "json"});
  Must(owner);
  EXPECT_NE(owner.out.find(kSerialPrefix), std::string::npos);
  EXPECT_NE(owner.out.find(kFilteredPlant), std::string::npos);

  // 1. dataset head, as JSON and as a table.
  CliResult head = server_.Cli(sam_, {"dataset", "head", "weld-telemetry", "-n", "300", "-o", "json"});
  Must(head);
  ExpectGoverned("dataset head -o json", head.out + head.err);
  Json t = Json::parse(head.out);
  EXPECT_EQ(t["rows"].size(), 4u * 48u);
  CliResult table = server_.Cli(sam_, {"dataset", "head", "weld-telemetry", "-n", "20"});
  Must(table);
  ExpectGoverned("dataset head", table.out + table.err);

  // 2. dataset export, CSV and JSON Lines, streamed.
  for (const char* format : {"csv", "jsonl"}) {
    const std::string file = server_.dir() + "/export." + format;
    CliResult ex =
        server_.Cli(sam_, {"dataset", "export", "weld-telemetry", "--format", format, "--file", file});
    Must(ex);
    const std::string body = ReadFileOrEmpty(file);
    ExpectGoverned(std::string("dataset export ") + format, body + ex.err);
    EXPECT_NE(body.find("robot_serial"), std::string::npos);
    size_t lines = static_cast<size_t>(std::count(body.begin(), body.end(), '\n'));
    EXPECT_EQ(lines, 4u * 48u + (std::string(format) == "csv" ? 1u : 0u)) << format;
  }

  // 3. The API directly, CSV.
  auto c = http::Client::Create(server_.url());
  ASSERT_TRUE(c.has_value());
  c->SetHeader("Authorization", "Bearer " + sam_);
  auto api = c->Send("GET", "/api/v1/datasets/weld-telemetry/rows?limit=1000&format=csv");
  ASSERT_TRUE(api.has_value());
  ASSERT_EQ(api->status, 200) << api->body;
  ExpectGoverned("GET rows?format=csv", api->body);
  // Asking for the hidden column by name is refused, and the refusal names no value.
  auto hidden = c->Send("GET", std::string("/api/v1/datasets/weld-telemetry/rows?columns=") + kHiddenColumn);
  ASSERT_TRUE(hidden.has_value());
  EXPECT_EQ(hidden->status, 403) << hidden->body;
  EXPECT_EQ(hidden->body.find(kHiddenBadge), std::string::npos);
  // A reader's own filter on the masked column sees pseudonyms only.
  auto probe =
      c->Send("GET", "/api/v1/datasets/weld-telemetry/rows?where=" +
                         http::PercentEncode(std::string("robot_serial = '") + kSerialPrefix + "0001'"));
  ASSERT_TRUE(probe.has_value());
  ASSERT_EQ(probe->status, 200) << probe->body;
  EXPECT_EQ(Json::parse(probe->body)["rows"].size(), 0u);
  // A type error in the reader's filter is a clear error.
  auto bad = c->Send(
      "GET", "/api/v1/datasets/weld-telemetry/rows?where=" + http::PercentEncode("motor_temp_c > 'hot'"));
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->status, 400) << bad->body;
  EXPECT_NE(bad->body.find("motor_temp_c"), std::string::npos);

  // 4. Statistics.
  CliResult stats = server_.Cli(sam_, {"dataset", "stats", "weld-telemetry", "-o", "json"});
  Must(stats);
  ExpectGoverned("dataset stats", stats.out + stats.err);

  // 5. A pipeline's step inputs: it reads as the project, so its artifacts and logs are governed too.
  const std::string yaml = server_.dir() + "/p.yaml";
  WriteFile(yaml,
            "name: weld-pm\nproject: weld-pm\nsteps:\n"
            "  - name: features\n    kind: features\n    dataset: weld-telemetry\n    entity: robot_serial\n"
            "    time: timestamp\n    label: fails_within_24h\n    windows: [6]\n    keep: [plant]\n");
  CliResult run = server_.Cli(sam_, {"pipeline", "run", yaml, "-o", "json"});
  Must(run);
  ExpectGoverned("pipeline run", run.out + run.err);
  const std::string run_id = Json::parse(run.out)["id"];
  for (const char* output : {"features/features", "features/latest"}) {
    const std::string file = server_.dir() + "/artifact.csv";
    Must(server_.Cli(sam_, {"run", "export", run_id, output, "--file", file}));
    ExpectGoverned(std::string("run artifact ") + output, ReadFileOrEmpty(file));
  }
  CliResult logs = server_.Cli(sam_, {"run", "logs", run_id});
  Must(logs);
  // The log names the grant's row filter (policy text the grantee may see), never a filtered row.
  std::string log_text = logs.out;
  const std::string filter_text = std::string("plant != '") + kFilteredPlant + "'";
  for (size_t at; (at = log_text.find(filter_text)) != std::string::npos;)
    log_text.erase(at, filter_text.size());
  ExpectGoverned("run logs", log_text);
  EXPECT_NE(logs.out.find("as svc.weld-pm"), std::string::npos) << logs.out;

  // 6. The audit log records every read with its columns, masks, filter and rows — and no plaintext value.
  CliResult audit =
      server_.Cli(admin_, {"audit", "list", "--dataset", "weld-telemetry", "--limit", "100", "-o", "json"});
  Must(audit);
  EXPECT_EQ(audit.out.find(kSerialPrefix), std::string::npos);
  EXPECT_EQ(audit.out.find(kHiddenBadge), std::string::npos);
  Json records = Json::parse(audit.out);
  bool saw_sam = false, saw_pipeline = false;
  for (const auto& r : records) {
    if (!r["access"].is_object()) continue;
    if (r["principal"] == "sam") {
      saw_sam = true;
      EXPECT_EQ(r["access"]["masks"]["robot_serial"], "hash");
      EXPECT_TRUE(r["access"].contains("row_filter"));
    }
    if (r["principal"] == "svc.weld-pm") {
      saw_pipeline = true;
      EXPECT_EQ(r["access"]["rows"], 4 * 48);
      EXPECT_NE(r["access"]["purpose"].get<std::string>().find(run_id), std::string::npos);
    }
  }
  EXPECT_TRUE(saw_sam);
  EXPECT_TRUE(saw_pipeline);

  // 7. Someone outside the project gets nothing, and is audited as refused.
  CliResult eve = server_.Cli(eve_, {"dataset", "head", "weld-telemetry"});
  EXPECT_EQ(eve.exit_code, 3) << eve.err;
  EXPECT_NE(eve.err.find("default deny"), std::string::npos) << eve.err;
  CliResult eve_run = server_.Cli(eve_, {"run", "export", run_id, "features/latest"});
  EXPECT_EQ(eve_run.exit_code, 3) << eve_run.err;

  // 8. The server's own log never holds a value either.
  server_.Stop();
  ExpectGoverned("server log", ReadFileOrEmpty(server_.dir() + "/server.log"));
}

TEST_F(GovernanceTest, TheDataScientistsViewDiffersFromTheDataEngineers) {
  CliResult a = server_.Cli(sam_, {"dataset", "access", "weld-telemetry", "-o", "json"});
  Must(a);
  Json plan = Json::parse(a.out);
  EXPECT_FALSE(plan["owner"].get<bool>());
  bool masked = false;
  for (const auto& c : plan["columns"]) {
    EXPECT_NE(c["name"], kHiddenColumn);
    if (c["name"] == "robot_serial") masked = c["mask"] == "hash";
  }
  EXPECT_TRUE(masked);
  CliResult d = server_.Cli(dana_, {"dataset", "access", "weld-telemetry", "-o", "json"});
  Must(d);
  EXPECT_TRUE(Json::parse(d.out)["owner"].get<bool>());
  // Only grant:list holders may ask about someone else.
  const std::string mel = server_.CreatePrincipal("mel", {"ml-engineer"});
  CliResult other = server_.Cli(mel, {"dataset", "access", "weld-telemetry", "--as", "sam"});
  EXPECT_EQ(other.exit_code, 3) << other.err;
}

TEST_F(GovernanceTest, BadGrantsAreClearErrorsAndChangeNothing) {
  CliResult before = server_.Cli(admin_, {"grant", "list", "-o", "json"});
  Must(before);
  auto expect = [&](std::vector<std::string> args, int code, const std::string& fragment) {
    CliResult r = server_.Cli(dana_, args);
    EXPECT_EQ(r.exit_code, code) << r.out << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
  };
  expect({"grant", "create", "--to", "principal:eve", "--dataset", "weld-telemetry", "--columns", "forse"}, 2,
         "'forse'");
  expect({"grant", "create", "--to", "principal:eve", "--dataset", "weld-telemetry", "--where",
          "motor_temp_c > 'abc'"},
         2, "motor_temp_c");
  expect(
      {"grant", "create", "--to", "principal:eve", "--dataset", "weld-telemetry", "--where", "plant = = 'x'"},
      2, "row filter");
  expect({"grant", "create", "--to", "principal:eve", "--dataset", "weld-telemetry", "--mask",
          "motor_temp_c=blur"},
         2, "blur");
  expect({"grant", "create", "--to", "principal:nobody", "--dataset", "weld-telemetry"}, 4, "nobody");
  // Sam is no owner: he cannot share the dataset.
  CliResult sam =
      server_.Cli(sam_, {"grant", "create", "--to", "principal:eve", "--dataset", "weld-telemetry"});
  EXPECT_EQ(sam.exit_code, 3) << sam.err;
  CliResult after = server_.Cli(admin_, {"grant", "list", "-o", "json"});
  EXPECT_EQ(after.out, before.out);
}

TEST_F(GovernanceTest, IngestFromARealPostgresAndADatabaseThatIsDown) {
  auto pg = connectors::testing::PostgresServer::Start();
  ASSERT_TRUE(pg.has_value()) << pg.error().ToString();
  ASSERT_TRUE(
      (*pg)->Exec("CREATE TABLE readings (robot text, ts timestamptz, current_a float8, ok boolean);"
                  "INSERT INTO readings SELECT 'WG-' || g, '2026-01-01 00:00:00+00'::timestamptz + g * "
                  "interval '1 hour', 10 + g * 0.5, g % 2 = 0 FROM generate_series(1, 500) g;"));
  const std::string url = (*pg)->uri();
  CliResult r =
      server_.Cli(dana_, {"dataset", "ingest", "plant-db", "--from-postgres", url, "--query",
                          "SELECT robot, ts, current_a, ok FROM readings ORDER BY robot", "-o", "json"});
  Must(r);
  Json v = Json::parse(r.out);
  EXPECT_EQ(v["rows"], 500);
  EXPECT_EQ(v["schema"][1]["type"], "timestamp");
  // The password is never recorded.
  const std::string password = url.substr(url.find(':', 14) + 1, url.find('@') - url.find(':', 14) - 1);
  EXPECT_EQ(Json(v["source"]).dump().find(password), std::string::npos) << v["source"];
  CliResult show = server_.Cli(dana_, {"dataset", "show", "plant-db", "-o", "json"});
  EXPECT_EQ(show.out.find(password), std::string::npos);

  // The same source again: a schedule makes no new version for unchanged data.
  CliResult sched = server_.Cli(
      dana_, {"dataset", "schedule", "create", "plant-db", "--cron", "@hourly", "--from-postgres", url,
              "--query", "SELECT robot, ts, current_a, ok FROM readings ORDER BY robot", "-o", "json"});
  Must(sched);
  const std::string id = Json::parse(sched.out)["id"];
  CliResult same = server_.Cli(dana_, {"dataset", "schedule", "run", id, "-o", "json"});
  Must(same);
  EXPECT_FALSE(Json::parse(same.out)["created"].get<bool>());
  ASSERT_TRUE((*pg)->Exec("INSERT INTO readings VALUES ('WG-9999', now(), 1.0, true);"));
  CliResult changed = server_.Cli(dana_, {"dataset", "schedule", "run", id, "-o", "json"});
  Must(changed);
  EXPECT_EQ(Json::parse(changed.out)["version"], 2);

  // The database goes down: a clear error, no new version, no password in it.
  (*pg)->Stop();
  CliResult down = server_.Cli(dana_, {"dataset", "ingest", "plant-db", "--from-postgres", url, "--query",
                                       "SELECT robot FROM readings"});
  EXPECT_EQ(down.exit_code, 5) << down.err;
  EXPECT_NE(down.err.find("cannot connect"), std::string::npos) << down.err;
  EXPECT_EQ(down.err.find(password), std::string::npos) << down.err;
  CliResult after = server_.Cli(dana_, {"dataset", "show", "plant-db", "-o", "json"});
  EXPECT_EQ(Json::parse(after.out)["latest_version"], 2);
  CliResult list = server_.Cli(dana_, {"dataset", "schedule", "list", "-o", "json"});
  EXPECT_EQ(list.out.find(password), std::string::npos);
}

}  // namespace
}  // namespace takt::testkit
