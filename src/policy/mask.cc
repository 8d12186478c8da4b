#include "policy/mask.h"

#include <openssl/evp.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <unordered_map>

namespace takt::policy {
namespace {

constexpr std::string_view kAllowedForms =
    "hash, redact, redact:TEXT, null, partial, partial:N, generalize:N (a positive number) or "
    "generalize:hour|day|month|year";

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsTimeUnit(std::string_view unit) {
  return unit == "hour" || unit == "day" || unit == "month" || unit == "year";
}

std::string FormatNumber(double d) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
  if (ec != std::errc()) return "0";
  return std::string(buf, end);
}

std::string FieldText(const frame::Field& field) {
  return "column " + field.name + " (" + std::string(frame::TypeName(field.type)) + ")";
}

// --- Civil dates (proleptic Gregorian, UTC), for truncating timestamps ------
// Years are counted from March so that the leap day ends the year; 400-year
// eras of 146097 days repeat exactly.

int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

int64_t DaysFromCivil(int64_t year, int64_t month, int64_t day) {
  const int64_t y = month <= 2 ? year - 1 : year;
  const int64_t era = FloorDiv(y, 400);
  const int64_t yoe = y - era * 400;
  const int64_t mp = (month + 9) % 12;  // March = 0
  const int64_t doy = (153 * mp + 2) / 5 + day - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;  // 719468: days from 0000-03-01 to 1970-01-01
}

struct YearMonth {
  int64_t year;
  int64_t month;
};

YearMonth CivilFromDays(int64_t days) {
  const int64_t z = days + 719468;
  const int64_t era = FloorDiv(z, 146097);
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  return {yoe + era * 400 + (month <= 2 ? 1 : 0), month};
}

int64_t ClampToInt64(__int128 v) {
  if (v < std::numeric_limits<int64_t>::min()) return std::numeric_limits<int64_t>::min();
  if (v > std::numeric_limits<int64_t>::max()) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(v);
}

// The start of the hour/day/month/year holding `seconds`. A start before the
// int64 range (only near its very end) is clamped to its minimum.
int64_t TruncateTimestamp(int64_t seconds, std::string_view unit) {
  if (unit == "hour") return ClampToInt64(static_cast<__int128>(FloorDiv(seconds, 3600)) * 3600);
  const int64_t days = FloorDiv(seconds, 86400);
  if (unit == "day") return ClampToInt64(static_cast<__int128>(days) * 86400);
  const YearMonth ym = CivilFromDays(days);
  const int64_t first = DaysFromCivil(ym.year, unit == "year" ? 1 : ym.month, 1);
  return ClampToInt64(static_cast<__int128>(first) * 86400);
}

// floor(x / bucket) * bucket for int64, exactly (an int64 bucket: whole and positive).
int64_t GeneralizeInt(int64_t x, double bucket) {
  if (bucket >= 9223372036854775808.0) return x >= 0 ? 0 : std::numeric_limits<int64_t>::min();
  const auto b = static_cast<int64_t>(bucket);
  return ClampToInt64(static_cast<__int128>(FloorDiv(x, b)) * b);
}

// Rounds q to the nearest whole number if it is within a few ulps of it, so
// that 0.3 / 0.1 (2.9999999999999996) lands in bucket 3 as a reader expects.
double SnapNearWhole(double q) {
  const double r = std::nearbyint(q);
  return std::fabs(q - r) <= 4 * DBL_EPSILON * std::fabs(r) ? r : q;
}

double GeneralizeDouble(double x, double bucket) {
  if (!std::isfinite(x)) return x;
  // For buckets such as 0.1 or 0.25 whose inverse is a whole number, multiply
  // and divide by the inverse: 0.3 -> 0.3, not 0.30000000000000004.
  const double inverse = 1.0 / bucket;
  if (bucket < 1 && inverse == std::floor(inverse) && inverse < 1e15 && std::isfinite(x * inverse)) {
    return std::floor(SnapNearWhole(x * inverse)) / inverse;
  }
  return std::floor(SnapNearWhole(x / bucket)) * bucket;
}

// --- Partial ------------------------------------------------------------------

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

std::string MaskPartial(std::string_view value, int keep_last) {
  size_t code_points = 0;
  for (char c : value) code_points += IsContinuationByte(c) ? 0 : 1;
  if (code_points <= static_cast<size_t>(keep_last)) return std::string(code_points, '*');
  // Byte offset where the last `keep_last` code points begin.
  size_t start = value.size();
  for (int kept = 0; kept < keep_last;) {
    --start;
    if (!IsContinuationByte(value[start])) ++kept;
  }
  std::string out(code_points - keep_last, '*');
  out.append(value.substr(start));
  return out;
}

// --- Pseudonyms -------------------------------------------------------------
//
// HMAC-SHA256(key, m) = SHA256((key ^ opad) || SHA256((key ^ ipad) || m)). The
// two padded-key blocks are hashed once; every value then starts from copies
// of those states, so a value costs two short SHA-256 finishes.

struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

class Pseudonymizer {
 public:
  static constexpr size_t kBytes = 12;  // of the MAC kept: 24 hex characters

  static Result<Pseudonymizer> Create(std::string_view key) {
    if (key.size() != 32) {
      return InvalidArgument("mask hash: the pseudonym key must be 32 bytes, not " +
                             std::to_string(key.size()));
    }
    Pseudonymizer p;
    p.inner_.reset(EVP_MD_CTX_new());
    p.outer_.reset(EVP_MD_CTX_new());
    p.work_.reset(EVP_MD_CTX_new());
    if (!p.inner_ || !p.outer_ || !p.work_) return Internal("mask hash: out of memory");
    unsigned char ipad[64], opad[64];
    for (size_t i = 0; i < 64; ++i) {
      const unsigned char k = i < key.size() ? static_cast<unsigned char>(key[i]) : 0;
      ipad[i] = k ^ 0x36;
      opad[i] = k ^ 0x5c;
    }
    const bool ok = EVP_DigestInit_ex(p.inner_.get(), EVP_sha256(), nullptr) == 1 &&
                    EVP_DigestUpdate(p.inner_.get(), ipad, sizeof(ipad)) == 1 &&
                    EVP_DigestInit_ex(p.outer_.get(), EVP_sha256(), nullptr) == 1 &&
                    EVP_DigestUpdate(p.outer_.get(), opad, sizeof(opad)) == 1;
    std::memset(ipad, 0, sizeof(ipad));
    std::memset(opad, 0, sizeof(opad));
    if (!ok) return Internal("mask hash: SHA-256 initialisation failed");
    return p;
  }

  Result<std::string> Pseudonym(std::string_view value) {
    unsigned char inner[EVP_MAX_MD_SIZE];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_MD_CTX_copy_ex(work_.get(), inner_.get()) != 1 ||
        EVP_DigestUpdate(work_.get(), value.data(), value.size()) != 1 ||
        EVP_DigestFinal_ex(work_.get(), inner, &len) != 1 ||
        EVP_MD_CTX_copy_ex(work_.get(), outer_.get()) != 1 ||
        EVP_DigestUpdate(work_.get(), inner, len) != 1 || EVP_DigestFinal_ex(work_.get(), mac, &len) != 1) {
      return Internal("mask hash: HMAC-SHA256 failed");
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out(2 * kBytes, '\0');
    for (size_t i = 0; i < kBytes; ++i) {
      out[2 * i] = kHex[mac[i] >> 4];
      out[2 * i + 1] = kHex[mac[i] & 0xf];
    }
    return out;
  }

 private:
  Pseudonymizer() = default;
  MdCtx inner_, outer_, work_;
};

// Pseudonyms remembered per distinct value, up to kMaxEntries; past that,
// computed directly (a column of mostly distinct values gains nothing).
template <typename Key>
class PseudonymCache {
 public:
  static constexpr size_t kMaxEntries = size_t{1} << 16;

  explicit PseudonymCache(Pseudonymizer& p) : p_(p) {}

  // The pseudonym of the value `key` stands for; `text()` renders the value
  // on a miss. The pointer is valid until the next call.
  template <typename TextFn>
  Result<const std::string*> Get(const Key& key, TextFn text) {
    if (auto it = cache_.find(key); it != cache_.end()) return &it->second;
    TAKT_ASSIGN_OR_RETURN(std::string pseudonym, p_.Pseudonym(text()));
    if (cache_.size() < kMaxEntries) return &cache_.emplace(key, std::move(pseudonym)).first->second;
    overflow_ = std::move(pseudonym);
    return &overflow_;
  }

 private:
  Pseudonymizer& p_;
  std::unordered_map<Key, std::string> cache_;
  std::string overflow_;
};

// Fills out.strings[i] with the pseudonym of key_of(i) for every valid row.
template <typename Key, typename KeyFn, typename TextFn>
Status HashRows(const frame::Column& column, Pseudonymizer& p, KeyFn key_of, TextFn text_of,
                std::vector<std::string>& out) {
  PseudonymCache<Key> cache(p);
  for (size_t i = 0; i < column.size(); ++i) {
    if (column.IsNull(i)) continue;
    TAKT_ASSIGN_OR_RETURN(const std::string* pseudonym, cache.Get(key_of(i), [&] { return text_of(i); }));
    out[i] = *pseudonym;
  }
  return Ok();
}

Result<frame::Column> HashColumn(const frame::Column& column, frame::Column out, std::string_view key) {
  TAKT_ASSIGN_OR_RETURN(Pseudonymizer p, Pseudonymizer::Create(key));
  out.strings.resize(column.size());
  switch (column.field.type) {
    case frame::Type::kString:
      TAKT_RETURN_IF_ERROR(HashRows<std::string_view>(
          column, p, [&](size_t i) { return std::string_view(column.strings[i]); },
          [&](size_t i) { return std::string_view(column.strings[i]); }, out.strings));
      break;
    case frame::Type::kFloat64:
      // Keyed by the bit pattern: 0.0 and -0.0 render differently.
      TAKT_RETURN_IF_ERROR(HashRows<uint64_t>(
          column, p, [&](size_t i) { return std::bit_cast<uint64_t>(column.doubles[i]); },
          [&](size_t i) { return column.AsText(i); }, out.strings));
      break;
    case frame::Type::kBool:
      // Every non-zero value renders as "true": key by what is rendered.
      TAKT_RETURN_IF_ERROR(HashRows<int64_t>(
          column, p, [&](size_t i) { return int64_t{column.ints[i] != 0}; },
          [&](size_t i) { return column.AsText(i); }, out.strings));
      break;
    case frame::Type::kInt64:
    case frame::Type::kTimestamp:
      TAKT_RETURN_IF_ERROR(HashRows<int64_t>(
          column, p, [&](size_t i) { return column.ints[i]; }, [&](size_t i) { return column.AsText(i); },
          out.strings));
      break;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------

Result<Mask> Mask::Parse(std::string_view spec) {
  const size_t colon = spec.find(':');
  const std::string kind = Lower(spec.substr(0, colon));
  const bool has_arg = colon != std::string_view::npos;
  const std::string_view arg = has_arg ? spec.substr(colon + 1) : std::string_view();
  auto fail = [&](const std::string& why) {
    return InvalidArgument("mask '" + std::string(spec) + "': " + why + "; the forms are " +
                           std::string(kAllowedForms));
  };
  Mask m;
  if (kind == "hash" || kind == "null") {
    if (has_arg) return fail(kind + " takes no argument");
    m.kind = kind == "hash" ? MaskKind::kHash : MaskKind::kNull;
    return m;
  }
  if (kind == "redact") {
    m.kind = MaskKind::kRedact;
    if (has_arg) m.redact_text = std::string(arg);
    return m;
  }
  if (kind == "partial") {
    m.kind = MaskKind::kPartial;
    if (!has_arg) return m;
    int n = 0;
    auto [ptr, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), n);
    if (arg.empty() || ec != std::errc() || ptr != arg.data() + arg.size() || n < 0 || n > 1000000) {
      return fail("partial needs the number of characters to keep (0 to 1000000)");
    }
    m.keep_last = n;
    return m;
  }
  if (kind == "generalize") {
    m.kind = MaskKind::kGeneralize;
    if (!has_arg || arg.empty()) return fail("generalize needs a bucket size or a time unit");
    const std::string unit = Lower(arg);
    if (IsTimeUnit(unit)) {
      m.unit = unit;
      return m;
    }
    double bucket = 0;
    auto [ptr, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), bucket);
    if (ec != std::errc() || ptr != arg.data() + arg.size() || !std::isfinite(bucket) || !(bucket > 0)) {
      return fail("generalize needs a positive bucket size or hour, day, month or year");
    }
    m.bucket = bucket;
    return m;
  }
  return fail("unknown mask kind '" + kind + "'");
}

std::string Mask::ToString() const {
  switch (kind) {
    case MaskKind::kGeneralize:
      return "generalize:" + (unit.empty() ? FormatNumber(bucket) : unit);
    case MaskKind::kPartial:
      return "partial:" + std::to_string(keep_last);
    case MaskKind::kHash:
      return "hash";
    case MaskKind::kRedact:
      return redact_text == "***" ? "redact" : "redact:" + redact_text;
    case MaskKind::kNull:
      return "null";
  }
  return "?";
}

Status Mask::CheckApplies(const frame::Field& field) const {
  const std::string cannot = "mask " + ToString() + " cannot apply to " + FieldText(field);
  switch (kind) {
    case MaskKind::kGeneralize:
      if (!unit.empty()) {
        if (!IsTimeUnit(unit)) return InvalidArgument("mask " + ToString() + ": unknown time unit");
        if (field.type != frame::Type::kTimestamp) return InvalidArgument(cannot);
        return Ok();
      }
      if (!std::isfinite(bucket) || !(bucket > 0)) {
        return InvalidArgument("mask " + ToString() + ": the bucket must be a positive number");
      }
      if (field.type == frame::Type::kFloat64) return Ok();
      if (field.type != frame::Type::kInt64) return InvalidArgument(cannot);
      if (std::floor(bucket) != bucket) {
        return InvalidArgument(cannot + ": an int64 column needs a whole-number bucket");
      }
      return Ok();
    case MaskKind::kPartial:
      if (keep_last < 0) return InvalidArgument("mask " + ToString() + ": keep_last must not be negative");
      return Ok();
    case MaskKind::kHash:
    case MaskKind::kRedact:
    case MaskKind::kNull:
      return Ok();
  }
  return Ok();
}

frame::Field Mask::OutputField(const frame::Field& field) const {
  frame::Field out = field;
  switch (kind) {
    case MaskKind::kHash:
    case MaskKind::kRedact:
    case MaskKind::kPartial:
      out.type = frame::Type::kString;
      break;
    case MaskKind::kNull:
      out.nullable = true;
      break;
    case MaskKind::kGeneralize:
      break;
  }
  return out;
}

const Mask& Strongest(const Mask& a, const Mask& b) { return b.strength() > a.strength() ? b : a; }

Result<frame::Column> ApplyMask(const Mask& mask, const frame::Column& column, std::string_view hash_key) {
  TAKT_RETURN_IF_ERROR(mask.CheckApplies(column.field));
  const size_t n = column.size();
  if (!column.valid.empty() && column.valid.size() != n) {
    return InvalidArgument("mask " + mask.ToString() + ": " + FieldText(column.field) + " has " +
                           std::to_string(n) + " values but " + std::to_string(column.valid.size()) +
                           " validity flags");
  }
  frame::Column out;
  out.field = mask.OutputField(column.field);
  out.valid = column.valid;
  switch (mask.kind) {
    case MaskKind::kNull:
      out.valid.assign(n, 0);
      switch (column.field.type) {
        case frame::Type::kFloat64:
          out.doubles.assign(n, 0.0);
          break;
        case frame::Type::kString:
          out.strings.assign(n, std::string());
          break;
        case frame::Type::kInt64:
        case frame::Type::kBool:
        case frame::Type::kTimestamp:
          out.ints.assign(n, 0);
          break;
      }
      return out;
    case MaskKind::kRedact:
      out.strings.resize(n);
      for (size_t i = 0; i < n; ++i) {
        if (!column.IsNull(i)) out.strings[i] = mask.redact_text;
      }
      return out;
    case MaskKind::kPartial:
      out.strings.resize(n);
      for (size_t i = 0; i < n; ++i) {
        if (column.IsNull(i)) continue;
        out.strings[i] = column.field.type == frame::Type::kString
                             ? MaskPartial(column.strings[i], mask.keep_last)
                             : MaskPartial(column.AsText(i), mask.keep_last);
      }
      return out;
    case MaskKind::kHash:
      return HashColumn(column, std::move(out), hash_key);
    case MaskKind::kGeneralize:
      if (column.field.type == frame::Type::kTimestamp) {
        out.ints.resize(n);
        for (size_t i = 0; i < n; ++i) out.ints[i] = TruncateTimestamp(column.ints[i], mask.unit);
      } else if (column.field.type == frame::Type::kInt64) {
        out.ints.resize(n);
        for (size_t i = 0; i < n; ++i) out.ints[i] = GeneralizeInt(column.ints[i], mask.bucket);
      } else {
        out.doubles.resize(n);
        for (size_t i = 0; i < n; ++i) out.doubles[i] = GeneralizeDouble(column.doubles[i], mask.bucket);
      }
      return out;
  }
  return Internal("mask: unknown kind");
}

}  // namespace takt::policy
