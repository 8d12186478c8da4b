#include "crypto/keyring.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "crypto/crypto.h"

namespace takt::crypto {
namespace {

namespace fs = std::filesystem;

class KeyringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "takt-keyring-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    key_path_ = dir_ / "master.key";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static mode_t ModeOf(const fs::path& p) {
    struct stat st;
    EXPECT_EQ(::stat(p.c_str(), &st), 0);
    return st.st_mode & 07777;
  }

  static void WriteFile(const fs::path& p, const std::string& data, mode_t mode) {
    std::ofstream(p, std::ios::binary) << data;
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
  }

  fs::path dir_;
  fs::path key_path_;
};

TEST_F(KeyringTest, CreateWritesThirtyTwoBytesWithMode0600) {
  ASSERT_TRUE(Keyring::CreateMasterKeyFile(key_path_).has_value());
  EXPECT_EQ(fs::file_size(key_path_), 32u);
  EXPECT_EQ(ModeOf(key_path_), 0600u);
  auto keyring = Keyring::Load(key_path_);
  ASSERT_TRUE(keyring.has_value()) << keyring.error().ToString();
}

TEST_F(KeyringTest, CreateIgnoresPermissiveUmask) {
  const mode_t old = ::umask(0);
  auto created = Keyring::CreateMasterKeyFile(key_path_);
  ::umask(old);
  ASSERT_TRUE(created.has_value());
  EXPECT_EQ(ModeOf(key_path_), 0600u);
}

TEST_F(KeyringTest, CreateTwiceIsAlreadyExistsAndKeepsTheKey) {
  ASSERT_TRUE(Keyring::CreateMasterKeyFile(key_path_).has_value());
  auto first = Keyring::Load(key_path_);
  ASSERT_TRUE(first);
  auto again = Keyring::CreateMasterKeyFile(key_path_);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), Code::kAlreadyExists);
  auto second = Keyring::Load(key_path_);
  ASSERT_TRUE(second);
  EXPECT_EQ(first->key_id(), second->key_id());
}

TEST_F(KeyringTest, CreateInMissingDirectoryIsNotFound) {
  auto created = Keyring::CreateMasterKeyFile(dir_ / "no-such-dir" / "master.key");
  ASSERT_FALSE(created.has_value());
  EXPECT_EQ(created.error().code(), Code::kNotFound);
}

TEST_F(KeyringTest, TwoCreatedKeysDiffer) {
  ASSERT_TRUE(Keyring::CreateMasterKeyFile(dir_ / "a.key").has_value());
  ASSERT_TRUE(Keyring::CreateMasterKeyFile(dir_ / "b.key").has_value());
  auto a = Keyring::Load(dir_ / "a.key");
  auto b = Keyring::Load(dir_ / "b.key");
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->key_id(), b->key_id());
}

TEST_F(KeyringTest, LoadMissingIsNotFoundAndSaysWhatToDo) {
  auto keyring = Keyring::Load(key_path_);
  ASSERT_FALSE(keyring.has_value());
  EXPECT_EQ(keyring.error().code(), Code::kNotFound);
  EXPECT_NE(keyring.error().message().find("takt init"), std::string::npos);
  EXPECT_NE(keyring.error().message().find("TAKT_MASTER_KEY_FILE"), std::string::npos);
}

TEST_F(KeyringTest, LoadRefusesFileReadableByOthers) {
  ASSERT_TRUE(Keyring::CreateMasterKeyFile(key_path_).has_value());
  for (mode_t mode : {0644, 0640, 0604, 0660, 0602}) {
    ASSERT_EQ(::chmod(key_path_.c_str(), mode), 0);
    auto keyring = Keyring::Load(key_path_);
    ASSERT_FALSE(keyring.has_value()) << std::oct << mode;
    EXPECT_EQ(keyring.error().code(), Code::kFailedPrecondition) << std::oct << mode;
    EXPECT_NE(keyring.error().message().find("chmod 600"), std::string::npos) << keyring.error().message();
  }
  ASSERT_EQ(::chmod(key_path_.c_str(), 0400), 0);
  EXPECT_TRUE(Keyring::Load(key_path_).has_value());
}

TEST_F(KeyringTest, LoadRefusesWrongSize) {
  for (size_t size : {0, 16, 31, 33, 64}) {
    WriteFile(key_path_, std::string(size, 'k'), 0600);
    auto keyring = Keyring::Load(key_path_);
    ASSERT_FALSE(keyring.has_value()) << size;
    EXPECT_EQ(keyring.error().code(), Code::kFailedPrecondition) << size;
  }
  WriteFile(key_path_, std::string(32, 'k'), 0600);
  EXPECT_TRUE(Keyring::Load(key_path_).has_value());
}

TEST_F(KeyringTest, LoadRefusesDirectory) {
  fs::create_directory(key_path_);
  ::chmod(key_path_.c_str(), 0700);
  auto keyring = Keyring::Load(key_path_);
  ASSERT_FALSE(keyring.has_value());
  EXPECT_EQ(keyring.error().code(), Code::kFailedPrecondition);
}

TEST_F(KeyringTest, LoadedKeyMatchesFileBytes) {
  const std::string bytes(32, '\x07');
  WriteFile(key_path_, bytes, 0600);
  auto loaded = Keyring::Load(key_path_);
  ASSERT_TRUE(loaded);
  const Keyring expected = Keyring::FromBytesForTest(bytes);
  EXPECT_EQ(loaded->key_id(), expected.key_id());
  EXPECT_EQ(loaded->DeriveKey("x"), expected.DeriveKey("x"));
}

TEST(KeyringKeysTest, WrapUnwrapRoundTrip) {
  const Keyring keyring = Keyring::FromBytesForTest(RandomBytes(32));
  const std::string data_key = RandomBytes(32);
  auto wrapped = keyring.WrapKey(data_key, "artifact-1");
  ASSERT_TRUE(wrapped.has_value()) << wrapped.error().ToString();
  EXPECT_EQ(wrapped->find(data_key), std::string::npos);
  auto unwrapped = keyring.UnwrapKey(*wrapped, "artifact-1");
  ASSERT_TRUE(unwrapped.has_value()) << unwrapped.error().ToString();
  EXPECT_EQ(*unwrapped, data_key);
}

TEST(KeyringKeysTest, UnwrapWithOtherAadOrKeyFails) {
  const Keyring keyring = Keyring::FromBytesForTest(std::string(32, 'a'));
  const Keyring other = Keyring::FromBytesForTest(std::string(32, 'b'));
  auto wrapped = keyring.WrapKey(RandomBytes(32), "artifact-1");
  ASSERT_TRUE(wrapped);

  auto wrong_aad = keyring.UnwrapKey(*wrapped, "artifact-2");
  ASSERT_FALSE(wrong_aad.has_value());
  EXPECT_EQ(wrong_aad.error().code(), Code::kFailedPrecondition);

  auto wrong_key = other.UnwrapKey(*wrapped, "artifact-1");
  ASSERT_FALSE(wrong_key.has_value());
  EXPECT_EQ(wrong_key.error().code(), Code::kFailedPrecondition);

  std::string tampered = *wrapped;
  tampered[tampered.size() / 2] ^= 0x01;
  auto corrupt = keyring.UnwrapKey(tampered, "artifact-1");
  ASSERT_FALSE(corrupt.has_value());
  EXPECT_EQ(corrupt.error().code(), Code::kFailedPrecondition);
}

TEST(KeyringKeysTest, WrappedKeyIsNotPlainSealUnderMasterKey) {
  // Wrapping is domain-separated: a wrapped key does not open as ordinary sealed data.
  const std::string master(32, 'm');
  const Keyring keyring = Keyring::FromBytesForTest(master);
  auto wrapped = keyring.WrapKey("0123456789abcdef0123456789abcdef", "id");
  ASSERT_TRUE(wrapped);
  EXPECT_FALSE(Open(master, *wrapped, "id").has_value());
}

TEST(KeyringKeysTest, WrapEmptyKeyIsInvalidArgument) {
  const Keyring keyring = Keyring::FromBytesForTest(std::string(32, 'a'));
  auto wrapped = keyring.WrapKey("", "id");
  ASSERT_FALSE(wrapped.has_value());
  EXPECT_EQ(wrapped.error().code(), Code::kInvalidArgument);
}

TEST(KeyringKeysTest, WrongSizeTestKeyIsInvalidArgument) {
  const Keyring keyring = Keyring::FromBytesForTest("short");
  auto wrapped = keyring.WrapKey(RandomBytes(32), "id");
  ASSERT_FALSE(wrapped.has_value());
  EXPECT_EQ(wrapped.error().code(), Code::kInvalidArgument);
}

TEST(KeyringKeysTest, DeriveKeyIsHmacOfPurpose) {
  const std::string master(32, 'm');
  const Keyring keyring = Keyring::FromBytesForTest(master);
  const std::string k = keyring.DeriveKey("pseudonym");
  EXPECT_EQ(k.size(), 32u);
  EXPECT_EQ(k, HmacSha256(master, "takt:pseudonym"));
  EXPECT_EQ(k, keyring.DeriveKey("pseudonym"));
  EXPECT_NE(k, keyring.DeriveKey("pseudonym2"));
  EXPECT_NE(k, Keyring::FromBytesForTest(std::string(32, 'n')).DeriveKey("pseudonym"));
}

TEST(KeyringKeysTest, KeyIdIsShortHexOfHmac) {
  const std::string master(32, 'm');
  const Keyring keyring = Keyring::FromBytesForTest(master);
  EXPECT_EQ(keyring.key_id().size(), 16u);
  EXPECT_EQ(keyring.key_id(), Sha256Hex(HmacSha256(master, "key-id")).substr(0, 16));
  EXPECT_EQ(keyring.key_id().find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(KeyringKeysTest, MovedKeyringStillWorks) {
  Keyring a = Keyring::FromBytesForTest(std::string(32, 'a'));
  const std::string id = a.key_id();
  auto wrapped = a.WrapKey("data-key", "x");
  ASSERT_TRUE(wrapped);
  Keyring b = std::move(a);
  EXPECT_EQ(b.key_id(), id);
  EXPECT_EQ(b.UnwrapKey(*wrapped, "x"), "data-key");
  Keyring c = Keyring::FromBytesForTest(std::string(32, 'c'));
  c = std::move(b);
  EXPECT_EQ(c.key_id(), id);
  EXPECT_EQ(c.UnwrapKey(*wrapped, "x"), "data-key");
}

}  // namespace
}  // namespace takt::crypto
