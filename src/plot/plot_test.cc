#include "plot/plot.h"

#include <cairo.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace takt::plot {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------- helpers

struct Image {
  int width = 0, height = 0;
  std::vector<Rgb> pixels;  // row-major
  Rgb At(int x, int y) const { return pixels[static_cast<size_t>(y) * width + x]; }
};

struct PngReader {
  const std::string* data;
  size_t pos = 0;
};

cairo_status_t ReadPng(void* closure, unsigned char* out, unsigned int length) {
  auto* r = static_cast<PngReader*>(closure);
  if (r->pos + length > r->data->size()) return CAIRO_STATUS_READ_ERROR;
  std::memcpy(out, r->data->data() + r->pos, length);
  r->pos += length;
  return CAIRO_STATUS_SUCCESS;
}

// Decodes a PNG with cairo; an empty image if it is not one.
Image DecodePng(const std::string& png) {
  PngReader reader{&png};
  cairo_surface_t* s = cairo_image_surface_create_from_png_stream(&ReadPng, &reader);
  Image image;
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    cairo_surface_flush(s);
    image.width = cairo_image_surface_get_width(s);
    image.height = cairo_image_surface_get_height(s);
    const int stride = cairo_image_surface_get_stride(s);
    const unsigned char* data = cairo_image_surface_get_data(s);
    for (int y = 0; y < image.height; ++y) {
      for (int x = 0; x < image.width; ++x) {
        uint32_t px;
        std::memcpy(&px, data + static_cast<size_t>(y) * stride + 4 * static_cast<size_t>(x), 4);
        image.pixels.push_back(
            {static_cast<uint8_t>(px >> 16), static_cast<uint8_t>(px >> 8), static_cast<uint8_t>(px)});
      }
    }
  }
  cairo_surface_destroy(s);
  return image;
}

int Count(const Image& image, Rgb color) {
  int n = 0;
  for (const Rgb& p : image.pixels) n += p == color;
  return n;
}

// For each column, whether any pixel has `color`.
std::vector<bool> ColumnsWith(const Image& image, Rgb color) {
  std::vector<bool> out(image.width, false);
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) out[x] = out[x] || image.At(x, y) == color;
  }
  return out;
}

// The maximal runs [first, last] of true columns.
std::vector<std::pair<int, int>> Runs(const std::vector<bool>& columns) {
  std::vector<std::pair<int, int>> runs;
  for (int x = 0; x < static_cast<int>(columns.size()); ++x) {
    if (!columns[x]) continue;
    if (runs.empty() || runs.back().second != x - 1) runs.push_back({x, x});
    runs.back().second = x;
  }
  return runs;
}

std::string MustRender(const LineChart& chart, Format format = Format::kPng) {
  auto image = Render(chart, format);
  EXPECT_TRUE(image.has_value()) << image.error().ToString();
  return image.value_or("");
}

std::string MustRender(const BarChart& chart, Format format = Format::kPng) {
  auto image = Render(chart, format);
  EXPECT_TRUE(image.has_value()) << image.error().ToString();
  return image.value_or("");
}

template <typename Chart>
std::string RenderError(const Chart& chart) {
  auto image = Render(chart, Format::kPng);
  EXPECT_FALSE(image.has_value());
  if (image) return "";
  EXPECT_EQ(image.error().code(), Code::kInvalidArgument) << image.error().ToString();
  return image.error().message();
}

Series Line(std::string name, int n, double (*f)(double)) {
  Series s{std::move(name), {}, {}};
  for (int i = 0; i < n; ++i) {
    s.x.push_back(i);
    s.y.push_back(f(i));
  }
  return s;
}

// Two training curves over 150 boosting rounds, as `takt run plot` draws them.
LineChart TrainingCurves() {
  LineChart chart{
      .title = "weld-pm run 42: logloss per round", .x_label = "boosting round", .y_label = "logloss"};
  chart.series.push_back(Line("train", 150, [](double i) { return 0.05 + 0.64 * std::exp(-i / 25); }));
  chart.series.push_back(
      Line("holdout", 150, [](double i) { return 0.11 + 0.58 * std::exp(-i / 30) + 0.0002 * i; }));
  return chart;
}

// Three runs by four metrics, as `takt run compare` draws them.
BarChart RunComparison() {
  return BarChart{
      .title = "weld-pm: holdout metrics",
      .y_label = "value",
      .groups = {"run-20260301-a1", "run-20260302-b7", "run-20260303-c3"},
      .bars = {"auc", "pr_auc", "precision", "recall"},
      .values = {{0.912, 0.734, 0.81, 0.66}, {0.934, 0.771, 0.84, 0.7}, {0.887, 0.702, 0.79, 0.71}}};
}

// Every tag opened is closed, in order: a check of well-formedness enough for
// what cairo writes (no CDATA, no '>' inside attribute values).
testing::AssertionResult TagsBalance(const std::string& xml) {
  std::vector<std::string> open;
  size_t i = 0;
  while ((i = xml.find('<', i)) != std::string::npos) {
    const size_t end = xml.find('>', i);
    if (end == std::string::npos) return testing::AssertionFailure() << "unterminated tag at " << i;
    const std::string tag = xml.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.starts_with('?') || tag.starts_with('!')) continue;
    if (tag.ends_with('/')) continue;
    if (tag.starts_with('/')) {
      const std::string name = tag.substr(1);
      if (open.empty() || open.back() != name) {
        return testing::AssertionFailure()
               << "</" << name << "> closes " << (open.empty() ? "nothing" : open.back());
      }
      open.pop_back();
      continue;
    }
    open.push_back(tag.substr(0, tag.find_first_of(" \t\r\n")));
  }
  if (!open.empty()) return testing::AssertionFailure() << "<" << open.back() << "> is never closed";
  return testing::AssertionSuccess();
}

// Occurrences of `needle` in `text` outside <defs>...</defs> (where cairo keeps glyph outlines).
int CountOutsideDefs(const std::string& text, const std::string& needle) {
  std::string body = text;
  for (size_t a; (a = body.find("<defs>")) != std::string::npos;) {
    const size_t b = body.find("</defs>", a);
    body.erase(a, b == std::string::npos ? std::string::npos : b + 7 - a);
  }
  int n = 0;
  for (size_t i = 0; (i = body.find(needle, i)) != std::string::npos; i += needle.size()) ++n;
  return n;
}

// ---------------------------------------------------------------- ticks

TEST(NiceTicksTest, UnitRangeInFifths) {
  EXPECT_EQ(NiceTicks(0, 1), (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1}));
  EXPECT_EQ(NiceTicks(1, 0), NiceTicks(0, 1));
  EXPECT_EQ(NiceTicks(0, 149, 6), (std::vector<double>{0, 50, 100, 150}));
  EXPECT_EQ(NiceTicks(0, 10, 11), (std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
}

TEST(NiceTicksTest, EqualEndsAreWidened) {
  for (double v : {0.0, 5.0, -3.0, 0.693, 1e-9, 4e12}) {
    const auto ticks = NiceTicks(v, v);
    ASSERT_GE(ticks.size(), 2u) << v;
    EXPECT_LT(ticks.front(), v) << v;
    EXPECT_GT(ticks.back(), v) << v;
  }
}

TEST(NiceTicksTest, NotFiniteGivesNone) {
  EXPECT_TRUE(NiceTicks(kNaN, 1).empty());
  EXPECT_TRUE(NiceTicks(0, kInf).empty());
}

// The step between ticks is 1, 2 or 5 x 10^k.
bool IsNiceStep(double step) {
  const double e = std::floor(std::log10(step));
  const double m = step / std::pow(10.0, e);
  for (double nice : {1.0, 2.0, 5.0, 10.0}) {
    if (std::abs(m - nice) < 1e-6) return true;
  }
  return false;
}

void ExpectCovers(double lo, double hi, int target) {
  SCOPED_TRACE(testing::Message() << "[" << lo << ", " << hi << "] target " << target);
  const auto ticks = NiceTicks(lo, hi, target);
  ASSERT_GE(ticks.size(), 2u);
  const double step = ticks[1] - ticks[0];
  EXPECT_TRUE(IsNiceStep(step)) << step;
  EXPECT_LE(ticks.front(), std::min(lo, hi) + 1e-9 * step);
  EXPECT_GE(ticks.back(), std::max(lo, hi) - 1e-9 * step);
  EXPECT_LE(ticks.size(), static_cast<size_t>(2.5 * std::max(target, 2) + 2));
  for (size_t i = 1; i < ticks.size(); ++i) {
    EXPECT_NEAR(ticks[i] - ticks[i - 1], step, 1e-6 * step) << i;
    // A tick is as close to its decimal as the double allows: no 0.30000000000000004.
    const double n = std::round(ticks[i] / step);
    EXPECT_EQ(FormatTick(ticks[i], step), FormatTick(n * step, step));
  }
}

TEST(NiceTicksTest, CoverTheRange) {
  ExpectCovers(-3.7, -0.2, 6);
  ExpectCovers(-5, 5, 6);
  ExpectCovers(0.05, 0.69, 6);
  ExpectCovers(1e-12, 5e-12, 6);
  ExpectCovers(-2.5e-7, 1e-7, 4);
  ExpectCovers(1e12, 7e15, 6);
  ExpectCovers(-1e300, 1e300, 6);
  ExpectCovers(0, 1, 1);
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> mantissa(-10, 10);
  std::uniform_int_distribution<int> exponent(-20, 20), target(2, 12);
  for (int i = 0; i < 500; ++i) {
    const double scale = std::pow(10.0, exponent(rng));
    ExpectCovers(mantissa(rng) * scale, mantissa(rng) * scale, target(rng));
  }
}

TEST(NiceTicksTest, NarrowRangeFarFromZero) {
  // Doubles near 1e9 are 1.2e-7 apart: the ticks are as near 0.0002 steps as that allows.
  const auto ticks = NiceTicks(1e9, 1e9 + 1e-3);
  ASSERT_EQ(ticks.size(), 6u);
  const std::vector<std::string> want = {"1000000000.0000", "1000000000.0002", "1000000000.0004",
                                         "1000000000.0006", "1000000000.0008", "1000000000.0010"};
  for (size_t i = 0; i < ticks.size(); ++i) EXPECT_EQ(FormatTick(ticks[i], 2e-4), want[i]);
}

TEST(FormatTickTest, AsManyDecimalsAsTheStep) {
  EXPECT_EQ(FormatTick(0.3, 0.1), "0.3");
  EXPECT_EQ(FormatTick(0.1 + 0.2, 0.1), "0.3");
  EXPECT_EQ(FormatTick(1.0, 0.2), "1.0");
  EXPECT_EQ(FormatTick(0.25, 0.25), "0.25");
  EXPECT_EQ(FormatTick(0.06, 0.02), "0.06");
  EXPECT_EQ(FormatTick(2000, 500), "2000");
  EXPECT_EQ(FormatTick(150, 50), "150");
  EXPECT_EQ(FormatTick(-0.5, 0.5), "-0.5");
  EXPECT_EQ(FormatTick(0.0003, 0.0001), "0.0003");
}

TEST(FormatTickTest, ZeroIsZero) {
  EXPECT_EQ(FormatTick(0, 0.1), "0");
  EXPECT_EQ(FormatTick(-0.0, 0.1), "0");
  EXPECT_EQ(FormatTick(5.551115123125783e-17, 0.1), "0");
  EXPECT_EQ(FormatTick(-0.01, 0.1), "0.0");
}

TEST(FormatTickTest, ScientificForTinyAndHugeSteps) {
  EXPECT_EQ(FormatTick(1e-5, 1e-5), "1e-05");
  EXPECT_EQ(FormatTick(1.5e-5, 5e-6), "1.5e-05");
  EXPECT_EQ(FormatTick(2e-5, 5e-6), "2e-05");
  EXPECT_EQ(FormatTick(2e6, 1e6), "2e+06");
  EXPECT_EQ(FormatTick(2.5e6, 5e5), "2.5e+06");
  EXPECT_EQ(FormatTick(-3e9, 1e9), "-3e+09");
}

TEST(FormatTickTest, NiceTickLabelsAreShort) {
  for (auto [lo, hi] : {std::pair{0.0, 0.3}, {0.05, 0.69}, {-1.3, 7.1}, {1e-6, 9e-6}, {0.0, 3e7}}) {
    const auto ticks = NiceTicks(lo, hi);
    const double step = ticks[1] - ticks[0];
    for (double t : ticks) EXPECT_LE(FormatTick(t, step).size(), 7u) << t << " step " << step;
  }
}

// ---------------------------------------------------------------- formats

TEST(FormatOfTest, FromTheExtension) {
  EXPECT_EQ(FormatOf("curve.png"), Format::kPng);
  EXPECT_EQ(FormatOf("/tmp/x/AUC.PNG"), Format::kPng);
  EXPECT_EQ(FormatOf("auc.Svg"), Format::kSvg);
  for (std::string_view bad : {"curve.jpg", "png", "curve", "dir.png/curve", "curve.png.txt", ""}) {
    auto f = FormatOf(bad);
    ASSERT_FALSE(f.has_value()) << bad;
    EXPECT_EQ(f.error().code(), Code::kInvalidArgument);
    EXPECT_NE(f.error().message().find("\"" + std::string(bad) + "\""), std::string::npos)
        << f.error().message();
  }
}

// ---------------------------------------------------------------- line charts

TEST(LineChartTest, PngHasTheSizeAndBothSeriesColours) {
  const std::string png = MustRender(TrainingCurves());
  ASSERT_GE(png.size(), 8u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const Image image = DecodePng(png);
  EXPECT_EQ(image.width, 800);
  EXPECT_EQ(image.height, 480);
  EXPECT_GT(Count(image, SeriesColor(0)), 200);
  EXPECT_GT(Count(image, SeriesColor(1)), 200);
  EXPECT_NE(SeriesColor(0), SeriesColor(1));
}

TEST(LineChartTest, RequestedSize) {
  LineChart chart = TrainingCurves();
  for (auto [w, h] : {std::pair{640, 360}, {100, 100}, {3000, 1200}}) {
    chart.width = w;
    chart.height = h;
    const Image image = DecodePng(MustRender(chart));
    EXPECT_EQ(image.width, w);
    EXPECT_EQ(image.height, h);
    EXPECT_GT(Count(image, SeriesColor(0)), 0) << w << "x" << h;
  }
}

TEST(LineChartTest, OneSeriesHasNoLegend) {
  LineChart chart = TrainingCurves();
  chart.series.resize(1);
  const Image image = DecodePng(MustRender(chart));
  EXPECT_GT(Count(image, SeriesColor(0)), 200);
  EXPECT_EQ(Count(image, SeriesColor(1)), 0);
}

TEST(LineChartTest, PaletteIsDistinctAndRepeats) {
  for (size_t i = 0; i < 7; ++i) {
    for (size_t j = i + 1; j < 7; ++j) EXPECT_NE(SeriesColor(i), SeriesColor(j)) << i << " " << j;
  }
  EXPECT_EQ(SeriesColor(7), SeriesColor(0));
  LineChart chart{.title = "seven"};
  for (int s = 0; s < 7; ++s) {
    chart.series.push_back({"s" + std::to_string(s), {0, 1, 2}, {1.0 * s, 1.0 * s + 1, 1.0 * s}});
  }
  const Image image = DecodePng(MustRender(chart));
  for (size_t s = 0; s < 7; ++s) EXPECT_GT(Count(image, SeriesColor(s)), 20) << s;
}

TEST(LineChartTest, NaNAndInfinityBreakTheLine) {
  LineChart chart{.title = "gap"};
  Series s{"loss", {}, {}};
  for (int i = 0; i <= 100; ++i) {
    s.x.push_back(i);
    s.y.push_back(i >= 40 && i <= 60 ? (i == 50 ? kInf : kNaN) : 1.0);
  }
  chart.series.push_back(s);
  const auto runs = Runs(ColumnsWith(DecodePng(MustRender(chart)), SeriesColor(0)));
  ASSERT_EQ(runs.size(), 2u);
  // Points 39 and 61 are the ends: the gap is about a fifth of the plot.
  const double plot_w = runs[1].second - runs[0].first;
  const double gap = runs[1].first - runs[0].second;
  EXPECT_GT(gap, 0.15 * plot_w);
  EXPECT_LT(gap, 0.25 * plot_w);

  // Without the gap: one run.
  chart.series[0].y.assign(101, 1.0);
  EXPECT_EQ(Runs(ColumnsWith(DecodePng(MustRender(chart)), SeriesColor(0))).size(), 1u);
}

TEST(LineChartTest, IsolatedPointIsADot) {
  LineChart chart{.series = {{"one", {0, 1, 2, 3, 4}, {kNaN, kNaN, 0.5, kNaN, kNaN}}}};
  const Image image = DecodePng(MustRender(chart));
  EXPECT_GT(Count(image, SeriesColor(0)), 4);
  EXPECT_EQ(Runs(ColumnsWith(image, SeriesColor(0))).size(), 1u);
}

// The mean row of `color` in each column that has it.
std::vector<std::pair<int, double>> CurveRows(const Image& image, Rgb color) {
  std::vector<std::pair<int, double>> out;
  for (int x = 0; x < image.width; ++x) {
    double sum = 0;
    int n = 0;
    for (int y = 0; y < image.height; ++y) {
      if (image.At(x, y) == color) {
        sum += y;
        ++n;
      }
    }
    if (n > 0) out.push_back({x, sum / n});
  }
  return out;
}

// The largest distance (in rows) of the curve from the straight line through its ends.
double MaxDeviationFromChord(const std::vector<std::pair<int, double>>& rows) {
  const auto [x0, y0] = rows.front();
  const auto [x1, y1] = rows.back();
  double worst = 0;
  for (const auto& [x, y] : rows) {
    worst = std::max(worst, std::abs(y - (y0 + (y1 - y0) * (x - x0) / (x1 - x0))));
  }
  return worst;
}

TEST(LineChartTest, LogScaleStraightensAnExponential) {
  LineChart chart{.title = "decay", .y_label = "loss"};
  chart.series.push_back(Line("loss", 101, [](double i) { return std::pow(10.0, -i / 25); }));
  chart.log_y = true;
  const auto log_rows = CurveRows(DecodePng(MustRender(chart)), SeriesColor(0));
  chart.log_y = false;
  const auto linear_rows = CurveRows(DecodePng(MustRender(chart)), SeriesColor(0));
  ASSERT_GT(log_rows.size(), 100u);
  ASSERT_GT(linear_rows.size(), 100u);
  EXPECT_LT(MaxDeviationFromChord(log_rows), 3.0);
  EXPECT_GT(MaxDeviationFromChord(linear_rows), 50.0);
}

TEST(LineChartTest, LogScaleOfANarrowRange) {
  LineChart chart{.log_y = true};
  chart.series.push_back(Line("flat", 20, [](double i) { return 0.2 + 0.001 * i; }));
  EXPECT_GT(Count(DecodePng(MustRender(chart)), SeriesColor(0)), 100);
  chart.series[0].y.assign(20, 3.0);  // constant
  EXPECT_GT(Count(DecodePng(MustRender(chart)), SeriesColor(0)), 100);
}

TEST(LineChartTest, NoDataSaysSo) {
  auto text_pixels = [](const Image& image) {  // dark pixels in the middle of the image
    int n = 0;
    for (int y = image.height / 3; y < 2 * image.height / 3; ++y) {
      for (int x = image.width / 3; x < 2 * image.width / 3; ++x) n += image.At(x, y).g < 0xA0;
    }
    return n;
  };
  for (const LineChart& chart : {LineChart{.title = "nothing"}, LineChart{.series = {{"empty", {}, {}}}},
                                 LineChart{.series = {{"nan", {1, 2}, {kNaN, kInf}}}, .log_y = true}}) {
    const Image image = DecodePng(MustRender(chart));
    EXPECT_EQ(image.width, 800);
    EXPECT_EQ(Count(image, SeriesColor(0)), 0);
    EXPECT_GT(text_pixels(image), 20);
    EXPECT_TRUE(TagsBalance(MustRender(chart, Format::kSvg)));
  }
}

TEST(LineChartTest, BadInput) {
  LineChart chart = TrainingCurves();
  chart.series[1].y.pop_back();
  std::string message = RenderError(chart);
  EXPECT_NE(message.find("series 1 \"holdout\""), std::string::npos) << message;
  EXPECT_NE(message.find("150"), std::string::npos) << message;
  EXPECT_NE(message.find("149"), std::string::npos) << message;

  for (auto [w, h] : {std::pair{99, 480}, {800, 8001}, {0, 0}, {-5, 480}}) {
    chart = TrainingCurves();
    chart.width = w;
    chart.height = h;
    message = RenderError(chart);
    EXPECT_NE(message.find(w < 100 ? "width" : "height"), std::string::npos) << message;
    EXPECT_NE(message.find("100..8000"), std::string::npos) << message;
  }

  chart = TrainingCurves();
  chart.log_y = true;
  chart.series[1].y[7] = 0;
  message = RenderError(chart);
  EXPECT_NE(message.find("series 1 \"holdout\" point 7"), std::string::npos) << message;
  EXPECT_NE(message.find("log"), std::string::npos) << message;
  chart.series[1].y[7] = -0.5;
  message = RenderError(chart);
  EXPECT_NE(message.find("-0.5"), std::string::npos) << message;
  chart.log_y = false;
  EXPECT_TRUE(Render(chart, Format::kPng).has_value());  // negative values are fine on a linear axis

  chart = TrainingCurves();
  chart.title = "bad \xff\xfe";
  EXPECT_NE(RenderError(chart).find("title"), std::string::npos);
  chart = TrainingCurves();
  chart.series[0].name = "caf\xc3";  // cut in the middle of a code point
  EXPECT_NE(RenderError(chart).find("series 0"), std::string::npos);
  chart.series[0].name = "caf\xc3\xa9 \xe2\x80\x94 ok";
  EXPECT_TRUE(Render(chart, Format::kPng).has_value());
}

// The legend's frame: the rows and columns of its top and bottom border, the
// only long horizontal runs of its colour (#cccccc).
struct Box {
  int x0 = -1, x1 = -1, y0 = -1, y1 = -1;
};
Box LegendFrame(const Image& image) {
  Box box;
  const Rgb border{0xCC, 0xCC, 0xCC};
  for (int y = 0; y < image.height; ++y) {
    int run = 0;
    for (int x = 0; x < image.width; ++x) {
      run = image.At(x, y) == border ? run + 1 : 0;
      if (run == 40) {
        if (box.y0 < 0) box.y0 = y;
        box.y1 = y;
        box.x0 = x - 39;
        while (box.x0 + run < image.width && image.At(box.x0 + run, y) == border) ++run;
        box.x1 = box.x0 + run - 1;
        break;
      }
    }
  }
  return box;
}

int CountIn(const Image& image, Rgb color, const Box& box) {
  int n = 0;
  for (int y = box.y0; y <= box.y1; ++y) {
    for (int x = box.x0; x <= box.x1; ++x) n += image.At(x, y) == color;
  }
  return n;
}

TEST(LineChartTest, LegendGoesWhereTheDataIsNot) {
  auto rising = [](double i) { return i; };
  auto rising_lower = [](double i) { return i - 20; };
  auto falling = [](double i) { return 100 - i; };
  auto falling_lower = [](double i) { return 80 - i; };
  struct Case {
    double (*a)(double);
    double (*b)(double);
    bool left;  // where the legend should go
  };
  for (const Case& c : {Case{rising, rising_lower, true}, Case{falling, falling_lower, false}}) {
    LineChart chart{.title = "legend", .series = {Line("first", 101, c.a), Line("second", 101, c.b)}};
    const Image image = DecodePng(MustRender(chart));
    const Box box = LegendFrame(image);
    ASSERT_GE(box.y0, 0) << "no legend";
    EXPECT_GT(box.y1 - box.y0, 20);
    EXPECT_LT(box.y1, image.height / 2);  // a top corner
    EXPECT_EQ(box.x1 < image.width / 2, c.left) << box.x0 << ".." << box.x1;
    // A line under the legend would cross the ring just outside its frame.
    const Box ring{box.x0 - 3, box.x1 + 3, box.y0 - 3, box.y1 + 3};
    for (size_t s = 0; s < 2; ++s) {
      EXPECT_GT(CountIn(image, SeriesColor(s), box), 20) << "swatch " << s;
      EXPECT_EQ(CountIn(image, SeriesColor(s), ring), CountIn(image, SeriesColor(s), box)) << s;
    }
  }
  // Data in every corner: the legend goes beside the plot.
  LineChart chart{.series = {Line("up", 101, rising), Line("down", 101, falling)}};
  const Image image = DecodePng(MustRender(chart));
  const Box box = LegendFrame(image);
  ASSERT_GE(box.y0, 0) << "no legend";
  const auto runs = Runs(ColumnsWith(image, SeriesColor(0)));
  ASSERT_FALSE(runs.empty());
  int line_right = 0;  // the rightmost column of line pixels outside the legend
  for (int x = 0; x < box.x0; ++x) {
    for (int y = 0; y < image.height; ++y) {
      if (image.At(x, y) == SeriesColor(0)) line_right = x;
    }
  }
  EXPECT_GT(box.x0, line_right);
}

TEST(LineChartTest, LongTextIsCutNotFatal) {
  LineChart chart = TrainingCurves();
  chart.title = std::string(500, 'T');
  chart.x_label = std::string(300, 'x');
  chart.series[0].name = std::string(400, 'n');
  const Image image = DecodePng(MustRender(chart));
  EXPECT_GT(Count(image, SeriesColor(0)), 100);
}

// ---------------------------------------------------------------- SVG

TEST(SvgTest, DocumentOfTheRequestedSize) {
  LineChart chart = TrainingCurves();
  chart.width = 640;
  chart.height = 360;
  const std::string svg = MustRender(chart, Format::kSvg);
  EXPECT_TRUE(svg.starts_with("<?xml")) << svg.substr(0, 100);
  const size_t root = svg.find("<svg");
  ASSERT_NE(root, std::string::npos);
  const std::string tag = svg.substr(root, svg.find('>', root) - root);
  EXPECT_NE(tag.find("width=\"640pt\""), std::string::npos) << tag;
  EXPECT_NE(tag.find("height=\"360pt\""), std::string::npos) << tag;
  EXPECT_NE(tag.find("viewBox=\"0 0 640 360\""), std::string::npos) << tag;
  EXPECT_TRUE(TagsBalance(svg));
  EXPECT_TRUE(svg.ends_with("</svg>\n")) << svg.substr(svg.size() - 20);
}

TEST(SvgTest, MoreSeriesMorePaths) {
  LineChart chart = TrainingCurves();
  chart.series.resize(1);
  const int one = CountOutsideDefs(MustRender(chart, Format::kSvg), "<path");
  chart = TrainingCurves();
  chart.series.push_back(Line("third", 150, [](double i) { return 0.3 + 0.001 * i; }));
  const std::string svg = MustRender(chart, Format::kSvg);
  EXPECT_TRUE(TagsBalance(svg));
  // Each added series is a line and a legend swatch; the legend adds its frame.
  EXPECT_GE(CountOutsideDefs(svg, "<path"), one + 2 * 2 + 1);
}

TEST(SvgTest, SameDrawingAsPng) {
  // One renderer: a gap in the data is a second "M" (move-to) in the series' path.
  LineChart chart{.series = {{"loss", {0, 1, 2, 3, 4, 5}, {1, 2, 3, kNaN, 2, 1}}}};
  const std::string svg = MustRender(chart, Format::kSvg);
  const size_t stroke = svg.find("stroke-width:2;");
  ASSERT_NE(stroke, std::string::npos) << svg;
  const size_t d = svg.find(" d=\"", stroke);
  const std::string path = svg.substr(d, svg.find('"', d + 4) - d);
  EXPECT_EQ(std::count(path.begin(), path.end(), 'M'), 2) << path;
  EXPECT_EQ(std::count(path.begin(), path.end(), 'L'), 3) << path;
}

// ---------------------------------------------------------------- bar charts

TEST(BarChartTest, EveryBarColourIsPresent) {
  const std::string png = MustRender(RunComparison());
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const Image image = DecodePng(png);
  EXPECT_EQ(image.width, 800);
  EXPECT_EQ(image.height, 480);
  for (size_t b = 0; b < 4; ++b) EXPECT_GT(Count(image, SeriesColor(b)), 1000) << b;
  EXPECT_EQ(Count(image, SeriesColor(4)), 0);

  const std::string svg = MustRender(RunComparison(), Format::kSvg);
  EXPECT_TRUE(TagsBalance(svg));
  EXPECT_NE(svg.find("width=\"800pt\""), std::string::npos);
}

TEST(BarChartTest, TallerValueTallerBar) {
  BarChart chart{.groups = {"a", "b"}, .bars = {"auc"}, .values = {{0.25}, {0.75}}};
  const auto runs = Runs(ColumnsWith(DecodePng(MustRender(chart)), SeriesColor(0)));
  ASSERT_EQ(runs.size(), 2u);
  auto height_at = [&](int x) {
    const Image image = DecodePng(MustRender(chart));
    int n = 0;
    for (int y = 0; y < image.height; ++y) n += image.At(x, y) == SeriesColor(0);
    return n;
  };
  const int a = height_at((runs[0].first + runs[0].second) / 2);
  const int b = height_at((runs[1].first + runs[1].second) / 2);
  EXPECT_NEAR(b, 3.0 * a, 3.0);
}

TEST(BarChartTest, MissingAndNegativeValues) {
  BarChart chart = RunComparison();
  chart.values[1] = {kNaN, kNaN, kNaN, kNaN};
  chart.values[0][3] = -0.4;
  const Image image = DecodePng(MustRender(chart));
  for (size_t b = 0; b < 4; ++b) EXPECT_GT(Count(image, SeriesColor(b)), 500) << b;
  // Nothing is drawn for the middle group.
  const auto runs = Runs(ColumnsWith(image, SeriesColor(0)));
  EXPECT_GE(runs.size(), 2u);
}

TEST(BarChartTest, LongGroupNamesManyGroups) {
  BarChart chart{.title = "many runs", .bars = {"auc", "pr_auc"}};
  for (int g = 0; g < 30; ++g) {
    chart.groups.push_back("run-2026030" + std::to_string(g % 10) + "-experiment-" + std::to_string(g));
    chart.values.push_back({0.8 + 0.005 * g, 0.6 + 0.004 * g});
  }
  const Image image = DecodePng(MustRender(chart));
  EXPECT_GT(Count(image, SeriesColor(0)), 300);
  EXPECT_GT(Count(image, SeriesColor(1)), 300);
}

TEST(BarChartTest, NoData) {
  for (const BarChart& chart :
       {BarChart{.title = "empty"}, BarChart{.groups = {"a"}, .bars = {}, .values = {{}}},
        BarChart{.groups = {"a"}, .bars = {"auc"}, .values = {{kNaN}}}}) {
    const Image image = DecodePng(MustRender(chart));
    EXPECT_EQ(image.width, 800);
    EXPECT_EQ(Count(image, SeriesColor(0)), 0);
  }
}

TEST(BarChartTest, AllZero) {
  BarChart chart{.groups = {"a", "b"}, .bars = {"x", "y"}, .values = {{0, 0}, {0, 0}}};
  EXPECT_TRUE(Render(chart, Format::kPng).has_value());
}

TEST(BarChartTest, BadInput) {
  BarChart chart = RunComparison();
  chart.values.pop_back();
  std::string message = RenderError(chart);
  EXPECT_NE(message.find("2 rows"), std::string::npos) << message;
  EXPECT_NE(message.find("3 groups"), std::string::npos) << message;

  chart = RunComparison();
  chart.values[1].pop_back();
  message = RenderError(chart);
  EXPECT_NE(message.find("group 1 \"run-20260302-b7\""), std::string::npos) << message;
  EXPECT_NE(message.find("3 values"), std::string::npos) << message;
  EXPECT_NE(message.find("4 bars"), std::string::npos) << message;

  chart = RunComparison();
  chart.height = 8001;
  EXPECT_NE(RenderError(chart).find("height 8001"), std::string::npos);
  chart = RunComparison();
  chart.bars[2] = "\xc0\xaf";  // overlong '/'
  EXPECT_NE(RenderError(chart).find("bar 2"), std::string::npos);
}

// Writes the examples to $TAKT_PLOT_EXAMPLE_DIR, to look at.
TEST(ExamplesTest, WriteWhenAsked) {
  const char* dir = std::getenv("TAKT_PLOT_EXAMPLE_DIR");
  if (dir == nullptr) GTEST_SKIP() << "set TAKT_PLOT_EXAMPLE_DIR to write example charts";
  auto write = [&](const std::string& name, const std::string& data) {
    std::ofstream(std::string(dir) + "/" + name, std::ios::binary) << data;
  };
  write("plot-example-line.png", MustRender(TrainingCurves()));
  write("plot-example-line.svg", MustRender(TrainingCurves(), Format::kSvg));
  write("plot-example-bar.png", MustRender(RunComparison()));
  write("plot-example-bar.svg", MustRender(RunComparison(), Format::kSvg));
  LineChart log = TrainingCurves();
  log.log_y = true;
  log.title = "logloss (log scale)";
  write("plot-example-log.png", MustRender(log));
  LineChart auc{.title = "auc per round", .x_label = "round", .y_label = "auc"};
  auc.series.push_back(Line("train", 150, [](double i) { return 0.99 - 0.4 * std::exp(-i / 20); }));
  auc.series.push_back(Line("holdout", 150, [](double i) { return 0.93 - 0.4 * std::exp(-i / 25); }));
  write("plot-example-auc.png", MustRender(auc));
  BarChart many{.title = "many runs", .y_label = "auc", .bars = {"auc", "pr_auc"}};
  for (int g = 0; g < 12; ++g) {
    many.groups.push_back("run-20260301-experiment-" + std::to_string(g));
    many.values.push_back({0.8 + 0.01 * g, g == 4 ? kNaN : 0.6 + 0.02 * g});
  }
  write("plot-example-bar-many.png", MustRender(many));
  BarChart neg{.title = "delta vs baseline",
               .groups = {"a", "b", "c"},
               .bars = {"auc"},
               .values = {{0.02}, {-0.013}, {0.005}}};
  write("plot-example-bar-neg.png", MustRender(neg));
  write("plot-example-nodata.png", MustRender(LineChart{.title = "nothing yet"}));
  LineChart small = TrainingCurves();
  small.width = 320;
  small.height = 200;
  write("plot-example-small.png", MustRender(small));
  small.width = small.height = 100;
  write("plot-example-tiny.png", MustRender(small));
  BarChart small_bars = RunComparison();
  small_bars.width = 360;
  small_bars.height = 240;
  write("plot-example-bar-small.png", MustRender(small_bars));
}

}  // namespace
}  // namespace takt::plot
