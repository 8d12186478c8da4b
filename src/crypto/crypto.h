// File: crypto/crypto.h
//
// Hashing, HMAC, random tokens, hex and authenticated encryption (AES-256-GCM)
// for the rest of takt. A thin, exception-free layer over OpenSSL 3 (libcrypto);
// no OpenSSL type appears here.
//
// Thread safety: every free function is safe to call from any thread. A `Sha256`
// object is not shared between threads without external locking.
//
// Byte strings (keys, digests, ciphertext) travel in std::string /
// std::string_view; they are raw bytes, not text.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"

namespace takt::crypto {

inline constexpr size_t kSha256Size = 32;   // bytes of a SHA-256 / HMAC-SHA256 digest
inline constexpr size_t kAeadKeySize = 32;  // AES-256
inline constexpr size_t kAeadNonceSize = 12;
inline constexpr size_t kAeadTagSize = 16;
// Bytes Seal() adds to the plaintext.
inline constexpr size_t kAeadOverhead = kAeadNonceSize + kAeadTagSize;

// SHA-256 of `data`: the raw digest, and as 64 lowercase hex characters.
std::array<uint8_t, kSha256Size> Sha256Digest(std::string_view data);
std::string Sha256Hex(std::string_view data);

// Standard base64 (RFC 4648, with padding). Decode: InvalidArgument for
// anything that is not well-formed base64.
std::string Base64Encode(std::string_view data);
Result<std::string> Base64Decode(std::string_view text);

// Incremental SHA-256 for data that arrives in pieces (streamed files).
//   Sha256 h; h.Update(a); h.Update(b); std::string hex = h.FinishHex();
// FinishHex() resets the object, so it can hash the next message.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void Update(std::string_view data);
  // The digest of everything passed to Update() since construction or the last
  // FinishHex(), as 64 lowercase hex characters.
  std::string FinishHex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `n` bytes from OpenSSL's CSPRNG (RAND_bytes). Aborts the process if the
// CSPRNG fails: there is no safe way to continue without randomness.
std::string RandomBytes(size_t n);

// prefix + "_" + 256 random bits as 64 lowercase hex characters ("takt_3fa9...").
std::string NewToken(std::string_view prefix);

// HMAC-SHA256 of `data` under `key`: raw 32 bytes, and as 64 lowercase hex.
std::string HmacSha256(std::string_view key, std::string_view data);
std::string HmacSha256Hex(std::string_view key, std::string_view data);

// True if a and b are equal. The time taken depends on their lengths only, not
// on their contents: compare secrets (tokens, MACs) with this.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// Lowercase hex of raw bytes.
std::string HexEncode(std::string_view bytes);
// Inverse of HexEncode; accepts upper- and lowercase digits. InvalidArgument on
// an odd length or a character that is not a hex digit.
Result<std::string> HexDecode(std::string_view hex);

// AES-256-GCM. `key` must be 32 bytes (else InvalidArgument). `aad` is
// authenticated but not encrypted: bind the ciphertext to its context (an id)
// with it. Output = 12-byte random nonce || ciphertext || 16-byte tag.
// A random nonce per call: keep below ~2^32 Seal() calls per key.
Result<std::string> Seal(std::string_view key, std::string_view plaintext, std::string_view aad);

// Inverse of Seal. InvalidArgument for a key that is not 32 bytes;
// FailedPrecondition "authentication failed: ..." when the data is corrupt or
// truncated, or the key or aad is not the one it was sealed with. No unverified
// plaintext is ever returned.
Result<std::string> Open(std::string_view key, std::string_view sealed, std::string_view aad);

// Overwrites a secret's bytes (in a way the optimiser keeps) and clears it.
void SecureErase(std::string& secret);

}  // namespace takt::crypto
