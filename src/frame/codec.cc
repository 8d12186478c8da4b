#include "frame/codec.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <memory>
#include <unordered_set>

namespace takt::frame {
namespace {

constexpr std::string_view kMagic = "TKF1";
constexpr int kCompressionLevel = 3;
// Largest zstd window a chunk may ask the decoder for (16 MiB). Level 3 never
// uses more than 2 MiB; the cap keeps a crafted frame from demanding 128 MiB.
constexpr int kMaxWindowLog = 24;

// On-disk codes: stable, independent of the Type enum's values.
enum class TypeCode : uint8_t { kInt64 = 1, kFloat64 = 2, kString = 3, kBool = 4, kTimestamp = 5 };
enum class Compression : uint8_t { kNone = 0, kZstd = 1 };
enum class Validity : uint8_t { kAllValid = 0, kBitmap = 1 };
constexpr uint8_t kFlagNullable = 1;

uint8_t CodeOf(Type type) {
  switch (type) {
    case Type::kInt64:
      return static_cast<uint8_t>(TypeCode::kInt64);
    case Type::kFloat64:
      return static_cast<uint8_t>(TypeCode::kFloat64);
    case Type::kString:
      return static_cast<uint8_t>(TypeCode::kString);
    case Type::kBool:
      return static_cast<uint8_t>(TypeCode::kBool);
    case Type::kTimestamp:
      return static_cast<uint8_t>(TypeCode::kTimestamp);
  }
  return 0;
}

std::optional<Type> TypeOfCode(uint8_t code) {
  switch (static_cast<TypeCode>(code)) {
    case TypeCode::kInt64:
      return Type::kInt64;
    case TypeCode::kFloat64:
      return Type::kFloat64;
    case TypeCode::kString:
      return Type::kString;
    case TypeCode::kBool:
      return Type::kBool;
    case TypeCode::kTimestamp:
      return Type::kTimestamp;
  }
  return std::nullopt;
}

// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320): zlib's, which is
// several times faster than a byte-wise table.
uint32_t Crc32(std::string_view data) {
  return static_cast<uint32_t>(
      crc32_z(crc32_z(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(data.data()), data.size()));
}

// Grows `s` by `n` bytes without zero-filling them; the caller writes them.
// The operation returns the size it was asked for, not its second argument:
// GCC 12's libstdc++ passes the new capacity there when the string grows.
char* GrowUninitialized(std::string& s, size_t n) {
  const size_t base = s.size();
  const size_t size = base + n;
  s.resize_and_overwrite(size, [size](char*, size_t) { return size; });
  return s.data() + base;
}

// ---------------------------------------------------------------------------
// Little-endian and varint primitives.

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

uint64_t ZigZag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t UnZigZag(uint64_t u) { return static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1)); }

// Bounds-checked reading: every method fails rather than read past the end.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  size_t left() const { return data_.size(); }

  bool U8(uint8_t* v) {
    if (data_.empty()) return false;
    *v = static_cast<uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return true;
  }

  bool U32(uint32_t* v) {
    if (data_.size() < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; ++i) *v |= static_cast<uint32_t>(static_cast<uint8_t>(data_[i])) << (8 * i);
    data_.remove_prefix(4);
    return true;
  }

  bool Varint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (data_.empty()) return false;
      const auto byte = static_cast<uint8_t>(data_[0]);
      data_.remove_prefix(1);
      if (shift == 63 && byte > 1) return false;  // more than 64 bits
      result |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) {
        *v = result;
        return true;
      }
    }
    return false;
  }

  bool Bytes(uint64_t n, std::string_view* out) {
    if (n > data_.size()) return false;
    *out = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }

 private:
  std::string_view data_;
};

std::unexpected<Error> Corrupt(std::string_view what) {
  return InvalidArgument("not a valid encoded table: " + std::string(what));
}

// ---------------------------------------------------------------------------
// Header.

struct ChunkEntry {
  Field field;
  Compression compression = Compression::kNone;
  uint64_t offset = 0;      // from the start of the chunk area
  uint64_t stored_len = 0;  // bytes in the file
  uint64_t raw_len = 0;     // bytes after decompression
  uint32_t crc = 0;         // CRC-32 of the stored bytes
};

struct Header {
  uint64_t num_rows = 0;
  std::vector<ChunkEntry> chunks;
  std::string_view data;  // the chunk area
};

Result<Header> ParseHeader(std::string_view bytes) {
  constexpr size_t kFixed = 4 + 4 + 4;  // magic, header length, header CRC
  if (bytes.size() < kFixed) return Corrupt("too short");
  if (bytes.substr(0, 4) != kMagic) return Corrupt("bad magic (expected TKF1)");
  Reader prefix(bytes.substr(4, 4));
  uint32_t header_len = 0;
  if (!prefix.U32(&header_len)) return Corrupt("too short");
  if (header_len > bytes.size() - kFixed) return Corrupt("header is truncated");
  const std::string_view body = bytes.substr(8, header_len);
  Reader crc_reader(bytes.substr(8 + header_len, 4));
  uint32_t header_crc = 0;
  if (!crc_reader.U32(&header_crc) || header_crc != Crc32(body)) return Corrupt("header checksum mismatch");

  Header h;
  h.data = bytes.substr(kFixed + header_len);
  Reader r(body);
  uint64_t num_columns = 0;
  if (!r.Varint(&h.num_rows) || !r.Varint(&num_columns)) return Corrupt("header is truncated");
  if (num_columns > r.left()) return Corrupt("column count exceeds the header");
  h.chunks.reserve(num_columns);
  uint64_t next_offset = 0;
  for (uint64_t i = 0; i < num_columns; ++i) {
    ChunkEntry e;
    uint64_t name_len = 0;
    std::string_view name;
    uint8_t type_code = 0, flags = 0, compression = 0;
    if (!r.Varint(&name_len) || !r.Bytes(name_len, &name) || !r.U8(&type_code) || !r.U8(&flags) ||
        !r.U8(&compression) || !r.Varint(&e.offset) || !r.Varint(&e.stored_len) || !r.Varint(&e.raw_len) ||
        !r.U32(&e.crc)) {
      return Corrupt("header is truncated");
    }
    const std::optional<Type> type = TypeOfCode(type_code);
    if (!type) return Corrupt("unknown column type code " + std::to_string(type_code));
    if ((flags & ~kFlagNullable) != 0) return Corrupt("unknown column flags");
    if (compression > static_cast<uint8_t>(Compression::kZstd)) return Corrupt("unknown compression");
    e.field = Field{std::string(name), *type, (flags & kFlagNullable) != 0};
    e.compression = static_cast<Compression>(compression);
    if (e.offset != next_offset || e.stored_len > h.data.size() - next_offset) {
      return Corrupt("column chunk lies outside the data");
    }
    if (e.raw_len == 0 || (e.compression == Compression::kNone && e.raw_len != e.stored_len)) {
      return Corrupt("bad column chunk length");
    }
    next_offset += e.stored_len;
    h.chunks.push_back(std::move(e));
  }
  if (r.left() != 0) return Corrupt("trailing bytes in the header");
  if (next_offset != h.data.size()) return Corrupt("length does not match the header");
  return h;
}

// ---------------------------------------------------------------------------
// Column chunks.

std::string EncodeChunk(const Column& col, size_t rows) {
  std::string raw;
  if (col.valid.empty()) {
    raw += static_cast<char>(Validity::kAllValid);
  } else {
    raw += static_cast<char>(Validity::kBitmap);
    std::string bitmap((rows + 7) / 8, '\0');
    for (size_t r = 0; r < rows && r < col.valid.size(); ++r) {
      if (col.valid[r] != 0) bitmap[r / 8] = static_cast<char>(bitmap[r / 8] | (1 << (r % 8)));
    }
    raw += bitmap;
  }
  switch (col.field.type) {
    case Type::kInt64:
    case Type::kBool:
    case Type::kTimestamp: {
      // Deltas keep sorted ids and regularly sampled timestamps to a byte or two.
      // Written through a pointer into room for the longest varints: this is
      // the hot loop of every ingest.
      auto* out = reinterpret_cast<uint8_t*>(GrowUninitialized(raw, rows * 10));
      uint64_t prev = 0;
      const size_t have = std::min(rows, col.ints.size());
      for (size_t r = 0; r < rows; ++r) {
        const uint64_t v = r < have ? static_cast<uint64_t>(col.ints[r]) : 0;
        uint64_t z = ZigZag(static_cast<int64_t>(v - prev));
        prev = v;
        while (z >= 0x80) {
          *out++ = static_cast<uint8_t>((z & 0x7F) | 0x80);
          z >>= 7;
        }
        *out++ = static_cast<uint8_t>(z);
      }
      raw.resize(static_cast<size_t>(reinterpret_cast<char*>(out) - raw.data()));
      break;
    }
    case Type::kFloat64: {
      // Byte planes: all rows' lowest bytes, then the next, ... Sign and
      // exponent bytes repeat across rows and compress far better grouped.
      // One plane at a time, so every write is sequential.
      char* planes = GrowUninitialized(raw, rows * 8);
      const size_t have = std::min(rows, col.doubles.size());
      for (size_t b = 0; b < 8; ++b) {
        char* plane = planes + b * rows;
        const int shift = static_cast<int>(8 * b);
        for (size_t r = 0; r < have; ++r) {
          plane[r] = static_cast<char>((std::bit_cast<uint64_t>(col.doubles[r]) >> shift) & 0xFF);
        }
        for (size_t r = have; r < rows; ++r) plane[r] = 0;
      }
      break;
    }
    case Type::kString: {
      static const std::string kEmpty;
      size_t total = 0;
      for (size_t r = 0; r < rows && r < col.strings.size(); ++r) total += col.strings[r].size();
      raw.reserve(raw.size() + rows * 2 + total);
      for (size_t r = 0; r < rows; ++r)
        PutVarint(raw, (r < col.strings.size() ? col.strings[r] : kEmpty).size());
      for (size_t r = 0; r < rows && r < col.strings.size(); ++r) raw += col.strings[r];
      break;
    }
  }
  return raw;
}

Result<Column> DecodeChunk(std::string_view raw, const Field& field, uint64_t rows) {
  Column col;
  col.field = field;
  Reader r(raw);
  uint8_t validity = 0;
  if (!r.U8(&validity)) return Corrupt("empty column chunk");
  if (validity == static_cast<uint8_t>(Validity::kBitmap)) {
    std::string_view bitmap;
    if (!r.Bytes(rows / 8 + (rows % 8 != 0 ? 1 : 0), &bitmap)) return Corrupt("validity bitmap is truncated");
    col.valid.resize(rows);
    for (uint64_t i = 0; i < rows; ++i) col.valid[i] = (static_cast<uint8_t>(bitmap[i / 8]) >> (i % 8)) & 1;
  } else if (validity != static_cast<uint8_t>(Validity::kAllValid)) {
    return Corrupt("unknown validity kind");
  }
  switch (field.type) {
    case Type::kInt64:
    case Type::kBool:
    case Type::kTimestamp: {
      if (rows > r.left()) return Corrupt("column chunk is truncated");  // at least a byte a row
      col.ints.resize(rows);
      uint64_t prev = 0;
      for (uint64_t i = 0; i < rows; ++i) {
        uint64_t delta = 0;
        if (!r.Varint(&delta)) return Corrupt("column chunk is truncated");
        prev += static_cast<uint64_t>(UnZigZag(delta));
        col.ints[i] = static_cast<int64_t>(prev);
      }
      break;
    }
    case Type::kFloat64: {
      std::string_view planes;
      if (rows > r.left() / 8 || !r.Bytes(rows * 8, &planes)) return Corrupt("column chunk is truncated");
      col.doubles.resize(rows);
      for (uint64_t i = 0; i < rows; ++i) {
        uint64_t bits = 0;
        for (uint64_t b = 0; b < 8; ++b)
          bits |= static_cast<uint64_t>(static_cast<uint8_t>(planes[b * rows + i])) << (8 * b);
        col.doubles[i] = std::bit_cast<double>(bits);
      }
      break;
    }
    case Type::kString: {
      if (rows > r.left()) return Corrupt("column chunk is truncated");  // at least a length byte a row
      std::vector<uint64_t> lengths(rows);
      uint64_t total = 0;
      for (uint64_t i = 0; i < rows; ++i) {
        if (!r.Varint(&lengths[i]) || total > r.left() || lengths[i] > r.left() - total) {
          return Corrupt("column chunk is truncated");
        }
        total += lengths[i];
      }
      if (total != r.left()) return Corrupt("string bytes do not match their lengths");
      col.strings.resize(rows);
      for (uint64_t i = 0; i < rows; ++i) {
        std::string_view s;
        if (!r.Bytes(lengths[i], &s)) return Corrupt("column chunk is truncated");
        col.strings[i].assign(s);
      }
      break;
    }
  }
  if (r.left() != 0) return Corrupt("trailing bytes in a column chunk");
  return col;
}

using DCtxPtr = std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)>;

// Decompresses one zstd frame that must expand to exactly `raw_len` bytes. The
// output buffer grows with what the frame really produces, so a header that
// claims a huge length cannot make us allocate it.
Result<std::string> Decompress(ZSTD_DCtx* dctx, std::string_view src, uint64_t raw_len) {
  ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
  const uint64_t first = std::max<uint64_t>(uint64_t{1} << 20, static_cast<uint64_t>(src.size()) * 16);
  std::string out(std::min(raw_len, first), '\0');
  ZSTD_inBuffer in{src.data(), src.size(), 0};
  ZSTD_outBuffer o{out.data(), out.size(), 0};
  while (true) {
    const size_t in_before = in.pos, out_before = o.pos;
    const size_t ret = ZSTD_decompressStream(dctx, &o, &in);
    if (ZSTD_isError(ret)) return Corrupt(std::string("column chunk: ") + ZSTD_getErrorName(ret));
    if (ret == 0) break;  // frame complete
    if (o.pos == o.size) {
      if (out.size() == raw_len) return Corrupt("column chunk is longer than the header says");
      out.resize(std::min<uint64_t>(raw_len, out.size() * 2));
      o.dst = out.data();
      o.size = out.size();
    } else if (in.pos == in.size || (in.pos == in_before && o.pos == out_before)) {
      return Corrupt("column chunk is truncated");
    }
  }
  if (in.pos != in.size) return Corrupt("trailing bytes after a column chunk");
  if (o.pos != raw_len) return Corrupt("column chunk is shorter than the header says");
  return out;
}

Result<Column> DecodeColumn(ZSTD_DCtx* dctx, const Header& h, const ChunkEntry& e) {
  const std::string_view stored = h.data.substr(e.offset, e.stored_len);
  if (Crc32(stored) != e.crc) return Corrupt("checksum mismatch in column '" + e.field.name + "'");
  if (e.compression == Compression::kNone) return DecodeChunk(stored, e.field, h.num_rows);
  TAKT_ASSIGN_OR_RETURN(std::string raw, Decompress(dctx, stored, e.raw_len));
  return DecodeChunk(raw, e.field, h.num_rows);
}

}  // namespace

std::string EncodeTable(const Table& table) {
  const size_t rows = table.num_rows();
  // One context per thread, reused: creating one allocates (and faults in)
  // its tables on every call. Parameters are set explicitly each time (no
  // threads, no checksum: the header carries CRCs) so the output depends only
  // on the table and the zstd version.
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (cctx) {
    ZSTD_CCtx_reset(cctx.get(), ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, kCompressionLevel);
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 0);
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 1);
  }

  std::string header;
  PutVarint(header, rows);
  PutVarint(header, table.columns.size());
  std::string data;
  for (const Column& col : table.columns) {
    const std::string raw = EncodeChunk(col, rows);
    const size_t offset = data.size();
    Compression compression = Compression::kNone;
    if (cctx) {
      // Compressed straight into place; kept only when it is smaller.
      const size_t bound = ZSTD_compressBound(raw.size());
      char* dst = GrowUninitialized(data, bound);
      const size_t n = ZSTD_compress2(cctx.get(), dst, bound, raw.data(), raw.size());
      if (!ZSTD_isError(n) && n < raw.size()) {
        data.resize(offset + n);
        compression = Compression::kZstd;
      } else {
        data.resize(offset);
      }
    }
    if (compression == Compression::kNone) data += raw;
    const std::string_view stored = std::string_view(data).substr(offset);
    PutVarint(header, col.field.name.size());
    header += col.field.name;
    header += static_cast<char>(CodeOf(col.field.type));
    header += static_cast<char>(col.field.nullable ? kFlagNullable : 0);
    header += static_cast<char>(compression);
    PutVarint(header, offset);
    PutVarint(header, stored.size());
    PutVarint(header, raw.size());
    PutU32(header, Crc32(stored));
  }

  std::string out;
  out.reserve(kMagic.size() + 8 + header.size() + data.size());
  out += kMagic;
  PutU32(out, static_cast<uint32_t>(header.size()));
  out += header;
  PutU32(out, Crc32(header));
  out += data;
  return out;
}

Result<Table> DecodeTable(std::string_view bytes, const std::vector<std::string>* columns) {
  TAKT_ASSIGN_OR_RETURN(Header h, ParseHeader(bytes));
  std::vector<const ChunkEntry*> wanted;
  if (columns == nullptr) {
    for (const ChunkEntry& e : h.chunks) wanted.push_back(&e);
  } else {
    std::unordered_set<std::string_view> requested;
    for (const std::string& name : *columns) {
      auto it = std::find_if(h.chunks.begin(), h.chunks.end(),
                             [&](const ChunkEntry& e) { return e.field.name == name; });
      if (it == h.chunks.end()) return InvalidArgument("column '" + name + "' is not in the table");
      if (!requested.insert(name).second) return InvalidArgument("column '" + name + "' is requested twice");
      wanted.push_back(&*it);
    }
  }

  DCtxPtr dctx(nullptr, ZSTD_freeDCtx);
  Table table;
  table.columns.reserve(wanted.size());
  for (const ChunkEntry* e : wanted) {
    if (e->compression == Compression::kZstd && !dctx) {
      dctx.reset(ZSTD_createDCtx());
      if (!dctx) return Internal("cannot create a zstd decompression context");
      ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, kMaxWindowLog);
    }
    TAKT_ASSIGN_OR_RETURN(Column col, DecodeColumn(dctx.get(), h, *e));
    table.columns.push_back(std::move(col));
  }
  return table;
}

Result<Schema> DecodeSchema(std::string_view bytes) {
  TAKT_ASSIGN_OR_RETURN(Header h, ParseHeader(bytes));
  Schema schema;
  schema.fields.reserve(h.chunks.size());
  for (ChunkEntry& e : h.chunks) schema.fields.push_back(std::move(e.field));
  return schema;
}

}  // namespace takt::frame
