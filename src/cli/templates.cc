#include "cli/templates.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <system_error>

namespace takt::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kDescriptionFile = "DESCRIPTION";

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  size_t start = s.find_first_not_of(" \n");
  return start == std::string::npos ? std::string() : s.substr(start);
}

std::vector<ProjectTemplate> Load() {
  std::map<std::string, ProjectTemplate> by_name;
  for (size_t i = 0; i < internal::kEmbeddedFileCount; ++i) {
    const internal::EmbeddedFile& f = internal::kEmbeddedFiles[i];
    const std::string_view path = f.path;
    const size_t slash = path.find('/');
    if (slash == std::string_view::npos) continue;  // a file beside the templates, not in one
    const std::string name(path.substr(0, slash));
    ProjectTemplate& t = by_name[name];
    t.name = name;
    std::string content(reinterpret_cast<const char*>(f.data), f.size);
    const std::string_view rest = path.substr(slash + 1);
    if (rest == kDescriptionFile) {
      t.description = Trim(std::move(content));
    } else {
      t.files.push_back({std::string(rest), std::move(content)});
    }
  }
  std::vector<ProjectTemplate> out;
  for (auto& [_, t] : by_name) {
    std::sort(t.files.begin(), t.files.end(),
              [](const TemplateFile& a, const TemplateFile& b) { return a.path < b.path; });
    out.push_back(std::move(t));
  }
  return out;
}

std::string Names() {
  std::string s;
  for (const auto& t : Templates()) s += (s.empty() ? "" : ", ") + t.name;
  return s.empty() ? "none" : s;
}

}  // namespace

const std::vector<ProjectTemplate>& Templates() {
  static const std::vector<ProjectTemplate> templates = Load();
  return templates;
}

Result<const ProjectTemplate*> FindTemplate(std::string_view name) {
  for (const auto& t : Templates()) {
    if (t.name == name) return &t;
  }
  return InvalidArgument("unknown template '" + std::string(name) + "' (available: " + Names() +
                         "; `takt project templates` describes them)");
}

std::map<std::string, std::string> TemplateValues(const std::string& project, const std::string& dataset) {
  return {{"project", project}, {"dataset", dataset}};
}

Result<std::string> Substitute(std::string_view text, const std::map<std::string, std::string>& values) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = text.find("{{", pos);
    if (start == std::string_view::npos) {
      out.append(text.substr(pos));
      break;
    }
    out.append(text.substr(pos, start - pos));
    const size_t end = text.find("}}", start + 2);
    if (end == std::string_view::npos) {
      return InvalidArgument("unterminated placeholder '" + std::string(text.substr(start, 20)) + "'");
    }
    std::string key(text.substr(start + 2, end - start - 2));
    key = Trim(std::move(key));
    auto it = values.find(key);
    if (it == values.end()) {
      std::string known;
      for (const auto& [k, _] : values) known += (known.empty() ? "" : ", ") + ("{{" + k + "}}");
      return InvalidArgument("unknown placeholder {{" + key + "}} (known: " + known + ")");
    }
    out.append(it->second);
    pos = end + 2;
  }
  return out;
}

Result<std::vector<TemplateFile>> RenderTemplate(const ProjectTemplate& t,
                                                 const std::map<std::string, std::string>& values) {
  std::vector<TemplateFile> out;
  for (const auto& f : t.files) {
    auto content = Substitute(f.content, values);
    if (!content) return std::unexpected(content.error().WithContext("template " + t.name + ": " + f.path));
    out.push_back({f.path, std::move(*content)});
  }
  return out;
}

Status CheckProjectDirectory(const std::string& dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return FailedPrecondition("cannot look at " + dir + ": " + ec.message());
  }
  if (!fs::exists(st)) return Ok();
  if (!fs::is_directory(st)) return FailedPrecondition(dir + " exists and is not a directory");
  if (fs::directory_iterator(dir, ec) != fs::directory_iterator()) {
    return AlreadyExists(
        "directory " + dir +
        " exists and is not empty: name a new or empty one with --dir (nothing was created)");
  }
  if (ec) return FailedPrecondition("cannot read " + dir + ": " + ec.message());
  return Ok();
}

Result<std::vector<std::string>> WriteProjectFiles(const std::string& dir,
                                                   const std::vector<TemplateFile>& files) {
  std::vector<std::string> written;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create " + dir + ": " + ec.message());
  for (const auto& f : files) {
    const fs::path path = fs::path(dir) / f.path;
    fs::create_directories(path.parent_path(), ec);
    if (ec) return Unavailable("cannot create " + path.parent_path().string() + ": " + ec.message());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(f.content.data(), static_cast<std::streamsize>(f.content.size()));
    out.close();
    if (!out) return Unavailable("cannot write " + path.string());
    written.push_back(path.string());
  }
  return written;
}

}  // namespace takt::cli
