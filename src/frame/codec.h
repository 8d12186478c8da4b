// File: frame/codec.h
//
// The on-disk form of a Table: what a dataset version is before it is
// encrypted into the blob store. Columnar, so a reader that needs three
// features out of forty decompresses three chunks.
//
//   "TKF1"  u32 header length  header  u32 CRC-32 of header  column chunks...
//
// The header holds the row count and, per column, its name, type, nullability
// and the offset, length, uncompressed length and CRC-32 of its chunk. A chunk
// (zstd-compressed, or stored raw when that is smaller) holds the column's
// validity bitmap and values: integers as zigzag varint deltas, float64 as
// byte planes, strings as varint lengths then bytes. Every length is checked
// before use and every checksum before decoding, so corrupt or truncated input
// is an InvalidArgument error, never a crash or an allocation larger than the
// input could justify.
//
// Pure functions, safe to call from many threads at once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "frame/table.h"

namespace takt::frame {

// Encodes `table`. Deterministic: the same table gives the same bytes (with the
// same libzstd version; any version decodes them). Expects a table that passes
// Table::Validate(); otherwise each column is cut or padded to num_rows() so
// the result still decodes.
std::string EncodeTable(const Table& table);

// Decodes bytes from EncodeTable. If `columns` is non-null only those columns
// are decoded, in the order given; the others are never decompressed. A name
// not in the table is InvalidArgument "column 'x' is not in the table"; so is a
// name asked for twice.
Result<Table> DecodeTable(std::string_view bytes, const std::vector<std::string>* columns = nullptr);

// The schema alone, from the header; no chunk is decompressed.
Result<Schema> DecodeSchema(std::string_view bytes);

}  // namespace takt::frame
