// File: policy/predicate.h
//
// Row filters for governed dataset access. A grant may restrict the rows a
// principal reads with a filter such as
//
//   plant = 'P1' AND (force_kn > 3.5 OR NOT robot_serial IN ('WG-1', 'WG-2'))
//     AND ts >= '2026-03-01' AND note IS NOT NULL
//
// The text is parsed into a tree (Parse), type-checked against the dataset's
// schema (Bind) and evaluated over the columns of a frame::Table in C++, one
// block of rows at a time (Evaluate). It is never turned into SQL.
//
// Grammar (keywords case-insensitive, reserved: a column named like a keyword
// is written double-quoted):
//
//   expr    := and ('OR' and)*
//   and     := not ('AND' not)*
//   not     := 'NOT' not | primary
//   primary := '(' expr ')' | TRUE | FALSE
//            | column op literal
//            | column ['NOT'] 'IN' '(' literal (',' literal)* ')'
//            | column 'IS' ['NOT'] 'NULL'
//   op      := '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
//   literal := number (-12, 3.5, 1e3) | 'string' ('' for a quote) | TRUE | FALSE
//   column  := [A-Za-z_][A-Za-z0-9_]* | "any text" ("" for a quote)
//
// The bare TRUE / FALSE primaries exist so that And({}) and Or({}) have a
// text form that parses back.
//
// Semantics are SQL's three-valued logic: a comparison involving NULL is
// unknown, NOT unknown is unknown, and only rows whose filter is TRUE pass.
//
// Thread safety and ownership: a Predicate is an immutable value once built
// (Bind replaces its bound form); copies share the parsed tree. A const
// Predicate may be evaluated from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "frame/table.h"

namespace takt::policy {

class Predicate {
 public:
  // Limits against hostile input: longer text or deeper nesting (parentheses
  // and NOTs) is InvalidArgument.
  static constexpr size_t kMaxTextBytes = 16 * 1024;
  static constexpr int kMaxDepth = 64;

  // Syntax only. InvalidArgument with a 1-based character position:
  // "row filter: at 14: expected a literal after '>'".
  static Result<Predicate> Parse(std::string_view text);

  // Type-checks against `schema` and converts the literals to the column
  // types. InvalidArgument naming the problem, e.g.
  //   "row filter: column 'forse' is not in the dataset"
  //   "row filter: force > 'abc': force is a float64 column and 'abc' is not a number"
  // Rules: int64 and float64 columns take numbers (an int64 column compares
  // with 3.5 numerically); string columns take strings; bool columns take TRUE
  // or FALSE with = and != only; timestamp columns take ISO 8601 strings
  // (frame::ParseTimestamp). May be called again with another schema: it
  // re-checks from the parsed tree. On error the predicate keeps its previous
  // bound form (if any).
  Status Bind(const frame::Schema& schema);

  // For a bound predicate: one byte per row of `batch`, 1 if the row passes.
  // The batch must hold every referenced column (by name, in any order, extra
  // columns fine) with the type it was bound with, else InvalidArgument.
  // FailedPrecondition if the predicate is not bound.
  Result<std::vector<uint8_t>> Evaluate(const frame::Table& batch) const;

  // The referenced column names, sorted, unique.
  std::vector<std::string> Columns() const;

  // Canonical text that parses back to an equivalent predicate: keywords
  // uppercase, minimal parentheses, `<>` written `!=`, numbers in shortest form.
  std::string ToString() const;
  // The same, but every literal compared with a column in `withheld` is
  // rendered as `?` (an IN list as `IN (?)`, hiding its length too). For audit
  // records, which must not contain values of masked columns. Does not parse
  // back.
  std::string ToString(const std::set<std::string>& withheld) const;

  // The disjunction / conjunction of `parts` (bound or not; the result is
  // unbound). Or({}) matches no row (it is FALSE); And({}) matches every row
  // (TRUE). A single part is returned as it is (unbound).
  static Predicate Or(const std::vector<Predicate>& parts);
  static Predicate And(const std::vector<Predicate>& parts);

  bool bound() const { return bound_ != nullptr; }

  // Implementation details, defined in predicate.cc.
  struct Node;
  struct Bound;

 private:
  explicit Predicate(std::shared_ptr<const Node> root) : root_(std::move(root)) {}

  std::shared_ptr<const Node> root_;    // never null
  std::shared_ptr<const Bound> bound_;  // null until Bind succeeds
};

}  // namespace takt::policy
