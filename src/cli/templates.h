// File: cli/templates.h
//
// Project templates: the standard layout a new use case starts from
// (`takt project create NAME --template T`). A template is a folder
// templates/<T>/ of the source tree, embedded into the binary at build time
// (cmake/embed_templates.cmake), so an installed `takt` carries them. Its
// DESCRIPTION file is the one line `takt project templates` shows; every other
// file is written into the project's directory with its placeholders
// ({{project}}, {{dataset}}) replaced.
//
// Everything here is read-only data built once; safe to call from any thread.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace takt::cli {

struct TemplateFile {
  std::string path;  // relative to the project directory, '/'-separated
  std::string content;
};

struct ProjectTemplate {
  std::string name;
  std::string description;
  std::vector<TemplateFile> files;  // sorted by path; placeholders not yet replaced
};

// Every embedded template, sorted by name.
const std::vector<ProjectTemplate>& Templates();

// The template called `name`; InvalidArgument naming the available ones otherwise.
Result<const ProjectTemplate*> FindTemplate(std::string_view name);

// The placeholders a template may use.
std::map<std::string, std::string> TemplateValues(const std::string& project, const std::string& dataset);

// Replaces every {{key}} with values[key]; InvalidArgument for a placeholder
// that `values` does not define, or an unterminated one.
Result<std::string> Substitute(std::string_view text, const std::map<std::string, std::string>& values);

// The template's files with their placeholders replaced.
Result<std::vector<TemplateFile>> RenderTemplate(const ProjectTemplate& t,
                                                 const std::map<std::string, std::string>& values);

// OK if `dir` does not exist or is an empty directory; AlreadyExists if it
// holds anything, FailedPrecondition if it is not a directory.
Status CheckProjectDirectory(const std::string& dir);

// Writes `files` under `dir` (created, with parents); returns the paths written.
Result<std::vector<std::string>> WriteProjectFiles(const std::string& dir,
                                                   const std::vector<TemplateFile>& files);

namespace internal {
// The generated table (embedded_templates.cc): "<template>/<path>" and bytes,
// ending with a null entry.
struct EmbeddedFile {
  const char* path;
  const unsigned char* data;
  size_t size;
};
extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kEmbeddedFileCount;
}  // namespace internal

}  // namespace takt::cli
