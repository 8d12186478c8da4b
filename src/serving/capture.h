// File: serving/capture.h
//
// Data capture: an endpoint samples a percentage of its requests (inputs,
// outputs, variant, latency) into encrypted capture segments on disk, for
// monitoring (drift, quality) and `takt endpoint capture`.
//
// Writing. One CaptureWriter per endpoint. Offer() runs on the request path:
// a sampling draw (a per-thread xorshift RNG, no shared state) and a copy into
// a bounded lock-free ring (Vyukov MPMC) whose cells keep their buffers; it
// never blocks and never takes a lock, and allocates only while a cell's
// buffers are still smaller than the record. A full ring drops the record (counted; the
// takt_capture_dropped_total metric). A background thread drains the ring,
// encodes records into the current segment and writes the segment when it
// reaches max_segment_bytes of plaintext, when it is max_segment_age_ms old
// (by the injectable Clock), on Flush() and on Close() / destruction. Captured
// data is never logged.
//
// Segment files. <root>/<endpoint>/<yyyy-mm-dd>/<HH>/<start_ms>-<end_ms>-<seq>.tkcap
// (UTC date and hour of start_ms; start_ms/end_ms are the earliest and latest
// record time in it, 13 digits; seq a 6-digit counter), written atomically
// (temp file, fsync, rename, fsync of the directory). The bytes are
//   "TKCAP01\n" || AES-256-GCM Seal(key, zstd(plaintext), aad)
// with key = Keyring::DeriveKey("serving-capture/v1") and aad =
// "takt-capture-v1:" + the path relative to the root ("weld-pm-prod/2026-12-01/
// 18/...tkcap"), so a segment moved, renamed or swapped does not open. The
// zstd data is two concatenated frames, the header line's and the records'
// (compressed 32 KB at a time as they arrive, with a 128 KB window, so the
// writer never holds a whole segment of plaintext); a reader takes one frame
// as well. The plaintext is a JSON header line
//   {"format":"takt-capture-v2","endpoint":"weld-pm-prod","start_ms":..,
//    "end_ms":..,"records":N,"schemas":{"weld-pm-v3":{"features":[..],"outputs":[..]}}}
// then the records, binary (encoding them costs the writer a copy, not a
// float-to-text conversion per value): each is
//   u8 0xB2, u32 length of the rest, i64 time_ms, i64 latency_us,
//   i32 model_version, i32 status, inference_id, variant, content_type (each
//   u32 length + bytes), input and output (each u32 cols, u32 count, count
//   IEEE f32), all little-endian; NaN and infinities kept as they are.
// Segments of format "takt-capture-v1" (records as JSON lines, floats in their
// shortest round-trip text, NaN and infinities as null) still read.
//
// Reading. CaptureReader lists the segments of an endpoint overlapping a time
// range and decrypts one. Any tampering (another master key, a flipped byte, a
// truncated or renamed file) is FailedPrecondition naming the segment; no
// unverified byte is parsed.
//
// Thread safety: Offer / ShouldCapture / Enqueue / SetSamplePercent from any
// number of threads; SetSchema, Flush and stats too. Close (and destruction)
// once, after the request threads stopped offering (later Offers are dropped).
// CaptureReader is immutable, safe from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "blob/file_system.h"
#include "core/result.h"
#include "core/time.h"
#include "crypto/keyring.h"
#include "serving/metrics.h"

namespace takt::serving {

// One captured request. `input` holds rows x input_cols floats row-major (the
// model's features, in the order of the variant's CaptureSchema), `output`
// rows x output_cols.
struct CaptureRecord {
  int64_t time_ms = 0;   // request time; 0: the writer stamps its clock
  std::string endpoint;  // set by the reader (the writer knows its own)
  std::string variant;   // "weld-pm-v3"
  int model_version = 0;
  std::string inference_id;  // "" : the writer generates a UUID v4
  int64_t latency_us = 0;
  int status = 0;            // HTTP status
  std::string content_type;  // of the request ("application/json")
  size_t input_cols = 0;
  std::vector<float> input;
  size_t output_cols = 0;
  std::vector<float> output;
};

// The names of a variant's input and output columns.
struct CaptureSchema {
  std::vector<std::string> features;
  std::vector<std::string> outputs;
};

struct CaptureOptions {
  std::filesystem::path root;          // the capture root (<data>/capture)
  std::string endpoint;                // [A-Za-z0-9._-]+, not "." or ".."
  double sample_percent = 100;         // 0..100
  size_t queue_capacity = 8192;        // records; rounded up to a power of two
  size_t max_segment_bytes = 4 << 20;  // plaintext
  int64_t max_segment_age_ms = 60'000;
  int zstd_level = 1;  // fast: segments are small and the writer shares the cores with requests
  // The writer thread runs at a lower priority (nice +10) than the threads serving requests.
  bool background_priority = true;
  const Clock* clock = nullptr;        // RealClock() if null
  blob::FileSystem* fs = nullptr;      // DefaultFileSystem() if null
  EndpointMetrics* metrics = nullptr;  // capture counters, if set
};

struct CaptureStats {
  uint64_t enqueued = 0;  // accepted into the queue
  uint64_t dropped = 0;   // refused: queue full, or the writer closed
  uint64_t written = 0;   // records in segments on disk
  uint64_t lost = 0;      // records of segments whose write failed
  uint64_t segments = 0;  // segment files written
  uint64_t bytes = 0;     // bytes of those files
};

class CaptureWriter {
 public:
  // InvalidArgument for a bad endpoint name, percentage or limit; the error of
  // creating the endpoint's directory.
  static Result<std::unique_ptr<CaptureWriter>> Create(CaptureOptions options,
                                                       const crypto::Keyring& keyring);
  ~CaptureWriter();  // Close()
  CaptureWriter(const CaptureWriter&) = delete;
  CaptureWriter& operator=(const CaptureWriter&) = delete;

  // Hot path: draws against the sampling percentage and, if sampled, queues
  // a copy of the record. True if it was queued; false if not sampled or
  // dropped. The copy goes into buffers the queue keeps from record to record
  // (no allocation once they are large enough), and the caller's record is
  // freed by the caller: memory never moves between the request threads and
  // the writer, whose idle priority must not hold a lock they need.
  bool Offer(const CaptureRecord& record) { return ShouldCapture() && Enqueue(record); }
  // The two halves of Offer, for a caller that builds the record only when it
  // is sampled.
  bool ShouldCapture() const;
  bool Enqueue(const CaptureRecord& record);

  // Clamped to 0..100.
  void SetSamplePercent(double percent);
  // The column names written with `variant`'s records (set when it is loaded).
  void SetSchema(std::string_view variant, CaptureSchema schema);

  // Writes everything queued before the call into a segment file (if any) and
  // returns once it is on disk: the first write error since the last
  // Flush/Close, else Ok.
  Status Flush();
  // Drains the queue, writes the last segment and stops the thread. Idempotent.
  Status Close();

  CaptureStats stats() const;

 private:
  struct Ring;
  struct Segment;
  CaptureWriter(CaptureOptions options, std::string key);
  void Run();
  void Append(CaptureRecord& record);
  void WriteSegment();
  void NewInferenceId(std::string* out);  // a UUID v4, into *out

  const CaptureOptions options_;
  std::string key_;
  std::unique_ptr<Ring> ring_;
  std::atomic<uint64_t> threshold_{0};  // sample if draw < threshold_ (or always_)
  std::atomic<bool> always_{true};
  std::atomic<bool> closed_{false};
  std::atomic<bool> consumer_waiting_{false};
  std::atomic<bool> kick_{false};  // a producer found the ring half full
  std::atomic<uint64_t> dropped_{0};

  mutable std::mutex mu_;
  std::condition_variable wake_;     // the thread: records, flush, stop
  std::condition_variable flushed_;  // Flush callers
  uint64_t flush_requested_ = 0;
  uint64_t flush_done_ = 0;
  bool stop_ = false;
  std::optional<Error> error_;  // first write error since the last Flush/Close
  std::map<std::string, CaptureSchema, std::less<>> schemas_;
  CaptureStats done_;  // written, lost, segments, bytes

  // The thread's own state.
  std::unique_ptr<Segment> segment_;
  uint64_t seq_ = 0;
  uint64_t id_state_[2] = {0, 0};
  std::thread thread_;
};

// A segment file found by ListSegments.
struct CaptureSegmentInfo {
  std::filesystem::path path;  // absolute
  std::string relative;        // to the root: the aad
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  uint64_t seq = 0;
};

struct CaptureSegment {
  std::string endpoint;
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  std::map<std::string, CaptureSchema> schemas;  // by variant
  std::vector<CaptureRecord> records;            // in the order they were written
};

class CaptureReader {
 public:
  CaptureReader(std::filesystem::path root, const crypto::Keyring& keyring, blob::FileSystem* fs = nullptr);
  ~CaptureReader();
  CaptureReader(const CaptureReader&) = delete;
  CaptureReader& operator=(const CaptureReader&) = delete;

  // Segments of `endpoint` whose [start_ms, end_ms] overlaps [from_ms, to_ms],
  // oldest first. An endpoint without captures gives an empty list; an invalid
  // endpoint name InvalidArgument.
  Result<std::vector<CaptureSegmentInfo>> ListSegments(std::string_view endpoint, int64_t from_ms,
                                                       int64_t to_ms) const;
  // Decrypts and parses one segment; `path` absolute (under the root) or
  // relative to it. NotFound if missing; InvalidArgument for a path outside the
  // root; FailedPrecondition ("capture segment <rel>: authentication failed
  // ...") for another key, changed bytes or a file not where it was written;
  // Internal for a sealed segment that does not parse (a writer bug).
  Result<CaptureSegment> ReadSegment(const std::filesystem::path& path) const;

 private:
  std::filesystem::path root_;
  std::string key_;
  blob::FileSystem* fs_;
};

}  // namespace takt::serving
