#include "frame/batch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "core/posix.h"

namespace takt::frame {
namespace {

class StringByteSource final : public ByteSource {
 public:
  explicit StringByteSource(std::string_view data) : data_(data) {}

  Result<size_t> Read(char* buf, size_t n) override {
    const size_t count = std::min(n, data_.size() - pos_);
    if (count > 0) std::memcpy(buf, data_.data() + pos_, count);
    pos_ += count;
    return count;
  }
  uint64_t size_hint() const override { return data_.size(); }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

// A missing file is NotFound; anything else that stops us opening or reading
// it (permissions, a directory, an I/O error) is Unavailable.
std::unexpected<Error> FileError(int err, const std::string& what) {
  std::string message = what + ": " + std::strerror(err);
  if (err == ENOENT || err == ENOTDIR) return NotFound(std::move(message));
  return Unavailable(std::move(message));
}

class FileByteSource final : public ByteSource {
 public:
  // Takes ownership of `fd`.
  FileByteSource(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  // Learns the size; refuses a directory.
  Status Init() {
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0) return FileError(errno, "opening " + path_);
    if (S_ISDIR(st.st_mode)) return FileError(EISDIR, "opening " + path_);
    size_ = S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
    // Advice only: a failure changes nothing but speed.
    IgnoreError(::posix_fadvise(fd_.get(), 0, 0, POSIX_FADV_SEQUENTIAL));
    return Ok();
  }

  // Fills `buf` as far as the file goes: one read(2) per call normally, more
  // only when the kernel returns less (pipes, signals).
  Result<size_t> Read(char* buf, size_t n) override {
    size_t done = 0;
    while (done < n) {
      const ssize_t got = ::read(fd_.get(), buf + done, n - done);
      if (got < 0) {
        if (errno == EINTR) continue;
        return FileError(errno, "reading " + path_);
      }
      if (got == 0) break;
      done += static_cast<size_t>(got);
    }
    return done;
  }
  uint64_t size_hint() const override { return size_; }

 private:
  UniqueFd fd_;
  std::string path_;
  uint64_t size_ = 0;
};

// Copies the entries of `values` whose `keep` entry is non-zero.
template <typename T>
std::vector<T> Select(const std::vector<T>& values, const std::vector<uint8_t>& keep, size_t count) {
  std::vector<T> out;
  out.reserve(count);
  const size_t n = std::min(values.size(), keep.size());
  for (size_t i = 0; i < n; ++i) {
    if (keep[i] != 0) out.push_back(values[i]);
  }
  return out;
}

template <typename T>
std::vector<T> Slice(const std::vector<T>& values, size_t offset, size_t count) {
  if (offset >= values.size()) return {};
  const size_t end = std::min(values.size(), offset + count);
  return std::vector<T>(values.begin() + static_cast<std::ptrdiff_t>(offset),
                        values.begin() + static_cast<std::ptrdiff_t>(end));
}

// A validity vector without nulls is written as an empty one.
void DropAllValid(Column& col) {
  if (std::find(col.valid.begin(), col.valid.end(), 0) == col.valid.end()) col.valid.clear();
}

template <typename T>
void Append(std::vector<T>& dst, const std::vector<T>& src) {
  dst.insert(dst.end(), src.begin(), src.end());
}

}  // namespace

std::unique_ptr<ByteSource> StringSource(std::string_view data) {
  return std::make_unique<StringByteSource>(data);
}

Result<std::unique_ptr<ByteSource>> FileSource(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileError(errno, "opening " + path.string());
  auto source = std::make_unique<FileByteSource>(fd, path.string());
  TAKT_RETURN_IF_ERROR(source->Init());
  return std::unique_ptr<ByteSource>(std::move(source));
}

Result<Table> ReadAll(BatchReader& reader) {
  Table table;
  bool first = true;
  while (true) {
    TAKT_ASSIGN_OR_RETURN(std::optional<Table> batch, reader.Next());
    if (!batch) break;
    if (first) {
      table = std::move(*batch);
      first = false;
    } else {
      TAKT_RETURN_IF_ERROR(AppendRows(table, *batch));
    }
  }
  const Schema& schema = reader.schema();
  if (first) {
    table.columns.resize(schema.fields.size());
    for (size_t c = 0; c < schema.fields.size(); ++c) table.columns[c].field = schema.fields[c];
    return table;
  }
  if (table.columns.size() != schema.fields.size()) {
    return Internal("reader returned batches of " + std::to_string(table.columns.size()) +
                    " columns for a schema of " + std::to_string(schema.fields.size()));
  }
  for (size_t c = 0; c < schema.fields.size(); ++c) {
    Field& field = table.columns[c].field;
    if (field.name != schema.fields[c].name || field.type != schema.fields[c].type) {
      return Internal("reader returned a batch column '" + field.name + "' that its schema does not have");
    }
    field.nullable = schema.fields[c].nullable || field.nullable;
  }
  return table;
}

Status AppendRows(Table& dst, const Table& src) {
  if (dst.columns.empty()) {
    dst = src;
    return Ok();
  }
  if (dst.columns.size() != src.columns.size()) {
    return InvalidArgument("appending rows of " + std::to_string(src.columns.size()) +
                           " columns to a table of " + std::to_string(dst.columns.size()));
  }
  for (size_t c = 0; c < dst.columns.size(); ++c) {
    const Field& d = dst.columns[c].field;
    const Field& s = src.columns[c].field;
    if (d.name != s.name || d.type != s.type) {
      return InvalidArgument("appending rows: column " + std::to_string(c + 1) + " is '" + d.name + "' (" +
                             std::string(TypeName(d.type)) + ") in the table but '" + s.name + "' (" +
                             std::string(TypeName(s.type)) + ") in the rows");
    }
  }
  for (size_t c = 0; c < dst.columns.size(); ++c) {
    Column& d = dst.columns[c];
    const Column& s = src.columns[c];
    const size_t dst_rows = d.size();
    const size_t src_rows = s.size();
    if (!d.valid.empty() || !s.valid.empty()) {
      if (d.valid.empty()) d.valid.assign(dst_rows, 1);
      if (s.valid.empty()) {
        d.valid.insert(d.valid.end(), src_rows, 1);
      } else {
        Append(d.valid, s.valid);
      }
    }
    Append(d.ints, s.ints);
    Append(d.doubles, s.doubles);
    Append(d.strings, s.strings);
    d.field.nullable = d.field.nullable || s.field.nullable;
  }
  return Ok();
}

Table SelectRows(const Table& table, const std::vector<uint8_t>& keep) {
  const size_t count =
      static_cast<size_t>(std::count_if(keep.begin(), keep.end(), [](uint8_t k) { return k != 0; }));
  Table out;
  out.columns.reserve(table.columns.size());
  for (const Column& col : table.columns) {
    Column& c = out.columns.emplace_back();
    c.field = col.field;
    c.ints = Select(col.ints, keep, count);
    c.doubles = Select(col.doubles, keep, count);
    c.strings = Select(col.strings, keep, count);
    c.valid = Select(col.valid, keep, count);
    DropAllValid(c);
  }
  return out;
}

Table SliceRows(const Table& table, size_t offset, size_t count) {
  Table out;
  out.columns.reserve(table.columns.size());
  for (const Column& col : table.columns) {
    Column& c = out.columns.emplace_back();
    c.field = col.field;
    c.ints = Slice(col.ints, offset, count);
    c.doubles = Slice(col.doubles, offset, count);
    c.strings = Slice(col.strings, offset, count);
    c.valid = Slice(col.valid, offset, count);
    DropAllValid(c);
  }
  return out;
}

}  // namespace takt::frame
