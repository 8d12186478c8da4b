#include "core/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace takt {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("TAKT_PORT");
    unsetenv("TAKT_DATA_DIR");
    unsetenv("TAKT_CONFIG");
    dir_ = std::filesystem::temp_directory_path() / ("takt-config-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    unsetenv("TAKT_PORT");
    std::filesystem::remove_all(dir_);
  }
  std::string WriteFile(const std::string& text) {
    auto p = dir_ / "takt.yaml";
    std::ofstream(p) << text;
    return p.string();
  }
  std::filesystem::path dir_;
};

TEST_F(ConfigTest, DefaultsWhenNothingIsGiven) {
  auto c = LoadConfig({});
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->port, 8080);
  EXPECT_EQ(c->MasterKeyPath(), "./takt-data/master.key");
}

TEST_F(ConfigTest, FlagBeatsEnvironmentBeatsFile) {
  std::string file = WriteFile("port: 9001\ndata-dir: /srv/takt\n");
  setenv("TAKT_PORT", "9002", 1);
  auto c = LoadConfig({{"port", "9003"}}, file);
  ASSERT_TRUE(c.has_value()) << c.error().ToString();
  EXPECT_EQ(c->port, 9003);
  EXPECT_EQ(c->data_dir, "/srv/takt");
  c = LoadConfig({}, file);
  EXPECT_EQ(c->port, 9002);
  unsetenv("TAKT_PORT");
  c = LoadConfig({}, file);
  EXPECT_EQ(c->port, 9001);
}

TEST_F(ConfigTest, BadValuesNameTheirSource) {
  setenv("TAKT_PORT", "abc", 1);
  auto c = LoadConfig({});
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), Code::kInvalidArgument);
  EXPECT_NE(c.error().message().find("TAKT_PORT"), std::string::npos);
  unsetenv("TAKT_PORT");
  c = LoadConfig({{"log-format", "xml"}});
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("--log-format"), std::string::npos);
}

TEST_F(ConfigTest, UnknownFileKeyAndInvalidYamlAreErrors) {
  auto c = LoadConfig({}, WriteFile("prot: 1\n"));
  ASSERT_FALSE(c.has_value());
  EXPECT_NE(c.error().message().find("line 1: prot is not a setting"), std::string::npos)
      << c.error().message();
  c = LoadConfig({}, WriteFile("port: [1,\n"));
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), Code::kInvalidArgument);
  c = LoadConfig({}, (dir_ / "missing.yaml").string());
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), Code::kNotFound);
}

}  // namespace
}  // namespace takt
