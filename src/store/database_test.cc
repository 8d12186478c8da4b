#include "store/database.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

namespace takt::store {
namespace {

std::unique_ptr<Database> OpenTemp() {
  auto db = OpenSqlite(":memory:");
  EXPECT_TRUE(db.has_value());
  return std::move(*db);
}

TEST(DatabaseTest, BindsAndReadsEveryType) {
  auto db = OpenTemp();
  ASSERT_TRUE(db->ExecScript("CREATE TABLE t (i INTEGER, r REAL, s TEXT, n TEXT)"));
  ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (?, ?, ?, ?)", {int64_t{42}, 2.5, std::string("a'b"), Value{}}));
  auto row = db->QueryOne("SELECT i, r, s, n FROM t", {}, "row");
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->Int(0), 42);
  EXPECT_DOUBLE_EQ(row->Real(1), 2.5);
  EXPECT_EQ(row->Text(2), "a'b");
  EXPECT_TRUE(row->IsNull(3));
}

TEST(DatabaseTest, QueryOneOnNoRowsIsNotFound) {
  auto db = OpenTemp();
  ASSERT_TRUE(db->ExecScript("CREATE TABLE t (i INTEGER)"));
  auto row = db->QueryOne("SELECT i FROM t", {}, "model group weld-pm has no version 7");
  ASSERT_FALSE(row.has_value());
  EXPECT_EQ(row.error().code(), Code::kNotFound);
  EXPECT_EQ(row.error().message(), "model group weld-pm has no version 7");
}

TEST(DatabaseTest, FailedTransactionLeavesNothingBehind) {
  auto db = OpenTemp();
  ASSERT_TRUE(db->ExecScript("CREATE TABLE t (i INTEGER PRIMARY KEY)"));
  Status s = db->Transaction([](Database& tx) -> Status {
    TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO t VALUES (1)"));
    TAKT_RETURN_IF_ERROR(tx.Exec("INSERT INTO t VALUES (2)"));
    return InvalidArgument("step 3 failed");
  });
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), Code::kInvalidArgument);
  auto rows = db->Query("SELECT COUNT(*) FROM t");
  EXPECT_EQ((*rows)[0].Int(0), 0);
}

TEST(DatabaseTest, DuplicateKeyIsAlreadyExists) {
  auto db = OpenTemp();
  ASSERT_TRUE(db->ExecScript("CREATE TABLE t (i INTEGER PRIMARY KEY)"));
  ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (1)"));
  auto r = db->Exec("INSERT INTO t VALUES (1)");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kAlreadyExists);
}

TEST(DatabaseTest, MigrationsApplyOnceAndInOrder) {
  auto dir = std::filesystem::temp_directory_path() / ("takt-store-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "meta.db").string();
  std::vector<Migration> ms = {{1, "create", "CREATE TABLE a (x INTEGER)"},
                               {2, "add", "ALTER TABLE a ADD COLUMN y TEXT"}};
  {
    auto db = OpenSqlite(path);
    ASSERT_TRUE(db.has_value());
    ASSERT_TRUE(Migrate(**db, "test", ms));
  }
  auto db = OpenSqlite(path);
  ASSERT_TRUE(Migrate(**db, "test", ms)) << "second run must be a no-op";
  auto rows = (*db)->Query("SELECT version FROM schema_migrations WHERE component = 'test' ORDER BY version");
  ASSERT_EQ(rows->size(), 2u);
  // A broken migration is rolled back with its bookkeeping row.
  ms.push_back({3, "broken", "CREATE TABLE b (x INTEGER); CREATE TABLE a (x INTEGER)"});
  auto s = Migrate(**db, "test", ms);
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message().find("migration test/broken"), std::string::npos);
  EXPECT_TRUE((*db)->Query("SELECT * FROM b").has_value() == false);
  std::filesystem::remove_all(dir);
}

TEST(DatabaseTest, ConcurrentWritersAreSerialised) {
  auto db = OpenTemp();
  ASSERT_TRUE(db->ExecScript("CREATE TABLE c (n INTEGER)"));
  ASSERT_TRUE(db->Exec("INSERT INTO c VALUES (0)"));
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        ASSERT_TRUE(db->Transaction([](Database& tx) -> Status {
          TAKT_ASSIGN_OR_RETURN(auto row, tx.QueryOne("SELECT n FROM c", {}, "c"));
          TAKT_RETURN_IF_ERROR(tx.Exec("UPDATE c SET n = ?", {row.Int(0) + 1}));
          return Ok();
        }));
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ((*db->Query("SELECT n FROM c"))[0].Int(0), 400);
}

}  // namespace
}  // namespace takt::store
