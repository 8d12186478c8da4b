#include "serving/capture.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <set>
#include <system_error>
#include <tuple>

#include "core/json.h"
#include "core/posix.h"
#include "crypto/crypto.h"

namespace takt::serving {
namespace {

constexpr std::string_view kMagic = "TKCAP01\n";
// The plaintext's format, named in its header line: v1 wrote the records as
// JSON lines; v2 (written now) as binary records after the JSON header line.
// Readers take both.
constexpr std::string_view kFormatV1 = "takt-capture-v1";
constexpr std::string_view kFormat = "takt-capture-v2";
constexpr uint8_t kRecordTag = 0xB2;  // starts every v2 record
constexpr std::string_view kAadPrefix = "takt-capture-v1:";
constexpr std::string_view kKeyPurpose = "serving-capture/v1";
constexpr std::string_view kExtension = ".tkcap";
constexpr size_t kMaxPlaintext = size_t{1} << 30;  // a segment that claims more is refused

// How long the thread sleeps with nothing to do; producers wake it early only
// when the ring is half full, so the request path never makes a syscall.
constexpr std::chrono::milliseconds kIdlePoll{100};
// The writer thread's nice value (background_priority): below request threads.
constexpr int kWriterNice = 10;
constexpr std::chrono::milliseconds kBusyPoll{20};
// Records are fed to zstd this many bytes at a time, not one by one.
constexpr size_t kStagingBytes = 32 << 10;

bool ValidEndpointName(std::string_view name) {
  if (name.empty() || name == "." || name == ".." || name.size() > 200) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

// xorshift64* per thread, seeded from the thread's address and the clock.
uint64_t NextRandom() {
  thread_local uint64_t state = 0;
  if (state == 0) {
    uint64_t seed = reinterpret_cast<uintptr_t>(&state) ^
                    static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    seed ^= seed >> 31;
    seed *= 0x9E3779B97F4A7C15ULL;
    state = seed | 1;
  }
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return state * 0x2545F4914F6CDD1DULL;
}

uint64_t SplitMix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void AppendInt(std::string* out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, r.ptr);
}

void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

// ---- v2 records ----
//
// A record is
//   u8 0xB2, u32 n (the bytes that follow), i64 time_ms, i64 latency_us,
//   i32 model_version, i32 status, then three strings (u32 length, bytes):
//   inference_id, variant, content_type, then two matrices (u32 cols, u32
//   count, count f32): input, output.
// Integers and floats little-endian; floats as their IEEE bits (NaN and
// infinities as they are). cols is 0 for an empty matrix and divides count
// otherwise: one row of all values if the record said 0.

template <typename T>
void AppendLittle(std::string* out, T v) {
  using U = std::make_unsigned_t<T>;
  U u = static_cast<U>(v);
  char bytes[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i) bytes[i] = static_cast<char>((u >> (8 * i)) & 0xFF);
  out->append(bytes, sizeof(T));
}

void AppendBytes(std::string* out, std::string_view s) {
  AppendLittle<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

void AppendFloats(std::string* out, const std::vector<float>& values, size_t cols) {
  size_t width = values.empty() ? 0 : (cols == 0 || cols > values.size() ? values.size() : cols);
  // A ragged last row is cut off, as no reader could place it.
  size_t count = width == 0 ? 0 : values.size() / width * width;
  AppendLittle<uint32_t>(out, static_cast<uint32_t>(width));
  AppendLittle<uint32_t>(out, static_cast<uint32_t>(count));
  const size_t at = out->size();
  out->resize(at + count * sizeof(float));
  char* dst = out->data() + at;
  if constexpr (std::endian::native == std::endian::little) {
    if (count > 0) std::memcpy(dst, values.data(), count * sizeof(float));
  } else {
    for (size_t i = 0; i < count; ++i) {
      uint32_t bits = std::bit_cast<uint32_t>(values[i]);
      for (int k = 0; k < 4; ++k) *dst++ = static_cast<char>((bits >> (8 * k)) & 0xFF);
    }
  }
}

void AppendRecord(std::string* out, const CaptureRecord& r) {
  out->push_back(static_cast<char>(kRecordTag));
  const size_t length_at = out->size();
  AppendLittle<uint32_t>(out, 0);  // patched below
  AppendLittle<int64_t>(out, r.time_ms);
  AppendLittle<int64_t>(out, r.latency_us);
  AppendLittle<int32_t>(out, r.model_version);
  AppendLittle<int32_t>(out, r.status);
  AppendBytes(out, r.inference_id);
  AppendBytes(out, r.variant);
  AppendBytes(out, r.content_type);
  AppendFloats(out, r.input, r.input_cols);
  AppendFloats(out, r.output, r.output_cols);
  const auto n = static_cast<uint32_t>(out->size() - length_at - 4);
  for (size_t i = 0; i < 4; ++i) (*out)[length_at + i] = static_cast<char>((n >> (8 * i)) & 0xFF);
}

// Reads v2 records; every read is bounds-checked and a short or malformed
// record is an error naming what is wrong, never a read past the end.
class RecordDecoder {
 public:
  explicit RecordDecoder(std::string_view data) : data_(data) {}
  bool done() const { return pos_ == data_.size(); }
  size_t offset() const { return pos_; }

  Result<CaptureRecord> Next() {
    uint8_t tag = 0;
    if (!Take(&tag)) return Internal("truncated record");
    if (tag != kRecordTag) return Internal("not a record (tag " + std::to_string(tag) + ")");
    uint32_t n = 0;
    if (!Take(&n)) return Internal("truncated record length");
    if (n > data_.size() - pos_)
      return Internal("record of " + std::to_string(n) + " bytes runs past the end");
    const size_t end = pos_ + n;
    RecordDecoder body(data_.substr(0, end));
    body.pos_ = pos_;
    CaptureRecord r;
    int32_t version = 0, status = 0;
    if (!body.Take(&r.time_ms) || !body.Take(&r.latency_us) || !body.Take(&version) || !body.Take(&status) ||
        !body.TakeString(&r.inference_id) || !body.TakeString(&r.variant) ||
        !body.TakeString(&r.content_type)) {
      return Internal("truncated record");
    }
    r.model_version = version;
    r.status = status;
    TAKT_RETURN_IF_ERROR(body.TakeFloats(&r.input, &r.input_cols, "input"));
    TAKT_RETURN_IF_ERROR(body.TakeFloats(&r.output, &r.output_cols, "output"));
    if (!body.done()) return Internal("record has " + std::to_string(end - body.pos_) + " bytes left over");
    pos_ = end;
    return r;
  }

 private:
  template <typename T>
  bool Take(T* v) {
    if (data_.size() - pos_ < sizeof(T)) return false;
    using U = std::make_unsigned_t<T>;
    U u = 0;
    for (size_t i = 0; i < sizeof(T); ++i)
      u |= static_cast<U>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    *v = static_cast<T>(u);
    pos_ += sizeof(T);
    return true;
  }
  bool TakeString(std::string* s) {
    uint32_t n = 0;
    if (!Take(&n) || n > data_.size() - pos_) return false;
    s->assign(data_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  Status TakeFloats(std::vector<float>* values, size_t* cols, std::string_view what) {
    uint32_t width = 0, count = 0;
    if (!Take(&width) || !Take(&count)) return Internal("truncated " + std::string(what));
    if ((width == 0) != (count == 0) || (width != 0 && count % width != 0)) {
      return Internal(std::string(what) + ": " + std::to_string(count) + " values do not make rows of " +
                      std::to_string(width));
    }
    if (count > (data_.size() - pos_) / sizeof(float)) return Internal("truncated " + std::string(what));
    values->resize(count);
    const char* src = data_.data() + pos_;
    if constexpr (std::endian::native == std::endian::little) {
      if (count > 0) std::memcpy(values->data(), src, size_t{count} * sizeof(float));
    } else {
      for (uint32_t i = 0; i < count; ++i) {
        uint32_t bits = 0;
        for (int k = 0; k < 4; ++k)
          bits |= static_cast<uint32_t>(static_cast<uint8_t>(src[4 * i + k])) << (8 * k);
        (*values)[i] = std::bit_cast<float>(bits);
      }
    }
    pos_ += size_t{count} * sizeof(float);
    *cols = width;
    return Ok();
  }

  std::string_view data_;
  size_t pos_ = 0;
};

void AppendStringArray(std::string* out, const std::vector<std::string>& items) {
  out->push_back('[');
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendJsonString(out, items[i]);
  }
  out->push_back(']');
}

// "2026-12-01" and "18" (UTC) of a time in ms.
std::pair<std::string, std::string> DayAndHour(int64_t ms) {
  constexpr int64_t kLast = 253'402'300'799'999;  // 9999-12-31T23:59:59.999Z
  std::time_t secs = static_cast<std::time_t>(std::clamp<int64_t>(ms, 0, kLast) / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char day[16];
  char hour[4];
  std::strftime(day, sizeof(day), "%Y-%m-%d", &tm);
  std::strftime(hour, sizeof(hour), "%H", &tm);
  return {day, hour};
}

std::string SegmentFileName(int64_t start_ms, int64_t end_ms, uint64_t seq) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%013lld-%013lld-%06llu", static_cast<long long>(start_ms),
                static_cast<long long>(end_ms), static_cast<unsigned long long>(seq));
  return std::string(buf) + std::string(kExtension);
}

// Parses "<start>-<end>-<seq>.tkcap"; false for anything else (temp files).
bool ParseSegmentFileName(std::string_view name, int64_t* start, int64_t* end, uint64_t* seq) {
  if (!name.ends_with(kExtension)) return false;
  name.remove_suffix(kExtension.size());
  auto parse = [&name](auto* out, bool last) {
    size_t dash = last ? name.size() : name.find('-');
    if (dash == std::string_view::npos || dash == 0) return false;
    auto r = std::from_chars(name.data(), name.data() + dash, *out);
    if (r.ec != std::errc() || r.ptr != name.data() + dash) return false;
    name.remove_prefix(last ? dash : dash + 1);
    return true;
  };
  return parse(start, false) && parse(end, false) && parse(seq, true) && name.empty();
}

std::string DeriveCaptureKey(const crypto::Keyring& keyring) { return keyring.DeriveKey(kKeyPurpose); }

}  // namespace

// ---- The ring: Vyukov's bounded MPMC queue, used by many producers and one consumer ----

struct CaptureWriter::Ring {
  struct Cell {
    std::atomic<size_t> seq{0};
    CaptureRecord value;
  };

  explicit Ring(size_t capacity) : mask(capacity - 1), cells(std::make_unique<Cell[]>(capacity)) {
    for (size_t i = 0; i < capacity; ++i) cells[i].seq.store(i, std::memory_order_relaxed);
  }

  // Copies `record` into a free cell's buffers. `*depth` is the queue length seen.
  bool TryPush(const CaptureRecord& record, size_t* depth) {
    size_t pos = enqueue_pos.load(std::memory_order_relaxed);
    Cell* cell;
    for (;;) {
      cell = &cells[pos & mask];
      size_t seq = cell->seq.load(std::memory_order_acquire);
      auto diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos);
      if (diff == 0) {
        if (enqueue_pos.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
      } else if (diff < 0) {
        return false;  // full
      } else {
        pos = enqueue_pos.load(std::memory_order_relaxed);
      }
    }
    CaptureRecord& v = cell->value;  // its strings and vectors keep their capacity
    v.time_ms = record.time_ms;
    v.endpoint.assign(record.endpoint);
    v.variant.assign(record.variant);
    v.model_version = record.model_version;
    v.inference_id.assign(record.inference_id);
    v.latency_us = record.latency_us;
    v.status = record.status;
    v.content_type.assign(record.content_type);
    v.input_cols = record.input_cols;
    v.input.assign(record.input.begin(), record.input.end());
    v.output_cols = record.output_cols;
    v.output.assign(record.output.begin(), record.output.end());
    cell->seq.store(pos + 1, std::memory_order_release);
    *depth = pos + 1 - dequeue_pos.load(std::memory_order_relaxed);
    return true;
  }

  // Hands the oldest record to `consume` in its cell, then frees the cell
  // (keeping its buffers, unless they grew large). False if empty.
  template <typename F>
  bool PopWith(F&& consume) {
    size_t pos = dequeue_pos.load(std::memory_order_relaxed);
    Cell* cell;
    for (;;) {
      cell = &cells[pos & mask];
      size_t seq = cell->seq.load(std::memory_order_acquire);
      auto diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos + 1);
      if (diff == 0) {
        if (dequeue_pos.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
      } else if (diff < 0) {
        return false;  // empty
      } else {
        pos = dequeue_pos.load(std::memory_order_relaxed);
      }
    }
    consume(cell->value);
    CaptureRecord& v = cell->value;
    crypto::SecureErase(v.inference_id);
    if (v.input.capacity() > kKeptFloats) std::vector<float>().swap(v.input);
    if (v.output.capacity() > kKeptFloats) std::vector<float>().swap(v.output);
    std::fill(v.input.begin(), v.input.end(), 0.0f);  // captured data does not linger
    std::fill(v.output.begin(), v.output.end(), 0.0f);
    cell->seq.store(pos + mask + 1, std::memory_order_release);
    return true;
  }

  // A cell keeps vectors of up to this many floats for the next record.
  static constexpr size_t kKeptFloats = 4096;

  size_t capacity() const { return mask + 1; }
  uint64_t pushed() const { return enqueue_pos.load(std::memory_order_relaxed); }

  const size_t mask;
  std::unique_ptr<Cell[]> cells;
  alignas(64) std::atomic<size_t> enqueue_pos{0};
  alignas(64) std::atomic<size_t> dequeue_pos{0};
};

// The segment being written. Its record lines are compressed as they come
// (one zstd frame; the header line, known at the end, is a frame of its own
// before it), so the writer holds a few hundred KB of plaintext at most, not
// the whole segment: its memory, and what it evicts from the caches the
// request threads use, stay small.
struct CaptureWriter::Segment {
  Segment() : cctx(ZSTD_createCCtx()) {}
  ~Segment() {
    ZSTD_freeCCtx(cctx);
    crypto::SecureErase(line);
  }
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  ZSTD_CCtx* cctx;
  std::string line;        // the record being encoded
  std::string compressed;  // the record lines' frame so far
  size_t compressed_size = 0;
  uint64_t plain_bytes = 0;  // record lines, uncompressed
  std::optional<Error> error;
  uint64_t records = 0;
  int64_t start_ms = INT64_MAX;
  int64_t end_ms = INT64_MIN;
  int64_t opened_ms = 0;  // by the writer's clock
  std::set<std::string, std::less<>> variants;
};

// ---- CaptureWriter ----

Result<std::unique_ptr<CaptureWriter>> CaptureWriter::Create(CaptureOptions options,
                                                             const crypto::Keyring& keyring) {
  if (!ValidEndpointName(options.endpoint)) {
    return InvalidArgument("capture: invalid endpoint name '" + options.endpoint + "'");
  }
  if (options.root.empty()) return InvalidArgument("capture: no capture root");
  if (!(options.sample_percent >= 0 && options.sample_percent <= 100)) {
    return InvalidArgument("capture: sample percent must be 0-100");
  }
  if (options.queue_capacity < 2 || options.queue_capacity > (size_t{1} << 24)) {
    return InvalidArgument("capture: queue capacity must be 2 to 16777216");
  }
  if (options.max_segment_bytes == 0 || options.max_segment_age_ms <= 0) {
    return InvalidArgument("capture: segment limits must be positive");
  }
  options.queue_capacity = std::bit_ceil(options.queue_capacity);
  if (!options.clock) options.clock = &RealClock();
  if (!options.fs) options.fs = blob::DefaultFileSystem();
  if (auto st = options.fs->CreateDir(options.root / options.endpoint); !st) {
    return std::unexpected(st.error().WithContext("capture for " + options.endpoint));
  }
  std::unique_ptr<CaptureWriter> w(new CaptureWriter(std::move(options), DeriveCaptureKey(keyring)));
  w->thread_ = std::thread([raw = w.get()] {
    SetThreadName("takt-capture");
    raw->Run();
  });
  return w;
}

CaptureWriter::CaptureWriter(CaptureOptions options, std::string key)
    : options_(std::move(options)),
      key_(std::move(key)),
      ring_(std::make_unique<Ring>(options_.queue_capacity)) {
  SetSamplePercent(options_.sample_percent);
  std::string seed = crypto::RandomBytes(sizeof(id_state_));
  std::memcpy(id_state_, seed.data(), sizeof(id_state_));
}

CaptureWriter::~CaptureWriter() {
  IgnoreError(Close());
  crypto::SecureErase(key_);
}

bool CaptureWriter::ShouldCapture() const {
  if (always_.load(std::memory_order_relaxed)) return true;
  uint64_t threshold = threshold_.load(std::memory_order_relaxed);
  return threshold != 0 && NextRandom() < threshold;
}

void CaptureWriter::SetSamplePercent(double percent) {
  if (!(percent > 0)) percent = 0;  // NaN too
  percent = std::min(percent, 100.0);
  threshold_.store(static_cast<uint64_t>(std::ldexp(percent / 100.0, 64) * (1 - 1e-16)),
                   std::memory_order_relaxed);
  always_.store(percent >= 100, std::memory_order_relaxed);
}

bool CaptureWriter::Enqueue(const CaptureRecord& record) {
  size_t depth = 0;
  if (closed_.load(std::memory_order_acquire) || !ring_->TryPush(record, &depth)) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    if (options_.metrics) options_.metrics->AddCaptureDropped(1);
    return false;
  }
  // Wake the thread early only when the ring fills up; it polls otherwise.
  if (depth >= ring_->capacity() / 2 && consumer_waiting_.load(std::memory_order_relaxed) &&
      !kick_.exchange(true, std::memory_order_relaxed)) {
    wake_.notify_one();
  }
  return true;
}

void CaptureWriter::SetSchema(std::string_view variant, CaptureSchema schema) {
  std::lock_guard lock(mu_);
  schemas_.insert_or_assign(std::string(variant), std::move(schema));
}

Status CaptureWriter::Flush() {
  std::unique_lock lock(mu_);
  if (stop_) return Ok();
  uint64_t ticket = ++flush_requested_;
  wake_.notify_one();
  flushed_.wait(lock, [&] { return flush_done_ >= ticket; });
  if (error_) {
    Error e = *error_;
    error_.reset();
    return std::unexpected(e);
  }
  return Ok();
}

Status CaptureWriter::Close() {
  closed_.store(true, std::memory_order_release);
  {
    std::lock_guard lock(mu_);
    if (stop_) return Ok();
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
  std::lock_guard lock(mu_);
  if (error_) {
    Error e = *error_;
    error_.reset();
    return std::unexpected(e);
  }
  return Ok();
}

CaptureStats CaptureWriter::stats() const {
  std::lock_guard lock(mu_);
  CaptureStats s = done_;
  s.enqueued = ring_->pushed();
  s.dropped = dropped_.load(std::memory_order_relaxed);
  return s;
}

void CaptureWriter::NewInferenceId(std::string* out) {
  uint64_t hi = SplitMix(id_state_[0]);
  uint64_t lo = SplitMix(id_state_[1]);
  hi = (hi & ~0xF000ULL) | 0x4000ULL;        // version 4
  lo = (lo & ~(3ULL << 62)) | (2ULL << 62);  // variant 10
  // The 32 hex digits of hi and lo as 8-4-4-4-12.
  static constexpr char kHex[] = "0123456789abcdef";
  out->assign(36, '-');
  size_t pos = 0;
  for (int i = 0; i < 32; ++i) {
    if (pos == 8 || pos == 13 || pos == 18 || pos == 23) ++pos;
    const uint64_t word = i < 16 ? hi : lo;
    (*out)[pos++] = kHex[(word >> (60 - 4 * (i % 16))) & 0xF];
  }
}

void CaptureWriter::Run() {
  // Capture must not take CPU from requests: on a busy machine the writer
  // yields to them (a full ring then drops and counts), and catches up when
  // there is room.
  if (options_.background_priority) {
    // SCHED_IDLE: it runs only when a core has nothing else to run, and never
    // preempts a thread serving a request.
    sched_param param{};
    if (sched_setscheduler(0, SCHED_IDLE, &param) != 0) {
      setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kWriterNice);
    }
  }
  auto append = [this](CaptureRecord& r) { Append(r); };
  // The record's cell is free again before a full segment is written.
  auto full = [this] { return segment_ && segment_->plain_bytes >= options_.max_segment_bytes; };
  for (;;) {
    uint64_t ticket;
    bool stop;
    {
      std::lock_guard lock(mu_);
      ticket = flush_requested_;
      stop = stop_;
    }
    while (ring_->PopWith(append)) {
      if (full()) WriteSegment();
    }
    if (segment_ && options_.clock->NowMillis() - segment_->opened_ms >= options_.max_segment_age_ms) {
      WriteSegment();
    }
    if (stop) {
      while (ring_->PopWith(append)) {  // pushed while we were stopping
        if (full()) WriteSegment();
      }
      WriteSegment();
      std::lock_guard lock(mu_);
      flush_done_ = flush_requested_;
      flushed_.notify_all();
      return;
    }
    std::unique_lock lock(mu_);
    if (ticket > flush_done_) {
      lock.unlock();
      WriteSegment();
      lock.lock();
      flush_done_ = ticket;
      flushed_.notify_all();
    }
    if (flush_requested_ != ticket || stop_) continue;
    consumer_waiting_.store(true, std::memory_order_relaxed);
    wake_.wait_for(lock, segment_ ? kBusyPoll : kIdlePoll,
                   [&] { return stop_ || flush_requested_ != ticket || kick_.exchange(false); });
    consumer_waiting_.store(false, std::memory_order_relaxed);
  }
}

namespace {

// Feeds `in` to the segment's frame (ZSTD_e_continue), or ends the frame
// (ZSTD_e_end, `in` empty); the output grows as needed.
Status Compress(ZSTD_CCtx* cctx, std::string_view in, ZSTD_EndDirective mode, std::string& out,
                size_t& out_size) {
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  for (;;) {
    if (out.size() - out_size < ZSTD_CStreamOutSize())
      out.resize(std::max(out.size() * 2, out_size + ZSTD_CStreamOutSize()));
    ZSTD_outBuffer output{out.data() + out_size, out.size() - out_size, 0};
    size_t left = ZSTD_compressStream2(cctx, &output, &input, mode);
    out_size += output.pos;
    if (ZSTD_isError(left)) return Internal(std::string("capture: zstd: ") + ZSTD_getErrorName(left));
    if (mode == ZSTD_e_end ? left == 0 : input.pos == input.size) return Ok();
  }
}

}  // namespace

void CaptureWriter::Append(CaptureRecord& r) {
  if (!segment_) {
    segment_ = std::make_unique<Segment>();
    Segment& s = *segment_;
    s.opened_ms = options_.clock->NowMillis();
    if (s.cctx == nullptr) {
      s.error = Error(Code::kInternal, "capture: zstd: cannot create a compression context");
    } else {
      // A 128 KB window: the frame keeps that much plaintext history, no more.
      ZSTD_CCtx_setParameter(s.cctx, ZSTD_c_compressionLevel, options_.zstd_level);
      ZSTD_CCtx_setParameter(s.cctx, ZSTD_c_windowLog, 17);
    }
  }
  Segment& s = *segment_;
  if (r.time_ms == 0) r.time_ms = options_.clock->NowMillis();
  if (r.inference_id.empty()) NewInferenceId(&r.inference_id);
  std::string& out = s.line;  // records not yet fed to zstd
  const size_t before = out.size();
  AppendRecord(&out, r);
  s.plain_bytes += out.size() - before;
  if (out.size() >= kStagingBytes && !s.error) {
    if (Status st = Compress(s.cctx, out, ZSTD_e_continue, s.compressed, s.compressed_size); !st)
      s.error = st.error();
    crypto::SecureErase(out);  // keeps its capacity
  }
  ++s.records;
  s.start_ms = std::min(s.start_ms, r.time_ms);
  s.end_ms = std::max(s.end_ms, r.time_ms);
  if (!s.variants.contains(r.variant)) s.variants.emplace(r.variant);
}

void CaptureWriter::WriteSegment() {
  if (!segment_ || segment_->records == 0) {
    segment_.reset();
    return;
  }
  std::unique_ptr<Segment> seg = std::move(segment_);

  std::string plain;  // the header line
  plain.append("{\"format\":");
  AppendJsonString(&plain, kFormat);
  plain.append(",\"endpoint\":");
  AppendJsonString(&plain, options_.endpoint);
  plain.append(",\"start_ms\":");
  AppendInt(&plain, seg->start_ms);
  plain.append(",\"end_ms\":");
  AppendInt(&plain, seg->end_ms);
  plain.append(",\"records\":");
  AppendInt(&plain, static_cast<int64_t>(seg->records));
  plain.append(",\"schemas\":{");
  {
    std::lock_guard lock(mu_);
    bool first = true;
    for (const auto& variant : seg->variants) {
      auto it = schemas_.find(variant);
      if (it == schemas_.end()) continue;
      if (!first) plain.push_back(',');
      first = false;
      AppendJsonString(&plain, variant);
      plain.append(":{\"features\":");
      AppendStringArray(&plain, it->second.features);
      plain.append(",\"outputs\":");
      AppendStringArray(&plain, it->second.outputs);
      plain.push_back('}');
    }
  }
  plain.append("}}\n");

  auto fail = [&](const Error& e) {
    std::lock_guard lock(mu_);
    done_.lost += seg->records;
    if (!error_) error_ = e;
    if (options_.metrics) options_.metrics->AddCaptureDropped(seg->records);
  };
  if (seg->error) return fail(*seg->error);
  // The records' frame ends; the header's frame goes before it (zstd decodes
  // concatenated frames as the concatenated plaintext).
  if (Status st = Compress(seg->cctx, seg->line, ZSTD_e_end, seg->compressed, seg->compressed_size); !st)
    return fail(st.error());
  crypto::SecureErase(seg->line);
  std::string compressed(ZSTD_compressBound(plain.size()) + seg->compressed_size, '\0');
  size_t n =
      ZSTD_compress(compressed.data(), compressed.size(), plain.data(), plain.size(), options_.zstd_level);
  crypto::SecureErase(plain);
  if (ZSTD_isError(n)) {
    fail(Error(Code::kInternal, std::string("capture: zstd: ") + ZSTD_getErrorName(n)));
    return;
  }
  std::memcpy(compressed.data() + n, seg->compressed.data(), seg->compressed_size);
  compressed.resize(n + seg->compressed_size);
  seg->compressed = std::string();

  auto [day, hour] = DayAndHour(seg->start_ms);
  const std::filesystem::path dir = options_.root / options_.endpoint / day / hour;
  if (auto st = options_.fs->CreateDir(dir); !st) {
    fail(st.error().WithContext("capture segment for " + options_.endpoint));
    return;
  }
  std::string relative;
  for (;;) {
    relative = options_.endpoint + "/" + day + "/" + hour + "/" +
               SegmentFileName(seg->start_ms, seg->end_ms, seq_++);
    if (!options_.fs->Exists(options_.root / relative)) break;  // a segment of an earlier run
  }
  auto sealed = crypto::Seal(key_, compressed, std::string(kAadPrefix) + relative);
  if (!sealed) {
    fail(sealed.error().WithContext("capture segment " + relative));
    return;
  }
  std::string file;
  file.reserve(kMagic.size() + sealed->size());
  file.append(kMagic);
  file.append(*sealed);
  if (auto st = options_.fs->WriteFileAtomic(options_.root / relative, file); !st) {
    fail(st.error().WithContext("writing capture segment " + relative));
    return;
  }
  std::lock_guard lock(mu_);
  done_.written += seg->records;
  done_.segments += 1;
  done_.bytes += file.size();
  if (options_.metrics) {
    options_.metrics->AddCaptureRecords(seg->records);
    options_.metrics->AddCaptureBytes(file.size());
  }
}

// ---- CaptureReader ----

namespace {

// The concatenated frames of a segment (the header's, then the lines'; a
// segment of an earlier version is one frame), at most kMaxPlaintext bytes.
// A buffer that grows is wiped before it is let go: it held plaintext.
Result<std::string> Decompress(std::string_view compressed) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) return Internal("zstd: cannot create a decompression context");
  std::string plain(std::min(kMaxPlaintext, std::max<size_t>(compressed.size() * 8, ZSTD_DStreamOutSize())),
                    '\0');
  size_t size = 0;
  ZSTD_inBuffer in{compressed.data(), compressed.size(), 0};
  size_t pending = 1;  // 0 once a frame ended and was flushed
  while (in.pos < in.size || pending != 0) {
    if (size == plain.size()) {
      if (plain.size() >= kMaxPlaintext) {
        crypto::SecureErase(plain);
        return InvalidArgument("more than " + std::to_string(kMaxPlaintext) + " bytes of plaintext");
      }
      std::string bigger(std::min(kMaxPlaintext, plain.size() * 2), '\0');
      std::memcpy(bigger.data(), plain.data(), size);
      crypto::SecureErase(plain);
      plain.swap(bigger);
    }
    ZSTD_outBuffer out{plain.data() + size, plain.size() - size, 0};
    const size_t in_before = in.pos;
    pending = ZSTD_decompressStream(dctx.get(), &out, &in);
    size += out.pos;
    if (ZSTD_isError(pending)) {
      crypto::SecureErase(plain);
      return Internal(std::string("zstd: ") + ZSTD_getErrorName(pending));
    }
    if (pending != 0 && out.pos == 0 && in.pos == in_before && in.pos == in.size) {
      crypto::SecureErase(plain);
      return Internal("not a complete zstd frame");
    }
  }
  if (compressed.empty()) return Internal("not a complete zstd frame");
  plain.resize(size);
  return plain;
}

}  // namespace

CaptureReader::CaptureReader(std::filesystem::path root, const crypto::Keyring& keyring, blob::FileSystem* fs)
    : root_(std::move(root)), key_(DeriveCaptureKey(keyring)), fs_(fs ? fs : blob::DefaultFileSystem()) {}

CaptureReader::~CaptureReader() { crypto::SecureErase(key_); }

Result<std::vector<CaptureSegmentInfo>> CaptureReader::ListSegments(std::string_view endpoint,
                                                                    int64_t from_ms, int64_t to_ms) const {
  if (!ValidEndpointName(endpoint))
    return InvalidArgument("capture: invalid endpoint name '" + std::string(endpoint) + "'");
  std::vector<CaptureSegmentInfo> out;
  const std::filesystem::path base = root_ / std::string(endpoint);
  std::error_code ec;
  if (!std::filesystem::is_directory(base, ec)) return out;
  const std::string last_day = DayAndHour(to_ms).first;
  auto list = [&ec](const std::filesystem::path& dir) {
    std::vector<std::filesystem::directory_entry> entries;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      entries.push_back(*it);
    }
    return entries;
  };
  for (const auto& day : list(base)) {
    // Segments start in the day directory of their start: none after to_ms's day overlaps.
    if (!day.is_directory() || day.path().filename().string() > last_day) continue;
    for (const auto& hour : list(day.path())) {
      if (!hour.is_directory()) continue;
      for (const auto& file : list(hour.path())) {
        CaptureSegmentInfo info;
        if (!ParseSegmentFileName(file.path().filename().string(), &info.start_ms, &info.end_ms, &info.seq)) {
          continue;
        }
        if (info.start_ms > to_ms || info.end_ms < from_ms) continue;
        info.path = file.path();
        info.relative = std::string(endpoint) + "/" + day.path().filename().string() + "/" +
                        hour.path().filename().string() + "/" + file.path().filename().string();
        out.push_back(std::move(info));
      }
    }
  }
  if (ec) return Internal("listing capture segments of " + std::string(endpoint) + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.start_ms, a.seq, a.relative) < std::tie(b.start_ms, b.seq, b.relative);
  });
  return out;
}

namespace {

Result<std::vector<float>> ParseMatrix(const Json& rows, size_t* cols) {
  std::vector<float> out;
  *cols = 0;
  if (!rows.is_array()) return Internal("not an array");
  for (const auto& row : rows) {
    if (!row.is_array()) return Internal("a row is not an array");
    if (*cols == 0) *cols = row.size();
    for (const auto& v : row) {
      if (v.is_null()) {
        out.push_back(std::nanf(""));
      } else if (v.is_number()) {
        out.push_back(v.get<float>());
      } else {
        return Internal("a value is not a number");
      }
    }
  }
  return out;
}

Result<CaptureRecord> ParseRecord(const Json& j) {
  try {
    CaptureRecord r;
    r.time_ms = j.at("time_ms").get<int64_t>();
    r.inference_id = j.at("inference_id").get<std::string>();
    r.variant = j.at("variant").get<std::string>();
    r.model_version = j.at("model_version").get<int>();
    r.status = j.at("status").get<int>();
    r.latency_us = j.at("latency_us").get<int64_t>();
    r.content_type = j.value("content_type", "");
    TAKT_ASSIGN_OR_RETURN(r.input, ParseMatrix(j.at("input"), &r.input_cols));
    TAKT_ASSIGN_OR_RETURN(r.output, ParseMatrix(j.at("output"), &r.output_cols));
    return r;
  } catch (const Json::exception& e) {
    return Internal(e.what());
  }
}

// The header line: format, endpoint, time range, count, schemas.
Status ParseHeader(const Json& j, CaptureSegment* seg, uint64_t* declared) {
  try {
    seg->endpoint = j.at("endpoint").get<std::string>();
    seg->start_ms = j.at("start_ms").get<int64_t>();
    seg->end_ms = j.at("end_ms").get<int64_t>();
    *declared = j.at("records").get<uint64_t>();
    for (const auto& [variant, schema] : j.at("schemas").items()) {
      seg->schemas[variant] = CaptureSchema{schema.at("features").get<std::vector<std::string>>(),
                                            schema.at("outputs").get<std::vector<std::string>>()};
    }
  } catch (const Json::exception& e) {
    return Internal(std::string("header: ") + e.what());
  }
  return Ok();
}

// A decrypted, decompressed segment: the header line, then v1's JSON lines or
// v2's binary records. Errors name the line (v1) or byte offset (v2).
Status ParsePlaintext(std::string_view plain, CaptureSegment* seg) {
  if (plain.empty()) return Internal("empty");
  const size_t nl = plain.find('\n');
  if (nl == std::string_view::npos) return Internal("line 1 is not a JSON object");
  Json header = Json::parse(plain.substr(0, nl), nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return Internal("line 1 is not a JSON object");
  const Json* format = header.contains("format") ? &header["format"] : nullptr;
  if (format == nullptr || !format->is_string()) return Internal("header: no format");
  const std::string name = format->get<std::string>();
  if (name != kFormat && name != kFormatV1) return Internal("unknown format " + format->dump());
  uint64_t declared = 0;
  TAKT_RETURN_IF_ERROR(ParseHeader(header, seg, &declared));
  std::string_view rest = plain.substr(nl + 1);
  if (name == kFormat) {
    RecordDecoder decoder(rest);
    while (!decoder.done()) {
      const size_t at = decoder.offset();
      auto record = decoder.Next();
      if (!record) {
        return std::unexpected(record.error().WithContext(
            "record " + std::to_string(seg->records.size() + 1) + " at byte " + std::to_string(nl + 1 + at)));
      }
      record->endpoint = seg->endpoint;
      seg->records.push_back(std::move(*record));
    }
  } else {
    size_t line_no = 1;
    while (!rest.empty()) {
      size_t end = rest.find('\n');
      std::string_view line = rest.substr(0, end);
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
      ++line_no;
      Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) {
        return Internal("line " + std::to_string(line_no) + " is not a JSON object");
      }
      auto record = ParseRecord(j);
      if (!record) return std::unexpected(record.error().WithContext("line " + std::to_string(line_no)));
      record->endpoint = seg->endpoint;
      seg->records.push_back(std::move(*record));
    }
  }
  if (seg->records.size() != declared) {
    return Internal("header says " + std::to_string(declared) + " records, found " +
                    std::to_string(seg->records.size()));
  }
  return Ok();
}

}  // namespace

Result<CaptureSegment> CaptureReader::ReadSegment(const std::filesystem::path& path) const {
  std::filesystem::path rel = path.is_absolute() ? path.lexically_relative(root_) : path.lexically_normal();
  std::string relative = rel.generic_string();
  if (rel.empty() || relative.starts_with("..") || rel.is_absolute()) {
    return InvalidArgument("capture segment " + path.string() + " is not under the capture root " +
                           root_.string());
  }
  const std::string what = "capture segment " + relative;
  TAKT_ASSIGN_OR_RETURN(std::string file, fs_->ReadFile(root_ / rel));
  if (!std::string_view(file).starts_with(kMagic)) {
    return FailedPrecondition(what + ": not a takt capture segment (bad magic)");
  }
  auto compressed =
      crypto::Open(key_, std::string_view(file).substr(kMagic.size()), std::string(kAadPrefix) + relative);
  if (!compressed) {
    return FailedPrecondition(what +
                              ": authentication failed: sealed under another master key, modified, or moved "
                              "from where it was written");
  }
  auto plain_or = Decompress(*compressed);
  if (!plain_or) return Internal(what + ": " + plain_or.error().message());
  std::string plain = std::move(*plain_or);

  CaptureSegment seg;
  auto parsed = ParsePlaintext(plain, &seg);
  crypto::SecureErase(plain);
  if (!parsed) return std::unexpected(parsed.error().WithContext(what));
  return seg;
}

}  // namespace takt::serving
