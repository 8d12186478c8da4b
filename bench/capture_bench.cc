// What data capture adds to a request, at 100 % sampling next to 0 % in the
// same run, for a one-row 32-feature record:
//   offer:    CaptureWriter::Offer of a freshly built record (the caller copies
//             its 32 inputs and 1 output into the record) on the request
//             thread: ns per call at 0 %, at 100 %, and the gated form
//             (ShouldCapture() before building) at 0 %; the background thread
//             drains between batches (Flush, not timed), so nothing is dropped
//   writer:   the background thread's CPU per record (encode, compress, seal,
//             write): process CPU minus the offering thread's CPU over rounds
//             of 4000 queued records and a Flush, divided by the records
//   request:  the same at the level of a request: a loopback http::Server whose
//             handler parses 32 floats, "scores" them and offers the record,
//             called by one keep-alive Client; median latency at 0 % vs 100 %
//             (an HTTP round trip is the smallest request there is, so this is
//             the worst case for the relative cost)
// Medians of --repeat rounds, 0 % and 100 % alternating. No timing is asserted.
//
//   build/bench/takt_capture_bench --repeat 15 --out bench/results/capture.md
#include <sys/resource.h>
#include <sys/utsname.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "core/temp_dir.h"
#include "crypto/keyring.h"
#include "http/client.h"
#include "http/router.h"
#include "http/server.h"
#include "serving/capture.h"

using namespace takt;           // NOLINT
using namespace takt::serving;  // NOLINT

namespace {

constexpr size_t kFeatures = 32;

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

CaptureRecord BuildRecord(const float* features, float score, int64_t latency_us) {
  CaptureRecord r;
  r.variant = "weld-pm-v3";
  r.model_version = 3;
  r.latency_us = latency_us;
  r.status = 200;
  r.content_type = "text/csv";
  r.input_cols = kFeatures;
  r.input.assign(features, features + kFeatures);
  r.output_cols = 1;
  r.output = {score};
  return r;
}

double CpuUs(int who) {
  rusage u{};
  ::getrusage(who, &u);
  auto us = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec);
  };
  return us(u.ru_utime) + us(u.ru_stime);
}

// ns per call of `body` over `n` calls.
template <typename F>
double TimeNs(int n, F&& body) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) body(i);
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count() / n;
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 15;
  int batch = 2000;
  int requests = 2000;
  std::string out_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--repeat" && i + 1 < argc) {
      repeat = std::stoi(argv[++i]);
    } else if (a == "--batch" && i + 1 < argc) {
      batch = std::stoi(argv[++i]);
    } else if (a == "--requests" && i + 1 < argc) {
      requests = std::stoi(argv[++i]);
    } else if (a == "--out" && i + 1 < argc) {
      out_path = argv[++i];
    } else {
      std::cerr << "usage: takt_capture_bench [--repeat N] [--batch N] [--requests N] [--out FILE]\n";
      return 2;
    }
  }

  TempDir dir("takt-capture-bench");
  auto keyring = crypto::Keyring::FromBytesForTest(std::string(32, 'b'));
  CaptureOptions options;
  options.root = dir.path() / "capture";
  options.endpoint = "weld-pm-prod";
  options.queue_capacity = 8192;
  auto created = CaptureWriter::Create(options, keyring);
  if (!created) {
    std::cerr << created.error().ToString() << "\n";
    return 1;
  }
  std::unique_ptr<CaptureWriter> writer = std::move(*created);
  writer->SetSchema("weld-pm-v3", {std::vector<std::string>(kFeatures, "f"), {"p_fail"}});

  float features[kFeatures];
  for (size_t f = 0; f < kFeatures; ++f) features[f] = 0.5f + static_cast<float>(f);

  // ---- offer ----
  std::vector<double> off_ns, on_ns, gated_ns;
  for (int r = 0; r < repeat; ++r) {
    writer->SetSamplePercent(0);
    off_ns.push_back(TimeNs(batch, [&](int i) { writer->Offer(BuildRecord(features, 0.25f, i)); }));
    gated_ns.push_back(TimeNs(batch, [&](int i) {
      if (writer->ShouldCapture()) writer->Enqueue(BuildRecord(features, 0.25f, i));
    }));
    writer->SetSamplePercent(100);
    on_ns.push_back(TimeNs(batch, [&](int i) { writer->Offer(BuildRecord(features, 0.25f, i)); }));
    if (auto st = writer->Flush(); !st) std::cerr << st.error().ToString() << "\n";
  }
  const uint64_t dropped_offer = writer->stats().dropped;

  // ---- writer ----
  constexpr int kWriterBatch = 4000;
  std::vector<double> writer_us;
  const uint64_t written_before = writer->stats().written;
  for (int r = 0; r < repeat; ++r) {
    writer->SetSamplePercent(100);
    const double process0 = CpuUs(RUSAGE_SELF), self0 = CpuUs(RUSAGE_THREAD);
    for (int i = 0; i < kWriterBatch; ++i) writer->Offer(BuildRecord(features, 0.25f, i));
    if (auto st = writer->Flush(); !st) std::cerr << st.error().ToString() << "\n";
    const double process1 = CpuUs(RUSAGE_SELF), self1 = CpuUs(RUSAGE_THREAD);
    writer_us.push_back(((process1 - process0) - (self1 - self0)) / kWriterBatch);
  }
  const uint64_t written_writer = writer->stats().written - written_before;

  // ---- request ----
  writer->SetSamplePercent(0);
  auto router = std::make_shared<http::Router>();
  router->Add(http::Route{.method = "POST",
                          .pattern = "/endpoints/weld-pm-prod/invocations",
                          .is_public = true,
                          .handler = [&](http::Request& req) {
                            auto start = std::chrono::steady_clock::now();
                            float row[kFeatures] = {};
                            const char* p = req.body.data();
                            const char* end = p + req.body.size();
                            size_t n = 0;
                            while (p < end && n < kFeatures) {
                              auto res = std::from_chars(p, end, row[n]);
                              if (res.ec != std::errc()) break;
                              ++n;
                              p = res.ptr;
                              if (p < end && *p == ',') ++p;
                            }
                            float score = 0;
                            for (size_t f = 0; f < n; ++f) score += row[f] * 0.01f;
                            http::Response resp;
                            resp.content_type = "text/csv";
                            resp.body = std::to_string(score);
                            auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now() - start);
                            writer->Offer(BuildRecord(row, score, us.count()));
                            return resp;
                          }});
  http::ServerOptions server_options;
  server_options.port = 0;
  http::Server server(server_options, router);
  if (auto st = server.Start(); !st) {
    std::cerr << st.error().ToString() << "\n";
    return 1;
  }
  auto client = *http::Client::Create("http://127.0.0.1:" + std::to_string(server.port()));
  std::string body;
  for (size_t f = 0; f < kFeatures; ++f) body += (f ? "," : "") + Fmt("%.3f", features[f]);

  auto round = [&](double percent) {
    writer->SetSamplePercent(percent);
    std::vector<double> lat;
    lat.reserve(requests);
    for (int i = 0; i < requests; ++i) {
      auto start = std::chrono::steady_clock::now();
      auto resp = client.Send("POST", "/endpoints/weld-pm-prod/invocations", body, "text/csv");
      lat.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
      if (!resp || resp->status != 200) {
        std::cerr << "request failed\n";
        std::exit(1);
      }
    }
    if (auto st = writer->Flush(); !st) std::cerr << st.error().ToString() << "\n";
    return Median(lat);
  };
  round(0);  // warm up
  std::vector<double> req_off, req_on;
  for (int r = 0; r < repeat; ++r) {
    req_off.push_back(round(0));
    req_on.push_back(round(100));
  }
  server.Stop();
  if (auto st = writer->Close(); !st) std::cerr << st.error().ToString() << "\n";
  const CaptureStats stats = writer->stats();

  const double off = Median(off_ns), on = Median(on_ns), gated = Median(gated_ns);
  const double r_off = Median(req_off), r_on = Median(req_on);
  utsname u{};
  ::uname(&u);
  std::string md;
  md += "# Data capture: cost on the request path\n\n";
  md += "`build/bench/takt_capture_bench --repeat " + std::to_string(repeat) + "` on " + u.machine + " (" +
        u.release + "), shared machine: medians of " + std::to_string(repeat) +
        " rounds, 0 % and 100 % alternating. One-row record of " + std::to_string(kFeatures) +
        " float features and 1 output; segments zstd + AES-256-GCM, 4 MiB / 60 s rotation.\n\n";
  md += "## Offer (ns per call, " + std::to_string(batch) + " calls a round)\n\n";
  md += "| | ns/call |\n|---|---:|\n";
  md += "| `Offer(BuildRecord())` at 0 % (record built, not queued) | " + Fmt("%.0f", off) + " |\n";
  md += "| `if (ShouldCapture()) Enqueue(BuildRecord())` at 0 % | " + Fmt("%.1f", gated) + " |\n";
  md += "| `Offer(BuildRecord())` at 100 % (built and queued) | " + Fmt("%.0f", on) + " |\n";
  md += "| **added by capture at 100 %** (100 % − gated 0 %) | **" + Fmt("%.0f", on - gated) + "** |\n\n";
  md += "Records dropped during the offer rounds: " + std::to_string(dropped_offer) + ".\n\n";
  md += "## Writer (background thread CPU µs per record, " + std::to_string(kWriterBatch) +
        " records and a Flush a round)\n\n";
  md += "| | µs/record |\n|---|---:|\n";
  md += "| encode + zstd + seal + write (median of rounds) | " + Fmt("%.2f", Median(writer_us)) + " |\n\n";
  md += "Per-round: ";
  for (double v : writer_us) md += Fmt("%.2f ", v);
  md += "\n\nRecords written in the writer rounds: " + std::to_string(written_writer) + " of " +
        std::to_string(static_cast<uint64_t>(kWriterBatch) * static_cast<uint64_t>(repeat)) + ".\n\n";
  md += "## Request (median µs, " + std::to_string(requests) + " sequential requests a round)\n\n";
  md +=
      "Loopback `http::Server` (2 threads), one keep-alive `http::Client`, a CSV row of 32 floats; the "
      "handler parses, scores and offers.\n\n";
  md += "| sampling | median latency µs |\n|---|---:|\n";
  md += "| 0 % | " + Fmt("%.1f", r_off) + " |\n";
  md += "| 100 % | " + Fmt("%.1f", r_on) + " |\n";
  md += "| **added** | **" + Fmt("%+.1f", r_on - r_off) + " µs (" +
        Fmt("%+.1f", 100 * (r_on - r_off) / r_off) + " %)** |\n\n";
  md += "Per-round medians at 0 %: ";
  for (double v : req_off) md += Fmt("%.1f ", v);
  md += "\nPer-round medians at 100 %: ";
  for (double v : req_on) md += Fmt("%.1f ", v);
  md +=
      "\n\nWritten in the whole run: " + std::to_string(stats.written) + " records in " +
      std::to_string(stats.segments) + " segments, " + std::to_string(stats.bytes) + " bytes (" +
      Fmt("%.1f", stats.written ? static_cast<double>(stats.bytes) / static_cast<double>(stats.written) : 0) +
      " bytes a record); dropped " + std::to_string(stats.dropped) + ", lost " + std::to_string(stats.lost) +
      ".\n";
  std::cout << md;
  if (!out_path.empty()) {
    std::ofstream out(out_path);
    out << md;
  }
  return 0;
}
