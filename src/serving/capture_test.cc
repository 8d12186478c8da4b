#include "serving/capture.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "core/temp_dir.h"
#include "crypto/crypto.h"

namespace takt::serving {
namespace {

namespace fs = std::filesystem;

class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t now) : now_(now) {}
  int64_t NowMillis() const override { return now_.load(); }
  void Advance(int64_t ms) { now_ += ms; }

 private:
  std::atomic<int64_t> now_;
};

// The real file system, with writes that can be held at a gate (a stalled
// disk) or made to fail.
class GatedFileSystem : public blob::FileSystem {
 public:
  Status WriteFileAtomic(const fs::path& path, std::string_view data) override {
    {
      std::unique_lock lock(mu_);
      ++entered_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return open_; });
      if (fail_) return Unavailable("injected write failure: " + path.filename().string());
    }
    return blob::DefaultFileSystem()->WriteFileAtomic(path, data);
  }
  Result<std::string> ReadFile(const fs::path& path) override {
    return blob::DefaultFileSystem()->ReadFile(path);
  }
  bool Exists(const fs::path& path) override { return blob::DefaultFileSystem()->Exists(path); }
  Status CreateDir(const fs::path& path) override { return blob::DefaultFileSystem()->CreateDir(path); }

  void Close() {
    std::lock_guard lock(mu_);
    open_ = false;
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void SetFail(bool fail) {
    std::lock_guard lock(mu_);
    fail_ = fail;
  }
  // Waits until `n` writes have reached the gate.
  bool WaitEntered(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return entered_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;
  bool fail_ = false;
  int entered_ = 0;
};

constexpr int64_t kT0 = 1'764'612'000'000;  // 2025-12-01T18:00:00Z

CaptureRecord MakeRecord(int i, size_t features = 4) {
  CaptureRecord r;
  r.time_ms = kT0 + i;
  r.variant = i % 2 ? "weld-pm-v3" : "weld-pm-v4";
  r.model_version = i % 2 ? 3 : 4;
  r.inference_id = "inf-" + std::to_string(i);
  r.latency_us = 100 + i;
  r.status = 200;
  r.content_type = "application/json";
  r.input_cols = features;
  for (size_t f = 0; f < features; ++f)
    r.input.push_back(static_cast<float>(i) + 0.1f * static_cast<float>(f));
  r.output_cols = 1;
  r.output = {static_cast<float>(i) * 0.5f};
  return r;
}

class CaptureTest : public ::testing::Test {
 protected:
  CaptureOptions Options() {
    CaptureOptions o;
    o.root = dir_.path() / "capture";
    o.endpoint = "weld-pm-prod";
    o.clock = &clock_;
    return o;
  }
  std::unique_ptr<CaptureWriter> Writer(CaptureOptions o) {
    auto w = CaptureWriter::Create(std::move(o), keyring_);
    EXPECT_TRUE(w.has_value()) << (w ? "" : w.error().ToString());
    return w ? std::move(*w) : nullptr;
  }
  CaptureReader Reader() { return CaptureReader(dir_.path() / "capture", keyring_); }
  // Every record of the endpoint, oldest segment first.
  std::vector<CaptureRecord> ReadAll(const std::string& endpoint = "weld-pm-prod") {
    std::vector<CaptureRecord> all;
    CaptureReader reader = Reader();
    auto list = reader.ListSegments(endpoint, 0, INT64_MAX);
    EXPECT_TRUE(list.has_value());
    if (!list) return all;
    for (const auto& info : *list) {
      auto seg = reader.ReadSegment(info.path);
      EXPECT_TRUE(seg.has_value()) << seg.error().ToString();
      if (seg) all.insert(all.end(), seg->records.begin(), seg->records.end());
    }
    return all;
  }
  bool Eventually(const std::function<bool()>& check) {
    for (int i = 0; i < 500; ++i) {
      if (check()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return check();
  }

  TempDir dir_{"takt-capture"};
  FakeClock clock_{kT0};
  crypto::Keyring keyring_ = crypto::Keyring::FromBytesForTest(std::string(32, 'k'));
};

TEST_F(CaptureTest, RoundTripKeepsEveryField) {
  auto w = Writer(Options());
  ASSERT_NE(w, nullptr);
  w->SetSchema("weld-pm-v3", {{"force", "current", "voltage"}, {"p_fail"}});
  CaptureRecord a;
  a.time_ms = kT0 + 5;
  a.variant = "weld-pm-v3";
  a.model_version = 3;
  a.inference_id = "req-\"quoted\"\n";
  a.latency_us = 1234;
  a.status = 200;
  a.content_type = "application/json; charset=utf-8";
  a.input_cols = 3;
  a.input = {1.5f, -2.25f, 3.1415927f, 1e-30f, NAN, -INFINITY};  // two rows
  a.output_cols = 1;
  a.output = {0.125f, 0.875f};
  CaptureRecord b;  // no time, no id: the writer fills them
  b.variant = "weld-pm-v3";
  b.model_version = 3;
  b.status = 422;
  b.latency_us = 9;
  b.input_cols = 3;
  b.input = {0.1f, 0.2f, 0.3f};
  ASSERT_TRUE(w->Offer(CaptureRecord(a)));
  ASSERT_TRUE(w->Offer(std::move(b)));
  ASSERT_TRUE(w->Flush());

  CaptureReader reader = Reader();
  auto list = reader.ListSegments("weld-pm-prod", 0, INT64_MAX);
  ASSERT_TRUE(list.has_value());
  ASSERT_EQ(list->size(), 1u);
  const auto& info = (*list)[0];
  EXPECT_TRUE(
      std::regex_match(info.relative, std::regex(R"(weld-pm-prod/2025-12-01/18/\d{13}-\d{13}-\d{6}\.tkcap)")))
      << info.relative;
  auto seg = reader.ReadSegment(info.path);
  ASSERT_TRUE(seg.has_value()) << seg.error().ToString();
  EXPECT_EQ(seg->endpoint, "weld-pm-prod");
  ASSERT_EQ(seg->records.size(), 2u);
  ASSERT_TRUE(seg->schemas.contains("weld-pm-v3"));
  EXPECT_EQ(seg->schemas["weld-pm-v3"].features, (std::vector<std::string>{"force", "current", "voltage"}));
  EXPECT_EQ(seg->schemas["weld-pm-v3"].outputs, (std::vector<std::string>{"p_fail"}));

  const CaptureRecord& ra = seg->records[0];
  EXPECT_EQ(ra.endpoint, "weld-pm-prod");
  EXPECT_EQ(ra.time_ms, a.time_ms);
  EXPECT_EQ(ra.variant, a.variant);
  EXPECT_EQ(ra.model_version, 3);
  EXPECT_EQ(ra.inference_id, a.inference_id);
  EXPECT_EQ(ra.latency_us, 1234);
  EXPECT_EQ(ra.status, 200);
  EXPECT_EQ(ra.content_type, a.content_type);
  EXPECT_EQ(ra.input_cols, 3u);
  ASSERT_EQ(ra.input.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    if (std::isnan(a.input[i])) {
      EXPECT_TRUE(std::isnan(ra.input[i]));
    } else {
      EXPECT_EQ(ra.input[i], a.input[i]) << "floats round-trip exactly, index " << i;
    }
  }
  EXPECT_EQ(ra.output_cols, 1u);
  EXPECT_EQ(ra.output, a.output);

  const CaptureRecord& rb = seg->records[1];
  EXPECT_EQ(rb.time_ms, kT0) << "stamped with the writer's clock";
  EXPECT_TRUE(std::regex_match(
      rb.inference_id, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << rb.inference_id;
  EXPECT_EQ(rb.status, 422);
  EXPECT_TRUE(rb.output.empty());
  EXPECT_EQ(seg->start_ms, kT0);
  EXPECT_EQ(seg->end_ms, kT0 + 5);

  auto stats = w->stats();
  EXPECT_EQ(stats.enqueued, 2u);
  EXPECT_EQ(stats.written, 2u);
  EXPECT_EQ(stats.segments, 1u);
  EXPECT_EQ(stats.bytes, fs::file_size(info.path));
}

TEST_F(CaptureTest, SegmentsAreCompressedAndCarryNoPlaintext) {
  auto w = Writer(Options());
  for (int i = 0; i < 500; ++i) w->Offer(MakeRecord(i, 32));
  ASSERT_TRUE(w->Close());
  auto list = Reader().ListSegments("weld-pm-prod", 0, INT64_MAX);
  ASSERT_EQ(list->size(), 1u);
  std::ifstream in((*list)[0].path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(bytes.starts_with("TKCAP01\n"));
  EXPECT_EQ(bytes.find("weld-pm-v3"), std::string::npos);
  EXPECT_EQ(bytes.find("inf-1"), std::string::npos);
  EXPECT_EQ(ReadAll().size(), 500u);
}

TEST_F(CaptureTest, SamplingPercentageIsHonoured) {
  auto o = Options();
  o.queue_capacity = 16384;
  o.sample_percent = 10;
  auto w = Writer(o);
  constexpr int kN = 10000;
  int sampled = 0;
  for (int i = 0; i < kN; ++i) sampled += w->Offer(MakeRecord(i)) ? 1 : 0;
  // Binomial(10000, 0.1): sd 30; allow 5 sd.
  EXPECT_NEAR(sampled, 1000, 150);
  ASSERT_TRUE(w->Flush());
  EXPECT_EQ(w->stats().written, static_cast<uint64_t>(sampled));

  w->SetSamplePercent(0);
  for (int i = 0; i < kN; ++i) EXPECT_FALSE(w->Offer(MakeRecord(i)));
  w->SetSamplePercent(100);
  for (int i = 0; i < kN; ++i) ASSERT_TRUE(w->Offer(MakeRecord(i)));
  ASSERT_TRUE(w->Close());
  EXPECT_EQ(w->stats().written, static_cast<uint64_t>(sampled + kN));
  EXPECT_EQ(w->stats().dropped, 0u);
  EXPECT_EQ(ReadAll().size(), static_cast<size_t>(sampled + kN));

  // A draw per thread: another thread sees the same percentage.
  o.endpoint = "weld-pm-dev";
  o.sample_percent = 25;
  auto w2 = Writer(o);
  int hits = 0;
  std::thread([&] {
    for (int i = 0; i < 40000; ++i) hits += w2->ShouldCapture() ? 1 : 0;
  }).join();
  EXPECT_NEAR(hits, 10000, 500);  // sd ~87
}

TEST_F(CaptureTest, RotatesBySize) {
  auto o = Options();
  o.max_segment_bytes = 2000;
  auto w = Writer(o);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(w->Offer(MakeRecord(i, 8)));
  ASSERT_TRUE(w->Close());
  auto stats = w->stats();
  EXPECT_GE(stats.segments, 5u);
  auto list = Reader().ListSegments("weld-pm-prod", 0, INT64_MAX);
  ASSERT_EQ(list->size(), stats.segments);
  auto all = ReadAll();
  ASSERT_EQ(all.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(all[i].inference_id, "inf-" + std::to_string(i)) << "in order";
  for (const auto& info : *list) {
    auto seg = Reader().ReadSegment(info.path);
    ASSERT_TRUE(seg.has_value());
    EXPECT_LE(seg->records.size(), 20u);
    EXPECT_EQ(seg->start_ms, info.start_ms);
    EXPECT_EQ(seg->end_ms, info.end_ms);
  }
}

TEST_F(CaptureTest, RotatesByTimeWithoutFlush) {
  auto o = Options();
  o.max_segment_age_ms = 60'000;
  auto w = Writer(o);
  ASSERT_TRUE(w->Offer(MakeRecord(1)));
  ASSERT_TRUE(Eventually([&] { return w->stats().enqueued == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the thread took it
  EXPECT_EQ(w->stats().segments, 0u) << "not old enough yet";
  clock_.Advance(59'000);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(w->stats().segments, 0u);
  clock_.Advance(1'000);
  ASSERT_TRUE(Eventually([&] { return w->stats().segments == 1; })) << "rotated at 60 s";
  ASSERT_TRUE(w->Offer(MakeRecord(2)));
  ASSERT_TRUE(w->Close());
  EXPECT_EQ(w->stats().segments, 2u);
  EXPECT_EQ(ReadAll().size(), 2u);
}

TEST_F(CaptureTest, TamperingIsDetected) {
  auto w = Writer(Options());
  for (int i = 0; i < 10; ++i) w->Offer(MakeRecord(i));
  ASSERT_TRUE(w->Close());
  auto list = Reader().ListSegments("weld-pm-prod", 0, INT64_MAX);
  ASSERT_EQ(list->size(), 1u);
  const fs::path path = (*list)[0].path;
  ASSERT_TRUE(Reader().ReadSegment(path).has_value());

  // Another master key.
  auto other = crypto::Keyring::FromBytesForTest(std::string(32, 'x'));
  auto wrong = CaptureReader(dir_.path() / "capture", other).ReadSegment(path);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(wrong.error().message().find("authentication failed"), std::string::npos);
  EXPECT_NE(wrong.error().message().find((*list)[0].relative), std::string::npos) << "names the segment";

  std::ifstream in(path, std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  auto write = [](const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << bytes;
  };

  // A flipped byte anywhere after the magic.
  for (size_t pos : {size_t{8}, size_t{30}, good.size() / 2, good.size() - 1}) {
    std::string bad = good;
    bad[pos] = static_cast<char>(bad[pos] ^ 0x01);
    write(path, bad);
    auto r = Reader().ReadSegment(path);
    ASSERT_FALSE(r.has_value()) << "byte " << pos;
    EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  }
  // Truncated.
  write(path, good.substr(0, good.size() - 10));
  EXPECT_EQ(Reader().ReadSegment(path).error().code(), Code::kFailedPrecondition);
  // Not a segment at all.
  write(path, "hello");
  EXPECT_EQ(Reader().ReadSegment(path).error().code(), Code::kFailedPrecondition);

  // Renamed, in place and into another endpoint: the aad no longer matches.
  write(path, good);
  ASSERT_TRUE(Reader().ReadSegment(path).has_value());
  const fs::path renamed = path.parent_path() / "0000000000001-0000000000002-000000.tkcap";
  fs::rename(path, renamed);
  auto r = Reader().ReadSegment(renamed);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  const fs::path moved = dir_.path() / "capture" / "weld-pm-dev" /
                         path.parent_path().parent_path().filename() / path.parent_path().filename() /
                         path.filename();
  fs::create_directories(moved.parent_path());
  fs::rename(renamed, moved);
  EXPECT_EQ(Reader().ReadSegment(moved).error().code(), Code::kFailedPrecondition);
  fs::rename(moved, path);
  EXPECT_TRUE(Reader().ReadSegment(path).has_value()) << "back where it was written, it opens again";

  // Paths outside the root and missing files.
  EXPECT_EQ(Reader().ReadSegment("../elsewhere.tkcap").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(Reader().ReadSegment("/etc/passwd").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(Reader().ReadSegment("weld-pm-prod/nope.tkcap").error().code(), Code::kNotFound);
}

TEST_F(CaptureTest, ALargeSegmentStreamsThroughCompressionAndReadsBackWhole) {
  CaptureOptions o = Options();
  o.max_segment_bytes = 64 << 20;  // one segment of ~10 MB of plaintext
  o.queue_capacity = 1 << 16;
  auto w = Writer(o);
  constexpr int kRecords = 30000;
  for (int i = 0; i < kRecords; ++i) {
    while (!w->Offer(MakeRecord(i, 32))) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(w->Close());
  auto list = Reader().ListSegments("weld-pm-prod", 0, INT64_MAX);
  ASSERT_EQ(list->size(), 1u);
  auto seg = Reader().ReadSegment((*list)[0].path);
  ASSERT_TRUE(seg.has_value()) << seg.error().ToString();
  ASSERT_EQ(seg->records.size(), static_cast<size_t>(kRecords));
  for (int i : {0, 1, kRecords / 2, kRecords - 1}) {
    EXPECT_EQ(seg->records[i].inference_id, "inf-" + std::to_string(i));
    EXPECT_EQ(seg->records[i].input, MakeRecord(i, 32).input);
  }
}

// Segments written before the lines were compressed as they came hold one
// zstd frame; they still open. A sealed segment whose zstd data ends early
// (only a writer holding the key could make one) is refused by name.
TEST_F(CaptureTest, OneFrameSegmentsOpenAndCutFramesAreRefused) {
  const std::string key = keyring_.DeriveKey("serving-capture/v1");
  const std::string relative = "weld-pm-prod/2026-12-01/18/1764612000000-1764612000001-000000.tkcap";
  const fs::path path = dir_.path() / "capture" / relative;
  fs::create_directories(path.parent_path());
  const std::string plain =
      "{\"format\":\"takt-capture-v1\",\"endpoint\":\"weld-pm-prod\",\"start_ms\":1764612000000,\"end_ms\":"
      "1764612000001,\"records\":1,\"schemas\":{}}\n"
      "{\"time_ms\":1764612000000,\"inference_id\":\"old-1\",\"variant\":\"weld-pm-v3\",\"model_version\":3,"
      "\"status\":200,\"latency_us\":120,\"content_type\":\"text/"
      "csv\",\"input\":[[1.5,2]],\"output\":[[0.25]]}\n";
  auto seal = [&](const std::string& compressed) {
    auto sealed = crypto::Seal(key, compressed, "takt-capture-v1:" + relative);
    EXPECT_TRUE(sealed.has_value());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << "TKCAP01\n" << *sealed;
  };
  std::string frame(ZSTD_compressBound(plain.size()), '\0');
  frame.resize(ZSTD_compress(frame.data(), frame.size(), plain.data(), plain.size(), 3));
  seal(frame);
  auto seg = Reader().ReadSegment(path);
  ASSERT_TRUE(seg.has_value()) << seg.error().ToString();
  ASSERT_EQ(seg->records.size(), 1u);
  EXPECT_EQ(seg->records[0].inference_id, "old-1");
  EXPECT_EQ(seg->records[0].input, (std::vector<float>{1.5f, 2.0f}));

  seal(frame.substr(0, frame.size() - 3));
  auto cut = Reader().ReadSegment(path);
  ASSERT_FALSE(cut.has_value());
  EXPECT_EQ(cut.error().code(), Code::kInternal);
  EXPECT_NE(cut.error().message().find("zstd"), std::string::npos) << cut.error().message();
  EXPECT_NE(cut.error().message().find(relative), std::string::npos) << "names the segment";
}

// The v2 record layout as capture.h documents it, encoded independently of
// the writer.
std::string EncodeV2Record(int64_t time_ms, std::string_view id, uint32_t cols,
                           const std::vector<float>& in) {
  std::string body;
  auto put = [&body](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) body.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  auto str = [&](std::string_view s) {
    put(s.size(), 4);
    body.append(s);
  };
  put(static_cast<uint64_t>(time_ms), 8);
  put(77, 8);  // latency_us
  put(3, 4);   // model_version
  put(200, 4);
  str(id);
  str("weld-pm-v3");
  str("text/csv");
  put(cols, 4);
  put(in.size(), 4);
  for (float f : in) put(std::bit_cast<uint32_t>(f), 4);
  put(1, 4);  // output: one value
  put(1, 4);
  put(std::bit_cast<uint32_t>(0.75f), 4);
  std::string record(1, static_cast<char>(0xB2));
  uint32_t n = static_cast<uint32_t>(body.size());
  for (int i = 0; i < 4; ++i) record.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  return record + body;
}

TEST_F(CaptureTest, TheDocumentedV2LayoutReadsAndMalformedRecordsAreRefused) {
  const std::string key = keyring_.DeriveKey("serving-capture/v1");
  const std::string relative = "weld-pm-prod/2026-12-01/18/1764612000000-1764612000001-000000.tkcap";
  const fs::path path = dir_.path() / "capture" / relative;
  fs::create_directories(path.parent_path());
  auto header = [](int records) {
    return "{\"format\":\"takt-capture-v2\",\"endpoint\":\"weld-pm-prod\",\"start_ms\":1764612000000,"
           "\"end_ms\":1764612000001,\"records\":" +
           std::to_string(records) + ",\"schemas\":{}}\n";
  };
  auto read = [&](const std::string& plain) {
    std::string frame(ZSTD_compressBound(plain.size()), '\0');
    frame.resize(ZSTD_compress(frame.data(), frame.size(), plain.data(), plain.size(), 1));
    auto sealed = crypto::Seal(key, frame, "takt-capture-v1:" + relative);
    EXPECT_TRUE(sealed.has_value());
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out << "TKCAP01\n" << *sealed;
    }
    return Reader().ReadSegment(path);
  };
  const std::string r1 = EncodeV2Record(1764612000000, "a-1", 2, {1.5f, 2.0f, NAN, -3.0f});
  const std::string r2 = EncodeV2Record(1764612000001, "a-2", 2, {4.0f, 5.0f});
  auto seg = read(header(2) + r1 + r2);
  ASSERT_TRUE(seg.has_value()) << seg.error().ToString();
  ASSERT_EQ(seg->records.size(), 2u);
  const CaptureRecord& a = seg->records[0];
  EXPECT_EQ(a.time_ms, 1764612000000);
  EXPECT_EQ(a.inference_id, "a-1");
  EXPECT_EQ(a.variant, "weld-pm-v3");
  EXPECT_EQ(a.content_type, "text/csv");
  EXPECT_EQ(a.latency_us, 77);
  EXPECT_EQ(a.model_version, 3);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.input_cols, 2u);
  ASSERT_EQ(a.input.size(), 4u);
  EXPECT_EQ(a.input[0], 1.5f);
  EXPECT_TRUE(std::isnan(a.input[2]));
  EXPECT_EQ(a.output, (std::vector<float>{0.75f}));
  EXPECT_EQ(seg->records[1].inference_id, "a-2");

  struct Bad {
    std::string plain;
    std::string message;
  };
  std::string bad_tag = r2;
  bad_tag[0] = 'x';
  std::string long_length = r2;
  long_length[1] = static_cast<char>(0xFF);
  std::string extra = r2 + "zz";
  extra[1] = static_cast<char>(extra[1] + 2);  // the two bytes counted in the record
  const std::vector<Bad> cases = {
      {header(2) + r1 + r2.substr(0, r2.size() - 3), "runs past the end"},
      {header(2) + r1 + bad_tag, "not a record"},
      {header(2) + r1 + long_length, "runs past the end"},
      {header(2) + r1 + extra, "bytes left over"},
      {header(1) + EncodeV2Record(1764612000000, "ragged", 3, {1, 2, 3, 4}), "do not make rows of 3"},
      {header(1) + EncodeV2Record(1764612000000, "empty", 2, {}), "do not make rows of 2"},
      {header(3) + r1 + r2, "header says 3 records, found 2"},
      {header(2) + r1 + r2.substr(0, 3), "truncated record length"},
  };
  for (const auto& c : cases) {
    auto bad = read(c.plain);
    ASSERT_FALSE(bad.has_value()) << c.message;
    EXPECT_EQ(bad.error().code(), Code::kInternal) << c.message;
    EXPECT_NE(bad.error().message().find(c.message), std::string::npos) << bad.error().message();
    EXPECT_NE(bad.error().message().find(relative), std::string::npos) << "names the segment";
  }
  auto second = read(header(2) + r1 + bad_tag);
  ASSERT_FALSE(second.has_value());
  EXPECT_NE(second.error().message().find("record 2 at byte " + std::to_string(header(2).size() + r1.size())),
            std::string::npos)
      << second.error().message();
}

TEST_F(CaptureTest, StalledWriterDropsAndCountsWithoutBlocking) {
  GatedFileSystem gate;
  Metrics metrics;
  auto o = Options();
  o.fs = &gate;
  o.queue_capacity = 8;
  o.max_segment_bytes = 1;  // every record is a segment: the thread writes at once
  o.metrics = metrics.ForEndpoint("weld-pm-prod");
  gate.Close();
  auto w = Writer(o);
  ASSERT_TRUE(w->Offer(MakeRecord(0)));
  ASSERT_TRUE(gate.WaitEntered(1)) << "the thread is stuck in its write";

  auto start = std::chrono::steady_clock::now();
  int accepted = 0;
  for (int i = 1; i <= 100; ++i) accepted += w->Offer(MakeRecord(i)) ? 1 : 0;
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::milliseconds(50)) << "Offer never waits for the writer";
  EXPECT_EQ(accepted, 8) << "the ring holds 8";
  EXPECT_EQ(w->stats().dropped, 92u);
  EXPECT_EQ(o.metrics->capture_dropped(), 92u);

  gate.Open();
  ASSERT_TRUE(w->Close());
  auto stats = w->stats();
  EXPECT_EQ(stats.enqueued, 9u);
  EXPECT_EQ(stats.written, 9u);
  EXPECT_EQ(stats.segments, 9u);
  EXPECT_EQ(o.metrics->capture_records(), 9u);
  EXPECT_EQ(o.metrics->capture_bytes(), stats.bytes);
  EXPECT_EQ(ReadAll().size(), 9u);
  EXPECT_FALSE(w->Offer(MakeRecord(200))) << "closed";
  EXPECT_EQ(w->stats().dropped, 93u);
}

TEST_F(CaptureTest, WriteFailuresAreCountedAndReported) {
  GatedFileSystem failing;
  failing.SetFail(true);
  Metrics metrics;
  auto o = Options();
  o.fs = &failing;
  o.metrics = metrics.ForEndpoint("weld-pm-prod");
  auto w = Writer(o);
  for (int i = 0; i < 5; ++i) w->Offer(MakeRecord(i));
  auto st = w->Flush();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code(), Code::kUnavailable);
  EXPECT_EQ(w->stats().lost, 5u);
  EXPECT_EQ(o.metrics->capture_dropped(), 5u);
  EXPECT_TRUE(w->Flush()) << "the error is reported once";
  failing.SetFail(false);
  w->Offer(MakeRecord(9));
  ASSERT_TRUE(w->Close());
  EXPECT_EQ(ReadAll().size(), 1u);
}

TEST_F(CaptureTest, ShutdownWritesEverythingQueued) {
  {
    auto o = Options();
    o.queue_capacity = 4096;
    auto w = Writer(o);
    for (int i = 0; i < 3000; ++i) ASSERT_TRUE(w->Offer(MakeRecord(i)));
  }  // destroyed without Flush
  auto all = ReadAll();
  ASSERT_EQ(all.size(), 3000u);
  EXPECT_EQ(all.back().inference_id, "inf-2999");
}

TEST_F(CaptureTest, ConcurrentWritersLoseNothing) {
  auto o = Options();
  o.queue_capacity = 1 << 16;
  o.max_segment_bytes = 256 << 10;
  auto w = Writer(o);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 3000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        CaptureRecord r = MakeRecord(i);
        r.time_ms = kT0;      // one start time: segments list in the order written (seq)
        r.inference_id = "";  // generated
        r.model_version = t;
        r.latency_us = i;  // the order within a thread
        ASSERT_TRUE(w->Offer(std::move(r)));
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(w->Close());
  EXPECT_EQ(w->stats().dropped, 0u);
  auto all = ReadAll();
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<std::string> ids;
  std::vector<int64_t> last(kThreads, -1);
  for (const auto& r : all) {
    ids.insert(r.inference_id);
    ASSERT_GE(r.model_version, 0);
    ASSERT_LT(r.model_version, kThreads);
    EXPECT_GT(r.latency_us, last[r.model_version]) << "a thread's records stay in order";
    last[r.model_version] = r.latency_us;
  }
  EXPECT_EQ(ids.size(), all.size()) << "generated ids are unique";
}

TEST_F(CaptureTest, ListSegmentsFiltersByTimeAndUsesDateDirectories) {
  auto w = Writer(Options());
  constexpr int64_t kDay = 86'400'000;
  for (int d = 0; d < 3; ++d) {
    CaptureRecord r = MakeRecord(d);
    r.time_ms = kT0 + d * kDay;
    w->Offer(std::move(r));
    ASSERT_TRUE(w->Flush());
  }
  ASSERT_TRUE(w->Close());
  CaptureReader reader = Reader();
  auto all = reader.ListSegments("weld-pm-prod", 0, INT64_MAX);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_TRUE((*all)[0].relative.starts_with("weld-pm-prod/2025-12-01/18/"));
  EXPECT_TRUE((*all)[1].relative.starts_with("weld-pm-prod/2025-12-02/18/"));
  EXPECT_TRUE((*all)[2].relative.starts_with("weld-pm-prod/2025-12-03/18/"));
  auto middle = reader.ListSegments("weld-pm-prod", kT0 + kDay - 1000, kT0 + kDay + 1000);
  ASSERT_EQ(middle->size(), 1u);
  EXPECT_EQ((*middle)[0].start_ms, kT0 + kDay);
  EXPECT_TRUE(reader.ListSegments("weld-pm-prod", 0, kT0 - 1)->empty());
  EXPECT_TRUE(reader.ListSegments("no-such-endpoint", 0, INT64_MAX)->empty());
  EXPECT_EQ(reader.ListSegments("../etc", 0, 1).error().code(), Code::kInvalidArgument);
  // Relative paths work as well as absolute ones.
  EXPECT_TRUE(reader.ReadSegment((*all)[1].relative).has_value());
}

TEST_F(CaptureTest, InvalidOptionsAreRejected) {
  auto o = Options();
  o.endpoint = "../weld";
  EXPECT_EQ(CaptureWriter::Create(o, keyring_).error().code(), Code::kInvalidArgument);
  o = Options();
  o.sample_percent = 101;
  EXPECT_EQ(CaptureWriter::Create(o, keyring_).error().code(), Code::kInvalidArgument);
  o = Options();
  o.max_segment_age_ms = 0;
  EXPECT_EQ(CaptureWriter::Create(o, keyring_).error().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace takt::serving
