#include "crypto/crypto.h"

#include <cctype>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace takt::crypto {
namespace {

// OpenSSL's length parameters are `int`: feed larger inputs in pieces.
constexpr size_t kChunk = size_t{1} << 30;
// NIST SP 800-38D: at most 2^39 - 256 bits of plaintext per GCM invocation.
constexpr uint64_t kMaxGcmPlaintext = (uint64_t{1} << 36) - 32;
// A valid pointer for OpenSSL calls on empty inputs (string_view::data() may be null).
const unsigned char kEmpty[1] = {0};

const unsigned char* Bytes(std::string_view s) {
  return s.empty() ? kEmpty : reinterpret_cast<const unsigned char*>(s.data());
}
unsigned char* MutableBytes(std::string& s, size_t offset = 0) {
  return reinterpret_cast<unsigned char*>(s.data()) + offset;
}

// Drains OpenSSL's (thread-local) error queue into one line.
std::string DrainOpensslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

// For failures that leave no safe way on (the CSPRNG, allocation inside libcrypto).
[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "takt: fatal: %s: %s\n", what, DrainOpensslErrors().c_str());
  std::abort();
}

void FillRandom(unsigned char* out, size_t n) {
  while (n > 0) {
    const size_t len = std::min(n, kChunk);
    if (RAND_bytes(out, static_cast<int>(len)) != 1) Die("RAND_bytes failed");
    out += len;
    n -= len;
  }
}

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

std::unexpected<Error> OpensslFailure(std::string_view what) {
  return Internal(std::string(what) + ": " + DrainOpensslErrors());
}

Status CheckKey(std::string_view key) {
  if (key.size() != kAeadKeySize) {
    return InvalidArgument("AES-256-GCM key must be " + std::to_string(kAeadKeySize) + " bytes, got " +
                           std::to_string(key.size()));
  }
  return Ok();
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return InvalidArgument("base64: the length is not a multiple of 4");
  for (char c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/' && c != '=') {
      return InvalidArgument("base64: unexpected character");
    }
  }
  std::string out(3 * (text.size() / 4), '\0');
  const int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return InvalidArgument("base64: not well-formed");
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

namespace {

// SHA-256 fetched from the default provider once: EVP_sha256() makes
// OpenSSL 3 look the implementation up again on every digest (locks, a hash
// table), which costs more than hashing a token.
const EVP_MD* Sha256Md() {
  static EVP_MD* md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
    if (fetched == nullptr) Die("SHA-256 is not available");
    return fetched;
  }();
  return md;
}

}  // namespace

std::array<uint8_t, kSha256Size> Sha256Digest(std::string_view data) {
  struct Ctx {
    Ctx() : ctx(EVP_MD_CTX_new()) {
      if (ctx == nullptr) Die("EVP_MD_CTX_new failed");
    }
    ~Ctx() { EVP_MD_CTX_free(ctx); }
    EVP_MD_CTX* ctx;
  };
  thread_local Ctx reused;
  std::array<uint8_t, kSha256Size> md;
  unsigned int len = 0;
  if (EVP_DigestInit_ex2(reused.ctx, Sha256Md(), nullptr) != 1 ||
      EVP_DigestUpdate(reused.ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(reused.ctx, md.data(), &len) != 1 || len != md.size()) {
    Die("SHA-256 failed");
  }
  return md;
}

std::string Sha256Hex(std::string_view data) {
  auto md = Sha256Digest(data);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md.data()), md.size()));
}

struct Sha256::Impl {
  Impl() : ctx(EVP_MD_CTX_new()) {
    if (ctx == nullptr) Die("EVP_MD_CTX_new failed");
    Reset();
  }
  ~Impl() { EVP_MD_CTX_free(ctx); }
  void Reset() {
    if (EVP_DigestInit_ex2(ctx, Sha256Md(), nullptr) != 1) Die("SHA-256 init failed");
  }
  EVP_MD_CTX* ctx;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::Update(std::string_view data) {
  if (!impl_) impl_ = std::make_unique<Impl>();  // a moved-from hasher starts afresh
  if (data.empty()) return;
  if (EVP_DigestUpdate(impl_->ctx, data.data(), data.size()) != 1) Die("SHA-256 update failed");
}

std::string Sha256::FinishHex() {
  if (!impl_) impl_ = std::make_unique<Impl>();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx, md, &len) != 1) Die("SHA-256 final failed");
  impl_->Reset();
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  FillRandom(MutableBytes(out), n);
  return out;
}

std::string NewToken(std::string_view prefix) {
  std::string token(prefix);
  token += '_';
  token += HexEncode(RandomBytes(32));
  return token;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  // HMAC replaces a key longer than the hash block by its hash, so doing it
  // here for keys beyond OpenSSL's int range gives the same MAC.
  std::string hashed_key;
  if (key.size() > static_cast<size_t>(INT_MAX)) {
    Sha256 h;
    h.Update(key);
    hashed_key = *HexDecode(h.FinishHex());
    key = hashed_key;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), Bytes(key), static_cast<int>(key.size()), Bytes(data), data.size(), md, &len) ==
      nullptr) {
    Die("HMAC-SHA256 failed");
  }
  std::string out(reinterpret_cast<const char*>(md), len);
  OPENSSL_cleanse(md, sizeof(md));
  return out;
}

std::string HmacSha256Hex(std::string_view key, std::string_view data) {
  return HexEncode(HmacSha256(key, data));
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kDigits[b >> 4];
    out[2 * i + 1] = kDigits[b & 0x0f];
  }
  return out;
}

Result<std::string> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return InvalidArgument("hex string has odd length " + std::to_string(hex.size()));
  }
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      const size_t at = hi < 0 ? 2 * i : 2 * i + 1;
      return InvalidArgument("invalid hex digit at offset " + std::to_string(at));
    }
    out[i] = static_cast<char>((hi << 4) | lo);
  }
  return out;
}

Result<std::string> Seal(std::string_view key, std::string_view plaintext, std::string_view aad) {
  TAKT_RETURN_IF_ERROR(CheckKey(key));
  if (plaintext.size() > kMaxGcmPlaintext) {
    return InvalidArgument("plaintext of " + std::to_string(plaintext.size()) +
                           " bytes exceeds the AES-GCM limit of " + std::to_string(kMaxGcmPlaintext));
  }
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return OpensslFailure("EVP_CIPHER_CTX_new");

  std::string out(kAeadNonceSize + plaintext.size() + kAeadTagSize, '\0');
  unsigned char* nonce = MutableBytes(out);
  FillRandom(nonce, kAeadNonceSize);

  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kAeadNonceSize), nullptr) !=
          1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, Bytes(key), nonce) != 1) {
    return OpensslFailure("AES-256-GCM init");
  }
  int len = 0;
  for (size_t pos = 0; pos < aad.size(); pos += kChunk) {
    const size_t n = std::min(kChunk, aad.size() - pos);
    if (EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(aad) + pos, static_cast<int>(n)) != 1) {
      return OpensslFailure("AES-256-GCM aad");
    }
  }
  unsigned char* cipher = nonce + kAeadNonceSize;
  size_t written = 0;
  for (size_t pos = 0; pos < plaintext.size(); pos += kChunk) {
    const size_t n = std::min(kChunk, plaintext.size() - pos);
    if (EVP_EncryptUpdate(ctx.get(), cipher + written, &len, Bytes(plaintext) + pos, static_cast<int>(n)) !=
        1) {
      return OpensslFailure("AES-256-GCM encrypt");
    }
    written += static_cast<size_t>(len);
  }
  if (EVP_EncryptFinal_ex(ctx.get(), cipher + written, &len) != 1) {
    return OpensslFailure("AES-256-GCM final");
  }
  written += static_cast<size_t>(len);
  if (written != plaintext.size()) return Internal("AES-256-GCM wrote an unexpected number of bytes");
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kAeadTagSize),
                          cipher + written) != 1) {
    return OpensslFailure("AES-256-GCM tag");
  }
  return out;
}

Result<std::string> Open(std::string_view key, std::string_view sealed, std::string_view aad) {
  TAKT_RETURN_IF_ERROR(CheckKey(key));
  if (sealed.size() < kAeadOverhead) {
    return FailedPrecondition("authentication failed: sealed data is " + std::to_string(sealed.size()) +
                              " bytes, shorter than the " + std::to_string(kAeadOverhead) +
                              "-byte nonce and tag (truncated?)");
  }
  const std::string_view nonce = sealed.substr(0, kAeadNonceSize);
  const std::string_view cipher = sealed.substr(kAeadNonceSize, sealed.size() - kAeadOverhead);
  unsigned char tag[kAeadTagSize];
  std::copy_n(Bytes(sealed.substr(sealed.size() - kAeadTagSize)), kAeadTagSize, tag);

  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return OpensslFailure("EVP_CIPHER_CTX_new");
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kAeadNonceSize), nullptr) !=
          1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, Bytes(key), Bytes(nonce)) != 1) {
    return OpensslFailure("AES-256-GCM init");
  }
  int len = 0;
  for (size_t pos = 0; pos < aad.size(); pos += kChunk) {
    const size_t n = std::min(kChunk, aad.size() - pos);
    if (EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad) + pos, static_cast<int>(n)) != 1) {
      return OpensslFailure("AES-256-GCM aad");
    }
  }
  std::string out(cipher.size(), '\0');
  size_t written = 0;
  for (size_t pos = 0; pos < cipher.size(); pos += kChunk) {
    const size_t n = std::min(kChunk, cipher.size() - pos);
    if (EVP_DecryptUpdate(ctx.get(), MutableBytes(out, written), &len, Bytes(cipher) + pos,
                          static_cast<int>(n)) != 1) {
      SecureErase(out);
      return OpensslFailure("AES-256-GCM decrypt");
    }
    written += static_cast<size_t>(len);
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kAeadTagSize), tag) != 1) {
    SecureErase(out);
    return OpensslFailure("AES-256-GCM set tag");
  }
  // `out` holds unverified plaintext until the tag checks out: never let it escape.
  if (EVP_DecryptFinal_ex(ctx.get(), MutableBytes(out, written), &len) != 1) {
    SecureErase(out);
    ERR_clear_error();
    return FailedPrecondition(
        "authentication failed: the data is corrupt, or the key or associated data is not the one it was "
        "sealed with");
  }
  written += static_cast<size_t>(len);
  if (written != out.size()) {
    SecureErase(out);
    return Internal("AES-256-GCM produced an unexpected number of bytes");
  }
  return out;
}

void SecureErase(std::string& secret) {
  if (!secret.empty()) OPENSSL_cleanse(secret.data(), secret.size());
  secret.clear();
}

}  // namespace takt::crypto
