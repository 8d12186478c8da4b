// Ingest and governed-read throughput of takt's catalog, next to peers
// measured in the same run on the same file:
//   ingest:  takt (parse, infer, statistics, encode, encrypt, write) vs
//            pandas.read_csv (Debian's python3-pandas) and sqlite3's .import
//   read:    takt's governed read (hash mask, generalize mask, a row filter) vs
//            sqlite3 running the same filter over the imported table
// Each system runs in a child process so its peak RSS is its own (wait4).
// Medians of --repeat runs; results go to --out (Markdown) and stdout.
//
//   build/bench/takt_ingest_bench --size-mb 1024 --repeat 3 --out bench/results/ingest.md
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "core/temp_dir.h"
#include "crypto/keyring.h"
#include "iam/iam.h"
#include "sim/weld.h"

namespace fs = std::filesystem;
using namespace takt;  // NOLINT

namespace {

struct Measure {
  double seconds = 0;
  double rss_mb = 0;
  int64_t rows = 0;
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs `fn` in a child; returns its wall time and peak RSS. The child writes
// its row count to a pipe.
Measure InChild(const std::function<int64_t()>& fn) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  double start = Now();
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    int64_t rows = fn();
    if (write(fds[1], &rows, sizeof rows) != sizeof rows) _exit(3);
    _exit(rows >= 0 ? 0 : 1);
  }
  close(fds[1]);
  int64_t rows = -1;
  if (read(fds[0], &rows, sizeof rows) != sizeof rows) rows = -1;
  close(fds[0]);
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  Measure m;
  m.seconds = Now() - start;
  m.rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;
  m.rows = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ? rows : -1;
  return m;
}

// Runs a shell command as a child; the same measures.
Measure Command(const std::string& cmd) {
  return InChild([cmd]() -> int64_t {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  });
}

struct Catalog {
  std::unique_ptr<crypto::Keyring> keyring;
  std::unique_ptr<store::Database> db;
  std::unique_ptr<blob::BlobStore> blobs;
  std::unique_ptr<iam::IamService> iam;
  std::unique_ptr<catalog::CatalogService> catalog;

  explicit Catalog(const fs::path& dir) {
    keyring = std::make_unique<crypto::Keyring>(crypto::Keyring::FromBytesForTest(std::string(32, 'b')));
    db = std::move(*store::OpenSqlite((dir / "takt.db").string()));
    blobs = std::move(*blob::BlobStore::Open(dir / "blobs", keyring.get()));
    iam = std::make_unique<iam::IamService>(db.get());
    IgnoreError(iam->Migrate());
    catalog = std::make_unique<catalog::CatalogService>(db.get(), blobs.get(), keyring.get(), iam.get());
    IgnoreError(catalog->Migrate());
  }
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int size_mb = 1024, repeat = 3;
  std::string out_path = "bench/results/ingest.md", csv_path;
  bool only_takt = false;  // --only-takt: skip the peers (profiling)
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--size-mb")
      size_mb = std::stoi(next());
    else if (a == "--repeat")
      repeat = std::stoi(next());
    else if (a == "--out")
      out_path = next();
    else if (a == "--csv")
      csv_path = next();
    else if (a == "--only-takt")
      only_takt = true;
    else {
      std::cerr << "usage: takt_ingest_bench [--size-mb N] [--repeat N] [--out FILE] [--csv EXISTING.csv]\n";
      return 2;
    }
  }
  TempDir tmp("takt-bench");
  if (csv_path.empty()) {
    // ~86 bytes a row: robots × days × 24 rows.
    sim::WeldOptions o;
    o.plants = 3;
    o.days = 90;
    o.robots = std::max(3, static_cast<int>(static_cast<double>(size_mb) * 1e6 / 86.0 / (o.days * 24)));
    csv_path = (tmp.path() / "telemetry.csv").string();
    std::ofstream out(csv_path, std::ios::binary);
    std::cerr << "bench: writing " << o.robots << " robots × " << o.days << " days of telemetry …\n";
    if (!sim::WriteWeldCsv(o, out, nullptr)) return 1;
  }
  const double mb = static_cast<double>(fs::file_size(csv_path)) / 1e6;
  std::cerr << "bench: " << csv_path << " is " << mb << " MB\n";

  std::map<std::string, std::vector<double>> secs, rss;
  std::map<std::string, int64_t> rows;
  auto record = [&](const std::string& name, const Measure& m) {
    secs[name].push_back(m.seconds);
    rss[name].push_back(m.rss_mb);
    rows[name] = m.rows;
    std::cerr << "  " << name << ": " << m.seconds << " s, " << m.rss_mb << " MB RSS, " << m.rows
              << " rows\n";
  };
  const std::string sqlite_db = (tmp.path() / "peer.db").string();
  for (int r = 0; r < repeat; ++r) {
    const fs::path dir = tmp.path() / ("takt-" + std::to_string(r));
    fs::create_directories(dir);
    record("takt ingest", InChild([&]() -> int64_t {
             Catalog c(dir);
             auto src = frame::FileSource(csv_path);
             if (!src) return -1;
             catalog::IngestOptions o;
             o.source_label = "bench";
             o.tags = {{"robot_serial", "pii"}};
             auto v = c.catalog->Ingest("weld-telemetry", **src, o, "bench");
             if (!v) {
               std::cerr << v.error().ToString() << "\n";
               return -1;
             }
             return v->version.rows;
           }));
    if (only_takt) continue;
    record("pandas read_csv",
           Command("/usr/bin/python3 -c \"import pandas as pd; pd.read_csv('" + csv_path + "')\""));
    fs::remove(sqlite_db);
    record("sqlite3 .import", Command("sqlite3 " + sqlite_db + " '.mode csv' '.import " + csv_path + " t'"));

    // Governed read: a grantee with a hashed serial, generalised temperatures and a row filter.
    record("takt governed read", InChild([&]() -> int64_t {
             Catalog c(dir);
             IgnoreError(c.iam->CreatePrincipal("bench", "user", {"admin"}, {}));
             IgnoreError(c.iam->CreatePrincipal("reader", "user", {"data-scientist"}, {}));
             catalog::Grant g;
             g.effect = "allow";
             g.subject = "principal:reader";
             g.dataset = "weld-telemetry";
             g.row_filter = "plant != 'P1' AND motor_temp_c > 40";
             g.masks = {{"tag:pii", "hash"}, {"motor_temp_c", "generalize:5"}};
             if (auto made = c.catalog->CreateGrant(g, "bench"); !made) {
               std::cerr << made.error().ToString() << "\n";
               return -1;
             }
             catalog::ReadRequest req{"reader", "weld-telemetry", 0, {}, "", -1, "bench"};
             auto read = c.catalog->OpenRead(req);
             if (!read) {
               std::cerr << read.error().ToString() << "\n";
               return -1;
             }
             int64_t n = 0;
             while (true) {
               auto b = (*read)->Next();
               if (!b || !*b) break;
               n += static_cast<int64_t>((*b)->num_rows());
             }
             return n;
           }));
    record(
        "sqlite3 SELECT (same filter)",
        Command("sqlite3 " + sqlite_db +
                " \"SELECT count(*), sum(length(robot_serial)), sum(CAST(motor_temp_c AS REAL)) FROM t WHERE "
                "plant != 'P1' AND CAST(motor_temp_c AS REAL) > 40\" > /dev/null"));
  }

  std::string table =
      "| system | median s | MB/s of CSV | ratio to takt | peak RSS MB | rows |\n|---|---|---|---|---|---|\n";
  auto line = [&](const std::string& name, const std::string& base) {
    double s = Median(secs[name]);
    double ratio = Median(secs[base]) > 0 ? s / Median(secs[base]) : 0;
    char buf[256];
    const std::string n = rows[name] >= 0 ? std::to_string(rows[name]) : "-";
    std::snprintf(buf, sizeof buf, "| %s | %.2f | %.0f | %.2f× takt's time | %.0f | %s |\n", name.c_str(), s,
                  mb / s, ratio, Median(rss[name]), n.c_str());
    table += buf;
  };
  for (const char* n : {"takt ingest", "pandas read_csv", "sqlite3 .import"}) line(n, "takt ingest");
  for (const char* n : {"takt governed read", "sqlite3 SELECT (same filter)"}) line(n, "takt governed read");
  std::string report =
      "# Ingest and governed read, " + std::to_string(static_cast<int>(mb)) +
      " MB CSV (welding telemetry, 11 columns), median of " + std::to_string(repeat) + " runs\n\n" + table +
      "\ntakt ingest = parse + type inference + per-column statistics + zstd column chunks + "
      "AES-256-GCM + fsync'd blobs + catalog rows.\n"
      "takt governed read = decrypt + decode + row filter + HMAC pseudonyms + generalize + audit.\n";
  std::cout << report;
  fs::create_directories(fs::path(out_path).parent_path().empty() ? "." : fs::path(out_path).parent_path());
  std::ofstream(out_path) << report;
  return 0;
}
