#include "connectors/sql_source.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <thread>

#include "connectors/testing_postgres.h"
#include "core/temp_dir.h"
#include "frame/table_testing.h"

namespace takt::connectors {
namespace {

using frame::Type;
using testing::PostgresServer;

// Every batch of `reader`, checked against its schema.
struct Drained {
  std::vector<frame::Table> batches;
  frame::Table all;  // the batches concatenated
};

void AppendColumn(frame::Column& dst, const frame::Column& src, size_t dst_rows) {
  if (!src.valid.empty() || !dst.valid.empty()) {
    if (dst.valid.empty()) dst.valid.assign(dst_rows, 1);
    if (src.valid.empty()) {
      dst.valid.insert(dst.valid.end(), src.size(), 1);
    } else {
      dst.valid.insert(dst.valid.end(), src.valid.begin(), src.valid.end());
    }
  }
  dst.ints.insert(dst.ints.end(), src.ints.begin(), src.ints.end());
  dst.doubles.insert(dst.doubles.end(), src.doubles.begin(), src.doubles.end());
  dst.strings.insert(dst.strings.end(), src.strings.begin(), src.strings.end());
}

Result<Drained> Drain(frame::BatchReader& reader) {
  Drained out;
  for (const frame::Field& f : reader.schema().fields)
    out.all.columns.push_back(frame::Column{f, {}, {}, {}, {}});
  while (true) {
    TAKT_ASSIGN_OR_RETURN(std::optional<frame::Table> batch, reader.Next());
    if (!batch) break;
    EXPECT_GT(batch->num_rows(), 0u);
    EXPECT_EQ(batch->schema(), reader.schema());
    EXPECT_TRUE(batch->Validate()) << batch->Validate().error().ToString();
    const size_t rows = out.all.num_rows();
    for (size_t c = 0; c < batch->columns.size(); ++c)
      AppendColumn(out.all.columns[c], batch->columns[c], rows);
    out.batches.push_back(std::move(*batch));
  }
  return out;
}

// Opens and drains a PostgreSQL query; fails the test on an error.
frame::Table PgRead(const std::string& uri, const std::string& query, SqlSourceOptions options = {}) {
  auto reader = OpenPostgresQuery(uri, query, options);
  EXPECT_TRUE(reader) << query << ": " << reader.error().ToString();
  if (!reader) return {};
  auto drained = Drain(**reader);
  EXPECT_TRUE(drained) << query << ": " << drained.error().ToString();
  return drained ? drained->all : frame::Table{};
}

// The error of opening and draining `query`, or a test failure if it succeeds.
Error PgError(const std::string& uri, const std::string& query) {
  auto reader = OpenPostgresQuery(uri, query);
  if (!reader) return reader.error();
  auto drained = Drain(**reader);
  if (!drained) return drained.error();
  ADD_FAILURE() << "expected an error from: " << query;
  return Error(Code::kOk, "");
}

// ---------------------------------------------------------------------------
// RedactConninfo

TEST(RedactConninfoTest, DropsTheUriPassword) {
  EXPECT_EQ(RedactConninfo("postgresql://user:secret@127.0.0.1:5433/plant"),
            "postgresql://user@127.0.0.1:5433/plant");
  EXPECT_EQ(RedactConninfo("postgres://user:s%2Fcr%40t@db.plant:5432/mes?sslmode=require"),
            "postgres://user@db.plant:5432/mes?sslmode=require");
  EXPECT_EQ(RedactConninfo("postgresql://user:pa/ss@host/db"), "postgresql://user@host/db");
  EXPECT_EQ(RedactConninfo("postgresql://user:secret@h1:5432,h2:5433/db"),
            "postgresql://user@h1:5432,h2:5433/db");
}

TEST(RedactConninfoTest, MasksAPasswordQueryParameter) {
  EXPECT_EQ(RedactConninfo("postgresql://user@host/db?sslmode=require&password=secret&connect_timeout=3"),
            "postgresql://user@host/db?sslmode=require&password=***&connect_timeout=3");
  EXPECT_EQ(RedactConninfo("postgresql:///plant?host=/var/run/postgresql&password=x"),
            "postgresql:///plant?host=/var/run/postgresql&password=***");
}

TEST(RedactConninfoTest, MasksTheKeywordPassword) {
  EXPECT_EQ(RedactConninfo("host=h dbname=d user=u password=secret"), "host=h dbname=d user=u password=***");
  EXPECT_EQ(RedactConninfo("password='se cret' host=h"), "password=*** host=h");
  EXPECT_EQ(RedactConninfo("host=h password = 'it\\'s' port=1"), "host=h password = *** port=1");
  EXPECT_EQ(RedactConninfo("host=h PASSWORD=x"), "host=h PASSWORD=***");
}

TEST(RedactConninfoTest, MasksTokensOfAMalformedString) {
  // libpq reads password=my and refuses "secret"; it may be half the password.
  EXPECT_EQ(RedactConninfo("host=h password=my secret"), "host=h password=*** ***");
}

TEST(RedactConninfoTest, LeavesStringsWithoutPasswordAlone) {
  for (const char* s : {"host=h dbname=d user=u", "postgresql://user@host:5433/plant",
                        "postgresql://host:5432/db", "postgresql:///plant", "", "plant"}) {
    EXPECT_EQ(RedactConninfo(s), s);
  }
}

TEST(OpenPostgresQueryTest, InvalidConninfoIsInvalidArgumentWithoutThePassword) {
  auto r = OpenPostgresQuery("host=127.0.0.1 password=hunter2 bogus_option=1", "SELECT 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.error().message().find("hunter2"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("bogus_option"), std::string::npos) << r.error().message();

  auto spaced = OpenPostgresQuery("host=127.0.0.1 password=hunter2 extra", "SELECT 1");
  ASSERT_FALSE(spaced);
  EXPECT_EQ(spaced.error().code(), Code::kInvalidArgument);
  EXPECT_EQ(spaced.error().message().find("hunter2"), std::string::npos) << spaced.error().message();
  EXPECT_EQ(spaced.error().message().find("extra"), std::string::npos) << spaced.error().message();
}

// ---------------------------------------------------------------------------
// PostgreSQL, against a real server shared by the suite.

class PostgresSourceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto started = std::chrono::steady_clock::now();
    auto server = PostgresServer::Start();
    if (!server) {
      start_error_ = new std::string(server.error().ToString());
      return;
    }
    server_ = server->release();
    std::cerr << "[ fixture  ] PostgreSQL 15 started on 127.0.0.1:" << server_->port() << " in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                       started)
                     .count()
              << " ms\n";
    auto fixture = server_->Exec(R"sql(
      CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);
      INSERT INTO items VALUES (1, 'spot weld'), (2, 'seam weld'), (3, 'stud weld');
      CREATE SEQUENCE seq;
      -- A session default that is not UTC, which the source must override.
      ALTER ROLE takt SET TimeZone = 'America/New_York';
    )sql");
    if (!fixture) start_error_ = new std::string(fixture.error().ToString());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_EQ(start_error_, nullptr) << *start_error_;
    ASSERT_NE(server_, nullptr);
  }

  static int64_t CountItems() {
    frame::Table t = PgRead(server_->uri(), "SELECT count(*) AS n FROM items");
    return t.num_rows() == 1 ? t.columns[0].ints[0] : -1;
  }

  static PostgresServer* server_;
  static std::string* start_error_;
};

PostgresServer* PostgresSourceTest::server_ = nullptr;
std::string* PostgresSourceTest::start_error_ = nullptr;

TEST_F(PostgresSourceTest, MapsEveryTypeIncludingNulls) {
  ASSERT_TRUE(server_->Exec(R"sql(
    CREATE TABLE every_type (
      i2 int2, i4 int4, i8 int8, o oid, f4 float4, f8 float8, num numeric(12, 4), b bool,
      ts timestamp, tstz timestamptz, d date,
      t text, vc varchar(20), bp char(5), nm name, u uuid, j json, jb jsonb, tm time, iv interval, arr int[]);
    INSERT INTO every_type VALUES (
      -32768, 2147483647, 9223372036854775807, 4294967295, 1.5, 0.1, 12345.6789, true,
      '2024-03-01 12:00:00', '2024-03-01 12:00:00+00', '2024-03-01',
      'text', 'varchar', 'ab', 'a_name', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1}', '{"b": [1, 2]}',
      '08:30:00', '1 day 02:00:00', '{1,2,3}');
    INSERT INTO every_type DEFAULT VALUES;
  )sql"));
  frame::Table t = PgRead(server_->uri(), "SELECT * FROM every_type");
  ASSERT_EQ(t.num_rows(), 2u);

  const std::vector<std::pair<std::string, Type>> expected = {
      {"i2", Type::kInt64},     {"i4", Type::kInt64},       {"i8", Type::kInt64},    {"o", Type::kInt64},
      {"f4", Type::kFloat64},   {"f8", Type::kFloat64},     {"num", Type::kFloat64}, {"b", Type::kBool},
      {"ts", Type::kTimestamp}, {"tstz", Type::kTimestamp}, {"d", Type::kTimestamp}, {"t", Type::kString},
      {"vc", Type::kString},    {"bp", Type::kString},      {"nm", Type::kString},   {"u", Type::kString},
      {"j", Type::kString},     {"jb", Type::kString},      {"tm", Type::kString},   {"iv", Type::kString},
      {"arr", Type::kString}};
  ASSERT_EQ(t.num_columns(), expected.size());
  for (size_t c = 0; c < expected.size(); ++c) {
    SCOPED_TRACE(expected[c].first);
    EXPECT_EQ(t.columns[c].field.name, expected[c].first);
    EXPECT_EQ(t.columns[c].field.type, expected[c].second);
    EXPECT_TRUE(t.columns[c].field.nullable);
    EXPECT_FALSE(t.columns[c].IsNull(0));
    EXPECT_TRUE(t.columns[c].IsNull(1));  // the DEFAULT VALUES row is all NULL
  }
  auto col = [&](const char* name) -> const frame::Column& { return *t.Find(name); };
  EXPECT_EQ(col("i2").ints[0], -32768);
  EXPECT_EQ(col("i4").ints[0], 2147483647);
  EXPECT_EQ(col("i8").ints[0], std::numeric_limits<int64_t>::max());
  EXPECT_EQ(col("o").ints[0], 4294967295);
  EXPECT_EQ(col("f4").doubles[0], 1.5);
  EXPECT_EQ(col("f8").doubles[0], 0.1);  // extra_float_digits 3: the exact double comes back
  EXPECT_EQ(col("num").doubles[0], 12345.6789);
  EXPECT_EQ(col("b").ints[0], 1);
  EXPECT_EQ(col("ts").ints[0], 1709294400);
  EXPECT_EQ(col("tstz").ints[0], 1709294400);
  EXPECT_EQ(col("d").ints[0], 1709251200);
  EXPECT_EQ(col("t").strings[0], "text");
  EXPECT_EQ(col("vc").strings[0], "varchar");
  EXPECT_EQ(col("bp").strings[0], "ab   ");  // char(5) pads
  EXPECT_EQ(col("nm").strings[0], "a_name");
  EXPECT_EQ(col("u").strings[0], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  EXPECT_EQ(col("j").strings[0], R"({"a": 1})");
  EXPECT_EQ(col("jb").strings[0], R"({"b": [1, 2]})");
  EXPECT_EQ(col("tm").strings[0], "08:30:00");
  EXPECT_EQ(col("iv").strings[0], "1 day 02:00:00");
  EXPECT_EQ(col("arr").strings[0], "{1,2,3}");
  EXPECT_EQ(col("b").ints[1], 0);  // nulls hold a placeholder
  EXPECT_EQ(col("t").strings[1], "");
}

TEST_F(PostgresSourceTest, TimestamptzInAnotherZoneComesBackAsUtc) {
  // Written by a session in Tokyo, read by a role whose default zone is New York.
  ASSERT_TRUE(server_->Exec(R"sql(
    SET TimeZone = 'Asia/Tokyo';
    CREATE TABLE shifts (started timestamptz, local_start timestamp);
    INSERT INTO shifts VALUES ('2024-03-01 09:00:00', '2024-03-01 09:00:00'),
                              ('2024-07-01 09:00:00+02', '1969-12-31 23:59:59.5');
  )sql"));
  frame::Table t = PgRead(server_->uri(), "SELECT started, local_start FROM shifts ORDER BY started");
  ASSERT_EQ(t.num_rows(), 2u);
  EXPECT_EQ(t.columns[0].ints[0], *frame::ParseTimestamp("2024-03-01T00:00:00Z"));
  EXPECT_EQ(t.columns[0].ints[1], *frame::ParseTimestamp("2024-07-01T07:00:00Z"));
  // timestamp without time zone is taken as UTC wall time; fractions go toward the past.
  EXPECT_EQ(t.columns[1].ints[0], *frame::ParseTimestamp("2024-03-01T09:00:00Z"));
  EXPECT_EQ(t.columns[1].ints[1], -1);

  frame::Table zone = PgRead(server_->uri(), "SELECT current_setting('TimeZone') AS tz");
  ASSERT_EQ(zone.num_rows(), 1u);
  EXPECT_EQ(zone.columns[0].strings[0], "UTC");
}

TEST_F(PostgresSourceTest, TimestampsBeyondTheUsualRange) {
  frame::Table t = PgRead(server_->uri(),
                          "SELECT '0044-03-15 12:00:00 BC'::timestamp AS ides, '10000-01-01'::date AS far, "
                          "'epoch'::timestamptz AS epoch");
  ASSERT_EQ(t.num_rows(), 1u);
  EXPECT_EQ(t.columns[0].ints[0], *frame::ParseTimestamp("-0043-03-15T12:00:00Z"));
  EXPECT_EQ(t.columns[1].ints[0], 253402300800);
  EXPECT_EQ(t.columns[2].ints[0], 0);
}

TEST_F(PostgresSourceTest, InfiniteTimestampIsInvalidArgumentNamingRowAndColumn) {
  Error e = PgError(server_->uri(),
                    "SELECT x AS at FROM (VALUES ('2024-01-01'::timestamp), ('infinity'::timestamp)) v(x)");
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_NE(e.message().find("row 2, column at: 'infinity'"), std::string::npos) << e.message();
}

TEST_F(PostgresSourceTest, NumericAndFloatSpecialValues) {
  frame::Table t = PgRead(server_->uri(), R"sql(
    SELECT x FROM (VALUES ('12345.6789'::numeric), ('NaN'::numeric), ('-0.001'::numeric),
                          (('1' || repeat('0', 400))::numeric), ('Infinity'::numeric),
                          (('0.' || repeat('0', 400) || '1')::numeric)) v(x)
  )sql");
  ASSERT_EQ(t.num_rows(), 6u);
  const auto& d = t.columns[0].doubles;
  EXPECT_EQ(d[0], 12345.6789);
  EXPECT_TRUE(std::isnan(d[1]));
  EXPECT_EQ(d[2], -0.001);
  EXPECT_EQ(d[3], std::numeric_limits<double>::infinity());
  EXPECT_EQ(d[4], std::numeric_limits<double>::infinity());
  EXPECT_EQ(d[5], 0.0);

  frame::Table f = PgRead(server_->uri(),
                          "SELECT 'Infinity'::float8 AS a, '-Infinity'::float8 AS b, 'NaN'::float4 AS c, "
                          "1e308::float8 AS e, 5e-324::float8 AS tiny");
  ASSERT_EQ(f.num_rows(), 1u);
  EXPECT_EQ(f.columns[0].doubles[0], std::numeric_limits<double>::infinity());
  EXPECT_EQ(f.columns[1].doubles[0], -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(f.columns[2].doubles[0]));
  EXPECT_EQ(f.columns[3].doubles[0], 1e308);
  EXPECT_EQ(f.columns[4].doubles[0], 5e-324);
}

TEST_F(PostgresSourceTest, UnicodeTextArrivesByteForByte) {
  const std::string text = "Schweißnaht Ø3 mm — 溶接ロボット 🤖";  // 28 characters
  ASSERT_TRUE(server_->Exec("CREATE TABLE notes (n text); INSERT INTO notes VALUES ('" + text + "')"));
  frame::Table t = PgRead(server_->uri(), "SELECT n, length(n) AS chars FROM notes");
  ASSERT_EQ(t.num_rows(), 1u);
  EXPECT_EQ(t.columns[0].strings[0], text);
  EXPECT_EQ(t.columns[1].ints[0], 28);  // characters, so the server saw UTF-8 too
}

TEST_F(PostgresSourceTest, EmptyResultHasSchemaAndNoBatches) {
  auto reader = OpenPostgresQuery(server_->uri(), "SELECT id, name FROM items WHERE false");
  ASSERT_TRUE(reader) << reader.error().ToString();
  const frame::Schema expected{{{"id", Type::kInt64, true}, {"name", Type::kString, true}}};
  EXPECT_EQ((*reader)->schema(), expected);
  auto batch = (*reader)->Next();
  ASSERT_TRUE(batch) << batch.error().ToString();
  EXPECT_FALSE(batch->has_value());
  auto again = (*reader)->Next();
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->has_value());
  EXPECT_EQ((*reader)->report().rows_read, 0);
}

TEST_F(PostgresSourceTest, LargeResultArrivesInBoundedBatches) {
  SqlSourceOptions options;
  options.batch_rows = 50000;
  auto reader = OpenPostgresQuery(server_->uri(),
                                  "SELECT g AS id, g * 0.5 AS half, 'row ' || g AS label "
                                  "FROM generate_series(1, 200000) g",
                                  options);
  ASSERT_TRUE(reader) << reader.error().ToString();
  auto drained = Drain(**reader);
  ASSERT_TRUE(drained) << drained.error().ToString();
  ASSERT_EQ(drained->batches.size(), 4u);
  for (const frame::Table& b : drained->batches) EXPECT_EQ(b.num_rows(), 50000u);
  const frame::Table& all = drained->all;
  ASSERT_EQ(all.num_rows(), 200000u);
  for (size_t r = 0; r < all.num_rows(); r += 9973) {
    ASSERT_EQ(all.columns[0].ints[r], static_cast<int64_t>(r + 1));
    ASSERT_EQ(all.columns[1].doubles[r], (r + 1) * 0.5);
    ASSERT_EQ(all.columns[2].strings[r], "row " + std::to_string(r + 1));
  }
  const frame::ReaderReport& report = (*reader)->report();
  EXPECT_EQ(report.rows_read, 200000);
  EXPECT_GT(report.bytes_read, 200000u * 8);
  EXPECT_LT(report.bytes_read, 200000u * 40);
  EXPECT_TRUE(report.errors.empty());
}

TEST_F(PostgresSourceTest, DefaultBatchSizeIs65536Rows) {
  auto reader = OpenPostgresQuery(server_->uri(), "SELECT g FROM generate_series(1, 200000) g");
  ASSERT_TRUE(reader);
  auto drained = Drain(**reader);
  ASSERT_TRUE(drained);
  ASSERT_EQ(drained->batches.size(), 4u);
  EXPECT_EQ(drained->batches[0].num_rows(), 65536u);
  EXPECT_EQ(drained->batches[3].num_rows(), 200000u - 3 * 65536u);
}

TEST_F(PostgresSourceTest, QueryErrorIsInvalidArgumentWithPostgresMessage) {
  Error missing = PgError(server_->uri(), "SELECT * FROM no_such_table");
  EXPECT_EQ(missing.code(), Code::kInvalidArgument);
  EXPECT_NE(missing.message().find("relation \"no_such_table\" does not exist"), std::string::npos)
      << missing.message();
  EXPECT_NE(missing.message().find("postgresql://takt@127.0.0.1:"), std::string::npos) << missing.message();
  EXPECT_EQ(missing.message().find(server_->password()), std::string::npos);

  Error syntax = PgError(server_->uri(), "SELEC 1");
  EXPECT_EQ(syntax.code(), Code::kInvalidArgument);
  EXPECT_NE(syntax.message().find("syntax error"), std::string::npos) << syntax.message();

  Error runtime = PgError(server_->uri(), "SELECT 1 / (g - 3) FROM generate_series(1, 5) g");
  EXPECT_EQ(runtime.code(), Code::kInvalidArgument);
  EXPECT_NE(runtime.message().find("division by zero"), std::string::npos) << runtime.message();

  Error parameter = PgError(server_->uri(), "SELECT $1::int AS x");
  EXPECT_EQ(parameter.code(), Code::kInvalidArgument) << parameter.message();
}

TEST_F(PostgresSourceTest, DuplicateColumnNamesAreInvalidArgument) {
  Error e = PgError(server_->uri(), "SELECT 1, 2");
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_NE(e.message().find("both named '?column?'"), std::string::npos) << e.message();
}

TEST_F(PostgresSourceTest, NonSelectStatementIsRefused) {
  for (const char* statement : {"UPDATE items SET name = 'x'", "DELETE FROM items",
                                "CREATE TABLE evil (x int)", "TRUNCATE items", "DROP TABLE items"}) {
    Error e = PgError(server_->uri(), statement);
    EXPECT_EQ(e.code(), Code::kInvalidArgument) << statement;
    EXPECT_NE(e.message().find("the source query must be a SELECT"), std::string::npos) << e.message();
  }
  EXPECT_EQ(CountItems(), 3);
  frame::Table names = PgRead(server_->uri(), "SELECT name FROM items ORDER BY id");
  ASSERT_EQ(names.num_rows(), 3u);
  EXPECT_EQ(names.columns[0].strings[0], "spot weld");
  EXPECT_EQ(PgRead(server_->uri(), "SELECT to_regclass('evil')::text AS t").columns[0].valid,
            (std::vector<uint8_t>{0}));
}

TEST_F(PostgresSourceTest, ReadOnlyTransactionRefusesWrites) {
  for (const char* statement :
       {"SELECT * FROM items; DELETE FROM items", "WITH d AS (DELETE FROM items RETURNING *) SELECT * FROM d",
        "DELETE FROM items RETURNING *", "INSERT INTO items VALUES (9, 'x') RETURNING id",
        "UPDATE items SET name = 'x' RETURNING id", "SELECT nextval('seq') AS n",
        "SELECT set_config('transaction_read_only', 'off', false) AS x"}) {
    Error e = PgError(server_->uri(), statement);
    EXPECT_EQ(e.code(), Code::kInvalidArgument) << statement << ": " << e.message();
  }
  Error cte = PgError(server_->uri(), "WITH d AS (DELETE FROM items RETURNING *) SELECT * FROM d");
  EXPECT_NE(cte.message().find("read-only transaction"), std::string::npos) << cte.message();
  EXPECT_EQ(CountItems(), 3);
}

TEST_F(PostgresSourceTest, KeywordConninfoWorks) {
  const std::string conninfo = "host=127.0.0.1 port=" + std::to_string(server_->port()) +
                               " dbname=postgres user=takt password=" + server_->password();
  frame::Table t = PgRead(conninfo, "SELECT id FROM items ORDER BY id");
  ASSERT_EQ(t.num_rows(), 3u);
  EXPECT_EQ(t.columns[0].ints, (std::vector<int64_t>{1, 2, 3}));
}

TEST_F(PostgresSourceTest, WrongPasswordIsPermissionDeniedWithoutThePassword) {
  const std::string wrong =
      "postgresql://takt:Wr0ng-Secret-42@127.0.0.1:" + std::to_string(server_->port()) + "/postgres";
  auto r = OpenPostgresQuery(wrong, "SELECT 1 AS x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kPermissionDenied) << r.error().message();
  EXPECT_NE(r.error().message().find("password authentication failed"), std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("postgresql://takt@127.0.0.1:"), std::string::npos)
      << r.error().message();
  EXPECT_EQ(r.error().message().find("Wr0ng-Secret-42"), std::string::npos) << r.error().message();
  EXPECT_EQ(r.error().message().find(server_->password()), std::string::npos);

  const std::string no_password =
      "postgresql://takt@127.0.0.1:" + std::to_string(server_->port()) + "/postgres";
  auto none = OpenPostgresQuery(no_password, "SELECT 1 AS x");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), Code::kPermissionDenied) << none.error().message();

  auto nobody = OpenPostgresQuery(
      "postgresql://nobody:x@127.0.0.1:" + std::to_string(server_->port()) + "/postgres", "SELECT 1 AS x");
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.error().code(), Code::kPermissionDenied) << nobody.error().message();
}

TEST_F(PostgresSourceTest, MissingDatabaseIsNotFound) {
  const std::string uri = "postgresql://takt:" + server_->password() +
                          "@127.0.0.1:" + std::to_string(server_->port()) + "/no_such_db";
  auto r = OpenPostgresQuery(uri, "SELECT 1 AS x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kNotFound) << r.error().message();
  EXPECT_EQ(r.error().message().find(server_->password()), std::string::npos);
}

TEST_F(PostgresSourceTest, DestroyingAReaderEarlyCancelsTheQuery) {
  {
    SqlSourceOptions options;
    options.batch_rows = 100;
    auto reader = OpenPostgresQuery(
        server_->uri(),
        "SELECT g, pg_sleep(0.0001) AS s FROM (SELECT generate_series(1, 100000000) AS g) q /* cancel-me */",
        options);
    ASSERT_TRUE(reader) << reader.error().ToString();
    auto batch = (*reader)->Next();
    ASSERT_TRUE(batch);
    ASSERT_TRUE(batch->has_value());
  }
  // The backend is gone (or going) within moments, not after 10^8 rows.
  // (generate_series in the select list streams; in FROM it would be
  // materialized before the first row.)
  int64_t remaining = -1;
  for (int i = 0; i < 50 && remaining != 0; ++i) {
    frame::Table t = PgRead(server_->uri(),
                            "SELECT count(*) AS n FROM pg_stat_activity "
                            "WHERE query LIKE '%cancel-me%' AND pid <> pg_backend_pid()");
    remaining = t.num_rows() == 1 ? t.columns[0].ints[0] : -1;
    if (remaining != 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(remaining, 0);
}

TEST_F(PostgresSourceTest, ReportCountsRowsAndBytes) {
  auto reader = OpenPostgresQuery(server_->uri(), "SELECT id, name FROM items");
  ASSERT_TRUE(reader);
  ASSERT_TRUE(Drain(**reader));
  const frame::ReaderReport& report = (*reader)->report();
  EXPECT_EQ(report.rows_read, 3);
  EXPECT_EQ(report.bytes_read, 3u + std::string("spot weld"
                                                "seam weld"
                                                "stud weld")
                                        .size());
  EXPECT_EQ(report.rows_skipped, 0);
  EXPECT_TRUE(report.errors.empty());
}

// A server of its own: these tests stop it.
TEST(PostgresSourceDownTest, StoppedServerIsUnavailableWithoutThePassword) {
  auto server = PostgresServer::Start();
  ASSERT_TRUE(server) << server.error().ToString();
  const std::string uri = (*server)->uri();
  const std::string password = (*server)->password();
  ASSERT_EQ(PgRead(uri, "SELECT 1 AS x").num_rows(), 1u);

  // Mid-stream: the rows stop with an error, never a silent short result.
  SqlSourceOptions options;
  options.batch_rows = 10000;
  auto streaming = OpenPostgresQuery(
      uri, "SELECT g, repeat('x', 100) AS pad FROM (SELECT generate_series(1, 10000000) AS g) q", options);
  ASSERT_TRUE(streaming) << streaming.error().ToString();
  auto first = (*streaming)->Next();
  ASSERT_TRUE(first && first->has_value());
  (*server)->Stop();
  Result<std::optional<frame::Table>> next = std::optional<frame::Table>();
  int64_t batches = 0;
  while ((next = (*streaming)->Next()) && next->has_value()) ++batches;
  ASSERT_FALSE(next) << "the stream ended normally after " << batches << " more batches";
  EXPECT_EQ(next.error().code(), Code::kUnavailable) << next.error().message();
  EXPECT_EQ(next.error().message().find(password), std::string::npos);
  EXPECT_LT((*streaming)->report().rows_read, 10000000);
  auto after = (*streaming)->Next();  // the error stays
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code(), Code::kUnavailable);

  // A new connection: refused.
  auto refused = OpenPostgresQuery(uri, "SELECT 1 AS x");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Code::kUnavailable);
  const std::string& message = refused.error().message();
  EXPECT_NE(message.find("cannot connect to PostgreSQL source postgresql://takt@127.0.0.1:"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("Connection refused"), std::string::npos) << message;
  EXPECT_EQ(message.find(password), std::string::npos) << message;
  EXPECT_EQ(message.find("takt:"), std::string::npos) << message;
}

TEST(PostgresSourceDownTest, ConnectTimeoutBoundsAnUnresponsivePeer) {
  // A listening socket that never answers the startup packet (backlog only).
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  SqlSourceOptions options;
  options.connect_timeout_seconds = 2;
  const auto start = std::chrono::steady_clock::now();
  auto r = OpenPostgresQuery(
      "postgresql://u:pw-xyz@127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/db", "SELECT 1", options);
  const auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kUnavailable) << r.error().message();
  EXPECT_EQ(r.error().message().find("pw-xyz"), std::string::npos);
  EXPECT_LT(took, std::chrono::seconds(10));
}

// ---------------------------------------------------------------------------
// SQLite, against a real file.

class SqliteSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    path_ = (dir_.path() / "plant.db").string();
  }

  // Runs SQL on the file with a writable connection (the fixture's, not the source's).
  void Exec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    std::string message = error != nullptr ? error : "";
    sqlite3_free(error);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << message;
  }

  std::string FileBytes() const {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  frame::Table Read(const std::string& query, SqlSourceOptions options = {}) {
    auto reader = OpenSqliteQuery(path_, query, options);
    EXPECT_TRUE(reader) << query << ": " << reader.error().ToString();
    if (!reader) return {};
    auto drained = Drain(**reader);
    EXPECT_TRUE(drained) << query << ": " << drained.error().ToString();
    return drained ? drained->all : frame::Table{};
  }

  Error ReadError(const std::string& query, SqlSourceOptions options = {}) {
    auto reader = OpenSqliteQuery(path_, query, options);
    if (!reader) return reader.error();
    auto drained = Drain(**reader);
    if (!drained) return drained.error();
    ADD_FAILURE() << "expected an error from: " << query;
    return Error(Code::kOk, "");
  }

  TempDir dir_{"takt-sqlite"};
  std::string path_;
};

TEST_F(SqliteSourceTest, TypesFromDeclaredTypes) {
  Exec(R"sql(
    CREATE TABLE t (i INTEGER, bi BIGINT, r REAL, dbl DOUBLE PRECISION, fl FLOAT, num NUMERIC(10, 2),
                    b BOOLEAN, dt DATETIME, d DATE, ts TIMESTAMP, s TEXT, vc VARCHAR(20), bl BLOB, odd WHATEVER);
    INSERT INTO t VALUES (1, 9007199254740993, 1.5, 0.1, 2, 12.25, 1, '2024-03-01 12:00:00', '2024-03-01',
                          1709294400, 'text', 'vc', x'00ff', 'odd');
    INSERT INTO t VALUES (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    INSERT INTO t (b, dt, d, ts) VALUES ('false', '2024-03-01T12:00:00Z', 1709251200.75, '2024-03-01 14:00:00+02:00');
  )sql");
  frame::Table t = Read("SELECT * FROM t");
  ASSERT_EQ(t.num_rows(), 3u);
  const std::vector<std::pair<std::string, Type>> expected = {
      {"i", Type::kInt64},     {"bi", Type::kInt64},     {"r", Type::kFloat64}, {"dbl", Type::kFloat64},
      {"fl", Type::kFloat64},  {"num", Type::kFloat64},  {"b", Type::kBool},    {"dt", Type::kTimestamp},
      {"d", Type::kTimestamp}, {"ts", Type::kTimestamp}, {"s", Type::kString},  {"vc", Type::kString},
      {"bl", Type::kString},   {"odd", Type::kString}};
  ASSERT_EQ(t.num_columns(), expected.size());
  for (size_t c = 0; c < expected.size(); ++c) {
    SCOPED_TRACE(expected[c].first);
    EXPECT_EQ(t.columns[c].field.name, expected[c].first);
    EXPECT_EQ(t.columns[c].field.type, expected[c].second);
    EXPECT_TRUE(t.columns[c].field.nullable);
    EXPECT_FALSE(t.columns[c].IsNull(0));
    EXPECT_TRUE(t.columns[c].IsNull(1));
  }
  auto col = [&](const char* name) -> const frame::Column& { return *t.Find(name); };
  EXPECT_EQ(col("i").ints[0], 1);
  EXPECT_EQ(col("bi").ints[0], 9007199254740993);
  EXPECT_EQ(col("r").doubles[0], 1.5);
  EXPECT_EQ(col("dbl").doubles[0], 0.1);
  EXPECT_EQ(col("fl").doubles[0], 2.0);
  EXPECT_EQ(col("num").doubles[0], 12.25);
  EXPECT_EQ(col("b").ints[0], 1);
  EXPECT_EQ(col("b").ints[2], 0);
  EXPECT_EQ(col("dt").ints[0], 1709294400);
  EXPECT_EQ(col("dt").ints[2], 1709294400);
  EXPECT_EQ(col("d").ints[0], 1709251200);
  EXPECT_EQ(col("d").ints[2], 1709251200);
  EXPECT_EQ(col("ts").ints[0], 1709294400);
  EXPECT_EQ(col("ts").ints[2], 1709294400);
  EXPECT_EQ(col("s").strings[0], "text");
  EXPECT_EQ(col("vc").strings[0], "vc");
  EXPECT_EQ(col("bl").strings[0], std::string("\x00\xff", 2));
  EXPECT_EQ(col("odd").strings[0], "odd");
}

TEST_F(SqliteSourceTest, ExpressionsTakeTheirTypeFromTheFirstBatch) {
  Exec("CREATE TABLE m (id INTEGER, force REAL); INSERT INTO m VALUES (1, 2.5), (2, 3.5), (3, NULL);");
  frame::Table t = Read(
      "SELECT id * 10 AS tens, force * 2 AS doubled, 'm-' || id AS label, NULL AS empty, count(*) OVER () AS "
      "n, "
      "CASE WHEN id = 1 THEN 1 ELSE 1.5 END AS mixed, unicode('é') AS cp FROM m ORDER BY id");
  ASSERT_EQ(t.num_rows(), 3u);
  EXPECT_EQ(t.Find("tens")->field.type, Type::kInt64);
  EXPECT_EQ(t.Find("tens")->ints, (std::vector<int64_t>{10, 20, 30}));
  EXPECT_EQ(t.Find("doubled")->field.type, Type::kFloat64);
  EXPECT_EQ(t.Find("doubled")->doubles[1], 7.0);
  EXPECT_TRUE(t.Find("doubled")->IsNull(2));
  EXPECT_EQ(t.Find("label")->field.type, Type::kString);
  EXPECT_EQ(t.Find("label")->strings[2], "m-3");
  EXPECT_EQ(t.Find("empty")->field.type, Type::kString);
  EXPECT_EQ(t.Find("n")->field.type, Type::kInt64);
  EXPECT_EQ(t.Find("mixed")->field.type, Type::kFloat64);
  EXPECT_EQ(t.Find("mixed")->doubles, (std::vector<double>{1.0, 1.5, 1.5}));
  EXPECT_EQ(t.Find("cp")->ints[0], 233);
}

TEST_F(SqliteSourceTest, ValueThatDoesNotFitADeclaredTypeNamesRowAndColumn) {
  Exec("CREATE TABLE m (id INTEGER, force INTEGER); INSERT INTO m VALUES (1, 10), (2, 20), (3, 'abc');");
  Error at_open = ReadError("SELECT id, force FROM m ORDER BY id");
  EXPECT_EQ(at_open.code(), Code::kInvalidArgument);
  EXPECT_NE(at_open.message().find(
                "row 3, column force: text 'abc' does not fit its type int64 (declared INTEGER)"),
            std::string::npos)
      << at_open.message();

  // Past the first batch: the rows before it were delivered, then the error.
  SqlSourceOptions small;
  small.batch_rows = 2;
  auto reader = OpenSqliteQuery(path_, "SELECT id, force FROM m ORDER BY id", small);
  ASSERT_TRUE(reader) << reader.error().ToString();
  auto first = (*reader)->Next();
  ASSERT_TRUE(first && first->has_value());
  EXPECT_EQ((*first)->num_rows(), 2u);
  auto second = (*reader)->Next();
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), Code::kInvalidArgument);
  EXPECT_NE(second.error().message().find("row 3, column force"), std::string::npos)
      << second.error().message();
}

TEST_F(SqliteSourceTest, ValueThatDoesNotFitAnInferredTypeNamesRowAndColumn) {
  Exec("CREATE TABLE m (id INTEGER); INSERT INTO m VALUES (1), (2), (3), (4);");
  SqlSourceOptions small;
  small.batch_rows = 2;
  Error e = ReadError("SELECT id, CASE WHEN id < 4 THEN id ELSE id + 0.5 END AS v FROM m ORDER BY id", small);
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_NE(e.message().find(
                "row 4, column v: real 4.5 does not fit its type int64 (inferred from the first 2 rows)"),
            std::string::npos)
      << e.message();

  Exec("CREATE TABLE e (d DATE, b BOOLEAN); INSERT INTO e VALUES ('not a date', 1), ('2024-01-01', 7);");
  Error date = ReadError("SELECT d FROM e");
  EXPECT_EQ(date.code(), Code::kInvalidArgument);
  EXPECT_NE(date.message().find("row 1, column d: text 'not a date'"), std::string::npos) << date.message();
  Error boolean = ReadError("SELECT b FROM e");
  EXPECT_NE(boolean.message().find("row 2, column b: integer 7"), std::string::npos) << boolean.message();
}

TEST_F(SqliteSourceTest, RowsArriveInBatchesOfBatchRows) {
  Exec(R"sql(
    CREATE TABLE big (id INTEGER, v REAL);
    WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 10000) INSERT INTO big SELECT n, n * 0.25 FROM s;
  )sql");
  SqlSourceOptions options;
  options.batch_rows = 3000;
  auto reader = OpenSqliteQuery(path_, "SELECT id, v FROM big ORDER BY id", options);
  ASSERT_TRUE(reader);
  auto drained = Drain(**reader);
  ASSERT_TRUE(drained) << drained.error().ToString();
  ASSERT_EQ(drained->batches.size(), 4u);
  EXPECT_EQ(drained->batches[0].num_rows(), 3000u);
  EXPECT_EQ(drained->batches[3].num_rows(), 1000u);
  EXPECT_EQ(drained->all.columns[0].ints[9999], 10000);
  EXPECT_EQ(drained->all.columns[1].doubles[9999], 2500.0);
  EXPECT_EQ((*reader)->report().rows_read, 10000);
  EXPECT_EQ((*reader)->report().bytes_read, 10000u * 16);
}

TEST_F(SqliteSourceTest, EmptyResultHasSchemaAndNoBatches) {
  Exec("CREATE TABLE t (id INTEGER, name TEXT);");
  auto reader = OpenSqliteQuery(path_, "SELECT id, name, id + 1 AS next FROM t");
  ASSERT_TRUE(reader) << reader.error().ToString();
  const frame::Schema expected{
      {{"id", Type::kInt64, true}, {"name", Type::kString, true}, {"next", Type::kString, true}}};
  EXPECT_EQ((*reader)->schema(), expected);
  auto batch = (*reader)->Next();
  ASSERT_TRUE(batch);
  EXPECT_FALSE(batch->has_value());
}

TEST_F(SqliteSourceTest, UnicodeTextArrivesByteForByte) {
  const std::string text = "Schweißnaht — 溶接 🤖";
  Exec("CREATE TABLE n (s TEXT); INSERT INTO n VALUES ('" + text + "');");
  frame::Table t = Read("SELECT s FROM n");
  ASSERT_EQ(t.num_rows(), 1u);
  EXPECT_EQ(t.columns[0].strings[0], text);
}

TEST_F(SqliteSourceTest, MissingFileIsNotFound) {
  auto r = OpenSqliteQuery((dir_.path() / "nope.db").string(), "SELECT 1 AS x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_NE(r.error().message().find("nope.db"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "nope.db"));  // not created either
}

TEST_F(SqliteSourceTest, QueryErrorIsInvalidArgumentWithSqliteMessage) {
  Exec("CREATE TABLE t (id INTEGER);");
  Error e = ReadError("SELECT * FROM no_such_table");
  EXPECT_EQ(e.code(), Code::kInvalidArgument);
  EXPECT_NE(e.message().find("no such table: no_such_table"), std::string::npos) << e.message();

  Error dup = ReadError("SELECT id, id FROM t");
  EXPECT_EQ(dup.code(), Code::kInvalidArgument);
  EXPECT_NE(dup.message().find("both named 'id'"), std::string::npos) << dup.message();

  std::ofstream(dir_.path() / "not-a-db.txt") << "plain text, not a database file\n";
  auto r = OpenSqliteQuery((dir_.path() / "not-a-db.txt").string(), "SELECT name FROM sqlite_master");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().message();
}

TEST_F(SqliteSourceTest, DatabaseIsOpenedReadOnly) {
  Exec("CREATE TABLE t (id INTEGER); INSERT INTO t VALUES (1), (2), (3);");
  const std::string before = FileBytes();
  for (const char* statement :
       {"DELETE FROM t", "DELETE FROM t RETURNING *", "UPDATE t SET id = 0 RETURNING id",
        "INSERT INTO t VALUES (4)", "DROP TABLE t", "SELECT * FROM t; DELETE FROM t", "CREATE TABLE evil (x)",
        "ATTACH DATABASE 'other.db' AS other", "VACUUM", ""}) {
    Error e = ReadError(statement);
    EXPECT_EQ(e.code(), Code::kInvalidArgument) << statement << ": " << e.message();
  }
  EXPECT_EQ(FileBytes(), before);
  EXPECT_EQ(Read("SELECT count(*) AS n FROM t").columns[0].ints[0], 3);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "other.db"));
  // A trailing semicolon or comment is still one statement.
  EXPECT_EQ(Read("SELECT id FROM t; -- all of them\n").num_rows(), 3u);
}

}  // namespace
}  // namespace takt::connectors
