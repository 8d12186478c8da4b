#include "blob/file_system.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace takt::blob {
namespace {

namespace fs = std::filesystem;

class PosixFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "takt-fs-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::vector<std::string> Names(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    return names;
  }

  static mode_t ModeOf(const fs::path& p) {
    struct stat st;
    EXPECT_EQ(::stat(p.c_str(), &st), 0);
    return st.st_mode & 07777;
  }

  FileSystem* fs_ = DefaultFileSystem();
  fs::path dir_;
};

TEST_F(PosixFileSystemTest, WriteThenRead) {
  const fs::path path = dir_ / "file";
  ASSERT_TRUE(fs_->WriteFileAtomic(path, std::string("a\0b", 3)).has_value());
  EXPECT_TRUE(fs_->Exists(path));
  EXPECT_EQ(fs_->ReadFile(path), std::string("a\0b", 3));
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_EQ(Names(dir_), std::vector<std::string>{"file"});  // no temp file left
}

TEST_F(PosixFileSystemTest, WriteReplacesAtomically) {
  const fs::path path = dir_ / "file";
  ASSERT_TRUE(fs_->WriteFileAtomic(path, "old contents").has_value());
  ASSERT_TRUE(fs_->WriteFileAtomic(path, "new").has_value());
  EXPECT_EQ(fs_->ReadFile(path), "new");
  EXPECT_EQ(Names(dir_).size(), 1u);
}

TEST_F(PosixFileSystemTest, EmptyAndLargeFiles) {
  ASSERT_TRUE(fs_->WriteFileAtomic(dir_ / "empty", "").has_value());
  EXPECT_EQ(fs_->ReadFile(dir_ / "empty"), "");
  const std::string big(3 * 1024 * 1024 + 7, 'z');
  ASSERT_TRUE(fs_->WriteFileAtomic(dir_ / "big", big).has_value());
  EXPECT_EQ(fs_->ReadFile(dir_ / "big"), big);
}

TEST_F(PosixFileSystemTest, ReadMissingIsNotFound) {
  auto r = fs_->ReadFile(dir_ / "missing");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kNotFound);
  EXPECT_FALSE(fs_->Exists(dir_ / "missing"));
}

TEST_F(PosixFileSystemTest, ReadDirectoryFails) {
  auto r = fs_->ReadFile(dir_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kFailedPrecondition);
}

TEST_F(PosixFileSystemTest, FailedRenameRemovesTempFile) {
  // A non-empty directory at the target makes the final rename fail after the
  // temp file was written: the temp file must not be left behind.
  const fs::path target = dir_ / "target";
  fs::create_directory(target);
  std::ofstream(target / "occupant") << "x";
  auto written = fs_->WriteFileAtomic(target, "data");
  ASSERT_FALSE(written.has_value());
  EXPECT_EQ(Names(dir_), std::vector<std::string>{"target"});
  EXPECT_EQ(fs_->ReadFile(target / "occupant"), "x");
}

TEST_F(PosixFileSystemTest, WriteIntoMissingDirectoryFails) {
  auto written = fs_->WriteFileAtomic(dir_ / "no-such-dir" / "file", "data");
  ASSERT_FALSE(written.has_value());
  EXPECT_EQ(written.error().code(), Code::kNotFound);
}

TEST_F(PosixFileSystemTest, CreateDirMakesParentsWithMode0700) {
  const fs::path nested = dir_ / "a" / "b" / "c";
  const mode_t old = ::umask(0);
  auto created = fs_->CreateDir(nested);
  ::umask(old);
  ASSERT_TRUE(created.has_value()) << created.error().ToString();
  EXPECT_TRUE(fs::is_directory(nested));
  EXPECT_EQ(ModeOf(dir_ / "a"), 0700u);
  EXPECT_EQ(ModeOf(dir_ / "a" / "b"), 0700u);
  EXPECT_EQ(ModeOf(nested), 0700u);
  EXPECT_TRUE(fs_->CreateDir(nested).has_value());                 // already there
  EXPECT_TRUE(fs_->CreateDir(dir_ / "a" / "b" / "").has_value());  // trailing separator
}

TEST_F(PosixFileSystemTest, CreateDirOverFileFails) {
  std::ofstream(dir_ / "file") << "x";
  auto created = fs_->CreateDir(dir_ / "file");
  ASSERT_FALSE(created.has_value());
  EXPECT_EQ(created.error().code(), Code::kFailedPrecondition);
}

TEST(TempFileNameTest, RecognisesTempNames) {
  EXPECT_TRUE(IsTempFileName(".tmp-0123abcd"));
  EXPECT_FALSE(IsTempFileName("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

}  // namespace
}  // namespace takt::blob
