#include "crypto/crypto.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

namespace takt::crypto {
namespace {

std::string Unhex(std::string_view hex) {
  auto bytes = HexDecode(hex);
  EXPECT_TRUE(bytes.has_value()) << hex;
  return bytes.value_or("");
}

// --- SHA-256 (FIPS 180-2 examples) ---

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  auto digest = Sha256Digest("abc");
  EXPECT_EQ(HexEncode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size())),
            Sha256Hex("abc"));
}

TEST(Sha256Test, IncrementalMatchesOneShot) {
  Sha256 h;
  for (int i = 0; i < 1000; ++i) h.Update(std::string(1000, 'a'));
  EXPECT_EQ(h.FinishHex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // FinishHex resets: the same object hashes the next message.
  h.Update("ab");
  h.Update("");
  h.Update("c");
  EXPECT_EQ(h.FinishHex(), Sha256Hex("abc"));
  EXPECT_EQ(h.FinishHex(), Sha256Hex(""));
}

TEST(Sha256Test, Movable) {
  Sha256 a;
  a.Update("ab");
  Sha256 b = std::move(a);
  b.Update("c");
  EXPECT_EQ(b.FinishHex(), Sha256Hex("abc"));
  Sha256 c;
  c = std::move(b);
  c.Update("abc");
  EXPECT_EQ(c.FinishHex(), Sha256Hex("abc"));
}

// --- HMAC-SHA256 (RFC 4231) ---

TEST(HmacSha256Test, Rfc4231Case1) {
  EXPECT_EQ(HmacSha256Hex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST(HmacSha256Test, Rfc4231Case2) {
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HmacSha256Test, Rfc4231Case3) {
  EXPECT_EQ(HmacSha256Hex(std::string(20, '\xaa'), std::string(50, '\xdd')),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
}

TEST(HmacSha256Test, Rfc4231Case6KeyLongerThanBlock) {
  EXPECT_EQ(HmacSha256Hex(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(HmacSha256Test, EmptyKeyAndData) {
  EXPECT_EQ(HmacSha256Hex("", ""), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(HmacSha256Test, RawIsHexDecoded) {
  const std::string raw = HmacSha256("Jefe", "what do ya want for nothing?");
  EXPECT_EQ(raw.size(), kSha256Size);
  EXPECT_EQ(HexEncode(raw), HmacSha256Hex("Jefe", "what do ya want for nothing?"));
}

// --- Random, tokens ---

TEST(RandomTest, RandomBytesHasRequestedSizeAndVaries) {
  EXPECT_EQ(RandomBytes(0), "");
  EXPECT_EQ(RandomBytes(1).size(), 1u);
  EXPECT_EQ(RandomBytes(100000).size(), 100000u);
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) seen.insert(RandomBytes(16));
  EXPECT_EQ(seen.size(), 100u);
}

TEST(RandomTest, NewTokenFormat) {
  const std::string token = NewToken("takt");
  ASSERT_EQ(token.size(), 5u + 64u);
  EXPECT_EQ(token.substr(0, 5), "takt_");
  for (char c : token.substr(5)) {
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << token;
  }
  EXPECT_NE(NewToken("takt"), NewToken("takt"));
  EXPECT_EQ(NewToken("").size(), 65u);
}

// --- Comparison, hex ---

TEST(ConstantTimeEqualsTest, Compares) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_FALSE(ConstantTimeEquals("", "x"));
  EXPECT_TRUE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST(HexTest, RoundTrip) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  const std::string hex = HexEncode(all);
  EXPECT_EQ(hex.size(), 512u);
  EXPECT_EQ(hex.substr(0, 8), "00010203");
  EXPECT_EQ(hex.substr(504), "fcfdfeff");
  EXPECT_EQ(HexDecode(hex), all);
  EXPECT_EQ(HexEncode(""), "");
  EXPECT_EQ(HexDecode(""), "");
}

TEST(HexTest, DecodeAcceptsUppercase) { EXPECT_EQ(HexDecode("DEADbeef"), "\xde\xad\xbe\xef"); }

TEST(HexTest, DecodeRejectsOddLength) {
  auto r = HexDecode("abc");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  EXPECT_NE(r.error().message().find("odd length"), std::string::npos);
}

TEST(HexTest, DecodeRejectsNonHex) {
  for (std::string_view bad : {"zz", "0g", "g0", "0 ", "-1", "0x00"}) {
    auto r = HexDecode(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << bad;
  }
}

// --- AES-256-GCM ---

const std::string kKey = std::string(32, '\x42');

TEST(AeadTest, OpensStandardGcmVectors) {
  // McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13, 14 and 16
  // (AES-256): Open must accept standard GCM output laid out as nonce || ciphertext || tag.
  const std::string zero_key(32, '\0');
  const std::string zero_nonce(12, '\0');
  EXPECT_EQ(Open(zero_key, zero_nonce + Unhex("530f8afbc74536b9a963b4f1c4cb738b"), ""), "");
  EXPECT_EQ(Open(zero_key,
                 zero_nonce + Unhex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"), ""),
            std::string(16, '\0'));

  const std::string key = Unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  const std::string nonce = Unhex("cafebabefacedbaddecaf888");
  const std::string aad = Unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  const std::string plaintext = Unhex(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aed"
      "f5"
      "aa0de657ba637b39");
  const std::string cipher_and_tag = Unhex(
      "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e"
      "63"
      "93ba7a0abcc9f66276fc6ece0f4e1768cddf8853bb2d551b");
  EXPECT_EQ(Open(key, nonce + cipher_and_tag, aad), plaintext);
}

TEST(AeadTest, SealOpenRoundTrip) {
  for (const std::string& plaintext :
       {std::string(), std::string("hello"), std::string(1, '\0'), std::string(100000, 'x')}) {
    auto sealed = Seal(kKey, plaintext, "aad");
    ASSERT_TRUE(sealed.has_value()) << sealed.error().ToString();
    EXPECT_EQ(sealed->size(), plaintext.size() + kAeadOverhead);
    auto opened = Open(kKey, *sealed, "aad");
    ASSERT_TRUE(opened.has_value()) << opened.error().ToString();
    EXPECT_EQ(*opened, plaintext);
  }
}

TEST(AeadTest, SealUsesFreshNonce) {
  auto a = Seal(kKey, "same", "");
  auto b = Seal(kKey, "same", "");
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_NE(a->substr(0, kAeadNonceSize), b->substr(0, kAeadNonceSize));
}

TEST(AeadTest, CiphertextHidesPlaintext) {
  const std::string plaintext = "MARKER-MARKER-MARKER-MARKER";
  auto sealed = Seal(kKey, plaintext, "");
  ASSERT_TRUE(sealed);
  EXPECT_EQ(sealed->find("MARKER"), std::string::npos);
}

void ExpectAuthFailure(const Result<std::string>& r) {
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(r.error().message().rfind("authentication failed: ", 0), 0u) << r.error().message();
}

TEST(AeadTest, TamperOfEachRegionFails) {
  const std::string plaintext = "the quick brown fox jumps over the lazy dog";
  auto sealed = Seal(kKey, plaintext, "id-1");
  ASSERT_TRUE(sealed);
  const size_t cipher_at = kAeadNonceSize;
  const size_t tag_at = sealed->size() - kAeadTagSize;
  const std::pair<const char*, std::vector<size_t>> regions[] = {
      {"nonce", {0, kAeadNonceSize - 1}},
      {"ciphertext", {cipher_at, cipher_at + plaintext.size() / 2, tag_at - 1}},
      {"tag", {tag_at, sealed->size() - 1}},
  };
  for (const auto& [name, offsets] : regions) {
    for (size_t at : offsets) {
      std::string tampered = *sealed;
      tampered[at] = static_cast<char>(tampered[at] ^ 0x01);
      SCOPED_TRACE(std::string(name) + " byte " + std::to_string(at));
      ExpectAuthFailure(Open(kKey, tampered, "id-1"));
    }
  }
}

TEST(AeadTest, TruncatedOrExtendedFails) {
  auto sealed = Seal(kKey, "payload", "");
  ASSERT_TRUE(sealed);
  ExpectAuthFailure(Open(kKey, sealed->substr(0, sealed->size() - 1), ""));
  ExpectAuthFailure(Open(kKey, *sealed + "x", ""));
  ExpectAuthFailure(Open(kKey, sealed->substr(0, kAeadOverhead - 1), ""));
  ExpectAuthFailure(Open(kKey, "", ""));
}

TEST(AeadTest, WrongAadFails) {
  auto sealed = Seal(kKey, "payload", "id-1");
  ASSERT_TRUE(sealed);
  ExpectAuthFailure(Open(kKey, *sealed, "id-2"));
  ExpectAuthFailure(Open(kKey, *sealed, ""));
}

TEST(AeadTest, WrongKeyFails) {
  auto sealed = Seal(kKey, "payload", "");
  ASSERT_TRUE(sealed);
  std::string other = kKey;
  other[31] = static_cast<char>(other[31] ^ 0x80);
  ExpectAuthFailure(Open(other, *sealed, ""));
}

TEST(AeadTest, KeyOfWrongLengthIsInvalidArgument) {
  for (size_t len : {0, 16, 31, 33, 64}) {
    const std::string key(len, 'k');
    auto sealed = Seal(key, "payload", "");
    ASSERT_FALSE(sealed.has_value()) << len;
    EXPECT_EQ(sealed.error().code(), Code::kInvalidArgument) << len;
    auto opened = Open(key, std::string(64, '\0'), "");
    ASSERT_FALSE(opened.has_value()) << len;
    EXPECT_EQ(opened.error().code(), Code::kInvalidArgument) << len;
  }
}

TEST(SecureEraseTest, Clears) {
  std::string secret = "hunter2 hunter2 hunter2 hunter2";
  SecureErase(secret);
  EXPECT_TRUE(secret.empty());
}

}  // namespace
}  // namespace takt::crypto
