#include "blob/blob_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "crypto/crypto.h"
#include "crypto/keyring.h"

namespace takt::blob {
namespace {

namespace fs = std::filesystem;

// Wraps the real file system; fails writes or reads on demand (leveldb's
// ErrorEnv) and counts writes.
class FaultInjectingFileSystem : public FileSystem {
 public:
  Status WriteFileAtomic(const fs::path& path, std::string_view data) override {
    ++writes;
    if (fail_writes) return Unavailable("injected write failure for " + path.string());
    return base_->WriteFileAtomic(path, data);
  }
  Result<std::string> ReadFile(const fs::path& path) override {
    if (fail_reads) return Unavailable("injected read failure for " + path.string());
    return base_->ReadFile(path);
  }
  bool Exists(const fs::path& path) override { return base_->Exists(path); }
  Status CreateDir(const fs::path& path) override { return base_->CreateDir(path); }

  std::atomic<bool> fail_writes = false;
  std::atomic<bool> fail_reads = false;
  std::atomic<int> writes = 0;

 private:
  FileSystem* base_ = DefaultFileSystem();
};

std::string ReadRaw(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteRaw(const fs::path& p, const std::string& data) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
}

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "takt-blob-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    dir_ = root_ / "artifacts";
    auto store = BlobStore::Open(dir_, &keyring_);
    ASSERT_TRUE(store.has_value()) << store.error().ToString();
    store_ = std::move(*store);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  fs::path PathOf(const std::string& id) const { return dir_ / id.substr(0, 2) / id; }

  // Every regular file under the store directory.
  std::vector<fs::path> AllFiles() const {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    return files;
  }

  size_t TempFileCount() const {
    size_t n = 0;
    for (const fs::path& p : AllFiles()) n += IsTempFileName(p.filename().string()) ? 1 : 0;
    return n;
  }

  static void ExpectCode(const Result<std::string>& r, Code code) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), code) << r.error().ToString();
  }

  static void ExpectCorrupt(const Result<std::string>& r) {
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), Code::kFailedPrecondition) << r.error().ToString();
  }

  crypto::Keyring keyring_ = crypto::Keyring::FromBytesForTest(crypto::RandomBytes(32));
  fs::path root_;
  fs::path dir_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreTest, OpenCreatesDirectoryWithMode0700) {
  struct stat st;
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(store_->dir(), dir_);
}

TEST_F(BlobStoreTest, OpenRejectsNullKeyringAndNonDirectory) {
  auto no_keyring = BlobStore::Open(dir_, nullptr);
  ASSERT_FALSE(no_keyring.has_value());
  EXPECT_EQ(no_keyring.error().code(), Code::kInvalidArgument);
  WriteRaw(root_ / "file", "x");
  auto store = BlobStore::Open(root_ / "file", &keyring_);
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().code(), Code::kFailedPrecondition);
}

TEST_F(BlobStoreTest, RoundTripEmptySmallAndTenMegabytes) {
  const std::string blobs[] = {std::string(), std::string("hello, takt"), std::string(1, '\0'),
                               crypto::RandomBytes(10 * 1024 * 1024)};
  for (const std::string& plaintext : blobs) {
    auto id = store_->Put(plaintext);
    ASSERT_TRUE(id.has_value()) << id.error().ToString();
    EXPECT_EQ(*id, crypto::Sha256Hex(plaintext));
    EXPECT_TRUE(store_->Contains(*id));
    EXPECT_TRUE(fs::is_regular_file(PathOf(*id)));
    auto got = store_->Get(*id);
    ASSERT_TRUE(got.has_value()) << got.error().ToString();
    EXPECT_TRUE(*got == plaintext) << "size " << plaintext.size();
  }
  EXPECT_EQ(TempFileCount(), 0u);
}

TEST_F(BlobStoreTest, IdOfEmptyBlobIsSha256OfEmpty) {
  EXPECT_EQ(store_->Put(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_TRUE(
      fs::is_regular_file(dir_ / "e3" / "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

TEST_F(BlobStoreTest, FileStartsWithVersionedHeader) {
  auto id = store_->Put("payload");
  ASSERT_TRUE(id);
  const std::string raw = ReadRaw(PathOf(*id));
  EXPECT_EQ(raw.substr(0, 4), "TKB1");
  EXPECT_EQ(static_cast<unsigned char>(raw[4]), keyring_.key_id().size());
  EXPECT_EQ(raw.substr(5, keyring_.key_id().size()), keyring_.key_id());
}

TEST_F(BlobStoreTest, PlaintextNeverReachesDisk) {
  const std::string marker = "TAKT-PLAINTEXT-MARKER-7f3a";
  std::string big;
  for (int i = 0; i < 10000; ++i) big += marker;
  ASSERT_TRUE(store_->Put(marker).has_value());
  ASSERT_TRUE(store_->Put(big).has_value());
  ASSERT_TRUE(store_->Put("prefix " + marker + " suffix").has_value());
  const std::vector<fs::path> files = AllFiles();
  EXPECT_EQ(files.size(), 3u);
  for (const fs::path& p : files) {
    const std::string raw = ReadRaw(p);
    EXPECT_EQ(raw.find(marker), std::string::npos) << p;
    EXPECT_EQ(raw.find("MARKER"), std::string::npos) << p;
  }
}

TEST_F(BlobStoreTest, PutIsIdempotent) {
  FaultInjectingFileSystem faulty;
  auto store = BlobStore::Open(dir_, &keyring_, &faulty);
  ASSERT_TRUE(store);
  auto first = (*store)->Put("same bytes");
  ASSERT_TRUE(first);
  const std::string raw = ReadRaw(PathOf(*first));
  auto second = (*store)->Put("same bytes");
  ASSERT_TRUE(second);
  EXPECT_EQ(*first, *second);
  EXPECT_EQ(faulty.writes.load(), 1);
  EXPECT_EQ(ReadRaw(PathOf(*first)), raw);  // not rewritten
}

TEST_F(BlobStoreTest, EveryFlippedByteIsDetected) {
  auto id = store_->Put("a small artifact whose every stored byte matters");
  ASSERT_TRUE(id);
  const fs::path path = PathOf(*id);
  const std::string original = ReadRaw(path);
  for (size_t at = 0; at < original.size(); ++at) {
    std::string tampered = original;
    tampered[at] = static_cast<char>(tampered[at] ^ 0x01);
    WriteRaw(path, tampered);
    SCOPED_TRACE("flipped byte " + std::to_string(at) + " of " + std::to_string(original.size()));
    ExpectCorrupt(store_->Get(*id));
  }
  WriteRaw(path, original);
  EXPECT_TRUE(store_->Get(*id).has_value());
}

TEST_F(BlobStoreTest, FlippedByteMessageSaysCorrupt) {
  auto id = store_->Put("payload payload payload");
  ASSERT_TRUE(id);
  std::string raw = ReadRaw(PathOf(*id));
  raw[raw.size() - 20] ^= 0x40;  // inside the content ciphertext
  WriteRaw(PathOf(*id), raw);
  auto got = store_->Get(*id);
  ExpectCorrupt(got);
  EXPECT_EQ(got.error().message().rfind("artifact " + *id + " is corrupt: ", 0), 0u) << got.error().message();
}

TEST_F(BlobStoreTest, EveryTruncationIsDetected) {
  auto id = store_->Put("truncate me");
  ASSERT_TRUE(id);
  const fs::path path = PathOf(*id);
  const std::string original = ReadRaw(path);
  for (size_t len = 0; len < original.size(); ++len) {
    WriteRaw(path, original.substr(0, len));
    SCOPED_TRACE("truncated to " + std::to_string(len));
    ExpectCorrupt(store_->Get(*id));
  }
  WriteRaw(path, original + "trailing");
  ExpectCorrupt(store_->Get(*id));
}

TEST_F(BlobStoreTest, FileCopiedToAnotherIdsPathIsRejected) {
  auto a = store_->Put("artifact A");
  auto b = store_->Put("artifact B");
  ASSERT_TRUE(a && b);
  fs::copy_file(PathOf(*a), PathOf(*b), fs::copy_options::overwrite_existing);
  ExpectCorrupt(store_->Get(*b));
  // Also at the path of an id never stored.
  const std::string c = crypto::Sha256Hex("artifact C");
  fs::create_directories(PathOf(c).parent_path());
  fs::copy_file(PathOf(*a), PathOf(c));
  ExpectCorrupt(store_->Get(c));
  EXPECT_EQ(store_->Get(*a), "artifact A");
}

TEST_F(BlobStoreTest, UnknownIdIsNotFound) {
  const std::string id = crypto::Sha256Hex("never stored");
  ExpectCode(store_->Get(id), Code::kNotFound);
  EXPECT_FALSE(store_->Contains(id));
}

TEST_F(BlobStoreTest, MalformedIdIsInvalidArgument) {
  const std::string good = crypto::Sha256Hex("x");
  std::string upper = good;
  upper[0] = 'A';
  upper[1] = 'B';
  const std::string bad[] = {"",
                             "abc",
                             good.substr(1),
                             good + "0",
                             upper,
                             "../../etc/passwd",
                             std::string(64, 'g'),
                             std::string(64, '\0'),
                             "./" + good.substr(2)};
  for (const std::string& id : bad) {
    SCOPED_TRACE(id);
    ExpectCode(store_->Get(id), Code::kInvalidArgument);
    EXPECT_FALSE(store_->Contains(id));
  }
  EXPECT_TRUE(BlobStore::IsValidId(good));
}

TEST_F(BlobStoreTest, FailedWriteLeavesNothingAndLaterPutSucceeds) {
  FaultInjectingFileSystem faulty;
  auto opened = BlobStore::Open(dir_, &keyring_, &faulty);
  ASSERT_TRUE(opened);
  BlobStore& store = **opened;
  const std::string plaintext = "written while the disk fails";
  const std::string id = crypto::Sha256Hex(plaintext);

  faulty.fail_writes = true;
  auto failed = store.Put(plaintext);
  ExpectCode(failed, Code::kUnavailable);
  EXPECT_NE(failed.error().message().find("storing artifact " + id), std::string::npos);
  EXPECT_FALSE(store.Contains(id));
  EXPECT_FALSE(fs::exists(PathOf(id)));
  EXPECT_EQ(TempFileCount(), 0u);
  ExpectCode(store.Get(id), Code::kNotFound);

  faulty.fail_writes = false;
  auto ok = store.Put(plaintext);
  ASSERT_TRUE(ok.has_value()) << ok.error().ToString();
  EXPECT_EQ(*ok, id);
  EXPECT_EQ(store.Get(id), plaintext);
}

TEST_F(BlobStoreTest, FailedReadKeepsItsCode) {
  FaultInjectingFileSystem faulty;
  auto opened = BlobStore::Open(dir_, &keyring_, &faulty);
  ASSERT_TRUE(opened);
  auto id = (*opened)->Put("x");
  ASSERT_TRUE(id);
  faulty.fail_reads = true;
  ExpectCode((*opened)->Get(*id), Code::kUnavailable);
}

TEST_F(BlobStoreTest, AnotherMasterKeyCannotRead) {
  auto id = store_->Put("sealed under the first key");
  ASSERT_TRUE(id);
  const crypto::Keyring other = crypto::Keyring::FromBytesForTest(crypto::RandomBytes(32));
  auto other_store = BlobStore::Open(dir_, &other);
  ASSERT_TRUE(other_store);
  EXPECT_TRUE((*other_store)->Contains(*id));
  auto got = (*other_store)->Get(*id);
  ExpectCorrupt(got);
  EXPECT_NE(got.error().message().find("master key"), std::string::npos) << got.error().message();
}

TEST_F(BlobStoreTest, AnotherMasterKeyWithForgedKeyIdCannotRead) {
  // Even if the header's key id is rewritten to the other key's id, the wrapped data key does not open.
  auto id = store_->Put("sealed under the first key");
  ASSERT_TRUE(id);
  const crypto::Keyring other = crypto::Keyring::FromBytesForTest(crypto::RandomBytes(32));
  std::string raw = ReadRaw(PathOf(*id));
  raw.replace(5, other.key_id().size(), other.key_id());
  WriteRaw(PathOf(*id), raw);
  auto other_store = BlobStore::Open(dir_, &other);
  ASSERT_TRUE(other_store);
  ExpectCorrupt((*other_store)->Get(*id));
}

TEST_F(BlobStoreTest, ReopenedStoreReadsExistingBlobs) {
  auto id = store_->Put("persisted");
  ASSERT_TRUE(id);
  store_.reset();
  auto reopened = BlobStore::Open(dir_, &keyring_);
  ASSERT_TRUE(reopened);
  EXPECT_EQ((*reopened)->Get(*id), "persisted");
}

TEST_F(BlobStoreTest, ConcurrentPutsFromFourThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 40;
  std::vector<std::vector<std::string>> ids(kThreads);
  std::atomic<int> failures = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Half the blobs are shared by all threads (same id written concurrently), half are private.
        const std::string plaintext = i % 2 == 0
                                          ? "shared blob " + std::to_string(i)
                                          : "thread " + std::to_string(t) + " blob " + std::to_string(i) +
                                                std::string(static_cast<size_t>(i) * 1000, 'p');
        auto id = store_->Put(plaintext);
        if (!id) {
          ++failures;
          continue;
        }
        auto got = store_->Get(*id);
        if (!got || *got != plaintext) ++failures;
        ids[t].push_back(*id);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  std::set<std::string> distinct;
  for (const auto& v : ids) distinct.insert(v.begin(), v.end());
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kPerThread / 2 + kThreads * kPerThread / 2));
  for (const std::string& id : distinct) EXPECT_TRUE(store_->Get(id).has_value()) << id;
  EXPECT_EQ(AllFiles().size(), distinct.size());
  EXPECT_EQ(TempFileCount(), 0u);
}

}  // namespace
}  // namespace takt::blob
