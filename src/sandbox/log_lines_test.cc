#include "sandbox/log_lines.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "sandbox/sandbox.h"

namespace takt::sandbox {
namespace {

using internal::kMaxLineBytes;
using internal::LineSplitter;

const std::string kEllipsis = "\xE2\x80\xA6";
const std::string kReplacement = "\xEF\xBF\xBD";

TEST(SanitizeLineTest, KeepsTextAndTabs) {
  bool binary = true;
  EXPECT_EQ(SanitizeLine("epoch 3\tloss 0.25 — ok, Grüße, 学习", &binary),
            "epoch 3\tloss 0.25 — ok, Grüße, 学习");
  EXPECT_FALSE(binary);
  EXPECT_EQ(SanitizeLine(""), "");
}

TEST(SanitizeLineTest, RemovesControlCharactersAndTerminalEscapes) {
  EXPECT_EQ(SanitizeLine("a\x01"
                         "bcdefgh\x7f"
                         "ij\x08"),
            "abcdefghij");
  EXPECT_EQ(SanitizeLine("\x1b[1;31mred\x1b[0m plain"), "red plain");
  EXPECT_EQ(SanitizeLine("\x1b]0;window title\x07text"), "text");
  EXPECT_EQ(SanitizeLine("\x1b(Bcharset"), "charset");
  EXPECT_EQ(SanitizeLine("c1 \xC2\x85 control"), "c1  control");  // U+0085 NEL
}

TEST(SanitizeLineTest, ReplacesInvalidUtf8) {
  EXPECT_EQ(SanitizeLine("caf\xE9 au lait"), "caf" + kReplacement + " au lait");  // Latin-1
  EXPECT_EQ(SanitizeLine("over \xC0\xAF long"),
            "over " + kReplacement + kReplacement + " long");  // overlong '/'
  EXPECT_EQ(SanitizeLine("surrogate \xED\xA0\x80!"),
            "surrogate " + kReplacement + kReplacement + kReplacement + "!");
  EXPECT_EQ(SanitizeLine("truncated \xE4\xB8"), "truncated " + kReplacement + kReplacement);
}

TEST(SanitizeLineTest, CarriageReturnStartsTheLineOver) {
  EXPECT_EQ(SanitizeLine(" 10%|#  |\r 50%|##  |\r100%|####|"), "100%|####|");
  EXPECT_EQ(SanitizeLine("windows line\r"), "windows line");
}

TEST(SanitizeLineTest, CutsLongLinesOnACodePointBoundary) {
  const std::string ascii = SanitizeLine(std::string(1'000'000, 'x'));
  EXPECT_LE(ascii.size(), kMaxLineBytes);
  EXPECT_TRUE(ascii.ends_with(kEllipsis));
  EXPECT_EQ(ascii.substr(0, 10), "xxxxxxxxxx");

  std::string wide;
  for (int i = 0; i < 3000; ++i) wide += "\xE5\xAD\xA6";  // 学, 3 bytes
  const std::string cut = SanitizeLine(wide);
  EXPECT_LE(cut.size(), kMaxLineBytes);
  ASSERT_TRUE(cut.ends_with(kEllipsis));
  EXPECT_EQ((cut.size() - kEllipsis.size()) % 3, 0u) << "cut inside a character";

  const std::string exact(kMaxLineBytes, 'y');
  EXPECT_EQ(SanitizeLine(exact), exact);
}

TEST(SanitizeLineTest, MostlyBinaryBecomesAPlaceholder) {
  std::string garbage;
  for (int i = 0; i < 300; ++i) garbage.push_back(static_cast<char>((i * 151 + 7) % 256));
  bool binary = false;
  EXPECT_EQ(SanitizeLine(garbage, &binary), "<binary output: 300 bytes>");
  EXPECT_TRUE(binary);
  EXPECT_EQ(SanitizeLine(std::string(1, '\0')), "<binary output: 1 byte>");
}

std::vector<std::pair<std::string, bool>> Split(const std::vector<std::string>& chunks, bool finish = true) {
  std::vector<std::pair<std::string, bool>> lines;
  LineSplitter splitter;
  auto emit = [&](std::string_view line, bool binary) { lines.emplace_back(std::string(line), binary); };
  for (const std::string& c : chunks) splitter.Feed(c, emit);
  if (finish) splitter.Finish(emit);
  return lines;
}

TEST(LineSplitterTest, SplitsAcrossChunks) {
  const auto lines = Split({"fir", "st\nsec", "ond\r\n\nthi", "rd"});
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].first, "first");
  EXPECT_EQ(lines[1].first, "second");
  EXPECT_EQ(lines[2].first, "");
  EXPECT_EQ(lines[3].first, "third");
  EXPECT_EQ(Split({"no newline yet"}, /*finish=*/false).size(), 0u);
  EXPECT_EQ(Split({"done\n"}).size(), 1u) << "Finish must not add an empty line";
}

TEST(LineSplitterTest, ProgressBarsKeepTheirLastState) {
  const auto lines = Split({" 10%\r", " 20%\r 30", "%\r\r\n"});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].first, " 30%");
}

TEST(LineSplitterTest, KeepsBoundedMemoryForHugeLines) {
  std::vector<std::string> chunks(100, std::string(100'000, 'z'));  // one 10 MB line
  chunks.push_back("\n");
  const auto lines = Split(chunks);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_LE(lines[0].first.size(), kMaxLineBytes);
  EXPECT_TRUE(lines[0].first.ends_with(kEllipsis));

  std::vector<std::string> binary(10, std::string(100'000, '\x01'));
  const auto placeholder = Split(binary);
  ASSERT_EQ(placeholder.size(), 1u);
  EXPECT_EQ(placeholder[0].first, "<binary output: 1000000 bytes>");
  EXPECT_TRUE(placeholder[0].second);
}

}  // namespace
}  // namespace takt::sandbox
