#include "iam/sigv4.h"

#include <algorithm>
#include <ctime>
#include <utility>

#include "core/strings.h"
#include "crypto/crypto.h"

namespace takt::iam::sigv4 {
namespace {

constexpr std::string_view kTerminator = "aws4_request";

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding of one query name or value; '+' stays '+' (AWS's rule).
Result<std::string> Decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    int hi = i + 1 < s.size() ? HexValue(s[i + 1]) : -1;
    int lo = i + 2 < s.size() ? HexValue(s[i + 2]) : -1;
    if (hi < 0 || lo < 0)
      return InvalidArgument("query string: bad percent escape in '" + std::string(s) + "'");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

bool IsSigV4(std::string_view authorization) {
  return authorization.size() > kAlgorithm.size() &&
         authorization.substr(0, kAlgorithm.size()) == kAlgorithm && authorization[kAlgorithm.size()] == ' ';
}

std::string Authorization::Scope() const { return date + "/" + region + "/" + service + "/" + terminator; }

Result<Authorization> ParseAuthorization(std::string_view header) {
  if (!IsSigV4(header))
    return InvalidArgument("the Authorization header does not start with AWS4-HMAC-SHA256");
  Authorization a;
  bool have_credential = false, have_headers = false, have_signature = false;
  for (std::string_view part : SplitView(header.substr(kAlgorithm.size() + 1), ',')) {
    part = Trim(part);
    size_t eq = part.find('=');
    if (eq == std::string_view::npos)
      return InvalidArgument("Authorization header: '" + std::string(part) + "' is not key=value");
    std::string_view key = part.substr(0, eq), value = part.substr(eq + 1);
    if (key == "Credential") {
      std::vector<std::string_view> c = SplitView(value, '/');
      if (c.size() != 5 || std::any_of(c.begin(), c.end(), [](std::string_view x) { return x.empty(); })) {
        return InvalidArgument(
            "Authorization header: Credential must be <access key "
            "id>/<date>/<region>/<service>/aws4_request");
      }
      a.access_key_id = c[0];
      a.date = c[1];
      a.region = c[2];
      a.service = c[3];
      a.terminator = c[4];
      if (a.terminator != kTerminator)
        return InvalidArgument("Authorization header: the credential scope must end in aws4_request");
      have_credential = true;
    } else if (key == "SignedHeaders") {
      for (std::string_view h : SplitView(value, ';')) {
        if (h.empty()) return InvalidArgument("Authorization header: SignedHeaders has an empty name");
        std::string name(h);
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        a.signed_headers.push_back(std::move(name));
      }
      have_headers = true;
    } else if (key == "Signature") {
      std::string sig(value);
      std::transform(sig.begin(), sig.end(), sig.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      if (sig.size() != 2 * crypto::kSha256Size || !IsLowerHex(sig))
        return InvalidArgument("Authorization header: Signature must be 64 hex characters");
      a.signature = std::move(sig);
      have_signature = true;
    }
    // Other keys are ignored, as AWS does.
  }
  if (!have_credential) return InvalidArgument("Authorization header: Credential is missing");
  if (!have_headers) return InvalidArgument("Authorization header: SignedHeaders is missing");
  if (!have_signature) return InvalidArgument("Authorization header: Signature is missing");
  return a;
}

std::string UriEncode(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.' || c == '~';
    if (unreserved || (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

std::string CanonicalUri(std::string_view raw_path) {
  if (raw_path.empty()) return "/";
  return UriEncode(raw_path, /*keep_slash=*/true);
}

Result<std::string> CanonicalQuery(std::string_view raw_query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  if (!raw_query.empty()) {
    for (std::string_view pair : SplitView(raw_query, '&')) {
      if (pair.empty()) continue;
      size_t eq = pair.find('=');
      TAKT_ASSIGN_OR_RETURN(std::string name, Decode(pair.substr(0, eq)));
      std::string value;
      if (eq != std::string_view::npos) {
        TAKT_ASSIGN_OR_RETURN(value, Decode(pair.substr(eq + 1)));
      }
      pairs.emplace_back(UriEncode(name, false), UriEncode(value, false));
    }
  }
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [name, value] : pairs) {
    if (!out.empty()) out += '&';
    out += name + "=" + value;
  }
  return out;
}

std::string CanonicalHeaderValue(std::string_view value) {
  std::string out;
  bool space = false;
  for (char c : Trim(value)) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

Result<std::string> CanonicalRequest(const SignedRequest& request,
                                     const std::vector<std::string>& signed_headers,
                                     std::string_view payload_hash) {
  std::string_view target = request.target;
  size_t question = target.find('?');
  std::string_view raw_path = target.substr(0, question);
  std::string_view raw_query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  TAKT_ASSIGN_OR_RETURN(std::string query, CanonicalQuery(raw_query));
  std::string headers, names;
  for (const auto& name : signed_headers) {
    auto it = request.headers.find(name);
    if (it == request.headers.end())
      return InvalidArgument("signed header '" + name + "' is not in the request");
    headers += name + ":" + CanonicalHeaderValue(it->second) + "\n";
    if (!names.empty()) names += ';';
    names += name;
  }
  return request.method + "\n" + CanonicalUri(raw_path) + "\n" + query + "\n" + headers + "\n" + names +
         "\n" + std::string(payload_hash);
}

std::string StringToSign(std::string_view amz_date, std::string_view scope,
                         std::string_view canonical_request) {
  return std::string(kAlgorithm) + "\n" + std::string(amz_date) + "\n" + std::string(scope) + "\n" +
         crypto::Sha256Hex(canonical_request);
}

std::string SigningKey(std::string_view secret, std::string_view date, std::string_view region,
                       std::string_view service) {
  std::string k_secret = "AWS4" + std::string(secret);
  std::string k_date = crypto::HmacSha256(k_secret, date);
  crypto::SecureErase(k_secret);
  std::string k_region = crypto::HmacSha256(k_date, region);
  std::string k_service = crypto::HmacSha256(k_region, service);
  std::string k_signing = crypto::HmacSha256(k_service, kTerminator);
  crypto::SecureErase(k_date);
  crypto::SecureErase(k_region);
  crypto::SecureErase(k_service);
  return k_signing;
}

Result<int64_t> ParseAmzDate(std::string_view s) {
  auto digits = [&](size_t from, size_t n) {
    int v = 0;
    for (size_t i = from; i < from + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z')
    return InvalidArgument("x-amz-date '" + std::string(s) + "' is not of the form 20261201T103000Z");
  std::tm tm{};
  tm.tm_year = digits(0, 4) - 1900;
  tm.tm_mon = digits(4, 2) - 1;
  tm.tm_mday = digits(6, 2);
  tm.tm_hour = digits(9, 2);
  tm.tm_min = digits(11, 2);
  tm.tm_sec = digits(13, 2);
  if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
      tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 ||
      tm.tm_sec > 60) {
    return InvalidArgument("x-amz-date '" + std::string(s) + "' is not a valid time");
  }
  return static_cast<int64_t>(::timegm(&tm));
}

Status CheckScope(const Authorization& auth, const SignedRequest& request, int64_t now_seconds,
                  std::string_view service) {
  if (std::find(auth.signed_headers.begin(), auth.signed_headers.end(), "host") == auth.signed_headers.end())
    return InvalidArgument("the host header must be signed (SignedHeaders lacks host)");
  auto date = request.headers.find("x-amz-date");
  if (date == request.headers.end()) return InvalidArgument("the x-amz-date header is missing");
  TAKT_ASSIGN_OR_RETURN(int64_t signed_at, ParseAmzDate(date->second));
  if (signed_at < now_seconds - kMaxClockSkewSeconds || signed_at > now_seconds + kMaxClockSkewSeconds) {
    return PermissionDenied("Signature expired: x-amz-date " + date->second +
                            " is more than 15 minutes from the server's time");
  }
  if (auth.date != std::string_view(date->second).substr(0, 8)) {
    return PermissionDenied("the credential scope's date " + auth.date + " is not x-amz-date's date " +
                            date->second.substr(0, 8));
  }
  if (auth.service != service) {
    return PermissionDenied("Credential should be scoped to correct service: '" + std::string(service) +
                            "', not '" + auth.service + "'");
  }
  return Ok();
}

Result<std::string> PayloadHash(const SignedRequest& request, std::string_view body) {
  const std::string actual = crypto::Sha256Hex(body);
  auto declared = request.headers.find("x-amz-content-sha256");
  if (declared == request.headers.end()) return actual;
  const std::string& value = declared->second;
  if (value == "UNSIGNED-PAYLOAD" || value.rfind("STREAMING-", 0) == 0)
    return PermissionDenied("the payload must be signed: x-amz-content-sha256 " + value + " is not accepted");
  if (!crypto::ConstantTimeEquals(value, actual))
    return PermissionDenied("the body does not match its x-amz-content-sha256");
  return value;
}

Result<std::string> ExpectedSignature(const Authorization& auth, const SignedRequest& request,
                                      std::string_view secret, std::string_view body) {
  TAKT_ASSIGN_OR_RETURN(std::string payload_hash, PayloadHash(request, body));
  TAKT_ASSIGN_OR_RETURN(std::string canonical, CanonicalRequest(request, auth.signed_headers, payload_hash));
  auto date = request.headers.find("x-amz-date");
  if (date == request.headers.end()) return InvalidArgument("the x-amz-date header is missing");
  std::string key = SigningKey(secret, auth.date, auth.region, auth.service);
  std::string signature = crypto::HmacSha256Hex(key, StringToSign(date->second, auth.Scope(), canonical));
  crypto::SecureErase(key);
  return signature;
}

Status Verify(const Authorization& auth, const SignedRequest& request, std::string_view secret,
              std::string_view body, int64_t now_seconds, std::string_view service) {
  TAKT_RETURN_IF_ERROR(CheckScope(auth, request, now_seconds, service));
  TAKT_ASSIGN_OR_RETURN(std::string expected, ExpectedSignature(auth, request, secret, body));
  if (!crypto::ConstantTimeEquals(expected, auth.signature)) {
    return PermissionDenied(
        "The request signature we calculated does not match the signature you provided. Check your AWS "
        "Secret Access Key and signing method.");
  }
  return Ok();
}

}  // namespace takt::iam::sigv4
