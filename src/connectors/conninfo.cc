// Redaction of libpq connection strings. Both forms libpq accepts are parsed
// here the way libpq parses them, so that what libpq would take as the
// password is what gets removed:
//   URI:      postgresql://user:password@host:port/dbname?password=...
//   keywords: host=h password='it\'s secret' dbname=d
#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "connectors/sql_source.h"
#include "connectors/sql_values.h"

namespace takt::connectors {
namespace {

struct Secret {
  size_t begin = 0;
  size_t end = 0;
  bool remove = false;  // drop the span (the ":password" of a URI) rather than show ***
  // What libpq makes of the span (percent-decoded, unquoted): also scrubbed.
  std::string decoded;
};

bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexValue(s[i + 1]), lo = HexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

bool IsUri(std::string_view s) { return s.starts_with("postgresql://") || s.starts_with("postgres://"); }

std::vector<Secret> UriSecrets(std::string_view s) {
  std::vector<Secret> secrets;
  const size_t start = s.find("://") + 3;
  // libpq: the user info ends at the first '@' before any '/'.
  size_t at = std::string_view::npos;
  for (size_t i = start; i < s.size(); ++i) {
    if (s[i] == '@') {
      at = i;
      break;
    }
    if (s[i] == '/') break;
  }
  if (at == std::string_view::npos) {
    // A password with an unencoded '/' hides the '@' from libpq's rule; take
    // the last '@' before the query string so such a password is still removed.
    const size_t limit = std::min(s.find('?', start), s.size());
    for (size_t i = limit; i > start; --i) {
      if (s[i - 1] == '@') {
        at = i - 1;
        break;
      }
    }
  }
  if (at != std::string_view::npos) {
    const size_t colon = s.find(':', start);
    if (colon != std::string_view::npos && colon < at) {
      secrets.push_back({colon, at, true, PercentDecode(s.substr(colon + 1, at - colon - 1))});
    }
  }
  const size_t query = s.find('?', at == std::string_view::npos ? start : at);
  if (query != std::string_view::npos) {
    size_t i = query + 1;
    while (i < s.size()) {
      const size_t end = std::min(s.find('&', i), s.size());
      const size_t eq = s.find('=', i);
      if (eq != std::string_view::npos && eq < end && end > eq + 1 &&
          Lower(PercentDecode(s.substr(i, eq - i))) == "password") {
        secrets.push_back({eq + 1, end, false, PercentDecode(s.substr(eq + 1, end - eq - 1))});
      }
      i = end + 1;
    }
  }
  return secrets;
}

// Reads a keyword value starting at `i` (quoted or not, backslash escapes);
// returns the index after it and stores what libpq would make of it.
size_t ReadKeywordValue(std::string_view s, size_t i, std::string* decoded) {
  if (i < s.size() && s[i] == '\'') {
    ++i;
    while (i < s.size() && s[i] != '\'') {
      if (s[i] == '\\' && i + 1 < s.size()) ++i;
      decoded->push_back(s[i]);
      ++i;
    }
    return i < s.size() ? i + 1 : i;  // past the closing quote
  }
  while (i < s.size() && !IsSpace(s[i])) {
    if (s[i] == '\\' && i + 1 < s.size()) ++i;
    decoded->push_back(s[i]);
    ++i;
  }
  return i;
}

std::vector<Secret> KeywordSecrets(std::string_view s) {
  std::vector<Secret> secrets;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && IsSpace(s[i])) ++i;
    if (i >= s.size()) break;
    const size_t key_begin = i;
    while (i < s.size() && s[i] != '=' && !IsSpace(s[i])) ++i;
    const size_t key_end = i;
    size_t j = i;
    while (j < s.size() && IsSpace(s[j])) ++j;
    if (j >= s.size() || s[j] != '=') {
      // Not "keyword = value": libpq refuses the string, and the token may be
      // the second word of an unquoted password ("password=my secret").
      secrets.push_back({key_begin, key_end, false, std::string(s.substr(key_begin, key_end - key_begin))});
      continue;
    }
    i = j + 1;
    while (i < s.size() && IsSpace(s[i])) ++i;
    const size_t value_begin = i;
    std::string decoded;
    i = ReadKeywordValue(s, i, &decoded);
    if (Lower(s.substr(key_begin, key_end - key_begin)) == "password" && i > value_begin) {
      secrets.push_back({value_begin, i, false, std::move(decoded)});
    }
  }
  return secrets;
}

std::vector<Secret> FindSecrets(std::string_view conninfo) {
  if (IsUri(conninfo)) return UriSecrets(conninfo);
  // Without any '=' it is a bare database name ("plant"), which holds no secret.
  if (conninfo.find('=') == std::string_view::npos) return {};
  return KeywordSecrets(conninfo);
}

}  // namespace

std::string RedactConninfo(std::string_view conninfo) {
  std::vector<Secret> secrets = FindSecrets(conninfo);
  std::sort(secrets.begin(), secrets.end(),
            [](const Secret& a, const Secret& b) { return a.begin < b.begin; });
  std::string out;
  size_t pos = 0;
  for (const Secret& secret : secrets) {
    if (secret.begin < pos) continue;  // overlapping spans cannot occur, but never re-emit text
    out.append(conninfo.substr(pos, secret.begin - pos));
    if (!secret.remove) out.append("***");
    pos = secret.end;
  }
  out.append(conninfo.substr(pos));
  return out;
}

std::vector<std::string> ConninfoSecrets(std::string_view conninfo) {
  std::vector<std::string> out;
  for (const Secret& secret : FindSecrets(conninfo)) {
    std::string raw(conninfo.substr(secret.begin, secret.end - secret.begin));
    if (secret.remove && !raw.empty()) raw.erase(0, 1);  // the ':' before a URI password
    for (const std::string& s : {raw, secret.decoded}) {
      if (!s.empty() && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return out;
}

std::string ScrubSecrets(std::string message, const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets) {
    if (secret.empty()) continue;
    size_t pos = 0;
    while ((pos = message.find(secret, pos)) != std::string::npos) {
      message.replace(pos, secret.size(), "***");
      pos += 3;
    }
  }
  return message;
}

}  // namespace takt::connectors
