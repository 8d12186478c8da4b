// File: policy/mask.h
//
// Column masks for governed dataset access: a grant may let a principal read a
// column only generalised, partly hidden, pseudonymised, redacted or nulled.
//
//   generalize:10 / generalize:0.5   numbers floored to a bucket (int64 stays int64)
//   generalize:hour|day|month|year   timestamps truncated (UTC)
//   partial:4                        all but the last 4 characters become '*'
//   hash                             a keyed, stable pseudonym (joins still work)
//   redact / redact:TEXT             every value becomes "***" (or TEXT)
//   null                             every value becomes null
//
// Nulls stay null under every mask.
//
// Thread safety: Mask is a plain value. ApplyMask is safe to call from many
// threads at once (its pseudonym cache is per call).
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"
#include "frame/table.h"

namespace takt::policy {

enum class MaskKind { kGeneralize, kPartial, kHash, kRedact, kNull };  // weakest to strongest

struct Mask {
  MaskKind kind = MaskKind::kRedact;
  std::string redact_text = "***";  // kRedact
  int keep_last = 4;                // kPartial: characters (code points) kept at the end
  double bucket = 0;                // kGeneralize on numbers: floor(x / bucket) * bucket
  std::string unit;                 // kGeneralize on timestamps: hour, day, month or year

  // "hash", "redact", "redact:XXX", "null", "partial", "partial:4", "generalize:10",
  // "generalize:0.5", "generalize:day". The kind and unit are case-insensitive.
  // InvalidArgument naming the spec and the allowed forms. The fields a kind
  // does not use keep their defaults, so Parse(m.ToString()) == m for every
  // parsed mask.
  static Result<Mask> Parse(std::string_view spec);
  // The spec form ("redact" for the default text, "partial:4", "generalize:day").
  std::string ToString() const;
  // By kind: null > redact > hash > partial > generalize.
  int strength() const { return static_cast<int>(kind); }
  // Whether the mask can apply to a column: generalize:N needs int64 or
  // float64 (and a whole-number N for int64), generalize:unit needs a
  // timestamp; the others apply to every type. InvalidArgument
  // "mask generalize:day cannot apply to column force (float64)".
  Status CheckApplies(const frame::Field& field) const;
  // The column's field after masking: hash, redact and partial give a string
  // (nullability kept); null keeps the type and makes it nullable; generalize
  // keeps the field.
  frame::Field OutputField(const frame::Field& field) const;

  friend bool operator==(const Mask&, const Mask&) = default;
};

// When several rules mask one column the strongest mask wins (ties: `a`).
const Mask& Strongest(const Mask& a, const Mask& b);

// Applies `mask` to `column` and returns the masked column (of OutputField's
// type, same length, nulls still null).
//
// kHash: HMAC-SHA256 under `hash_key` (exactly 32 bytes, else InvalidArgument)
// of the value's canonical text (Column::AsText), rendered as the first 12
// bytes in lowercase hex (24 characters). The same key and value always give
// the same pseudonym. Other kinds ignore the key.
// kPartial counts UTF-8 code points: "WG-00042" keeping 4 gives "****0042"; a
// value no longer than keep_last becomes all '*' (one per code point).
// Non-string columns are masked through their canonical text.
// InvalidArgument if the mask cannot apply (CheckApplies) or the column's
// vectors do not match its length.
Result<frame::Column> ApplyMask(const Mask& mask, const frame::Column& column, std::string_view hash_key);

}  // namespace takt::policy
