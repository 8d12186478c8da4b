#include "catalog/catalog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>
#include "core/temp_dir.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "crypto/crypto.h"
#include "crypto/keyring.h"
#include "frame/csv.h"
#include "frame/table_testing.h"
#include "iam/iam.h"

namespace takt::catalog {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using ::takt::TempDir;

std::string ReadFileBytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Every regular file under `dir`, recursively.
std::vector<fs::path> FilesUnder(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out.push_back(e.path());
  }
  return out;
}

constexpr std::string_view kTelemetry =
    "robot_serial,plant,cycles,force_kn,ok,timestamp\n"
    "WG-0001-AAAA,p1,10,3.25,true,2026-01-01T00:00:00Z\n"
    "WG-0002-BBBB,p1,11,3.5,false,2026-01-01T01:00:00Z\n"
    "WG-0003-CCCC,p2,12,,true,2026-01-01T02:00:00Z\n";

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    keyring_ = std::make_unique<crypto::Keyring>(crypto::Keyring::FromBytesForTest(std::string(32, 'k')));
    auto db = store::OpenSqlite((dir_.path() / "takt.db").string());
    ASSERT_TRUE(db.has_value()) << db.error().ToString();
    db_ = std::move(*db);
    auto blobs = blob::BlobStore::Open(dir_.path() / "blobs", keyring_.get());
    ASSERT_TRUE(blobs.has_value()) << blobs.error().ToString();
    blobs_ = std::move(*blobs);
    iam_ = std::make_unique<iam::IamService>(db_.get());
    ASSERT_TRUE(iam_->Migrate());
    for (const char* who : {"dana", "sam", "eve"}) {
      ASSERT_TRUE(iam_->CreatePrincipal(who, "user", {"data-engineer"}, {}));
    }
    catalog_ = std::make_unique<CatalogService>(db_.get(), blobs_.get(), keyring_.get(), iam_.get(),
                                                CatalogOptions{(dir_.path() / "landing").string()});
    ASSERT_TRUE(catalog_->Migrate());
  }

  // A governed read as the dataset's owner: every column, every row.
  Result<frame::Table> Read(const std::string& name, int version,
                            const std::vector<std::string>* cols = nullptr,
                            const CatalogService* catalog = nullptr) {
    ReadRequest req;
    req.principal = "dana";
    req.dataset = name;
    req.version = version;
    if (cols) req.columns = *cols;
    return (catalog ? catalog : catalog_.get())->ReadTable(req);
  }

  int64_t CountRows(const std::string& sql) {
    auto rows = db_->Query(sql);
    EXPECT_TRUE(rows.has_value()) << rows.error().ToString();
    if (!rows || rows->empty()) return -1;
    return rows->front().Int(0);
  }

  // Files in the blob store (the catalog writes nothing else there).
  size_t BlobFiles() { return FilesUnder(blobs_->dir()).size(); }

  TempDir dir_;
  std::unique_ptr<crypto::Keyring> keyring_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<blob::BlobStore> blobs_;
  std::unique_ptr<iam::IamService> iam_;
  std::unique_ptr<CatalogService> catalog_;
};

TEST_F(CatalogTest, FirstIngestIsVersionOneWithInferredSchemaRowsAndHash) {
  auto v =
      catalog_->IngestCsv("weld-telemetry", kTelemetry, "upload:telemetry.csv", "dana", "hourly telemetry");
  ASSERT_TRUE(v.has_value()) << v.error().ToString();
  EXPECT_EQ(v->dataset, "weld-telemetry");
  EXPECT_EQ(v->version, 1);
  EXPECT_EQ(v->rows, 3);
  EXPECT_EQ(v->source_bytes, static_cast<int64_t>(kTelemetry.size()));
  EXPECT_GT(v->stored_bytes, 0);
  EXPECT_EQ(v->content_hash, crypto::Sha256Hex(kTelemetry));
  EXPECT_EQ(v->source, "upload:telemetry.csv");
  EXPECT_EQ(v->created_by, "dana");
  ASSERT_EQ(v->segments.size(), 1u);
  EXPECT_TRUE(blob::BlobStore::IsValidId(v->segments[0].blob_id));
  EXPECT_TRUE(blobs_->Contains(v->segments[0].blob_id));
  EXPECT_EQ(v->segments[0].rows, 3);

  frame::Schema want{{{"robot_serial", frame::Type::kString, false},
                      {"plant", frame::Type::kString, false},
                      {"cycles", frame::Type::kInt64, false},
                      {"force_kn", frame::Type::kFloat64, true},
                      {"ok", frame::Type::kBool, false},
                      {"timestamp", frame::Type::kTimestamp, false}}};
  EXPECT_EQ(v->schema, want);

  // What is stored reads back the same.
  auto stored = catalog_->GetVersion("weld-telemetry", 1);
  ASSERT_TRUE(stored.has_value()) << stored.error().ToString();
  EXPECT_EQ(stored->schema, want);
  EXPECT_EQ(stored->rows, 3);
  EXPECT_EQ(stored->content_hash, v->content_hash);
  ASSERT_EQ(stored->segments.size(), 1u);
  EXPECT_EQ(stored->segments[0].blob_id, v->segments[0].blob_id);
  EXPECT_EQ(stored->data_hash, v->data_hash);

  auto d = catalog_->Get("weld-telemetry");
  ASSERT_TRUE(d.has_value()) << d.error().ToString();
  EXPECT_EQ(d->latest_version, 1);
  EXPECT_EQ(d->owner, "dana");
  EXPECT_EQ(d->description, "hourly telemetry");
}

TEST_F(CatalogTest, SecondIngestIsVersionTwoAndVersionOneStaysReadable) {
  ASSERT_TRUE(catalog_->IngestCsv("weld-telemetry", kTelemetry, "upload:a.csv", "dana"));
  const std::string second =
      "robot_serial,plant,cycles,force_kn,ok,timestamp\n"
      "WG-0009-ZZZZ,p3,5,2.5,true,2026-01-02T00:00:00Z\n";
  auto v2 = catalog_->IngestCsv("weld-telemetry", second, "upload:b.csv", "erin");
  ASSERT_TRUE(v2.has_value()) << v2.error().ToString();
  EXPECT_EQ(v2->version, 2);
  EXPECT_EQ(v2->rows, 1);
  EXPECT_EQ(v2->content_hash, crypto::Sha256Hex(second));

  auto versions = catalog_->Versions("weld-telemetry");
  ASSERT_TRUE(versions.has_value()) << versions.error().ToString();
  ASSERT_EQ(versions->size(), 2u);
  EXPECT_EQ((*versions)[0].version, 1);
  EXPECT_EQ((*versions)[1].version, 2);

  auto latest = catalog_->GetVersion("weld-telemetry", 0);
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->version, 2);
  EXPECT_EQ(catalog_->Get("weld-telemetry")->latest_version, 2);
  // The dataset row keeps its first owner.
  EXPECT_EQ(catalog_->Get("weld-telemetry")->owner, "dana");

  auto t1 = Read("weld-telemetry", 1);
  auto t2 = Read("weld-telemetry", 0);
  ASSERT_TRUE(t1.has_value() && t2.has_value());
  EXPECT_EQ(t1->num_rows(), 3u);
  EXPECT_EQ(t2->num_rows(), 1u);
  EXPECT_EQ(t2->Find("robot_serial")->strings.at(0), "WG-0009-ZZZZ");
}

TEST_F(CatalogTest, ReadReturnsTheIngestedValuesAndColumnSubsets) {
  ASSERT_TRUE(catalog_->IngestCsv("weld-telemetry", kTelemetry, "upload:a.csv", "dana"));
  auto want = frame::ReadCsv(kTelemetry);
  ASSERT_TRUE(want.has_value());

  auto all = Read("weld-telemetry", 1);
  ASSERT_TRUE(all.has_value()) << all.error().ToString();
  frame::testing::ExpectTablesEqual(*want, *all);
  EXPECT_TRUE(all->Find("force_kn")->IsNull(2));

  std::vector<std::string> cols = {"force_kn", "robot_serial"};
  auto some = Read("weld-telemetry", 1, &cols);
  ASSERT_TRUE(some.has_value()) << some.error().ToString();
  ASSERT_EQ(some->num_columns(), 2u);
  EXPECT_EQ(some->columns[0].field.name, "force_kn");
  EXPECT_EQ(some->columns[1].field.name, "robot_serial");
  EXPECT_EQ(some->columns[0].doubles.at(1), 3.5);
  EXPECT_EQ(some->columns[1].strings,
            (std::vector<std::string>{"WG-0001-AAAA", "WG-0002-BBBB", "WG-0003-CCCC"}));

  std::vector<std::string> missing = {"nope"};
  auto bad = Read("weld-telemetry", 1, &missing);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad.error().message(), HasSubstr("dataset weld-telemetry v1 has no column 'nope'"));
}

TEST(ParseDatasetRefTest, NameAndOptionalVersion) {
  auto latest = ParseDatasetRef("weld-telemetry");
  ASSERT_TRUE(latest.has_value()) << latest.error().ToString();
  EXPECT_EQ(latest->first, "weld-telemetry");
  EXPECT_EQ(latest->second, 0);

  auto pinned = ParseDatasetRef("weld-telemetry@3");
  ASSERT_TRUE(pinned.has_value()) << pinned.error().ToString();
  EXPECT_EQ(pinned->first, "weld-telemetry");
  EXPECT_EQ(pinned->second, 3);

  auto big = ParseDatasetRef("x@120");
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->second, 120);
}

TEST(ParseDatasetRefTest, BadFormsAreInvalidArgument) {
  for (std::string_view ref : {"", "@3", "x@", "x@0", "x@-1", "x@3a", "x@ 3", "x@3@4", "x@1.5", "X@1",
                               "x@99999999999", "weld telemetry@1"}) {
    SCOPED_TRACE(std::string(ref));
    auto r = ParseDatasetRef(ref);
    ASSERT_FALSE(r.has_value()) << r->first << "@" << r->second;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  }
  EXPECT_THAT(ParseDatasetRef("x@abc").error().message(), HasSubstr("x@abc"));
}

TEST(ValidateDatasetNameTest, AcceptsAndRejects) {
  const std::string longest = "a" + std::string(62, 'b');
  const std::string too_long = "a" + std::string(63, 'b');
  for (std::string_view ok : {std::string_view("a"), std::string_view("weld-telemetry"),
                              std::string_view("w2"), std::string_view("a-1-b"), std::string_view(longest)}) {
    EXPECT_TRUE(ValidateDatasetName(ok)) << ok;
  }
  for (std::string_view bad :
       {std::string_view(""), std::string_view("Weld"), std::string_view("1weld"), std::string_view("-weld"),
        std::string_view("weld_telemetry"), std::string_view("weld.csv"), std::string_view("weld telemetry"),
        std::string_view("w\xc3\xa9ld"), std::string_view("../etc"), std::string_view(too_long)}) {
    auto s = ValidateDatasetName(bad);
    ASSERT_FALSE(s.has_value()) << bad;
    EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
    EXPECT_THAT(s.error().message(), HasSubstr("is invalid"));
  }
}

TEST_F(CatalogTest, InvalidNameIsRefusedAndNothingIsWritten) {
  auto v = catalog_->IngestCsv("Weld_Telemetry", kTelemetry, "upload:a.csv", "dana");
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(v.error().message(), HasSubstr("Weld_Telemetry"));
  EXPECT_TRUE(catalog_->List()->empty());
  EXPECT_EQ(BlobFiles(), 0u);
  EXPECT_EQ(catalog_->Get("Weld_Telemetry").error().code(), Code::kInvalidArgument);
}

TEST_F(CatalogTest, RaggedCsvIsInvalidArgumentAndLeavesNothingBehind) {
  const std::string ragged = "a,b,c\n1,2,3\n4,5\n";
  auto v = catalog_->IngestCsv("ragged", ragged, "upload:ragged.csv", "dana");
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(v.error().message(), HasSubstr("ingesting ragged"));
  EXPECT_THAT(v.error().message(), HasSubstr("line 3"));

  auto list = catalog_->List();
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->empty());
  EXPECT_EQ(catalog_->Get("ragged").error().code(), Code::kNotFound);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM datasets"), 0);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM dataset_versions"), 0);
  EXPECT_EQ(BlobFiles(), 0u);
}

TEST_F(CatalogTest, HeaderOnlyCsvIsInvalidArgumentAndLeavesNothingBehind) {
  auto v = catalog_->IngestCsv("empty", "a,b,c\n", "upload:empty.csv", "dana");
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code(), Code::kInvalidArgument);
  EXPECT_THAT(v.error().message(), HasSubstr("no data rows"));

  EXPECT_TRUE(catalog_->List()->empty());
  EXPECT_EQ(catalog_->Get("empty").error().code(), Code::kNotFound);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM datasets"), 0);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM dataset_versions"), 0);
  EXPECT_EQ(BlobFiles(), 0u);
}

TEST_F(CatalogTest, BadCsvForAnExistingDatasetAddsNoVersion) {
  ASSERT_TRUE(catalog_->IngestCsv("weld-telemetry", kTelemetry, "upload:a.csv", "dana"));
  size_t blobs_before = BlobFiles();
  auto v = catalog_->IngestCsv("weld-telemetry", "a,b\n1\n", "upload:b.csv", "dana");
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(catalog_->Get("weld-telemetry")->latest_version, 1);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM dataset_versions"), 1);
  EXPECT_EQ(BlobFiles(), blobs_before);
}

TEST_F(CatalogTest, UnknownDatasetOrVersionIsNotFound) {
  auto d = catalog_->Get("nope");
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code(), Code::kNotFound);
  EXPECT_EQ(d.error().message(), "dataset nope does not exist");
  EXPECT_EQ(Read("nope", 0).error().code(), Code::kNotFound);
  EXPECT_EQ(catalog_->Versions("nope").error().code(), Code::kNotFound);

  ASSERT_TRUE(catalog_->IngestCsv("weld-telemetry", kTelemetry, "upload:a.csv", "dana"));
  ASSERT_TRUE(catalog_->IngestCsv("weld-telemetry", kTelemetry, "upload:a.csv", "dana"));
  auto v = catalog_->GetVersion("weld-telemetry", 5);
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().code(), Code::kNotFound);
  EXPECT_EQ(v.error().message(), "dataset weld-telemetry has no version 5 (latest is 2)");

  auto r = Read("weld-telemetry", 3);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_THAT(r.error().message(), HasSubstr("latest is 2"));
}

TEST_F(CatalogTest, CellValuesNeverReachTheDiskInPlaintext) {
  const std::string marker = "CONFIDENTIAL-7f3a9c51e2";
  const std::string csv =
      "robot_serial,note,force_kn\n"
      "WG-0001-AAAA," +
      marker + ",3.5\nWG-0002-BBBB,plain " + marker + " inside,3.75\n";
  auto v = catalog_->IngestCsv("secrets", csv, "upload:secrets.csv", "dana");
  ASSERT_TRUE(v.has_value()) << v.error().ToString();

  // It comes back through the governed read ...
  auto t = Read("secrets", 1);
  ASSERT_TRUE(t.has_value()) << t.error().ToString();
  EXPECT_EQ(t->Find("note")->strings.at(0), marker);
  EXPECT_EQ(t->Find("note")->strings.at(1), "plain " + marker + " inside");

  // ... but no file of the data dir holds it: not the database, its WAL, nor any blob.
  auto files = FilesUnder(dir_.path());
  bool saw_db = false, saw_blob = false;
  for (const auto& f : files) {
    std::string name = f.filename().string();
    saw_db = saw_db || name == "takt.db";
    saw_blob = saw_blob || f.string().find("/blobs/") != std::string::npos;
    std::string bytes = ReadFileBytes(f);
    EXPECT_EQ(bytes.find(marker), std::string::npos) << f << " holds the marker in plaintext";
    EXPECT_EQ(bytes.find("WG-0001-AAAA"), std::string::npos) << f << " holds a cell value in plaintext";
  }
  EXPECT_TRUE(saw_db);
  EXPECT_TRUE(saw_blob);
}

TEST_F(CatalogTest, ReadingWithAnotherMasterKeyFails) {
  ASSERT_TRUE(catalog_->IngestCsv("weld-telemetry", kTelemetry, "upload:a.csv", "dana"));
  auto other_key = crypto::Keyring::FromBytesForTest(std::string(32, 'o'));
  auto other_blobs = blob::BlobStore::Open(dir_.path() / "blobs", &other_key);
  ASSERT_TRUE(other_blobs.has_value());
  CatalogService other(db_.get(), other_blobs->get(), &other_key, iam_.get());
  auto t = Read("weld-telemetry", 1, nullptr, &other);
  ASSERT_FALSE(t.has_value());
  EXPECT_EQ(t.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(t.error().message(), HasSubstr("reading dataset weld-telemetry v1"));
}

}  // namespace
}  // namespace takt::catalog
