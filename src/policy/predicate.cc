#include "policy/predicate.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

namespace takt::policy {

// ---------------------------------------------------------------------------
// The parsed tree.

namespace {

enum class NodeKind { kConst, kAnd, kOr, kNot, kCompare, kIn, kIsNull };
enum class Op { kEq, kNe, kLt, kLe, kGt, kGe };

std::string_view OpText(Op op) {
  switch (op) {
    case Op::kEq:
      return "=";
    case Op::kNe:
      return "!=";
    case Op::kLt:
      return "<";
    case Op::kLe:
      return "<=";
    case Op::kGt:
      return ">";
    case Op::kGe:
      return ">=";
  }
  return "?";
}

struct Literal {
  enum class Kind { kNumber, kString, kBool };
  Kind kind = Kind::kNumber;
  bool is_integer = false;  // kNumber written without '.' or exponent and within int64
  int64_t i = 0;            // kNumber && is_integer
  double d = 0;             // kNumber (also set for integers)
  std::string s;            // kString
  bool b = false;           // kBool
};

}  // namespace

struct Predicate::Node {
  NodeKind kind = NodeKind::kConst;
  bool value = false;                                 // kConst
  bool negated = false;                               // kIn: NOT IN; kIsNull: IS NOT NULL
  Op op = Op::kEq;                                    // kCompare
  std::string column;                                 // kCompare, kIn, kIsNull
  std::vector<Literal> literals;                      // kCompare: one; kIn: one or more
  std::vector<std::shared_ptr<const Node>> children;  // kAnd, kOr: two or more; kNot: one
};

namespace {

using Node = Predicate::Node;
using NodePtr = std::shared_ptr<const Node>;

NodePtr MakeConst(bool value) {
  auto n = std::make_shared<Node>();
  n->kind = NodeKind::kConst;
  n->value = value;
  return n;
}

// AND / OR of `parts`, flattening nested nodes of the same kind and dropping
// the identity element (TRUE for AND, FALSE for OR).
NodePtr MakeJunction(NodeKind kind, const std::vector<NodePtr>& parts) {
  const bool identity = kind == NodeKind::kAnd;
  std::vector<NodePtr> children;
  for (const NodePtr& p : parts) {
    if (p->kind == kind) {
      children.insert(children.end(), p->children.begin(), p->children.end());
    } else if (p->kind == NodeKind::kConst && p->value == identity) {
      continue;
    } else {
      children.push_back(p);
    }
  }
  if (children.empty()) return MakeConst(identity);
  if (children.size() == 1) return children.front();
  auto n = std::make_shared<Node>();
  n->kind = kind;
  n->children = std::move(children);
  return n;
}

// --- Rendering --------------------------------------------------------------

bool IsIdentStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool IsIdentChar(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 'a' + 'A');
    if (x != y) return false;
  }
  return true;
}

bool IsKeyword(std::string_view word) {
  for (std::string_view k : {"AND", "OR", "NOT", "IN", "IS", "NULL", "TRUE", "FALSE"}) {
    if (EqualsIgnoreCase(word, k)) return true;
  }
  return false;
}

void AppendQuoted(std::string& out, std::string_view text, char quote) {
  out += quote;
  for (char c : text) {
    if (c == quote) out += quote;
    out += c;
  }
  out += quote;
}

std::string RenderColumn(std::string_view name) {
  bool plain = !name.empty() && IsIdentStart(name[0]) && !IsKeyword(name);
  for (char c : name) plain = plain && IsIdentChar(c);
  if (plain) return std::string(name);
  std::string out;
  AppendQuoted(out, name, '"');
  return out;
}

std::string FormatDouble(double d) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
  if (ec != std::errc()) return "0";
  return std::string(buf, end);
}

std::string RenderLiteral(const Literal& lit) {
  switch (lit.kind) {
    case Literal::Kind::kNumber:
      if (lit.is_integer) return std::to_string(lit.i);
      return lit.d == 0 ? "0" : FormatDouble(lit.d);  // -0.0 compares equal to 0
    case Literal::Kind::kBool:
      return lit.b ? "TRUE" : "FALSE";
    case Literal::Kind::kString: {
      std::string out;
      AppendQuoted(out, lit.s, '\'');
      return out;
    }
  }
  return "?";
}

int Precedence(const Node& n) {
  switch (n.kind) {
    case NodeKind::kOr:
      return 1;
    case NodeKind::kAnd:
      return 2;
    case NodeKind::kNot:
      return 3;
    default:
      return 4;
  }
}

void Render(const Node& n, const std::set<std::string>* withheld, int required, std::string& out) {
  const bool parens = Precedence(n) < required;
  if (parens) out += '(';
  const bool hide = withheld != nullptr && withheld->contains(n.column);
  switch (n.kind) {
    case NodeKind::kConst:
      out += n.value ? "TRUE" : "FALSE";
      break;
    case NodeKind::kAnd:
    case NodeKind::kOr: {
      const bool is_and = n.kind == NodeKind::kAnd;
      for (size_t i = 0; i < n.children.size(); ++i) {
        if (i > 0) out += is_and ? " AND " : " OR ";
        Render(*n.children[i], withheld, is_and ? 2 : 1, out);
      }
      break;
    }
    case NodeKind::kNot:
      out += "NOT ";
      Render(*n.children.front(), withheld, 3, out);
      break;
    case NodeKind::kCompare:
      out += RenderColumn(n.column);
      out += ' ';
      out += OpText(n.op);
      out += ' ';
      out += hide ? "?" : RenderLiteral(n.literals.front());
      break;
    case NodeKind::kIn:
      out += RenderColumn(n.column);
      out += n.negated ? " NOT IN (" : " IN (";
      if (hide) {
        out += '?';
      } else {
        for (size_t i = 0; i < n.literals.size(); ++i) {
          if (i > 0) out += ", ";
          out += RenderLiteral(n.literals[i]);
        }
      }
      out += ')';
      break;
    case NodeKind::kIsNull:
      out += RenderColumn(n.column);
      out += n.negated ? " IS NOT NULL" : " IS NULL";
      break;
  }
  if (parens) out += ')';
}

void CollectColumns(const Node& n, std::vector<std::string>& out) {
  if (n.kind == NodeKind::kCompare || n.kind == NodeKind::kIn || n.kind == NodeKind::kIsNull) {
    out.push_back(n.column);
  }
  for (const NodePtr& c : n.children) CollectColumns(*c, out);
}

// --- Lexer ------------------------------------------------------------------

enum class Tok { kEnd, kIdent, kQuotedIdent, kString, kNumber, kOp, kLParen, kRParen, kComma };

struct Token {
  Tok kind = Tok::kEnd;
  size_t pos = 0;    // 0-based byte offset in the text
  std::string text;  // kIdent: as written; kQuotedIdent, kString: the unescaped value; kOp: canonical
  std::string raw;   // as written (for messages)
  Literal number;    // kNumber
};

std::string Describe(std::string_view raw) {
  // Quotes a piece of input for an error message, escaping bytes that are not printable ASCII.
  std::string out = "'";
  size_t n = 0;
  for (unsigned char c : raw) {
    if (++n > 40) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  out += "'";
  return out;
}

std::string DescribeToken(const Token& t) {
  if (t.kind == Tok::kEnd) return "the end of the filter";
  return Describe(t.raw);
}

class Lexer {
 public:
  explicit Lexer(std::string_view text) : text_(text) {}

  Result<std::vector<Token>> Run() {
    std::vector<Token> out;
    while (true) {
      while (pos_ < text_.size() &&
             (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
        ++pos_;
      }
      Token t;
      t.pos = pos_;
      if (pos_ >= text_.size()) {
        t.kind = Tok::kEnd;
        out.push_back(std::move(t));
        return out;
      }
      const char c = text_[pos_];
      if (IsIdentStart(c)) {
        size_t end = pos_;
        while (end < text_.size() && IsIdentChar(text_[end])) ++end;
        t.kind = Tok::kIdent;
        t.text = std::string(text_.substr(pos_, end - pos_));
        t.raw = t.text;
        pos_ = end;
      } else if (c == '"' || c == '\'') {
        TAKT_ASSIGN_OR_RETURN(t.text, ReadQuoted(c));
        t.kind = c == '"' ? Tok::kQuotedIdent : Tok::kString;
        t.raw = std::string(text_.substr(t.pos, pos_ - t.pos));
        if (t.kind == Tok::kQuotedIdent && t.text.empty()) {
          return Fail(t.pos, "a quoted column name is empty");
        }
      } else if (IsDigit(c) ||
                 ((c == '-' || c == '.') && pos_ + 1 < text_.size() &&
                  (IsDigit(text_[pos_ + 1]) || (c == '-' && text_[pos_ + 1] == '.' &&
                                                pos_ + 2 < text_.size() && IsDigit(text_[pos_ + 2]))))) {
        TAKT_RETURN_IF_ERROR(ReadNumber(t));
      } else if (c == '(' || c == ')' || c == ',') {
        t.kind = c == '(' ? Tok::kLParen : c == ')' ? Tok::kRParen : Tok::kComma;
        t.raw = std::string(1, c);
        ++pos_;
      } else if (c == '=' || c == '<' || c == '>' || c == '!') {
        const char next = pos_ + 1 < text_.size() ? text_[pos_ + 1] : '\0';
        size_t len = 1;
        if (c == '=') {
          t.text = "=";
        } else if (c == '!') {
          if (next != '=') return Fail(pos_, "unexpected '!' (did you mean '!='?)");
          t.text = "!=";
          len = 2;
        } else if (c == '<' && next == '>') {
          t.text = "!=";
          len = 2;
        } else if (next == '=') {
          t.text = c == '<' ? "<=" : ">=";
          len = 2;
        } else {
          t.text = std::string(1, c);
        }
        t.kind = Tok::kOp;
        t.raw = std::string(text_.substr(pos_, len));
        pos_ += len;
      } else {
        return Fail(pos_, "unexpected character " + Describe(text_.substr(pos_, 1)));
      }
      out.push_back(std::move(t));
    }
  }

  static std::unexpected<Error> Fail(size_t pos, const std::string& message) {
    return InvalidArgument("row filter: at " + std::to_string(pos + 1) + ": " + message);
  }

 private:
  // Reads a quoted string or identifier starting at pos_ (the quote), with a
  // doubled quote standing for one.
  Result<std::string> ReadQuoted(char quote) {
    const size_t start = pos_;
    std::string value;
    ++pos_;
    while (true) {
      if (pos_ >= text_.size()) {
        return Fail(start, std::string(quote == '"' ? "quoted column name" : "string") +
                               " is not closed (missing " + quote + ")");
      }
      const char c = text_[pos_++];
      if (c == quote) {
        if (pos_ < text_.size() && text_[pos_] == quote) {
          value += quote;
          ++pos_;
          continue;
        }
        return value;
      }
      value += c;
    }
  }

  Status ReadNumber(Token& t) {
    const size_t start = pos_;
    size_t p = pos_;
    if (text_[p] == '-') ++p;
    bool integer = true;
    while (p < text_.size() && IsDigit(text_[p])) ++p;
    if (p < text_.size() && text_[p] == '.') {
      integer = false;
      ++p;
      while (p < text_.size() && IsDigit(text_[p])) ++p;
    }
    if (p < text_.size() && (text_[p] == 'e' || text_[p] == 'E')) {
      integer = false;
      ++p;
      if (p < text_.size() && (text_[p] == '+' || text_[p] == '-')) ++p;
      if (p >= text_.size() || !IsDigit(text_[p])) {
        return Fail(start, "malformed number " + Describe(text_.substr(start, p - start)));
      }
      while (p < text_.size() && IsDigit(text_[p])) ++p;
    }
    if (p < text_.size() && (IsIdentChar(text_[p]) || text_[p] == '.')) {
      size_t end = p;
      while (end < text_.size() && (IsIdentChar(text_[end]) || text_[end] == '.')) ++end;
      return Fail(start, "malformed number " + Describe(text_.substr(start, end - start)));
    }
    const std::string_view digits = text_.substr(start, p - start);
    t.kind = Tok::kNumber;
    t.raw = std::string(digits);
    t.number.kind = Literal::Kind::kNumber;
    const char* first = digits.data();
    const char* last = digits.data() + digits.size();
    if (integer) {
      int64_t v = 0;
      auto [ptr, ec] = std::from_chars(first, last, v);
      if (ec == std::errc() && ptr == last) {
        t.number.is_integer = true;
        t.number.i = v;
        t.number.d = static_cast<double>(v);
        pos_ = p;
        return Ok();
      }
    }
    // from_chars does not take a leading '+', but does take the '-'; a bare
    // ".5" or "5." is fine for it too.
    double d = 0;
    auto [ptr, ec] = std::from_chars(first, last, d);
    if (ec != std::errc() || ptr != last || !std::isfinite(d)) {
      return Fail(start, "number " + Describe(digits) + " is out of range");
    }
    t.number.d = d;
    pos_ = p;
    return Ok();
  }

  std::string_view text_;
  size_t pos_ = 0;
};

// --- Parser -----------------------------------------------------------------

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  Result<NodePtr> Run() {
    TAKT_ASSIGN_OR_RETURN(NodePtr root, ParseOr());
    if (Peek().kind != Tok::kEnd) {
      return Fail(Peek(), "unexpected " + DescribeToken(Peek()) + " after the end of the filter" +
                              (Peek().kind == Tok::kRParen ? " (unbalanced ')')" : ""));
    }
    return root;
  }

 private:
  const Token& Peek() const { return tokens_[pos_]; }
  const Token& Next() { return tokens_[pos_ < tokens_.size() - 1 ? pos_++ : pos_]; }
  bool PeekKeyword(std::string_view word) const {
    return Peek().kind == Tok::kIdent && EqualsIgnoreCase(Peek().text, word);
  }

  static std::unexpected<Error> Fail(const Token& at, const std::string& message) {
    return Lexer::Fail(at.pos, message);
  }

  Status Enter(const Token& at) {
    if (++depth_ > Predicate::kMaxDepth) {
      return Fail(at, "nested deeper than " + std::to_string(Predicate::kMaxDepth) + " levels");
    }
    return Ok();
  }

  Result<NodePtr> ParseOr() {
    std::vector<NodePtr> parts;
    TAKT_ASSIGN_OR_RETURN(NodePtr first, ParseAnd());
    parts.push_back(std::move(first));
    while (PeekKeyword("OR")) {
      Next();
      TAKT_ASSIGN_OR_RETURN(NodePtr next, ParseAnd());
      parts.push_back(std::move(next));
    }
    return parts.size() == 1 ? parts.front() : MakeJunctionKeepingConsts(NodeKind::kOr, parts);
  }

  Result<NodePtr> ParseAnd() {
    std::vector<NodePtr> parts;
    TAKT_ASSIGN_OR_RETURN(NodePtr first, ParseNot());
    parts.push_back(std::move(first));
    while (PeekKeyword("AND")) {
      Next();
      TAKT_ASSIGN_OR_RETURN(NodePtr next, ParseNot());
      parts.push_back(std::move(next));
    }
    return parts.size() == 1 ? parts.front() : MakeJunctionKeepingConsts(NodeKind::kAnd, parts);
  }

  // Parsed text keeps what was written (a literal TRUE inside AND stays), only
  // nested junctions of the same kind are flattened.
  static NodePtr MakeJunctionKeepingConsts(NodeKind kind, const std::vector<NodePtr>& parts) {
    auto n = std::make_shared<Node>();
    n->kind = kind;
    for (const NodePtr& p : parts) {
      if (p->kind == kind) {
        n->children.insert(n->children.end(), p->children.begin(), p->children.end());
      } else {
        n->children.push_back(p);
      }
    }
    return n;
  }

  Result<NodePtr> ParseNot() {
    if (PeekKeyword("NOT")) {
      const Token& not_token = Next();
      TAKT_RETURN_IF_ERROR(Enter(not_token));
      TAKT_ASSIGN_OR_RETURN(NodePtr child, ParseNot());
      --depth_;
      auto n = std::make_shared<Node>();
      n->kind = NodeKind::kNot;
      n->children.push_back(std::move(child));
      return NodePtr(std::move(n));
    }
    return ParsePrimary();
  }

  Result<NodePtr> ParsePrimary() {
    const Token& t = Peek();
    if (t.kind == Tok::kLParen) {
      Next();
      TAKT_RETURN_IF_ERROR(Enter(t));
      TAKT_ASSIGN_OR_RETURN(NodePtr inner, ParseOr());
      --depth_;
      if (Peek().kind != Tok::kRParen) {
        return Fail(Peek(), "expected ')' to close the '(' at " + std::to_string(t.pos + 1) + ", found " +
                                DescribeToken(Peek()));
      }
      Next();
      return inner;
    }
    if (t.kind == Tok::kIdent && (EqualsIgnoreCase(t.text, "TRUE") || EqualsIgnoreCase(t.text, "FALSE"))) {
      Next();
      return MakeConst(EqualsIgnoreCase(t.text, "TRUE"));
    }
    if (t.kind == Tok::kQuotedIdent || (t.kind == Tok::kIdent && !IsKeyword(t.text))) {
      return ParsePredicateOn(Next());
    }
    if (t.kind == Tok::kIdent) {
      return Fail(t, "expected a column name, found the keyword " + DescribeToken(t) +
                         " (write a column named like a keyword in double quotes)");
    }
    return Fail(t, "expected a column name or '(', found " + DescribeToken(t));
  }

  Result<NodePtr> ParsePredicateOn(const Token& column) {
    auto n = std::make_shared<Node>();
    n->column = column.text;
    const Token& t = Peek();
    if (t.kind == Tok::kOp) {
      Next();
      n->kind = NodeKind::kCompare;
      n->op = t.text == "="    ? Op::kEq
              : t.text == "!=" ? Op::kNe
              : t.text == "<"  ? Op::kLt
              : t.text == "<=" ? Op::kLe
              : t.text == ">"  ? Op::kGt
                               : Op::kGe;
      TAKT_ASSIGN_OR_RETURN(Literal lit, ParseLiteral("after " + Describe(t.raw)));
      n->literals.push_back(std::move(lit));
      return NodePtr(std::move(n));
    }
    if (PeekKeyword("NOT") || PeekKeyword("IN")) {
      if (PeekKeyword("NOT")) {
        Next();
        n->negated = true;
        if (!PeekKeyword("IN")) return Fail(Peek(), "expected IN after NOT, found " + DescribeToken(Peek()));
      }
      Next();
      n->kind = NodeKind::kIn;
      if (Peek().kind != Tok::kLParen) {
        return Fail(Peek(), "expected '(' after IN, found " + DescribeToken(Peek()));
      }
      Next();
      while (true) {
        TAKT_ASSIGN_OR_RETURN(Literal lit, ParseLiteral("in the IN list"));
        n->literals.push_back(std::move(lit));
        if (Peek().kind == Tok::kComma) {
          Next();
          continue;
        }
        if (Peek().kind == Tok::kRParen) {
          Next();
          break;
        }
        return Fail(Peek(), "expected ',' or ')' in the IN list, found " + DescribeToken(Peek()));
      }
      return NodePtr(std::move(n));
    }
    if (PeekKeyword("IS")) {
      Next();
      n->kind = NodeKind::kIsNull;
      if (PeekKeyword("NOT")) {
        Next();
        n->negated = true;
      }
      if (!PeekKeyword("NULL")) {
        return Fail(Peek(), std::string("expected NULL after IS") + (n->negated ? " NOT" : "") + ", found " +
                                DescribeToken(Peek()));
      }
      Next();
      return NodePtr(std::move(n));
    }
    return Fail(t, "expected a comparison (=, !=, <, <=, >, >=), IN or IS after column " +
                       Describe(column.text) + ", found " + DescribeToken(t));
  }

  Result<Literal> ParseLiteral(const std::string& where) {
    const Token& t = Peek();
    Literal lit;
    if (t.kind == Tok::kNumber) {
      lit = t.number;
    } else if (t.kind == Tok::kString) {
      lit.kind = Literal::Kind::kString;
      lit.s = t.text;
    } else if (t.kind == Tok::kIdent &&
               (EqualsIgnoreCase(t.text, "TRUE") || EqualsIgnoreCase(t.text, "FALSE"))) {
      lit.kind = Literal::Kind::kBool;
      lit.b = EqualsIgnoreCase(t.text, "TRUE");
    } else if (t.kind == Tok::kIdent && EqualsIgnoreCase(t.text, "NULL")) {
      return Fail(t,
                  "expected a literal " + where + ", found NULL (test for null with IS NULL / IS NOT NULL)");
    } else {
      return Fail(t, "expected a literal " + where + ", found " + DescribeToken(t));
    }
    Next();
    return lit;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

// ---------------------------------------------------------------------------
// The bound form: leaves resolved to a column slot and literals converted to
// the column's representation.

namespace {

enum class LeafKind {
  kConst,       // every row: `value`
  kConstValid,  // valid rows: `value`; null rows: unknown
  kIsNull,      // negated: IS NOT NULL
  kCmpInt,      // ints (int64, timestamp, bool as x == 0 / x != 0)
  kCmpDouble,
  kCmpString,
  kInInt,  // negated: NOT IN
  kInDouble,
  kInString,
};

struct BoundNode {
  NodeKind kind = NodeKind::kConst;  // kAnd, kOr, kNot, or kConst for a leaf
  LeafKind leaf = LeafKind::kConst;
  bool value = false;
  bool negated = false;
  Op op = Op::kEq;
  int slot = -1;
  int64_t i = 0;
  double d = 0;
  std::string s;
  std::vector<int64_t> int_set;         // sorted
  std::vector<double> double_set;       // sorted
  std::vector<std::string> string_set;  // sorted
  std::vector<BoundNode> children;
};

}  // namespace

struct Predicate::Bound {
  std::vector<frame::Field> columns;  // referenced, sorted by name; slots index this
  BoundNode root;
};

namespace {

std::string LeafText(const Node& n) {
  std::string out;
  Render(n, nullptr, 0, out);
  if (out.size() > 120) out = out.substr(0, 117) + "...";
  return out;
}

// x OP v for int64 x and a double v that may not be a whole number, rewritten
// exactly as an int64 comparison or a constant for valid rows.
BoundNode IntCompareWithDouble(Op op, double v, int slot) {
  BoundNode b;
  b.slot = slot;
  constexpr double kTwo63 = 9223372036854775808.0;
  auto constant = [&](bool value) {
    b.leaf = LeafKind::kConstValid;
    b.value = value;
    return b;
  };
  if (v >= kTwo63) return constant(op == Op::kLt || op == Op::kLe || op == Op::kNe);
  if (v < -kTwo63) return constant(op == Op::kGt || op == Op::kGe || op == Op::kNe);
  b.leaf = LeafKind::kCmpInt;
  b.op = op;
  if (std::floor(v) == v) {
    b.i = static_cast<int64_t>(v);
    return b;
  }
  switch (op) {
    case Op::kEq:
      return constant(false);
    case Op::kNe:
      return constant(true);
    case Op::kLt:
    case Op::kLe:
      b.op = Op::kLe;
      b.i = static_cast<int64_t>(std::floor(v));
      return b;
    case Op::kGt:
    case Op::kGe:
      b.op = Op::kGe;
      b.i = static_cast<int64_t>(std::ceil(v));
      return b;
  }
  return b;
}

class Binder {
 public:
  explicit Binder(const frame::Schema& schema, const std::vector<std::string>& names) : schema_(schema) {
    for (const std::string& name : names) {
      const int index = schema.IndexOf(name);
      if (index >= 0) columns_.push_back(schema.fields[index]);
    }
  }

  std::vector<frame::Field> TakeColumns() { return std::move(columns_); }

  Result<BoundNode> Bind(const Node& n) {
    BoundNode b;
    switch (n.kind) {
      case NodeKind::kConst:
        b.leaf = LeafKind::kConst;
        b.value = n.value;
        return b;
      case NodeKind::kAnd:
      case NodeKind::kOr:
      case NodeKind::kNot:
        b.kind = n.kind;
        for (const NodePtr& c : n.children) {
          TAKT_ASSIGN_OR_RETURN(BoundNode child, Bind(*c));
          b.children.push_back(std::move(child));
        }
        return b;
      case NodeKind::kCompare:
      case NodeKind::kIn:
      case NodeKind::kIsNull:
        return BindLeaf(n);
    }
    return Internal("row filter: unknown node");
  }

 private:
  Result<BoundNode> BindLeaf(const Node& n) {
    int slot = -1;
    for (size_t i = 0; i < columns_.size(); ++i) {
      if (columns_[i].name == n.column) slot = static_cast<int>(i);
    }
    if (slot < 0) {
      std::string hint;
      for (const frame::Field& f : schema_.fields) {
        if (EqualsIgnoreCase(f.name, n.column)) hint = " (did you mean " + Describe(f.name) + "?)";
      }
      return InvalidArgument("row filter: column " + Describe(n.column) + " is not in the dataset" + hint);
    }
    const frame::Field& field = columns_[slot];
    BoundNode b;
    b.slot = slot;
    b.negated = n.negated;
    if (n.kind == NodeKind::kIsNull) {
      b.leaf = LeafKind::kIsNull;
      return b;
    }
    // Check and convert every literal.
    const std::string col = RenderColumn(field.name);
    const std::string type(frame::TypeName(field.type));
    auto fail = [&](const std::string& why) {
      return InvalidArgument("row filter: " + LeafText(n) + ": " + why);
    };
    if (field.type == frame::Type::kBool && n.kind == NodeKind::kCompare && n.op != Op::kEq &&
        n.op != Op::kNe) {
      return fail(col + " is a bool column: only = and != apply to it, not " + Describe(OpText(n.op)));
    }
    for (const Literal& lit : n.literals) {
      const std::string text = RenderLiteral(lit);
      switch (field.type) {
        case frame::Type::kInt64:
        case frame::Type::kFloat64:
          if (lit.kind != Literal::Kind::kNumber) {
            return fail(col + " is a " + type + " column and " + text + " is not a number");
          }
          break;
        case frame::Type::kString:
          if (lit.kind != Literal::Kind::kString) {
            return fail(col + " is a string column and " + text + " is not a string (write '" + text + "')");
          }
          break;
        case frame::Type::kBool:
          if (lit.kind != Literal::Kind::kBool) {
            return fail(col + " is a bool column: compare it with TRUE or FALSE, not " + text);
          }
          break;
        case frame::Type::kTimestamp:
          if (lit.kind != Literal::Kind::kString) {
            return fail(col +
                        " is a timestamp column: compare it with an ISO 8601 string such as "
                        "'2026-03-01T00:00:00Z', not " +
                        text);
          }
          if (!frame::ParseTimestamp(lit.s)) {
            return fail(col + " is a timestamp column and " + text + " is not an ISO 8601 timestamp");
          }
          break;
      }
    }
    return n.kind == NodeKind::kCompare ? BindCompare(n, field, b) : BindIn(n, field, b);
  }

  static Result<BoundNode> BindCompare(const Node& n, const frame::Field& field, BoundNode b) {
    const Literal& lit = n.literals.front();
    b.op = n.op;
    switch (field.type) {
      case frame::Type::kInt64:
        if (lit.is_integer) {
          b.leaf = LeafKind::kCmpInt;
          b.i = lit.i;
          return b;
        }
        return IntCompareWithDouble(n.op, lit.d, b.slot);
      case frame::Type::kFloat64:
        b.leaf = LeafKind::kCmpDouble;
        b.d = lit.d;
        return b;
      case frame::Type::kString:
        b.leaf = LeafKind::kCmpString;
        b.s = lit.s;
        return b;
      case frame::Type::kTimestamp:
        b.leaf = LeafKind::kCmpInt;
        b.i = *frame::ParseTimestamp(lit.s);
        return b;
      case frame::Type::kBool:
        // x = TRUE  <=>  x != 0;  x = FALSE  <=>  x == 0.
        b.leaf = LeafKind::kCmpInt;
        b.i = 0;
        b.op = (n.op == Op::kEq) == lit.b ? Op::kNe : Op::kEq;
        return b;
    }
    return Internal("row filter: unknown column type");
  }

  static Result<BoundNode> BindIn(const Node& n, const frame::Field& field, BoundNode b) {
    switch (field.type) {
      case frame::Type::kInt64:
      case frame::Type::kTimestamp:
        b.leaf = LeafKind::kInInt;
        for (const Literal& lit : n.literals) {
          if (field.type == frame::Type::kTimestamp) {
            b.int_set.push_back(*frame::ParseTimestamp(lit.s));
          } else if (lit.is_integer) {
            b.int_set.push_back(lit.i);
          } else if (std::floor(lit.d) == lit.d && lit.d >= -9223372036854775808.0 &&
                     lit.d < 9223372036854775808.0) {
            b.int_set.push_back(static_cast<int64_t>(lit.d));
          }
          // Any other number equals no int64: it drops out of the list.
        }
        std::sort(b.int_set.begin(), b.int_set.end());
        b.int_set.erase(std::unique(b.int_set.begin(), b.int_set.end()), b.int_set.end());
        if (b.int_set.empty()) {
          b.leaf = LeafKind::kConstValid;
          b.value = b.negated;
        }
        return b;
      case frame::Type::kFloat64:
        b.leaf = LeafKind::kInDouble;
        for (const Literal& lit : n.literals) b.double_set.push_back(lit.d);
        std::sort(b.double_set.begin(), b.double_set.end());
        b.double_set.erase(std::unique(b.double_set.begin(), b.double_set.end()), b.double_set.end());
        return b;
      case frame::Type::kString:
        b.leaf = LeafKind::kInString;
        for (const Literal& lit : n.literals) b.string_set.push_back(lit.s);
        std::sort(b.string_set.begin(), b.string_set.end());
        b.string_set.erase(std::unique(b.string_set.begin(), b.string_set.end()), b.string_set.end());
        return b;
      case frame::Type::kBool: {
        bool has_true = false, has_false = false;
        for (const Literal& lit : n.literals) (lit.b ? has_true : has_false) = true;
        if (has_true && has_false) {
          b.leaf = LeafKind::kConstValid;
          b.value = !b.negated;
          return b;
        }
        // IN (TRUE) <=> x != 0; NOT IN (TRUE) <=> x == 0; and the reverse for FALSE.
        b.leaf = LeafKind::kCmpInt;
        b.i = 0;
        b.op = has_true != b.negated ? Op::kNe : Op::kEq;
        b.negated = false;
        return b;
      }
    }
    return Internal("row filter: unknown column type");
  }

  const frame::Schema& schema_;
  std::vector<frame::Field> columns_;
};

// --- Evaluation -------------------------------------------------------------
//
// Every node yields two byte masks over a block of rows: t (definitely TRUE)
// and f (definitely FALSE); a row in neither is unknown. NOT swaps them;
// AND: t = t1 & t2, f = f1 | f2; OR: t = t1 | t2, f = f1 & f2. The tree is
// walked once per block of kBlockRows rows, and every leaf runs a tight loop
// over its column's values.

constexpr size_t kBlockRows = 2048;

struct EvalContext {
  std::vector<const frame::Column*> columns;  // by slot
  // Two scratch masks per tree level.
  std::vector<std::unique_ptr<uint8_t[]>> scratch;

  uint8_t* Scratch(size_t index) {
    while (scratch.size() <= index) scratch.push_back(std::make_unique<uint8_t[]>(kBlockRows));
    return scratch[index].get();
  }
};

// t[i] = 1 where the comparison holds for the value; then applies validity.
void ApplyValidity(const frame::Column& column, size_t begin, size_t len, uint8_t* t, uint8_t* f) {
  if (column.valid.empty()) {
    for (size_t i = 0; i < len; ++i) f[i] = t[i] ^ 1;
    return;
  }
  const uint8_t* valid = column.valid.data() + begin;
  for (size_t i = 0; i < len; ++i) {
    const uint8_t v = valid[i] != 0;
    f[i] = v & (t[i] ^ 1);
    t[i] &= v;
  }
}

template <typename T, typename Fn>
void Fill(const T* x, size_t len, uint8_t* t, Fn fn) {
  for (size_t i = 0; i < len; ++i) t[i] = static_cast<uint8_t>(fn(x[i]));
}

template <typename T, typename V>
void FillCompare(Op op, const T* x, size_t len, const V& v, uint8_t* t) {
  switch (op) {
    case Op::kEq:
      return Fill(x, len, t, [&](const T& a) { return a == v; });
    case Op::kNe:
      return Fill(x, len, t, [&](const T& a) { return a != v; });
    case Op::kLt:
      return Fill(x, len, t, [&](const T& a) { return a < v; });
    case Op::kLe:
      return Fill(x, len, t, [&](const T& a) { return a <= v; });
    case Op::kGt:
      return Fill(x, len, t, [&](const T& a) { return a > v; });
    case Op::kGe:
      return Fill(x, len, t, [&](const T& a) { return a >= v; });
  }
}

template <typename T, typename V>
void FillIn(const T* x, size_t len, const std::vector<V>& set, bool negated, uint8_t* t) {
  const uint8_t flip = negated ? 1 : 0;
  if (set.size() <= 8) {
    Fill(x, len, t, [&](const T& a) {
      bool hit = false;
      for (const V& v : set) hit |= (a == v);
      return static_cast<uint8_t>(hit) ^ flip;
    });
  } else {
    // a == a excludes NaN, which binary_search would not.
    Fill(x, len, t, [&](const T& a) {
      return static_cast<uint8_t>(a == a && std::binary_search(set.begin(), set.end(), a)) ^ flip;
    });
  }
}

void EvalLeaf(const BoundNode& n, EvalContext& ctx, size_t begin, size_t len, uint8_t* t, uint8_t* f) {
  if (n.leaf == LeafKind::kConst) {
    std::memset(t, n.value ? 1 : 0, len);
    std::memset(f, n.value ? 0 : 1, len);
    return;
  }
  const frame::Column& c = *ctx.columns[n.slot];
  switch (n.leaf) {
    case LeafKind::kConst:
      break;
    case LeafKind::kConstValid:
      std::memset(t, 1, len);
      ApplyValidity(c, begin, len, t, f);
      if (!n.value) std::swap_ranges(t, t + len, f);
      return;
    case LeafKind::kIsNull:
      // Never unknown: t = IS NULL, f = IS NOT NULL.
      if (c.valid.empty()) {
        std::memset(t, 0, len);
      } else {
        const uint8_t* valid = c.valid.data() + begin;
        for (size_t i = 0; i < len; ++i) t[i] = valid[i] == 0;
      }
      for (size_t i = 0; i < len; ++i) f[i] = t[i] ^ 1;
      if (n.negated) std::swap_ranges(t, t + len, f);
      return;
    case LeafKind::kCmpInt:
      FillCompare(n.op, c.ints.data() + begin, len, n.i, t);
      break;
    case LeafKind::kCmpDouble:
      FillCompare(n.op, c.doubles.data() + begin, len, n.d, t);
      break;
    case LeafKind::kCmpString:
      FillCompare(n.op, c.strings.data() + begin, len, std::string_view(n.s), t);
      break;
    case LeafKind::kInInt:
      FillIn(c.ints.data() + begin, len, n.int_set, n.negated, t);
      break;
    case LeafKind::kInDouble:
      FillIn(c.doubles.data() + begin, len, n.double_set, n.negated, t);
      break;
    case LeafKind::kInString:
      FillIn(c.strings.data() + begin, len, n.string_set, n.negated, t);
      break;
  }
  ApplyValidity(c, begin, len, t, f);
}

bool AllSet(const uint8_t* m, size_t len) {
  uint8_t all = 1;
  for (size_t i = 0; i < len; ++i) all &= m[i];
  return all != 0;
}

void EvalNode(const BoundNode& n, EvalContext& ctx, size_t begin, size_t len, uint8_t* t, uint8_t* f,
              size_t level) {
  switch (n.kind) {
    case NodeKind::kNot:
      EvalNode(n.children.front(), ctx, begin, len, f, t, level);
      return;
    case NodeKind::kAnd:
    case NodeKind::kOr: {
      const bool is_and = n.kind == NodeKind::kAnd;
      EvalNode(n.children.front(), ctx, begin, len, t, f, level + 1);
      uint8_t* st = ctx.Scratch(2 * level);
      uint8_t* sf = ctx.Scratch(2 * level + 1);
      for (size_t c = 1; c < n.children.size(); ++c) {
        // Once every row is decided (FALSE for AND, TRUE for OR) the rest cannot change it.
        if (AllSet(is_and ? f : t, len)) return;
        EvalNode(n.children[c], ctx, begin, len, st, sf, level + 1);
        if (is_and) {
          for (size_t i = 0; i < len; ++i) {
            t[i] &= st[i];
            f[i] |= sf[i];
          }
        } else {
          for (size_t i = 0; i < len; ++i) {
            t[i] |= st[i];
            f[i] &= sf[i];
          }
        }
      }
      return;
    }
    default:
      EvalLeaf(n, ctx, begin, len, t, f);
      return;
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Predicate

Result<Predicate> Predicate::Parse(std::string_view text) {
  if (text.size() > kMaxTextBytes) {
    return InvalidArgument("row filter: " + std::to_string(text.size()) + " bytes is longer than the " +
                           std::to_string(kMaxTextBytes) + " allowed");
  }
  TAKT_ASSIGN_OR_RETURN(std::vector<Token> tokens, Lexer(text).Run());
  TAKT_ASSIGN_OR_RETURN(NodePtr root, Parser(std::move(tokens)).Run());
  return Predicate(std::move(root));
}

Status Predicate::Bind(const frame::Schema& schema) {
  Binder binder(schema, Columns());
  TAKT_ASSIGN_OR_RETURN(BoundNode root, binder.Bind(*root_));
  auto bound = std::make_shared<Bound>();
  bound->columns = binder.TakeColumns();
  bound->root = std::move(root);
  bound_ = std::move(bound);
  return Ok();
}

Result<std::vector<uint8_t>> Predicate::Evaluate(const frame::Table& batch) const {
  if (!bound_) return FailedPrecondition("row filter " + ToString() + " is not bound to a schema");
  const size_t rows = batch.num_rows();
  EvalContext ctx;
  for (const frame::Field& field : bound_->columns) {
    const frame::Column* c = batch.Find(field.name);
    const std::string name = Describe(field.name);
    if (c == nullptr) return InvalidArgument("row filter: the batch has no column " + name);
    if (c->field.type != field.type) {
      return InvalidArgument("row filter: column " + name + " is " +
                             std::string(frame::TypeName(c->field.type)) + " in the batch but was bound as " +
                             std::string(frame::TypeName(field.type)));
    }
    if (c->size() != rows || (!c->valid.empty() && c->valid.size() != rows)) {
      return InvalidArgument("row filter: column " + name + " does not hold " + std::to_string(rows) +
                             " values and validity flags");
    }
    ctx.columns.push_back(c);
  }
  std::vector<uint8_t> out(rows);
  auto f = std::make_unique<uint8_t[]>(kBlockRows);
  for (size_t begin = 0; begin < rows; begin += kBlockRows) {
    const size_t len = std::min(kBlockRows, rows - begin);
    EvalNode(bound_->root, ctx, begin, len, out.data() + begin, f.get(), 0);
  }
  return out;
}

std::vector<std::string> Predicate::Columns() const {
  std::vector<std::string> out;
  CollectColumns(*root_, out);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string Predicate::ToString() const {
  std::string out;
  Render(*root_, nullptr, 0, out);
  return out;
}

std::string Predicate::ToString(const std::set<std::string>& withheld) const {
  std::string out;
  Render(*root_, &withheld, 0, out);
  return out;
}

Predicate Predicate::Or(const std::vector<Predicate>& parts) {
  std::vector<NodePtr> nodes;
  for (const Predicate& p : parts) nodes.push_back(p.root_);
  return Predicate(MakeJunction(NodeKind::kOr, nodes));
}

Predicate Predicate::And(const std::vector<Predicate>& parts) {
  std::vector<NodePtr> nodes;
  for (const Predicate& p : parts) nodes.push_back(p.root_);
  return Predicate(MakeJunction(NodeKind::kAnd, nodes));
}

}  // namespace takt::policy
