#include "http/message.h"

#include "core/json.h"

namespace takt::http {

std::string ToLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    c = AsciiLower(c);
  }
  return out;
}

std::string_view Request::Header(std::string_view name) const {
  // Header names are short: lowercase them on the stack.
  char lower[64];
  if (name.size() > sizeof lower) {
    auto it = headers.find(ToLower(name));
    return it == headers.end() ? std::string_view() : std::string_view(it->second);
  }
  for (size_t i = 0; i < name.size(); ++i) lower[i] = AsciiLower(name[i]);
  auto it = headers.find(std::string_view(lower, name.size()));
  return it == headers.end() ? std::string_view() : std::string_view(it->second);
}

std::optional<std::string> Request::Query(std::string_view name) const {
  auto it = query.find(std::string(name));
  if (it == query.end()) return std::nullopt;
  return it->second;
}

std::string_view Request::ContentType() const {
  auto it = headers.find("content-type");
  if (it == headers.end()) return {};
  std::string_view value = it->second;
  value = value.substr(0, value.find(';'));
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  return value;
}

Response ErrorResponse(const Error& error) {
  return ErrorResponse(HttpStatus(error.code()), CodeName(error.code()), error.message());
}

Response ErrorResponse(int status, std::string_view code_name, std::string_view message) {
  Json body = {{"error", {{"code", code_name}, {"message", message}}}};
  Response response;
  response.status = status;
  // Messages may quote user input that is not valid UTF-8: replace, never throw.
  response.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  return response;
}

Response JsonResponse(int status, std::string json_body) {
  Response response;
  response.status = status;
  response.body = std::move(json_body);
  return response;
}

}  // namespace takt::http
