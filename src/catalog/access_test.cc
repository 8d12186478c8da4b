// Governed access: grants, denies, masks, row filters, tags, and the audit
// of every read, against a real SQLite database and an encrypted blob store.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "catalog/catalog.h"
#include "core/json.h"
#include "core/temp_dir.h"
#include "crypto/keyring.h"
#include "iam/iam.h"

namespace takt::catalog {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kTelemetry =
    "robot_serial,plant,force_kn,motor_temp_c,timestamp,fails_within_24h\n"
    "WG-0001,P1,3.25,61.5,2026-01-01T00:00:00Z,0\n"
    "WG-0002,P1,3.5,70.25,2026-01-01T01:00:00Z,1\n"
    "WG-0003,P2,,55.0,2026-01-01T02:00:00Z,0\n"
    "WG-0001,P3,4.0,80.0,2026-01-02T03:00:00Z,1\n";

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keyring_ = std::make_unique<crypto::Keyring>(crypto::Keyring::FromBytesForTest(std::string(32, 'k')));
    db_ = std::move(*store::OpenSqlite((dir_.path() / "takt.db").string()));
    blobs_ = std::move(*blob::BlobStore::Open(dir_.path() / "blobs", keyring_.get()));
    iam_ = std::make_unique<iam::IamService>(db_.get());
    ASSERT_TRUE(iam_->Migrate());
    for (const char* who : {"dana", "sam", "eve", "ada"}) {
      ASSERT_TRUE(iam_->CreatePrincipal(who, "user", {"data-scientist"}, {}));
    }
    ASSERT_TRUE(iam_->CreateProject("weld-pm", "", {"sam"}, "admin"));
    ASSERT_TRUE(iam_->CreateGroup("analysts", {"eve"}, "admin"));
    catalog_ = std::make_unique<CatalogService>(db_.get(), blobs_.get(), keyring_.get(), iam_.get(),
                                                CatalogOptions{(dir_.path() / "landing").string()});
    ASSERT_TRUE(catalog_->Migrate());
    IngestOptions o;
    o.source_label = "upload:t.csv";
    o.tags = {{"robot_serial", "pii"}, {"", "telemetry"}};
    auto src = frame::StringSource(kTelemetry);
    auto r = catalog_->Ingest("weld-telemetry", *src, o, "dana");
    ASSERT_TRUE(r.has_value()) << r.error().ToString();
  }

  Result<Grant> GrantTo(const std::string& subject, std::string effect = "allow",
                        std::vector<std::string> cols = {}, std::string filter = "",
                        std::vector<std::pair<std::string, std::string>> masks = {},
                        std::string dataset = "weld-telemetry") {
    Grant g;
    g.effect = std::move(effect);
    g.subject = subject;
    g.dataset = std::move(dataset);
    g.columns = std::move(cols);
    g.row_filter = std::move(filter);
    g.masks = std::move(masks);
    return catalog_->CreateGrant(g, "dana");
  }

  Result<frame::Table> ReadAs(const std::string& who, std::string where = "",
                              std::vector<std::string> cols = {}) {
    ReadRequest r;
    r.principal = who;
    r.dataset = "weld-telemetry";
    r.where = std::move(where);
    r.columns = std::move(cols);
    r.purpose = "test";
    return catalog_->ReadTable(r);
  }

  std::vector<iam::AuditRecord> Audits() {
    iam::AuditQuery q;
    q.dataset = "weld-telemetry";
    return *iam_->ListAudit(q);
  }

  TempDir dir_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<blob::BlobStore> blobs_;
  std::unique_ptr<iam::IamService> iam_;
  std::unique_ptr<CatalogService> catalog_;
};

std::set<std::string> Names(const frame::Table& t) {
  std::set<std::string> out;
  for (const auto& c : t.columns) out.insert(c.field.name);
  return out;
}

TEST_F(AccessTest, DefaultDenyAndTheOwnerReadsEverything) {
  auto denied = ReadAs("sam");
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(denied.error().code(), Code::kPermissionDenied);
  EXPECT_THAT(denied.error().message(), HasSubstr("default deny"));
  auto audits = Audits();
  ASSERT_FALSE(audits.empty());
  EXPECT_FALSE(audits.front().allowed);
  EXPECT_EQ(audits.front().principal, "sam");

  auto all = ReadAs("dana");
  ASSERT_TRUE(all.has_value()) << all.error().ToString();
  EXPECT_EQ(all->num_rows(), 4u);
  EXPECT_EQ(all->Find("robot_serial")->strings[0], "WG-0001");
}

TEST_F(AccessTest, ProjectGrantWithHashedPiiIsStableAndAudited) {
  ASSERT_TRUE(GrantTo("project:weld-pm", "allow", {}, "", {{"tag:pii", "hash"}}));
  auto t = ReadAs("sam");
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  const auto& serial = t->Find("robot_serial")->strings;
  ASSERT_EQ(serial.size(), 4u);
  EXPECT_EQ(serial[0].size(), 24u);
  EXPECT_NE(serial[0], "WG-0001");
  EXPECT_EQ(serial[0], serial[3]);  // same robot, same pseudonym: joins still work
  EXPECT_NE(serial[0], serial[1]);
  // The project's service identity reads with the project's grants.
  auto svc = ReadAs("svc.weld-pm");
  ASSERT_TRUE(svc.has_value());
  EXPECT_EQ(svc->Find("robot_serial")->strings[0], serial[0]);
  // A non-member does not.
  EXPECT_EQ(ReadAs("eve").error().code(), Code::kPermissionDenied);

  auto audits = Audits();
  ASSERT_GE(audits.size(), 2u);
  auto access = Json::parse(
      audits.front().access_json == "" ? audits[1].access_json : audits.front().access_json, nullptr, false);
  bool found = false;
  for (const auto& a : audits) {
    if (a.principal != "sam" || a.access_json.empty()) continue;
    Json j = Json::parse(a.access_json);
    EXPECT_EQ(j["masks"]["robot_serial"], "hash");
    EXPECT_EQ(j["rows"], 4);
    EXPECT_EQ(j["version"], 1);
    EXPECT_EQ(j["columns"].size(), 6u);
    found = true;
    for (const auto& other : audits) EXPECT_EQ(other.access_json.find("WG-0001"), std::string::npos);
  }
  EXPECT_TRUE(found);
}

TEST_F(AccessTest, ColumnSetsUnionAndDenyWins) {
  ASSERT_TRUE(GrantTo("principal:eve", "allow", {"plant", "force_kn"}));
  ASSERT_TRUE(GrantTo("group:analysts", "allow", {"timestamp"}));
  auto t = ReadAs("eve");
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_EQ(Names(*t), (std::set<std::string>{"plant", "force_kn", "timestamp"}));

  // Asking for a column that is not granted is refused by name.
  auto no = ReadAs("eve", "", {"robot_serial"});
  EXPECT_EQ(no.error().code(), Code::kPermissionDenied);

  ASSERT_TRUE(GrantTo("group:analysts", "deny", {"force_kn"}));
  t = ReadAs("eve");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(Names(*t), (std::set<std::string>{"plant", "timestamp"}));

  ASSERT_TRUE(GrantTo("principal:eve", "deny"));
  auto denied = ReadAs("eve");
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(denied.error().code(), Code::kPermissionDenied);
  EXPECT_THAT(denied.error().message(), HasSubstr("explicit deny"));
}

TEST_F(AccessTest, RowFiltersOrAcrossGrantsAndAnUnfilteredGrantShowsAll) {
  ASSERT_TRUE(GrantTo("principal:eve", "allow", {}, "plant = 'P1'"));
  auto t = ReadAs("eve");
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_EQ(t->num_rows(), 2u);
  ASSERT_TRUE(GrantTo("group:analysts", "allow", {}, "force_kn >= 4"));
  t = ReadAs("eve");
  EXPECT_EQ(t->num_rows(), 3u);  // P1 rows or force >= 4
  auto plan = catalog_->PlanAccess("eve", "weld-telemetry", 0);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(plan->row_filter_text, HasSubstr("OR"));
  // The reader's own filter narrows further.
  t = ReadAs("eve", "plant != 'P1'");
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_EQ(t->num_rows(), 1u);
  ASSERT_TRUE(GrantTo("principal:eve", "allow", {"plant"}));
  EXPECT_EQ(ReadAs("eve")->num_rows(), 4u);
}

TEST_F(AccessTest, AMaskedColumnStaysMaskedAndTheStrongestMaskWins) {
  ASSERT_TRUE(GrantTo("principal:eve", "allow"));  // unmasked
  ASSERT_TRUE(GrantTo("group:analysts", "allow", {}, "", {{"robot_serial", "partial:2"}}));
  auto t = ReadAs("eve");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->Find("robot_serial")->strings[0], "*****01");
  ASSERT_TRUE(GrantTo("*", "mask", {}, "", {{"tag:pii", "redact"}}, "*"));
  t = ReadAs("eve");
  EXPECT_EQ(t->Find("robot_serial")->strings[0], "***");
  // The owner is not "everyone": dana still sees plaintext.
  EXPECT_EQ(ReadAs("dana")->Find("robot_serial")->strings[0], "WG-0001");
  // A reader's filter over a masked column sees only masked values.
  t = ReadAs("eve", "robot_serial = 'WG-0001'");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->num_rows(), 0u);
}

TEST_F(AccessTest, TagRulesApplyToDatasetsCreatedLater) {
  ASSERT_TRUE(GrantTo("project:weld-pm", "allow", {}, "", {{"tag:pii", "hash"}}, "tag:telemetry"));
  IngestOptions o;
  o.source_label = "upload:late.csv";
  o.tags = {{"serial", "pii"}, {"", "telemetry"}};
  auto src = frame::StringSource("serial,value\nABC-1,1\nABC-2,2\n");
  ASSERT_TRUE(catalog_->Ingest("later-data", *src, o, "dana"));
  ReadRequest r;
  r.principal = "sam";
  r.dataset = "later-data";
  auto t = catalog_->ReadTable(r);
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_NE(t->Find("serial")->strings[0], "ABC-1");
  EXPECT_EQ(t->Find("serial")->field.type, frame::Type::kString);
  // Pseudonyms are keyed per dataset.
  EXPECT_NE(catalog_->PseudonymKey("later-data"), catalog_->PseudonymKey("weld-telemetry"));
}

TEST_F(AccessTest, GeneralizeKeepsNumbersAndTruncatesTime) {
  ASSERT_TRUE(GrantTo("principal:eve", "allow", {"motor_temp_c", "timestamp"}, "",
                      {{"motor_temp_c", "generalize:10"}, {"timestamp", "generalize:day"}}));
  auto t = ReadAs("eve");
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_EQ(t->Find("motor_temp_c")->doubles[1], 70.0);
  EXPECT_EQ(frame::FormatTimestamp(t->Find("timestamp")->ints[3]), "2026-01-02T00:00:00Z");
}

TEST_F(AccessTest, BadGrantsAreRefusedAndNothingIsWritten) {
  auto unknown = GrantTo("principal:eve", "allow", {"forse"});
  EXPECT_EQ(unknown.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(unknown.error().message(), HasSubstr("'forse'"));
  auto type = GrantTo("principal:eve", "allow", {}, "force_kn > 'abc'");
  EXPECT_EQ(type.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(type.error().message(), HasSubstr("force_kn"));
  EXPECT_EQ(GrantTo("principal:eve", "allow", {}, "plant = ").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(GrantTo("principal:eve", "allow", {}, "", {{"force_kn", "generalize:day"}}).error().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(GrantTo("principal:eve", "allow", {}, "", {{"force_kn", "scramble"}}).error().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(GrantTo("principal:nobody").error().code(), Code::kNotFound);
  EXPECT_EQ(GrantTo("project:nope").error().code(), Code::kNotFound);
  EXPECT_EQ(GrantTo("principal:eve", "maybe").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(GrantTo("principal:eve", "allow", {}, "", {}, "no-such-data").error().code(), Code::kNotFound);
  EXPECT_EQ(GrantTo("principal:eve", "deny", {}, "plant = 'P1'").error().code(), Code::kInvalidArgument);
  EXPECT_TRUE(catalog_->ListGrants()->empty());
}

TEST_F(AccessTest, StatisticsAreGovernedToo) {
  auto owner = catalog_->Stats("dana", "weld-telemetry", 0);
  ASSERT_TRUE(owner.has_value()) << owner.error().ToString();
  EXPECT_EQ(owner->rows, 4);
  EXPECT_TRUE(owner->masked.empty());
  ASSERT_TRUE(
      GrantTo("project:weld-pm", "allow", {"robot_serial", "force_kn"}, "", {{"robot_serial", "hash"}}));
  auto sam = catalog_->Stats("sam", "weld-telemetry", 0);
  ASSERT_TRUE(sam.has_value()) << sam.error().ToString();
  EXPECT_EQ(sam->columns.size(), 2u);
  EXPECT_EQ(sam->masked, std::vector<std::string>{"robot_serial"});
  for (const auto& c : sam->columns) {
    if (c.name == "robot_serial") {
      EXPECT_TRUE(c.top.empty());
    }
  }
  ASSERT_TRUE(GrantTo("principal:eve", "allow", {"force_kn", "plant"}, "plant = 'P1'"));
  auto eve = catalog_->Stats("eve", "weld-telemetry", 0);
  ASSERT_TRUE(eve.has_value()) << eve.error().ToString();
  EXPECT_TRUE(eve->filtered);
  EXPECT_EQ(eve->rows, 2);
  EXPECT_EQ(catalog_->Stats("ada", "weld-telemetry", 0).error().code(), Code::kPermissionDenied);
}

// ------------------------------------------------------------------ ingest features

TEST_F(AccessTest, SchemaEvolutionAllowsAddedColumnsAndRejectsBreakingOnes) {
  IngestOptions o;
  o.source_label = "upload:v2.csv";
  auto added = frame::StringSource(
      "robot_serial,plant,force_kn,motor_temp_c,timestamp,fails_within_24h,tip_dress_count\n"
      "WG-0009,P1,3.0,60.0,2026-01-03T00:00:00Z,0,5\n");
  auto v2 = catalog_->Ingest("weld-telemetry", *added, o, "dana");
  ASSERT_TRUE(v2.has_value()) << v2.error().ToString();
  EXPECT_FALSE(v2->diff.breaking());
  EXPECT_EQ(v2->diff.Summary(), "added tip_dress_count (int64)");

  auto removed = frame::StringSource("robot_serial,plant\nWG-1,P1\n");
  auto v3 = catalog_->Ingest("weld-telemetry", *removed, o, "dana");
  ASSERT_FALSE(v3.has_value());
  EXPECT_EQ(v3.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(v3.error().message(), HasSubstr("--allow-breaking"));
  auto retyped = frame::StringSource(
      "robot_serial,plant,force_kn,motor_temp_c,timestamp,fails_within_24h,tip_dress_count\n"
      "WG-0009,P1,heavy,60.0,2026-01-03T00:00:00Z,0,5\n");
  auto bad = catalog_->Ingest("weld-telemetry", *retyped, o, "dana");
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message(), HasSubstr("line 2, column force_kn"));
  EXPECT_EQ(catalog_->Get("weld-telemetry")->latest_version, 2);

  o.allow_breaking = true;
  auto again = frame::StringSource("robot_serial,plant\nWG-1,P1\n");
  auto v3b = catalog_->Ingest("weld-telemetry", *again, o, "dana");
  ASSERT_TRUE(v3b.has_value()) << v3b.error().ToString();
  EXPECT_TRUE(v3b->diff.breaking());
  auto diff = catalog_->Diff("weld-telemetry", 2, 3);
  ASSERT_TRUE(diff.has_value());
  EXPECT_TRUE(diff->breaking());
  EXPECT_THAT(diff->Summary(), HasSubstr("removed force_kn (float64)"));
}

TEST_F(AccessTest, PartitionsAppendWithoutRewritingTheRest) {
  IngestOptions o;
  o.source_label = "upload:p.csv";
  o.partition_by = "plant";
  auto first = frame::StringSource(kTelemetry);
  auto v2 = catalog_->Ingest("weld-telemetry", *first, o, "dana");
  ASSERT_TRUE(v2.has_value()) << v2.error().ToString();
  EXPECT_EQ(v2->written_partitions, (std::vector<std::string>{"plant=P1", "plant=P2", "plant=P3"}));
  std::set<std::string> before;
  for (const auto& s : v2->version.segments) before.insert(s.blob_id);

  o.append = true;
  auto day = frame::StringSource(
      "robot_serial,plant,force_kn,motor_temp_c,timestamp,fails_within_24h\n"
      "WG-0004,P2,3.0,50.0,2026-01-03T00:00:00Z,0\n"
      "WG-0005,P4,3.0,50.0,2026-01-03T00:00:00Z,0\n");
  auto v3 = catalog_->Ingest("weld-telemetry", *day, o, "dana");
  ASSERT_TRUE(v3.has_value()) << v3.error().ToString();
  EXPECT_EQ(v3->version.rows, 4 - 1 + 2);  // P2 replaced by its new row, P4 added
  EXPECT_EQ(v3->reused_partitions, (std::vector<std::string>{"plant=P1", "plant=P3"}));
  size_t kept = 0;
  for (const auto& s : v3->version.segments) kept += before.count(s.blob_id);
  EXPECT_EQ(kept, 2u);  // the untouched partitions' segments are the same blobs
  auto all = catalog_->ReadTable({"dana", "weld-telemetry", 3, {}, "", -1, "test"});
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(all->num_rows(), 5u);
  // The filter on the partition column still holds across reused partitions.
  ASSERT_TRUE(GrantTo("principal:eve", "allow", {}, "plant IN ('P1', 'P4')"));
  EXPECT_EQ(ReadAs("eve")->num_rows(), 3u);
}

TEST_F(AccessTest, OnlyIfChangedMakesNoNewVersionForTheSameData) {
  IngestOptions o;
  o.source_label = "upload:t.csv";
  o.only_if_changed = true;
  auto same = frame::StringSource(kTelemetry);
  auto r = catalog_->Ingest("weld-telemetry", *same, o, "dana");
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_FALSE(r->created);
  EXPECT_EQ(r->version.version, 1);
  EXPECT_EQ(catalog_->Get("weld-telemetry")->latest_version, 1);
}

TEST_F(AccessTest, SkipModeCountsMalformedRows) {
  IngestOptions o;
  o.source_label = "upload:bad.csv";
  o.text.on_error = frame::OnError::kSkip;
  auto src = frame::StringSource(
      "robot_serial,plant,force_kn,motor_temp_c,timestamp,fails_within_24h\n"
      "WG-0001,P1,3.25,61.5,2026-01-01T00:00:00Z,0\n"
      "WG-0002,P1,abc,70.25,2026-01-01T01:00:00Z,1\n"
      "WG-0003,P2\n");
  auto r = catalog_->Ingest("weld-telemetry", *src, o, "dana");
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->version.rows, 1);
  EXPECT_EQ(r->rows_skipped, 2);
  ASSERT_EQ(r->errors.size(), 2u);
  EXPECT_THAT(r->errors[0], HasSubstr("line 3, column force_kn"));
  EXPECT_THAT(r->errors[1], HasSubstr("line 4"));
}

TEST_F(AccessTest, DirectorySourcesReuseUnchangedFilesAndStayInsideTheLanding) {
  namespace fs = std::filesystem;
  fs::create_directories(dir_.path() / "landing" / "drop");
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir_.path() / "landing" / "drop" / name) << text;
  };
  write("day-01.csv", "robot_serial,force_kn\nA,1.5\nB,2.5\n");
  write("day-02.jsonl", "{\"robot_serial\":\"C\",\"force_kn\":3.5}\n");
  SourceSpec dir{"dir", "drop", "", ""};
  IngestOptions o;
  auto v1 = catalog_->IngestFrom("drops", dir, o, "dana");
  ASSERT_TRUE(v1.has_value()) << v1.error().ToString();
  EXPECT_EQ(v1->version.rows, 3);
  EXPECT_EQ(v1->written_partitions.size(), 2u);
  write("day-03.csv", "robot_serial,force_kn\nD,4.5\n");
  auto v2 = catalog_->IngestFrom("drops", dir, o, "dana");
  ASSERT_TRUE(v2.has_value()) << v2.error().ToString();
  EXPECT_EQ(v2->version.rows, 4);
  EXPECT_EQ(v2->reused_partitions, (std::vector<std::string>{"file=day-01.csv", "file=day-02.jsonl"}));
  EXPECT_EQ(v2->written_partitions, std::vector<std::string>{"file=day-03.csv"});

  auto outside = catalog_->IngestFrom("drops", {"file", "/etc/passwd", "", ""}, o, "dana");
  ASSERT_FALSE(outside.has_value());
  EXPECT_EQ(outside.error().code(), Code::kPermissionDenied);
  auto dotdot = catalog_->IngestFrom("drops", {"dir", "../blobs", "", ""}, o, "dana");
  EXPECT_EQ(dotdot.error().code(), Code::kPermissionDenied);
  auto missing = catalog_->IngestFrom("drops", {"file", "nope.csv", "", ""}, o, "dana");
  EXPECT_EQ(missing.error().code(), Code::kNotFound);
  EXPECT_EQ(catalog_->Get("drops")->latest_version, 2);
}

TEST_F(AccessTest, SchedulesSealTheirSourceAndRunOnlyWhenDue) {
  namespace fs = std::filesystem;
  fs::create_directories(dir_.path() / "landing");
  std::ofstream(dir_.path() / "landing" / "feed.csv") << "a,b\n1,2\n";
  IngestSchedule s;
  s.dataset = "feed";
  s.cron = "*/5 * * * *";
  s.source = {"file", "feed.csv", "", ""};
  auto created = catalog_->CreateSchedule(s, "dana");
  ASSERT_TRUE(created.has_value()) << created.error().ToString();
  EXPECT_EQ(catalog_->Get("feed").error().code(), Code::kNotFound);
  catalog_->RunDue(created->next_run - 1);  // not due yet
  EXPECT_EQ(catalog_->Get("feed").error().code(), Code::kNotFound);
  catalog_->RunDue(created->next_run);
  EXPECT_EQ(catalog_->Get("feed")->latest_version, 1);
  auto again = catalog_->RunSchedule(created->id);  // same data: no new version
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(catalog_->Get("feed")->latest_version, 1);
  std::ofstream(dir_.path() / "landing" / "feed.csv") << "a,b\n1,2\n3,4\n";
  ASSERT_TRUE(catalog_->RunSchedule(created->id));
  EXPECT_EQ(catalog_->Get("feed")->latest_version, 2);
  auto list = catalog_->ListSchedules("feed");
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().last_status, "created v2");

  s.cron = "61 * * * *";
  EXPECT_EQ(catalog_->CreateSchedule(s, "dana").error().code(), Code::kInvalidArgument);
  s.cron = "@hourly";
  s.source = {"postgres", "", "postgresql://etl:SECRET-PW@127.0.0.1:1/plant", "SELECT 1"};
  auto pg = catalog_->CreateSchedule(s, "dana");
  ASSERT_TRUE(pg.has_value()) << pg.error().ToString();
  auto rows = db_->Query("SELECT source_sealed, options_json FROM ingest_schedules");
  for (const auto& r : *rows) {
    EXPECT_EQ(r.Text(0).find("SECRET"), std::string::npos);
    EXPECT_EQ(r.Text(1).find("SECRET"), std::string::npos);
  }
  auto down = catalog_->RunSchedule(pg->id);  // nothing listens on port 1
  ASSERT_FALSE(down.has_value());
  EXPECT_EQ(down.error().code(), Code::kUnavailable);
  EXPECT_EQ(down.error().message().find("SECRET"), std::string::npos);
  auto status = catalog_->ListSchedules("feed");
  for (const auto& x : *status) EXPECT_EQ(x.last_status.find("SECRET"), std::string::npos);
}

}  // namespace
}  // namespace takt::catalog
