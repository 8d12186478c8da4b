#include "frame/stats.h"

#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <unordered_map>
#include <utility>

#include "core/json.h"

namespace takt::frame {
namespace {

constexpr double kQuantiles[] = {0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99};
constexpr int kHistogramBins = 20;
constexpr size_t kTopK = 10;
constexpr size_t kIntTopLimit = 20;  // int64 columns get `top` up to this many distinct values

// ------------------------------------------------------------------ hashing

// A bijective 64-bit finalizer (the splitmix64 output function): distinct
// integers get distinct hashes, so an exact set of hashes is an exact set of
// integers.
inline uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

inline uint64_t Fold(uint64_t a, uint64_t b) {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

inline uint64_t Load64(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

inline uint64_t Load32(const char* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

// A fast hash of bytes for sketches and the state checksum. Stable: it is part
// of the serialized state (little-endian loads; takt runs on x86-64 and arm64).
// Short values (most column values) take two overlapping loads, no loop and
// no memcpy call; the length is in the seed, so overlaps are unambiguous.
inline uint64_t HashBytes(const char* p, size_t n) {
  constexpr uint64_t k1 = 0xa0761d6478bd642fULL, k2 = 0xe7037ed1a0b428dbULL, k3 = 0x8ebc6af09c88c6e3ULL;
  uint64_t h = 0x243f6a8885a308d3ULL ^ (static_cast<uint64_t>(n) * k1);
  uint64_t a, b;
  if (n <= 16) {
    if (n >= 8) {
      a = Load64(p);
      b = Load64(p + n - 8);
    } else if (n >= 4) {
      a = Load32(p);
      b = Load32(p + n - 4);
    } else if (n > 0) {
      const auto byte = [&](size_t i) { return static_cast<uint64_t>(static_cast<unsigned char>(p[i])); };
      a = (byte(0) << 16) | (byte(n / 2) << 8) | byte(n - 1);
      b = 0;
    } else {
      a = b = 0;
    }
  } else {
    size_t left = n;
    const char* q = p;
    while (left > 16) {
      h = Fold(Load64(q) ^ k2, Load64(q + 8) ^ h);
      q += 16;
      left -= 16;
    }
    a = Load64(p + n - 16);
    b = Load64(p + n - 8);
  }
  return Mix(Fold(a ^ k3, b ^ h));
}

// Mix(0) is 0: offset first, so that common small values get ordinary hashes.
inline uint64_t HashInt(int64_t v) { return Mix(static_cast<uint64_t>(v) ^ 0x2545f4914f6cdd1dULL); }
inline uint64_t HashDouble(double v) { return Mix(std::bit_cast<uint64_t>(v + 0.0) ^ 0x5851f42d4c957f2dULL); }

// splitmix64: small state, good enough for sampling, trivially serializable.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : state_(seed) {}
  uint64_t Next() { return Mix(state_ += 0x9e3779b97f4a7c15ULL); }
  // Uniform in (0, 1).
  double Open01() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }
  // Uniform in [0, n).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }
  uint64_t state() const { return state_; }
  void set_state(uint64_t s) { state_ = s; }

 private:
  uint64_t state_;
};

// ------------------------------------------------------------------ reservoir

// A uniform sample of up to kCapacity values (Li's Algorithm L: random numbers
// are drawn only for the values that enter the sample, about k·ln(n/k) of n).
class Reservoir {
 public:
  static constexpr size_t kCapacity = 16384;

  void Seed(uint64_t seed) { rng_.set_state(seed); }

  void Add(const double* v, size_t m) {
    size_t i = 0;
    if (sample_.size() < kCapacity) {
      if (sample_.empty()) sample_.reserve(std::min<size_t>(kCapacity, std::max<size_t>(m, 256)));
      i = std::min(m, kCapacity - sample_.size());
      sample_.insert(sample_.end(), v, v + i);
      seen_ += static_cast<int64_t>(i);
      if (sample_.size() < kCapacity) return;
      if (i > 0) {  // just filled: start skipping
        w_ = ExpSmall(std::log(rng_.Open01()) * kInvCapacity);
        next_ = seen_ + Gap();
      }
    }
    const int64_t base = seen_ - static_cast<int64_t>(i);  // stream index of v[0]
    const int64_t end = base + static_cast<int64_t>(m);
    if (next_ < seen_) next_ = seen_;  // only a hand-made state could get here
    if (next_ < end) {                 // in locals: stores into the sample cannot alias them
      Rng rng = rng_;
      double w = w_;
      int64_t next = next_;
      double* sample = sample_.data();
      do {
        sample[rng.Below(kCapacity)] = v[next - base];
        w *= ExpSmall(std::log(rng.Open01()) * kInvCapacity);
        next += 1 + Gap(w, rng);
      } while (next < end);
      rng_ = rng;
      w_ = w;
      next_ = next;
    }
    seen_ = end;
  }

  void Merge(const Reservoir& o) {
    if (o.seen_ == 0) return;
    if (seen_ == 0) {
      const Rng keep = rng_;
      *this = o;
      rng_ = keep;
      return;
    }
    if (static_cast<int64_t>(o.sample_.size()) == o.seen_) {  // o holds all its values
      Add(o.sample_.data(), o.sample_.size());
      return;
    }
    if (static_cast<int64_t>(sample_.size()) == seen_) {  // this holds all its values
      Reservoir r = o;
      r.rng_ = rng_;
      r.Add(sample_.data(), sample_.size());
      *this = std::move(r);
      return;
    }
    // Both are full samples: draw kCapacity values from the union without
    // replacement, from each side in proportion to the values it stands for.
    uint64_t ra = static_cast<uint64_t>(seen_), rb = static_cast<uint64_t>(o.seen_);
    size_t take_a = 0;
    for (size_t k = 0; k < kCapacity; ++k) {
      if (rng_.Below(ra + rb) < ra) {
        ++take_a, --ra;
      } else {
        --rb;
      }
    }
    std::vector<double> a = sample_, b = o.sample_;
    PartialShuffle(a, take_a);
    PartialShuffle(b, kCapacity - take_a);
    sample_.assign(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(take_a));
    sample_.insert(sample_.end(), b.begin(), b.begin() + static_cast<std::ptrdiff_t>(kCapacity - take_a));
    seen_ += o.seen_;
    // The skip threshold after n values is the k-th smallest of n uniforms,
    // concentrated around k / (n + 1).
    w_ = static_cast<double>(kCapacity) / (static_cast<double>(seen_) + 1.0);
    next_ = seen_ + Gap();
  }

  const std::vector<double>& sample() const { return sample_; }
  int64_t seen() const { return seen_; }

  // For serialization.
  double w() const { return w_; }
  int64_t next() const { return next_; }
  uint64_t rng_state() const { return rng_.state(); }
  void Restore(std::vector<double> sample, int64_t seen, double w, int64_t next, uint64_t rng) {
    sample_ = std::move(sample);
    seen_ = seen;
    w_ = w;
    next_ = next;
    rng_.set_state(rng);
  }

 private:
  // Values to skip before the next one enters the sample.
  int64_t Gap() { return Gap(w_, rng_); }
  static int64_t Gap(double w, Rng& rng) {
    // log(1 - w), from a series where 1 - w would lose digits.
    const double log1m = w < 1e-4 ? -w * (1.0 + w * (0.5 + w * (1.0 / 3.0))) : std::log(1.0 - w);
    const double g = std::log(rng.Open01()) / log1m;  // >= 0: truncation is floor
    if (!(g < 4e18)) return int64_t{4000000000000000000};
    return g > 0 ? static_cast<int64_t>(g) : 0;
  }

  static constexpr double kInvCapacity = 1.0 / kCapacity;

  // exp(x) for the small negative x of a skip update (log(u) / 16384 with
  // u >= 2^-54, so x > -0.0023): five terms, relative error below 1e-15.
  static double ExpSmall(double x) {
    if (x < -0.003) return std::exp(x);
    return 1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0)))));
  }

  void PartialShuffle(std::vector<double>& v, size_t k) {
    for (size_t i = 0; i < k && i < v.size(); ++i) {
      std::swap(v[i], v[i + rng_.Below(v.size() - i)]);
    }
  }

  std::vector<double> sample_;
  int64_t seen_ = 0;  // values offered
  double w_ = 1.0;
  int64_t next_ = 0;  // stream index of the next value to enter, once full
  Rng rng_;
};

// ------------------------------------------------------------------ distinct

// Exact set of hashes up to kExactLimit, then HyperLogLog (2^kP registers)
// with Ertl's improved raw estimator (no bias tables needed, accurate from
// zero to billions).
class DistinctCounter {
 public:
  static constexpr int kP = 14;
  static constexpr size_t kRegisters = size_t{1} << kP;
  static constexpr int kMaxRank = 64 - kP + 1;
  static constexpr size_t kExactLimit = 2048;
  static constexpr size_t kSlots = 4096;  // open addressing, 0 = empty

  void Add(uint64_t h) {
    if (!registers_.empty()) [[likely]] {
      AddToSketch(h);
      return;
    }
    AddExact(h);
  }

  // Adds n values, each hashed by `hash`; the loop for the sketch is tight.
  template <typename T, typename H>
  void AddValues(const T* v, size_t n, H hash) {
    size_t i = 0;
    while (i < n && registers_.empty()) {
      const uint64_t h = hash(v[i++]);
      if (h != 0 && !slots_.empty() && slots_[h & (kSlots - 1)] == h) continue;  // seen, first probe
      AddExact(h);
    }
    if (i == n) return;
    uint8_t* reg = registers_.data();
    for (; i < n; ++i) {
      const uint64_t h = hash(v[i]);
      const size_t idx = h >> (64 - kP);
      const uint8_t rank = static_cast<uint8_t>(std::min(std::countl_zero(h << kP), 64 - kP) + 1);
      if (rank > reg[idx]) reg[idx] = rank;  // rarely true: cheaper than always storing
    }
  }

  [[gnu::noinline]] void AddExact(uint64_t h) {
    if (!registers_.empty()) {
      AddToSketch(h);
      return;
    }
    if (h == 0) {
      if (!has_zero_) {
        has_zero_ = true;
        ++exact_count_;
        if (exact_count_ > kExactLimit) ToSketch();
      }
      return;
    }
    if (slots_.empty()) slots_.assign(kSlots, 0);
    size_t s = h & (kSlots - 1);
    while (true) {
      const uint64_t x = slots_[s];
      if (x == h) return;
      if (x == 0) break;
      s = (s + 1) & (kSlots - 1);
    }
    slots_[s] = h;
    if (++exact_count_ > kExactLimit) ToSketch();
  }

  void Merge(const DistinctCounter& o) {
    if (o.registers_.empty()) {
      o.ForEachExact([&](uint64_t h) { Add(h); });
      return;
    }
    if (registers_.empty()) ToSketch();
    for (size_t i = 0; i < kRegisters; ++i) registers_[i] = std::max(registers_[i], o.registers_[i]);
  }

  bool exact() const { return registers_.empty(); }

  int64_t Estimate() const {
    if (registers_.empty()) return static_cast<int64_t>(exact_count_);
    int64_t c[kMaxRank + 1] = {};
    for (uint8_t r : registers_) ++c[r];
    const double m = static_cast<double>(kRegisters);
    constexpr int q = 64 - kP;
    double z = m * Tau(1.0 - static_cast<double>(c[q + 1]) / m);
    for (int k = q; k >= 1; --k) z = 0.5 * (z + static_cast<double>(c[k]));
    z += m * Sigma(static_cast<double>(c[0]) / m);
    constexpr double kAlphaInf = 0.721347520444481703680;  // 1 / (2 ln 2)
    const double estimate = kAlphaInf * m * m / z;
    return estimate < 9e18 ? static_cast<int64_t>(std::llround(estimate)) : int64_t{9000000000000000000};
  }

  template <typename F>
  void ForEachExact(F&& f) const {
    if (has_zero_) f(uint64_t{0});
    for (uint64_t h : slots_) {
      if (h != 0) f(h);
    }
  }
  const std::vector<uint8_t>& registers() const { return registers_; }
  void SetRegisters(std::vector<uint8_t> r) {
    slots_.clear();
    has_zero_ = false;
    exact_count_ = 0;
    registers_ = std::move(r);
  }
  size_t exact_count() const { return exact_count_; }

 private:
  void AddToSketch(uint64_t h) {
    const size_t idx = h >> (64 - kP);
    const int rank = std::min(std::countl_zero(h << kP), 64 - kP) + 1;
    uint8_t& r = registers_[idx];
    if (rank > r) r = static_cast<uint8_t>(rank);
  }

  void ToSketch() {
    std::vector<uint64_t> slots = std::move(slots_);
    const bool zero = has_zero_;
    slots_.clear();
    has_zero_ = false;
    exact_count_ = 0;
    registers_.assign(kRegisters, 0);
    if (zero) AddToSketch(0);
    for (uint64_t h : slots) {
      if (h != 0) AddToSketch(h);
    }
  }

  static double Sigma(double x) {
    if (x == 1.0) return std::numeric_limits<double>::infinity();
    double y = 1.0, z = x, prev;
    do {
      x *= x;
      prev = z;
      z += x * y;
      y += y;
    } while (z != prev);
    return z;
  }

  static double Tau(double x) {
    if (x == 0.0 || x == 1.0) return 0.0;
    double y = 1.0, z = 1.0 - x, prev;
    do {
      x = std::sqrt(x);
      prev = z;
      y *= 0.5;
      z -= (1.0 - x) * (1.0 - x) * y;
    } while (z != prev);
    return z / 3.0;
  }

  std::vector<uint64_t> slots_;
  bool has_zero_ = false;
  size_t exact_count_ = 0;
  std::vector<uint8_t> registers_;  // empty while exact
};

// ------------------------------------------------------------------ int64 top

// Exact counts of an int64 column while it has at most kIntTopLimit distinct
// values; gives up (and costs nothing more) beyond.
class SmallIntCounts {
 public:
  static constexpr size_t kSlots = 64;

  void Add(int64_t v, uint64_t h) {
    if (overflow_) return;
    if (keys_.empty()) {
      keys_.assign(kSlots, 0);
      counts_.assign(kSlots, 0);
    }
    size_t s = h & (kSlots - 1);
    while (counts_[s] != 0) {
      if (keys_[s] == v) {
        ++counts_[s];
        return;
      }
      s = (s + 1) & (kSlots - 1);
    }
    if (size_ == kIntTopLimit) {
      Overflow();
      return;
    }
    keys_[s] = v;
    counts_[s] = 1;
    ++size_;
  }

  // Adds `count` occurrences of `v` (count >= 1).
  void AddCount(int64_t v, int64_t count) {
    Add(v, HashInt(v));
    if (overflow_) return;
    size_t s = HashInt(v) & (kSlots - 1);
    while (keys_[s] != v) s = (s + 1) & (kSlots - 1);
    counts_[s] += count - 1;
  }

  void Merge(const SmallIntCounts& o) {
    if (overflow_) return;
    if (o.overflow_) {
      Overflow();
      return;
    }
    for (size_t s = 0; s < o.counts_.size(); ++s) {
      if (o.counts_[s] != 0) AddCount(o.keys_[s], o.counts_[s]);
    }
  }

  bool overflow() const { return overflow_; }
  size_t size() const { return size_; }
  std::vector<std::pair<int64_t, int64_t>> Entries() const {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (size_t s = 0; s < counts_.size(); ++s) {
      if (counts_[s] != 0) out.emplace_back(keys_[s], counts_[s]);
    }
    return out;
  }
  bool Contains(int64_t v) const {
    if (keys_.empty()) return false;
    size_t s = HashInt(v) & (kSlots - 1);
    while (counts_[s] != 0) {
      if (keys_[s] == v) return true;
      s = (s + 1) & (kSlots - 1);
    }
    return false;
  }
  void Overflow() {
    overflow_ = true;
    keys_.clear();
    counts_.clear();
    size_ = 0;
  }

 private:
  bool overflow_ = false;
  size_t size_ = 0;
  std::vector<int64_t> keys_;
  std::vector<int64_t> counts_;  // 0 = empty slot
};

// ------------------------------------------------------------------ string top

struct TopEntry {
  uint64_t hash = 0;
  uint64_t length = 0;  // of the whole value; `value` may be cut
  std::string value;
  int64_t count = 0;
  int64_t error = 0;  // how much `count` may be over (summary mode)
};

constexpr size_t kMaxTopValueBytes = 256;

// The first kMaxTopValueBytes of `v`, cut at a UTF-8 character boundary.
std::string_view CutValue(std::string_view v) {
  if (v.size() <= kMaxTopValueBytes) return v;
  size_t n = kMaxTopValueBytes;
  while (n > 0 && (static_cast<unsigned char>(v[n]) & 0xC0) == 0x80) --n;
  return v.substr(0, n);
}

bool TopOrder(const TopEntry& a, const TopEntry& b) {
  if (a.count != b.count) return a.count > b.count;
  if (a.value != b.value) return a.value < b.value;
  if (a.length != b.length) return a.length < b.length;
  return a.hash < b.hash;
}

// Exact counts while a column has at most kExactLimit distinct values, then a
// Space-Saving summary of kCounters counters (Metwally et al.): a value not
// monitored takes over a smallest counter, so every count is an upper bound,
// over by at most its `error` <= rows / kCounters. The counters sit in
// buckets of equal count, ordered by count (the "stream summary"), so an
// increment or a takeover is O(1) however many counters tie.
class TopValues {
 public:
  static constexpr size_t kExactLimit = 512;
  static constexpr size_t kCounters = 256;
  static constexpr size_t kSlots = 2048;  // index: entry number, -1 empty, -2 deleted

  void Add(std::string_view v, uint64_t h) {
    if (slots_.empty()) slots_.assign(kSlots, -1);
    size_t free_slot;
    const int32_t found = Find(v, h, &free_slot);
    if (found >= 0) {
      if (summary_) {
        Increment(found);
      } else {
        ++entries_[found].count;
      }
      return;
    }
    if (!summary_ || entries_.size() < kCounters) {
      const int32_t idx = static_cast<int32_t>(entries_.size());
      slots_[free_slot] = idx;
      entries_.push_back(TopEntry{h, v.size(), std::string(CutValue(v)), 1, 0});
      if (summary_) {
        links_.push_back({});
        entries_[idx].count = 0;
        InsertAtMin(idx);  // a count-0 bucket, incremented at once
        Increment(idx);
      } else if (entries_.size() > kExactLimit) {
        ToSummary();
      }
      return;
    }
    // Take over a smallest counter: the longest-standing one at that count.
    const int32_t idx = buckets_[min_bucket_].head;
    TopEntry& e = entries_[idx];
    slots_[SlotOf(idx)] = -2;
    ++deleted_;
    slots_[free_slot] = idx;
    e.hash = h;
    e.length = v.size();
    e.value.assign(CutValue(v));
    e.error = e.count;
    Increment(idx);
    if (deleted_ > kCounters) RebuildIndex();
  }

  void Merge(const TopValues& o) {
    if (o.entries_.empty()) return;
    if (slots_.empty()) slots_.assign(kSlots, -1);
    if (!summary_ && !o.summary_) {
      for (const TopEntry& oe : o.entries_) {
        size_t free_slot;
        const int32_t found = Find(oe.value, oe.hash, &free_slot, oe.length);
        if (found >= 0) {
          entries_[found].count += oe.count;
        } else {
          slots_[free_slot] = static_cast<int32_t>(entries_.size());
          entries_.push_back(oe);
        }
      }
      if (entries_.size() > kExactLimit) ToSummary();
      return;
    }
    // A value missing from a summary may still have occurred there, up to
    // that summary's smallest count: add that bound, so counts stay upper
    // bounds and values that drop out stay below the new smallest count.
    const int64_t min_a = MinCount(), min_b = o.MinCount();
    std::vector<TopEntry> all;
    all.reserve(entries_.size() + o.entries_.size());
    for (const TopEntry& e : entries_) {
      TopEntry m = e;
      size_t unused;
      const int32_t j = o.Find(e.value, e.hash, &unused, e.length);
      m.count += j >= 0 ? o.entries_[j].count : min_b;
      m.error += j >= 0 ? o.entries_[j].error : min_b;
      all.push_back(std::move(m));
    }
    for (const TopEntry& oe : o.entries_) {
      size_t unused;
      if (Find(oe.value, oe.hash, &unused, oe.length) >= 0) continue;
      TopEntry m = oe;
      m.count += min_a;
      m.error += min_a;
      all.push_back(std::move(m));
    }
    entries_ = std::move(all);
    ToSummary();
  }

  bool exact() const { return !summary_; }
  size_t size() const { return entries_.size(); }

  std::vector<CategoryCount> Top(size_t k) const {
    std::vector<const TopEntry*> sorted;
    for (const TopEntry& e : entries_) sorted.push_back(&e);
    const size_t n = std::min(k, sorted.size());
    std::partial_sort(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(n), sorted.end(),
                      [](const TopEntry* a, const TopEntry* b) { return TopOrder(*a, *b); });
    std::vector<CategoryCount> out;
    for (size_t i = 0; i < n; ++i) out.push_back({sorted[i]->value, sorted[i]->count});
    return out;
  }

  // For serialization: in summary mode bucket by bucket from the smallest
  // count, each in its order (which decides the next takeover), so Restore
  // rebuilds the same summary.
  std::vector<const TopEntry*> SerialOrder() const {
    std::vector<const TopEntry*> out;
    if (summary_) {
      for (int32_t b = min_bucket_; b >= 0; b = buckets_[b].next) {
        for (int32_t i = buckets_[b].head; i >= 0; i = links_[i].next) out.push_back(&entries_[i]);
      }
    } else {
      for (const TopEntry& e : entries_) out.push_back(&e);
    }
    return out;
  }
  // Rebuilds from serialized entries; false if two entries are the same value
  // or a summary's counts are out of order.
  bool Restore(bool summary, std::vector<TopEntry> entries) {
    summary_ = summary;
    entries_ = std::move(entries);
    slots_.assign(kSlots, -1);
    deleted_ = 0;
    for (size_t i = 0; i < entries_.size(); ++i) {
      size_t free_slot;
      if (Find(entries_[i].value, entries_[i].hash, &free_slot, entries_[i].length) >= 0) return false;
      slots_[free_slot] = static_cast<int32_t>(i);
      if (summary_ && i > 0 && entries_[i].count < entries_[i - 1].count) return false;
    }
    if (summary_) BuildBuckets();
    return true;
  }

 private:
  struct Link {
    int32_t prev = -1, next = -1;  // within the bucket
    int32_t bucket = -1;
  };
  struct Bucket {
    int64_t count = 0;
    int32_t head = -1, tail = -1;  // entries
    int32_t prev = -1, next = -1;  // buckets, by increasing count
  };

  // The entry for a value (hash `h`, whole length `length`, `v` possibly
  // already cut), or -1 with *free_slot where to insert it.
  int32_t Find(std::string_view v, uint64_t h, size_t* free_slot, uint64_t length) const {
    size_t s = h & (kSlots - 1);
    size_t first_deleted = kSlots;
    if (slots_.empty()) {
      *free_slot = s;
      return -1;
    }
    for (size_t probes = 0; probes < kSlots; ++probes) {
      const int32_t x = slots_[s];
      if (x == -1) {
        *free_slot = first_deleted < kSlots ? first_deleted : s;
        return -1;
      }
      if (x == -2) {
        if (first_deleted == kSlots) first_deleted = s;
      } else {
        const TopEntry& e = entries_[x];
        if (e.hash == h && e.length == length && e.value == CutValue(v)) return x;
      }
      s = (s + 1) & (kSlots - 1);
    }
    *free_slot = first_deleted;  // the table never fills: entries + deleted < kSlots
    return -1;
  }
  int32_t Find(std::string_view v, uint64_t h, size_t* free_slot) const {
    return Find(v, h, free_slot, v.size());
  }

  size_t SlotOf(int32_t idx) const {
    size_t s = entries_[idx].hash & (kSlots - 1);
    while (slots_[s] != idx) s = (s + 1) & (kSlots - 1);
    return s;
  }

  void RebuildIndex() {
    slots_.assign(kSlots, -1);
    deleted_ = 0;
    for (size_t i = 0; i < entries_.size(); ++i) {
      size_t s = entries_[i].hash & (kSlots - 1);
      while (slots_[s] != -1) s = (s + 1) & (kSlots - 1);
      slots_[s] = static_cast<int32_t>(i);
    }
  }

  // Keeps the kCounters largest counts (ties by value) as a summary.
  void ToSummary() {
    std::sort(entries_.begin(), entries_.end(), TopOrder);
    entries_.resize(std::min(entries_.size(), kCounters));
    std::reverse(entries_.begin(), entries_.end());  // by increasing count
    summary_ = true;
    BuildBuckets();
    RebuildIndex();
  }

  int64_t MinCount() const { return summary_ && min_bucket_ >= 0 ? buckets_[min_bucket_].count : 0; }

  // Buckets from entries already ordered by increasing count.
  void BuildBuckets() {
    links_.assign(entries_.size(), Link{});
    buckets_.clear();
    free_buckets_.clear();
    min_bucket_ = -1;
    int32_t last = -1;
    for (size_t i = 0; i < entries_.size(); ++i) {
      const int32_t idx = static_cast<int32_t>(i);
      if (last < 0 || buckets_[last].count != entries_[i].count) {
        last = NewBucketAfter(last, entries_[i].count);
      }
      Append(last, idx);
    }
  }

  int32_t NewBucketAfter(int32_t after, int64_t count) {
    int32_t b;
    if (!free_buckets_.empty()) {
      b = free_buckets_.back();
      free_buckets_.pop_back();
    } else {
      b = static_cast<int32_t>(buckets_.size());
      buckets_.emplace_back();
    }
    Bucket& nb = buckets_[b];
    nb.count = count;
    nb.head = nb.tail = -1;
    nb.prev = after;
    nb.next = after >= 0 ? buckets_[after].next : min_bucket_;
    if (nb.next >= 0) buckets_[nb.next].prev = b;
    if (after >= 0) {
      buckets_[after].next = b;
    } else {
      min_bucket_ = b;
    }
    return b;
  }

  void Append(int32_t b, int32_t idx) {
    Link& l = links_[idx];
    l.bucket = b;
    l.prev = buckets_[b].tail;
    l.next = -1;
    if (l.prev >= 0) {
      links_[l.prev].next = idx;
    } else {
      buckets_[b].head = idx;
    }
    buckets_[b].tail = idx;
  }

  // Takes `idx` out of its bucket, dropping the bucket if it empties.
  void Unlink(int32_t idx) {
    Link& l = links_[idx];
    Bucket& b = buckets_[l.bucket];
    if (l.prev >= 0) {
      links_[l.prev].next = l.next;
    } else {
      b.head = l.next;
    }
    if (l.next >= 0) {
      links_[l.next].prev = l.prev;
    } else {
      b.tail = l.prev;
    }
    if (b.head < 0) {
      if (b.prev >= 0) {
        buckets_[b.prev].next = b.next;
      } else {
        min_bucket_ = b.next;
      }
      if (b.next >= 0) buckets_[b.next].prev = b.prev;
      free_buckets_.push_back(l.bucket);
    }
    l.bucket = -1;
  }

  // A new entry with count 0, in front of every bucket.
  void InsertAtMin(int32_t idx) {
    const int32_t b =
        min_bucket_ >= 0 && buckets_[min_bucket_].count == 0 ? min_bucket_ : NewBucketAfter(-1, 0);
    Append(b, idx);
  }

  void Increment(int32_t idx) {
    const int32_t b = links_[idx].bucket;
    const int64_t count = entries_[idx].count + 1;
    entries_[idx].count = count;
    const int32_t next = buckets_[b].next;
    if (next >= 0 && buckets_[next].count == count) {
      Unlink(idx);
      Append(next, idx);
    } else if (buckets_[b].head == idx && buckets_[b].tail == idx) {
      buckets_[b].count = count;  // alone: the bucket moves up with it
    } else {
      const int32_t nb = NewBucketAfter(b, count);
      Unlink(idx);
      Append(nb, idx);
    }
  }

  bool summary_ = false;
  std::vector<TopEntry> entries_;
  std::vector<int32_t> slots_;
  size_t deleted_ = 0;
  // Summary mode only:
  std::vector<Link> links_;  // per entry
  std::vector<Bucket> buckets_;
  std::vector<int32_t> free_buckets_;
  int32_t min_bucket_ = -1;
};

// ------------------------------------------------------------------ moments

// Count, mean and sum of squared deviations, combined chunk by chunk (Chan et
// al.): each chunk's own mean and deviations are computed in double over at
// most kChunk values, so nothing cancels catastrophically.
struct Moments {
  int64_t n = 0;
  double mean = 0;
  double m2 = 0;

  void Combine(int64_t nb, double mean_b, double m2_b) {
    if (nb == 0) return;
    if (n == 0) {
      n = nb;
      mean = mean_b;
      m2 = m2_b;
      return;
    }
    const double na = static_cast<double>(n), nbd = static_cast<double>(nb), total = na + nbd;
    const double delta = mean_b - mean;
    mean += delta * (nbd / total);
    m2 += m2_b + delta * delta * (na * nbd / total);
    n += nb;
  }
};

constexpr size_t kChunk = 1024;  // values per moments chunk
constexpr size_t kBlock = 2048;  // values per pass over a column

// Adds values (no NaN) to moments and the running min/max.
void AddMoments(Moments& mo, double& mn, double& mx, const double* v, size_t m) {
  for (size_t start = 0; start < m; start += kChunk) {
    const size_t len = std::min(kChunk, m - start);
    const double* x = v + start;
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    double lo0 = mn, lo1 = mn, hi0 = mx, hi1 = mx;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
      s0 += x[i];
      s1 += x[i + 1];
      s2 += x[i + 2];
      s3 += x[i + 3];
      lo0 = x[i] < lo0 ? x[i] : lo0;
      lo1 = x[i + 1] < lo1 ? x[i + 1] : lo1;
      lo0 = x[i + 2] < lo0 ? x[i + 2] : lo0;
      lo1 = x[i + 3] < lo1 ? x[i + 3] : lo1;
      hi0 = x[i] > hi0 ? x[i] : hi0;
      hi1 = x[i + 1] > hi1 ? x[i + 1] : hi1;
      hi0 = x[i + 2] > hi0 ? x[i + 2] : hi0;
      hi1 = x[i + 3] > hi1 ? x[i + 3] : hi1;
    }
    for (; i < len; ++i) {
      s0 += x[i];
      lo0 = x[i] < lo0 ? x[i] : lo0;
      hi0 = x[i] > hi0 ? x[i] : hi0;
    }
    mn = std::min(lo0, lo1);
    mx = std::max(hi0, hi1);
    const double mean = ((s0 + s1) + (s2 + s3)) / static_cast<double>(len);
    double d0 = 0, d1 = 0;
    i = 0;
    for (; i + 2 <= len; i += 2) {
      const double a = x[i] - mean, b = x[i + 1] - mean;
      d0 += a * a;
      d1 += b * b;
    }
    for (; i < len; ++i) d0 += (x[i] - mean) * (x[i] - mean);
    mo.Combine(static_cast<int64_t>(len), mean, d0 + d1);
  }
}

// ------------------------------------------------------------------ column state

bool HasMoments(Type t) { return t == Type::kInt64 || t == Type::kFloat64 || t == Type::kTimestamp; }

struct ColumnState {
  std::string name;
  Type type = Type::kString;
  int64_t seen = 0;   // rows of batches that had this column with this type
  int64_t nulls = 0;  // nulls among them (and rows of a mismatched type)
  int64_t nans = 0;
  Moments moments;
  double dmin = std::numeric_limits<double>::infinity();
  double dmax = -std::numeric_limits<double>::infinity();
  int64_t imin = std::numeric_limits<int64_t>::max();
  int64_t imax = std::numeric_limits<int64_t>::min();
  Reservoir reservoir;
  DistinctCounter distinct;
  SmallIntCounts int_top;  // int64
  TopValues top;           // string
  int64_t trues = 0, falses = 0;
  int64_t min_len = std::numeric_limits<int64_t>::max();
  int64_t max_len = -1;

  ColumnState(std::string n, Type t) : name(std::move(n)), type(t) {
    reservoir.Seed(HashBytes(name.data(), name.size()) ^ 0x6a09e667f3bcc909ULL);
  }
};

}  // namespace

// ------------------------------------------------------------------ builder

struct StatsBuilder::Impl {
  int64_t rows = 0;
  std::vector<ColumnState> columns;
  std::unordered_map<std::string, size_t> index;
  std::vector<double> dbuf;  // scratch
  std::vector<int64_t> ibuf;

  ColumnState& Column(const std::string& name, Type type, bool* created) {
    auto it = index.find(name);
    if (it != index.end()) {
      *created = false;
      return columns[it->second];
    }
    *created = true;
    index.emplace(name, columns.size());
    columns.emplace_back(name, type);
    return columns.back();
  }

  void AddColumn(ColumnState& c, const frame::Column& col, size_t rows);
  void AddNumbers(ColumnState& c, const double* v, size_t m);
  ColumnStats Finish(const ColumnState& c) const;
};

void StatsBuilder::Impl::AddNumbers(ColumnState& c, const double* v, size_t m) {
  AddMoments(c.moments, c.dmin, c.dmax, v, m);
  c.reservoir.Add(v, m);
}

void StatsBuilder::Impl::AddColumn(ColumnState& c, const frame::Column& col, size_t rows) {
  size_t r = std::min(col.size(), rows);
  const bool all_valid = col.valid.empty();
  if (!all_valid) r = std::min(r, col.valid.size());
  c.seen += static_cast<int64_t>(rows);
  c.nulls += static_cast<int64_t>(rows - r);
  const uint8_t* valid = col.valid.data();
  switch (c.type) {
    case Type::kFloat64: {
      // Block by block, so each block stays in L1 through every pass.
      dbuf.resize(kBlock);
      double* out = dbuf.data();
      size_t nulls = 0, kept = 0;
      for (size_t start = 0; start < r; start += kBlock) {
        const size_t len = std::min(kBlock, r - start);
        const double* in = col.doubles.data() + start;
        size_t m = 0;
        if (all_valid) {
          for (size_t i = 0; i < len; ++i) {
            const double x = in[i];
            out[m] = x;
            m += !std::isnan(x);
          }
        } else {
          const uint8_t* ok = valid + start;
          for (size_t i = 0; i < len; ++i) {
            const double x = in[i];
            out[m] = x;
            m += (ok[i] != 0) & !std::isnan(x);
            nulls += ok[i] == 0;
          }
        }
        kept += m;
        AddNumbers(c, out, m);
        c.distinct.AddValues(out, m, HashDouble);
      }
      c.nulls += static_cast<int64_t>(nulls);
      c.nans += static_cast<int64_t>(r - nulls - kept);
      break;
    }
    case Type::kInt64:
    case Type::kTimestamp: {
      ibuf.resize(kBlock);
      dbuf.resize(kBlock);
      int64_t* out = ibuf.data();
      double* dout = dbuf.data();
      size_t kept = 0;
      int64_t lo = c.imin, hi = c.imax;
      for (size_t start = 0; start < r; start += kBlock) {
        const size_t len = std::min(kBlock, r - start);
        const int64_t* in = col.ints.data() + start;
        size_t m = 0;
        if (all_valid) {
          std::copy(in, in + len, out);
          m = len;
        } else {
          const uint8_t* ok = valid + start;
          for (size_t i = 0; i < len; ++i) {
            out[m] = in[i];
            m += ok[i] != 0;
          }
        }
        kept += m;
        for (size_t i = 0; i < m; ++i) {
          const int64_t x = out[i];
          lo = x < lo ? x : lo;
          hi = x > hi ? x : hi;
          dout[i] = static_cast<double>(x);
        }
        AddNumbers(c, dout, m);
        size_t i = 0;
        if (c.type == Type::kInt64) {
          for (; i < m && !c.int_top.overflow(); ++i) c.int_top.Add(out[i], HashInt(out[i]));
        }
        c.distinct.AddValues(out, m, HashInt);
      }
      c.imin = lo;
      c.imax = hi;
      c.nulls += static_cast<int64_t>(r - kept);
      break;
    }
    case Type::kBool: {
      const int64_t* in = col.ints.data();
      int64_t t = 0, n = 0;
      for (size_t i = 0; i < r; ++i) {
        const bool ok = all_valid || valid[i] != 0;
        n += ok;
        t += ok & (in[i] != 0);
      }
      c.trues += t;
      c.falses += n - t;
      c.nulls += static_cast<int64_t>(r) - n;
      break;
    }
    case Type::kString: {
      const std::string* in = col.strings.data();
      int64_t nulls = 0, lo = c.min_len, hi = c.max_len;
      for (size_t i = 0; i < r; ++i) {
        if (!all_valid && valid[i] == 0) {
          ++nulls;
          continue;
        }
        const std::string& s = in[i];
        const int64_t len = static_cast<int64_t>(s.size());
        lo = len < lo ? len : lo;
        hi = len > hi ? len : hi;
        const uint64_t h = HashBytes(s.data(), s.size());
        c.distinct.Add(h);
        c.top.Add(s, h);
      }
      c.min_len = lo;
      c.max_len = hi;
      c.nulls += nulls;
      break;
    }
  }
}

namespace {

// Interpolated quantile of sorted values (as numpy's default).
double QuantileOf(const std::vector<double>& s, double q) {
  const double pos = q * static_cast<double>(s.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const double frac = pos - static_cast<double>(lo);
  if (lo + 1 >= s.size() || frac == 0 || s[lo] == s[lo + 1]) return s[lo];
  return s[lo] + frac * (s[lo + 1] - s[lo]);
}

std::vector<HistogramBin> Histogram(const std::vector<double>& sorted, int64_t n, double lo, double hi,
                                    bool integer) {
  std::vector<HistogramBin> bins;
  if (n == 0 || sorted.empty() || !std::isfinite(lo) || !std::isfinite(hi)) return bins;
  if (lo == hi) {
    bins.push_back({lo, hi, n});
    return bins;
  }
  std::vector<double> edges;
  if (integer && hi - lo < kHistogramBins) {
    const int k = static_cast<int>(hi - lo) + 1;
    for (int i = 0; i <= k; ++i) edges.push_back(lo + i);
  } else {
    for (int i = 0; i <= kHistogramBins; ++i) {
      const double t = static_cast<double>(i) / kHistogramBins;
      edges.push_back(i == kHistogramBins ? hi : lo * (1 - t) + hi * t);  // no overflow for huge ranges
    }
  }
  const size_t k = edges.size() - 1;
  // Sample counts per bin: `sorted` is sorted, so walk the edges.
  std::vector<int64_t> sample_counts(k, 0);
  size_t b = 0;
  for (double x : sorted) {
    while (b + 1 < k && x >= edges[b + 1]) ++b;
    ++sample_counts[b];
  }
  // Scale to n, rounding the cumulative counts so the bins sum to n exactly.
  const int64_t m = static_cast<int64_t>(sorted.size());
  int64_t cum_sample = 0, prev = 0;
  for (size_t i = 0; i < k; ++i) {
    cum_sample += sample_counts[i];
    const int64_t cum =
        m == n ? cum_sample
               : static_cast<int64_t>(std::llround(static_cast<long double>(cum_sample) * n / m));
    bins.push_back({edges[i], edges[i + 1], cum - prev});
    prev = cum;
  }
  return bins;
}

std::string BoolText(bool b) { return b ? "true" : "false"; }

}  // namespace

ColumnStats StatsBuilder::Impl::Finish(const ColumnState& c) const {
  ColumnStats s;
  s.name = c.name;
  s.type = c.type;
  s.count = rows;
  s.nulls = c.nulls + (rows - c.seen);
  s.nans = c.nans;
  const int64_t values = c.seen - c.nulls - c.nans;  // non-null, non-NaN
  if (c.type == Type::kBool) {
    s.distinct = (c.trues > 0) + (c.falses > 0);
    std::vector<CategoryCount> top;
    if (c.falses > 0) top.push_back({BoolText(false), c.falses});
    if (c.trues > 0) top.push_back({BoolText(true), c.trues});
    std::stable_sort(top.begin(), top.end(), [](const auto& a, const auto& b) { return a.count > b.count; });
    s.top = std::move(top);
    return s;
  }
  s.distinct = std::clamp<int64_t>(c.distinct.Estimate(), values > 0 ? 1 : 0, std::max<int64_t>(values, 0));
  if (c.type == Type::kString) {
    s.top = c.top.Top(kTopK);
    s.top_exact = c.top.exact();
    if (c.max_len >= 0) {
      s.min_length = c.min_len;
      s.max_length = c.max_len;
    }
    return s;
  }
  const Moments& mo = c.moments;
  if (mo.n == 0) return s;
  const bool integer = c.type != Type::kFloat64;
  const double lo = integer ? static_cast<double>(c.imin) : c.dmin;
  const double hi = integer ? static_cast<double>(c.imax) : c.dmax;
  s.min = lo;
  s.max = hi;
  s.mean = mo.mean;
  s.stddev = std::sqrt(std::max(mo.m2, 0.0) / static_cast<double>(mo.n));
  std::vector<double> sorted = c.reservoir.sample();
  std::sort(sorted.begin(), sorted.end());
  if (!sorted.empty()) {
    for (double q : kQuantiles) s.quantiles.push_back({q, std::clamp(QuantileOf(sorted, q), lo, hi)});
  }
  s.histogram = Histogram(sorted, mo.n, lo, hi, integer);
  if (c.type == Type::kInt64 && !c.int_top.overflow()) {
    auto entries = c.int_top.Entries();
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    for (size_t i = 0; i < entries.size() && i < kTopK; ++i) {
      s.top.push_back({std::to_string(entries[i].first), entries[i].second});
    }
  }
  return s;
}

StatsBuilder::StatsBuilder() : impl_(std::make_unique<Impl>()) {}

StatsBuilder::StatsBuilder(const Schema& schema) : StatsBuilder() {
  for (const Field& f : schema.fields) {
    bool created;
    impl_->Column(f.name, f.type, &created);
  }
}

StatsBuilder::StatsBuilder(const StatsBuilder& other)
    : impl_(other.impl_ ? std::make_unique<Impl>(*other.impl_) : std::make_unique<Impl>()) {}

StatsBuilder& StatsBuilder::operator=(const StatsBuilder& other) {
  if (this != &other) impl_ = other.impl_ ? std::make_unique<Impl>(*other.impl_) : std::make_unique<Impl>();
  return *this;
}

// A moved-from builder is empty, not broken.
StatsBuilder::StatsBuilder(StatsBuilder&& other) noexcept : impl_(std::move(other.impl_)) {
  other.impl_ = std::unique_ptr<Impl>(new (std::nothrow) Impl());
}

StatsBuilder& StatsBuilder::operator=(StatsBuilder&& other) noexcept {
  if (this != &other) {
    impl_ = std::move(other.impl_);
    other.impl_ = std::unique_ptr<Impl>(new (std::nothrow) Impl());
  }
  return *this;
}

StatsBuilder::~StatsBuilder() = default;

int64_t StatsBuilder::rows() const { return impl_ ? impl_->rows : 0; }

void StatsBuilder::Add(const Table& batch) {
  if (!impl_) impl_ = std::make_unique<Impl>();
  const size_t rows = batch.num_rows();
  // Columns already taken from this batch (a valid table has unique names).
  std::vector<uint8_t> done(impl_->columns.size() + batch.columns.size(), 0);
  for (const Column& col : batch.columns) {
    bool created;
    ColumnState& c = impl_->Column(col.field.name, col.field.type, &created);
    const size_t idx = static_cast<size_t>(&c - impl_->columns.data());
    if (done[idx]) continue;
    done[idx] = 1;
    if (c.type != col.field.type) {
      c.seen += static_cast<int64_t>(rows);
      c.nulls += static_cast<int64_t>(rows);
      continue;
    }
    impl_->AddColumn(c, col, rows);
  }
  impl_->rows += static_cast<int64_t>(rows);
}

void StatsBuilder::Merge(const StatsBuilder& other) {
  if (!impl_) impl_ = std::make_unique<Impl>();
  if (&other == this) {
    const StatsBuilder copy(other);
    Merge(copy);
    return;
  }
  if (!other.impl_) return;
  const Impl& o = *other.impl_;
  for (const ColumnState& oc : o.columns) {
    auto it = impl_->index.find(oc.name);
    if (it == impl_->index.end()) {
      impl_->index.emplace(oc.name, impl_->columns.size());
      impl_->columns.push_back(oc);  // its seen < rows: this builder's rows become its nulls
      continue;
    }
    ColumnState& c = impl_->columns[it->second];
    if (c.type != oc.type) {
      c.seen += o.rows;
      c.nulls += o.rows;
      continue;
    }
    c.seen += oc.seen;
    c.nulls += oc.nulls;
    c.nans += oc.nans;
    c.moments.Combine(oc.moments.n, oc.moments.mean, oc.moments.m2);
    c.dmin = std::min(c.dmin, oc.dmin);
    c.dmax = std::max(c.dmax, oc.dmax);
    c.imin = std::min(c.imin, oc.imin);
    c.imax = std::max(c.imax, oc.imax);
    c.reservoir.Merge(oc.reservoir);
    c.distinct.Merge(oc.distinct);
    c.int_top.Merge(oc.int_top);
    c.top.Merge(oc.top);
    c.trues += oc.trues;
    c.falses += oc.falses;
    c.min_len = std::min(c.min_len, oc.min_len);
    c.max_len = std::max(c.max_len, oc.max_len);
  }
  impl_->rows += o.rows;
}

std::vector<ColumnStats> StatsBuilder::Finish() const {
  std::vector<ColumnStats> out;
  if (!impl_) return out;
  out.reserve(impl_->columns.size());
  for (const ColumnState& c : impl_->columns) out.push_back(impl_->Finish(c));
  return out;
}

// ------------------------------------------------------------------ serialization
//
//   "TKST"  u8 version (1)  u64 raw length  zstd frame of raw
//   raw:    i64 rows  u32 columns  column...  u64 HashBytes of everything before
//
// All integers little-endian. A column: name, type, seen, nulls, nans,
// moments, min/max, reservoir (values as 8 byte planes, which compress),
// distinct (exact hashes or registers), int64 counts, string top entries,
// bool counts, string lengths.

namespace {

constexpr char kMagic[4] = {'T', 'K', 'S', 'T'};
constexpr uint8_t kVersion = 1;
constexpr uint64_t kMaxRawBytes = uint64_t{1} << 30;  // ~300 KB a column at most: thousands of columns

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void I64(int64_t v) { Raw(&v, 8); }
  void F64(double v) { Raw(&v, 8); }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  void Raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  size_t remaining() const { return in_.size() - pos_; }
  void Fail() { ok_ = false; }
  uint8_t U8() {
    uint8_t v = 0;
    Raw(&v, 1);
    return v;
  }
  uint32_t U32() {
    uint32_t v = 0;
    Raw(&v, 4);
    return v;
  }
  uint64_t U64() {
    uint64_t v = 0;
    Raw(&v, 8);
    return v;
  }
  int64_t I64() {
    int64_t v = 0;
    Raw(&v, 8);
    return v;
  }
  double F64() {
    double v = 0;
    Raw(&v, 8);
    return v;
  }
  std::string Str(size_t max_len) {
    const uint32_t n = U32();
    if (!ok_ || n > max_len || n > remaining()) {
      ok_ = false;
      return {};
    }
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  std::string_view Bytes(size_t n) {
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return {};
    }
    std::string_view s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  void Raw(void* p, size_t n) {
    if (!ok_ || n > remaining()) {
      ok_ = false;
      return;
    }
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
  }

 private:
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

void WriteColumn(Writer& w, const ColumnState& c) {
  w.Str(c.name);
  w.U8(static_cast<uint8_t>(c.type));
  w.I64(c.seen);
  w.I64(c.nulls);
  w.I64(c.nans);
  w.I64(c.moments.n);
  w.F64(c.moments.mean);
  w.F64(c.moments.m2);
  w.F64(c.dmin);
  w.F64(c.dmax);
  w.I64(c.imin);
  w.I64(c.imax);
  // Reservoir.
  const Reservoir& r = c.reservoir;
  w.I64(r.seen());
  w.F64(r.w());
  w.I64(r.next());
  w.U64(r.rng_state());
  const std::vector<double>& sample = r.sample();
  w.U32(static_cast<uint32_t>(sample.size()));
  for (int plane = 0; plane < 8; ++plane) {
    for (double v : sample) w.U8(static_cast<uint8_t>(std::bit_cast<uint64_t>(v) >> (8 * plane)));
  }
  // Distinct.
  const DistinctCounter& d = c.distinct;
  w.U8(d.exact() ? 0 : 1);
  if (d.exact()) {
    w.U32(static_cast<uint32_t>(d.exact_count()));
    d.ForEachExact([&](uint64_t h) { w.U64(h); });
  } else {
    w.Raw(d.registers().data(), d.registers().size());
  }
  // int64 counts.
  w.U8(c.int_top.overflow() ? 1 : 0);
  const auto ints = c.int_top.Entries();
  w.U32(static_cast<uint32_t>(ints.size()));
  for (const auto& [value, count] : ints) {
    w.I64(value);
    w.I64(count);
  }
  // String top.
  w.U8(c.top.exact() ? 0 : 1);
  const auto entries = c.top.SerialOrder();
  w.U32(static_cast<uint32_t>(entries.size()));
  for (const TopEntry* e : entries) {
    w.U64(e->hash);
    w.U64(e->length);
    w.Str(e->value);
    w.I64(e->count);
    w.I64(e->error);
  }
  w.I64(c.trues);
  w.I64(c.falses);
  w.I64(c.min_len);
  w.I64(c.max_len);
}

// Reads one column, checking every count and bound the rest of the code relies
// on; nullopt (with a reason) for anything inconsistent.
std::optional<ColumnState> ReadColumn(Reader& rd, int64_t rows, std::string* why) {
  auto bad = [&](const char* reason) -> std::optional<ColumnState> {
    *why = reason;
    return std::nullopt;
  };
  std::string name = rd.Str(1 << 20);
  const uint8_t type = rd.U8();
  if (!rd.ok()) return bad("truncated");
  if (name.empty()) return bad("empty column name");
  if (type > static_cast<uint8_t>(Type::kTimestamp)) return bad("unknown column type");
  ColumnState c(std::move(name), static_cast<Type>(type));
  c.seen = rd.I64();
  c.nulls = rd.I64();
  c.nans = rd.I64();
  c.moments.n = rd.I64();
  c.moments.mean = rd.F64();
  c.moments.m2 = rd.F64();
  c.dmin = rd.F64();
  c.dmax = rd.F64();
  c.imin = rd.I64();
  c.imax = rd.I64();
  if (!rd.ok()) return bad("truncated");
  if (c.seen < 0 || c.seen > rows || c.nulls < 0 || c.nulls > c.seen || c.nans < 0 || c.moments.n < 0)
    return bad("inconsistent counts");
  const int64_t values = c.seen - c.nulls;
  if (c.type != Type::kFloat64 && c.nans != 0) return bad("NaN count on a non-float column");
  if (HasMoments(c.type) ? c.moments.n + c.nans != values : c.moments.n != 0)
    return bad("inconsistent counts");

  const int64_t r_seen = rd.I64();
  const double r_w = rd.F64();
  const int64_t r_next = rd.I64();
  const uint64_t r_rng = rd.U64();
  const uint32_t r_size = rd.U32();
  if (!rd.ok()) return bad("truncated");
  if (r_seen != c.moments.n) return bad("inconsistent sample");
  if (r_size != std::min<int64_t>(r_seen, Reservoir::kCapacity)) return bad("inconsistent sample");
  if (!(r_w >= 0 && r_w <= 1) || r_next < 0) return bad("inconsistent sample");
  if (r_size == Reservoir::kCapacity && r_next < r_seen) return bad("inconsistent sample");
  const std::string_view planes = rd.Bytes(size_t{r_size} * 8);
  if (!rd.ok()) return bad("truncated");
  std::vector<double> sample(r_size);
  for (size_t i = 0; i < r_size; ++i) {
    uint64_t bits = 0;
    for (int plane = 0; plane < 8; ++plane) {
      bits |= uint64_t{static_cast<uint8_t>(planes[plane * size_t{r_size} + i])} << (8 * plane);
    }
    sample[i] = std::bit_cast<double>(bits);
    if (std::isnan(sample[i])) return bad("NaN in sample");
  }
  c.reservoir.Restore(std::move(sample), r_seen, r_w, r_next, r_rng);

  const uint8_t dmode = rd.U8();
  if (dmode == 0) {
    const uint32_t n = rd.U32();
    if (!rd.ok()) return bad("truncated");
    if (n > DistinctCounter::kExactLimit) return bad("distinct set too large");
    for (uint32_t i = 0; i < n && rd.ok(); ++i) c.distinct.Add(rd.U64());
    if (rd.ok() && c.distinct.exact_count() != n) return bad("duplicate distinct hashes");
  } else if (dmode == 1) {
    const std::string_view regs = rd.Bytes(DistinctCounter::kRegisters);
    if (!rd.ok()) return bad("truncated");
    std::vector<uint8_t> r(regs.begin(), regs.end());
    for (uint8_t x : r) {
      if (x > DistinctCounter::kMaxRank) return bad("bad sketch register");
    }
    c.distinct.SetRegisters(std::move(r));
  } else {
    return bad("bad distinct mode");
  }

  const uint8_t overflow = rd.U8();
  const uint32_t nints = rd.U32();
  if (!rd.ok()) return bad("truncated");
  if (overflow > 1 || nints > kIntTopLimit || (overflow && nints != 0)) return bad("bad int64 counts");
  if (overflow) c.int_top.Overflow();
  for (uint32_t i = 0; i < nints; ++i) {
    const int64_t value = rd.I64(), count = rd.I64();
    if (!rd.ok()) return bad("truncated");
    if (count < 1 || c.int_top.Contains(value)) return bad("bad int64 counts");
    c.int_top.AddCount(value, count);
  }

  const uint8_t summary = rd.U8();
  const uint32_t ntop = rd.U32();
  if (!rd.ok()) return bad("truncated");
  if (summary > 1 || ntop > (summary ? TopValues::kCounters : TopValues::kExactLimit))
    return bad("bad top values");
  std::vector<TopEntry> entries;
  for (uint32_t i = 0; i < ntop; ++i) {
    TopEntry e;
    e.hash = rd.U64();
    e.length = rd.U64();
    e.value = rd.Str(kMaxTopValueBytes);
    e.count = rd.I64();
    e.error = rd.I64();
    if (!rd.ok()) return bad("truncated");
    if (e.length < e.value.size() || e.count < 1 || e.error < 0 || e.error > e.count)
      return bad("bad top values");
    entries.push_back(std::move(e));
  }
  if (!c.top.Restore(summary == 1, std::move(entries))) return bad("duplicate top values");

  c.trues = rd.I64();
  c.falses = rd.I64();
  c.min_len = rd.I64();
  c.max_len = rd.I64();
  if (!rd.ok()) return bad("truncated");
  if (c.trues < 0 || c.falses < 0) return bad("inconsistent counts");
  if (c.type == Type::kBool && c.trues + c.falses != values) return bad("inconsistent counts");
  return c;
}

// Decompresses one zstd frame that must expand to exactly `raw_len` bytes. The
// output grows with what the frame really produces, so a forged length costs
// no more memory than the frame can fill.
bool Inflate(std::string_view frame, uint64_t raw_len, std::string* out) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) return false;
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, 24);
  const uint64_t limit = raw_len + 1;  // one spare byte: a frame producing more is caught
  out->resize(std::min<uint64_t>(limit, 1 << 20));
  ZSTD_inBuffer in{frame.data(), frame.size(), 0};
  size_t produced = 0;
  while (true) {
    if (produced == out->size()) {
      if (out->size() >= limit) return false;
      out->resize(std::min<uint64_t>(limit, 2 * out->size()));
    }
    ZSTD_outBuffer o{out->data(), out->size(), produced};
    const size_t ret = ZSTD_decompressStream(dctx.get(), &o, &in);
    if (ZSTD_isError(ret)) return false;
    produced = o.pos;
    if (ret == 0) break;
    if (in.pos == in.size && o.pos < o.size) return false;  // truncated
  }
  if (in.pos != in.size || produced != raw_len) return false;
  out->resize(produced);
  return true;
}

}  // namespace

std::string StatsBuilder::Serialize() const {
  Writer w;
  const Impl empty;
  const Impl& s = impl_ ? *impl_ : empty;
  w.I64(s.rows);
  w.U32(static_cast<uint32_t>(s.columns.size()));
  for (const ColumnState& c : s.columns) WriteColumn(w, c);
  const uint64_t sum = HashBytes(w.out().data(), w.out().size());
  w.U64(sum);
  const std::string& raw = w.out();

  std::string out(kMagic, 4);
  out.push_back(static_cast<char>(kVersion));
  const uint64_t raw_len = raw.size();
  out.append(reinterpret_cast<const char*>(&raw_len), 8);
  const size_t header = out.size();
  out.resize(header + ZSTD_compressBound(raw.size()));
  const size_t n = ZSTD_compress(out.data() + header, out.size() - header, raw.data(), raw.size(), 3);
  // Cannot fail with a ZSTD_compressBound buffer; if it did, Deserialize would reject the header alone.
  out.resize(ZSTD_isError(n) ? header : header + n);
  return out;
}

Result<StatsBuilder> StatsBuilder::Deserialize(std::string_view bytes) {
  auto invalid = [](std::string_view why) {
    return InvalidArgument("statistics state: " + std::string(why));
  };
  if (bytes.size() < 13 || std::memcmp(bytes.data(), kMagic, 4) != 0)
    return invalid("not a statistics state");
  if (static_cast<uint8_t>(bytes[4]) != kVersion) {
    return invalid("unsupported version " + std::to_string(static_cast<uint8_t>(bytes[4])));
  }
  uint64_t raw_len;
  std::memcpy(&raw_len, bytes.data() + 5, 8);
  if (raw_len < 20 || raw_len > kMaxRawBytes) return invalid("bad length");
  const std::string_view frame = bytes.substr(13);
  const unsigned long long content = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN || content != raw_len) {
    return invalid("truncated or corrupt");
  }
  std::string raw;
  if (!Inflate(frame, raw_len, &raw)) return invalid("truncated or corrupt");
  const uint64_t expected = HashBytes(raw.data(), raw.size() - 8);
  uint64_t sum;
  std::memcpy(&sum, raw.data() + raw.size() - 8, 8);
  if (sum != expected) return invalid("checksum mismatch");

  Reader rd(std::string_view(raw).substr(0, raw.size() - 8));
  StatsBuilder b;
  Impl& s = *b.impl_;
  s.rows = rd.I64();
  const uint32_t ncols = rd.U32();
  if (!rd.ok() || s.rows < 0) return invalid("bad header");
  if (ncols > rd.remaining() / 64) return invalid("bad column count");
  for (uint32_t i = 0; i < ncols; ++i) {
    std::string why;
    std::optional<ColumnState> c = ReadColumn(rd, s.rows, &why);
    if (!c) return invalid("column " + std::to_string(i) + ": " + why);
    if (s.index.count(c->name)) return invalid("duplicate column " + c->name);
    s.index.emplace(c->name, s.columns.size());
    s.columns.push_back(std::move(*c));
  }
  if (rd.remaining() != 0) return invalid("trailing bytes");
  return b;
}

// ------------------------------------------------------------------ JSON

namespace {

Json OptionalNumber(const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); }
Json OptionalInt(const std::optional<int64_t>& v) { return v ? Json(*v) : Json(nullptr); }

// Non-finite doubles are written as null (JSON has no infinity) and read back as NaN.
Result<double> ReadDouble(const Json& j, std::string_view key, const std::string& what) {
  auto it = j.find(key);
  if (it == j.end()) return InvalidArgument(what + ": missing field '" + std::string(key) + "'");
  if (it->is_null()) return std::nan("");
  if (!it->is_number()) return InvalidArgument(what + ": field '" + std::string(key) + "' must be a number");
  return it->get<double>();
}

Result<std::optional<double>> ReadOptionalDouble(const Json& j, std::string_view key,
                                                 const std::string& what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<double>();
  if (!it->is_number()) return InvalidArgument(what + ": field '" + std::string(key) + "' must be a number");
  return std::optional<double>(it->get<double>());
}

Result<int64_t> ReadInt(const Json& j, std::string_view key, const std::string& what) {
  auto it = j.find(key);
  if (it == j.end()) return InvalidArgument(what + ": missing field '" + std::string(key) + "'");
  if (it->is_number_unsigned()) {
    if (it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return InvalidArgument(what + ": field '" + std::string(key) + "' is out of range");
    return static_cast<int64_t>(it->get<uint64_t>());
  }
  if (!it->is_number_integer())
    return InvalidArgument(what + ": field '" + std::string(key) + "' must be an integer");
  return it->get<int64_t>();
}

Result<std::optional<int64_t>> ReadOptionalInt(const Json& j, std::string_view key, const std::string& what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<int64_t>();
  TAKT_ASSIGN_OR_RETURN(int64_t v, ReadInt(j, key, what));
  return std::optional<int64_t>(v);
}

Result<const Json*> ReadArray(const Json& j, std::string_view key, const std::string& what) {
  auto it = j.find(key);
  if (it == j.end()) return InvalidArgument(what + ": missing field '" + std::string(key) + "'");
  if (!it->is_array()) return InvalidArgument(what + ": field '" + std::string(key) + "' must be an array");
  return &*it;
}

Result<ColumnStats> ColumnFromJson(const Json& j, const std::string& at) {
  if (!j.is_object()) return InvalidArgument(at + ": expected a JSON object");
  ColumnStats s;
  TAKT_ASSIGN_OR_RETURN(s.name, GetString(j, "name", at));
  const std::string what = at + " (" + s.name + ")";
  TAKT_ASSIGN_OR_RETURN(std::string type, GetString(j, "type", what));
  auto t = ParseType(type);
  if (!t) return std::unexpected(t.error().WithContext(what));
  s.type = *t;
  TAKT_ASSIGN_OR_RETURN(s.count, ReadInt(j, "count", what));
  TAKT_ASSIGN_OR_RETURN(s.nulls, ReadInt(j, "nulls", what));
  TAKT_ASSIGN_OR_RETURN(s.nans, ReadInt(j, "nans", what));
  TAKT_ASSIGN_OR_RETURN(s.distinct, ReadInt(j, "distinct", what));
  TAKT_ASSIGN_OR_RETURN(s.min, ReadOptionalDouble(j, "min", what));
  TAKT_ASSIGN_OR_RETURN(s.max, ReadOptionalDouble(j, "max", what));
  TAKT_ASSIGN_OR_RETURN(s.mean, ReadOptionalDouble(j, "mean", what));
  TAKT_ASSIGN_OR_RETURN(s.stddev, ReadOptionalDouble(j, "stddev", what));
  TAKT_ASSIGN_OR_RETURN(const Json* quantiles, ReadArray(j, "quantiles", what));
  for (const Json& q : *quantiles) {
    if (!q.is_object()) return InvalidArgument(what + ": quantiles: expected objects");
    QuantileValue v;
    TAKT_ASSIGN_OR_RETURN(v.q, ReadDouble(q, "q", what + ": quantiles"));
    TAKT_ASSIGN_OR_RETURN(v.value, ReadDouble(q, "value", what + ": quantiles"));
    s.quantiles.push_back(v);
  }
  TAKT_ASSIGN_OR_RETURN(const Json* histogram, ReadArray(j, "histogram", what));
  for (const Json& h : *histogram) {
    if (!h.is_object()) return InvalidArgument(what + ": histogram: expected objects");
    HistogramBin b;
    TAKT_ASSIGN_OR_RETURN(b.lower, ReadDouble(h, "lower", what + ": histogram"));
    TAKT_ASSIGN_OR_RETURN(b.upper, ReadDouble(h, "upper", what + ": histogram"));
    TAKT_ASSIGN_OR_RETURN(b.count, ReadInt(h, "count", what + ": histogram"));
    s.histogram.push_back(b);
  }
  TAKT_ASSIGN_OR_RETURN(const Json* top, ReadArray(j, "top", what));
  for (const Json& e : *top) {
    if (!e.is_object()) return InvalidArgument(what + ": top: expected objects");
    CategoryCount c;
    TAKT_ASSIGN_OR_RETURN(c.value, GetString(e, "value", what + ": top"));
    TAKT_ASSIGN_OR_RETURN(c.count, ReadInt(e, "count", what + ": top"));
    s.top.push_back(std::move(c));
  }
  auto exact = j.find("top_exact");
  if (exact == j.end() || !exact->is_boolean())
    return InvalidArgument(what + ": field 'top_exact' must be a boolean");
  s.top_exact = exact->get<bool>();
  TAKT_ASSIGN_OR_RETURN(s.min_length, ReadOptionalInt(j, "min_length", what));
  TAKT_ASSIGN_OR_RETURN(s.max_length, ReadOptionalInt(j, "max_length", what));
  return s;
}

}  // namespace

std::string StatsToJson(const std::vector<ColumnStats>& stats) {
  Json out = Json::array();
  for (const ColumnStats& s : stats) {
    Json quantiles = Json::array();
    for (const QuantileValue& q : s.quantiles) quantiles.push_back({{"q", q.q}, {"value", q.value}});
    Json histogram = Json::array();
    for (const HistogramBin& b : s.histogram) {
      histogram.push_back({{"lower", b.lower}, {"upper", b.upper}, {"count", b.count}});
    }
    Json top = Json::array();
    for (const CategoryCount& c : s.top) top.push_back({{"value", c.value}, {"count", c.count}});
    out.push_back({
        {"name", s.name},
        {"type", std::string(TypeName(s.type))},
        {"count", s.count},
        {"nulls", s.nulls},
        {"nans", s.nans},
        {"distinct", s.distinct},
        {"min", OptionalNumber(s.min)},
        {"max", OptionalNumber(s.max)},
        {"mean", OptionalNumber(s.mean)},
        {"stddev", OptionalNumber(s.stddev)},
        {"quantiles", std::move(quantiles)},
        {"histogram", std::move(histogram)},
        {"top", std::move(top)},
        {"top_exact", s.top_exact},
        {"min_length", OptionalInt(s.min_length)},
        {"max_length", OptionalInt(s.max_length)},
    });
  }
  // Column names and values are data: never throw on invalid UTF-8.
  return out.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<std::vector<ColumnStats>> StatsFromJson(std::string_view json) {
  TAKT_ASSIGN_OR_RETURN(Json j, ParseJson(json, "statistics"));
  if (!j.is_array()) return InvalidArgument("statistics: expected a JSON array");
  std::vector<ColumnStats> out;
  try {
    for (size_t i = 0; i < j.size(); ++i) {
      TAKT_ASSIGN_OR_RETURN(ColumnStats s, ColumnFromJson(j[i], "statistics: column " + std::to_string(i)));
      out.push_back(std::move(s));
    }
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("statistics: ") + e.what());
  }
  return out;
}

}  // namespace takt::frame
