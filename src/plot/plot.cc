#include "plot/plot.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <numbers>
#include <optional>
#include <utility>

namespace takt::plot {
namespace {

constexpr int kMinSize = 100;
constexpr int kMaxSize = 8000;

// Okabe & Ito, "Color Universal Design" (2008), without the yellow, which is
// too pale on white.
constexpr std::array<Rgb, 7> kPalette = {{
    {0x00, 0x72, 0xB2},  // blue
    {0xD5, 0x5E, 0x00},  // vermillion
    {0x00, 0x9E, 0x73},  // bluish green
    {0xCC, 0x79, 0xA7},  // reddish purple
    {0xE6, 0x9F, 0x00},  // orange
    {0x56, 0xB4, 0xE9},  // sky blue
    {0x00, 0x00, 0x00},  // black
}};

constexpr Rgb kInk{0x26, 0x26, 0x26};     // title, axis labels, legend text
constexpr Rgb kMuted{0x59, 0x59, 0x59};   // tick labels, "no data"
constexpr Rgb kSpine{0x80, 0x80, 0x80};   // axes and tick marks
constexpr Rgb kGrid{0xE6, 0xE6, 0xE6};    // grid lines
constexpr Rgb kBorder{0xCC, 0xCC, 0xCC};  // legend frame

// Sizes at 800 x 480, scaled with the image.
constexpr double kPad = 12;
constexpr double kGap = 6;
constexpr double kTickLen = 5;
constexpr double kTitleSize = 16;
constexpr double kLabelSize = 13;
constexpr double kTickSize = 11;
constexpr double kLegendSize = 12;
constexpr double kLineWidth = 2;
constexpr double kLegendInset = 8;

// ---------------------------------------------------------------- numbers

// 10^k, exact where a double can hold it.
double Pow10(int k) {
  static constexpr std::array<double, 23> kExact = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  if (k >= 0 && k < static_cast<int>(kExact.size())) return kExact[k];
  return std::pow(10.0, k);
}

// n x 10^k, computed so that e.g. 3 x 10^-1 is the double nearest 0.3.
double Scaled(double n, int k) {
  if (k >= 0) return n * Pow10(k);
  if (k >= -300) return n / Pow10(-k);
  return n * std::pow(10.0, k);
}

// The exponent of the last significant decimal digit of `step`: 2 for 500,
// -1 for 0.1 (or 0.09999999999999998), -2 for 0.25.
int ResolutionExponent(double step) {
  int r = static_cast<int>(std::ceil(std::log10(step))) + 1;
  for (int i = 0; i < 20; ++i, --r) {
    const double n = step / Pow10(r);
    const double rounded = std::round(n);
    if (rounded != 0 && std::abs(n - rounded) < 1e-6 * rounded) return r;
  }
  return r;
}

// A value with `decimals` decimals.
std::string FormatValue(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

// A value printed with about three significant digits: "0.912", "0.0345", "12345".
std::string FormatValue(double value) {
  char buf[64];
  const double av = std::abs(value);
  if (av == 0) return "0";
  if (av >= 1e-3 && av < 1e6) {
    const int decimals = std::max(0, 2 - static_cast<int>(std::floor(std::log10(av))));
    std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g", value);
  }
  return buf;
}

// ---------------------------------------------------------------- text

bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int extra = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // beyond U+10FFFF
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return false;
    }
    i += extra + 1;
  }
  return true;
}

Status CheckText(std::string_view what, std::string_view text) {
  if (!IsUtf8(text)) return InvalidArgument(std::string(what) + " is not valid UTF-8");
  return Ok();
}

// Drops the last UTF-8 code point of `s`.
void PopCodePoint(std::string& s) {
  while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
  if (!s.empty()) s.pop_back();
}

// ---------------------------------------------------------------- geometry

struct Rect {
  double x = 0, y = 0, w = 0, h = 0;
  double right() const { return x + w; }
  double bottom() const { return y + h; }
};

// A coarse grid of the image marking where data is drawn, to find a corner
// for the legend that covers none.
class Occupancy {
 public:
  Occupancy(double width, double height)
      : cols_(static_cast<int>(width / kCell) + 1),
        rows_(static_cast<int>(height / kCell) + 1),
        cells_(static_cast<size_t>(cols_) * rows_, 0) {}

  void MarkPoint(double x, double y) {
    const int c = static_cast<int>(std::floor(x / kCell));
    const int r = static_cast<int>(std::floor(y / kCell));
    if (c >= 0 && c < cols_ && r >= 0 && r < rows_) cells_[static_cast<size_t>(r) * cols_ + c] = 1;
  }
  void MarkSegment(double x0, double y0, double x1, double y1) {
    const int n = static_cast<int>(std::ceil(std::hypot(x1 - x0, y1 - y0) / (kCell / 2))) + 1;
    for (int i = 0; i <= n; ++i) {
      const double t = static_cast<double>(i) / n;
      MarkPoint(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
    }
  }
  void MarkRect(const Rect& r) {
    const auto [c0, c1, r0, r1] = Cells(r);
    for (int row = r0; row <= r1; ++row) {
      for (int col = c0; col <= c1; ++col) cells_[static_cast<size_t>(row) * cols_ + col] = 1;
    }
  }
  bool Free(const Rect& r) const {
    const auto [c0, c1, r0, r1] = Cells(r);
    for (int row = r0; row <= r1; ++row) {
      for (int col = c0; col <= c1; ++col) {
        if (cells_[static_cast<size_t>(row) * cols_ + col]) return false;
      }
    }
    return true;
  }

 private:
  // The cells a rectangle touches: first and last column, first and last row.
  std::array<int, 4> Cells(const Rect& r) const {
    return {std::max(0, static_cast<int>(std::floor(r.x / kCell))),
            std::min(cols_ - 1, static_cast<int>(std::floor(r.right() / kCell))),
            std::max(0, static_cast<int>(std::floor(r.y / kCell))),
            std::min(rows_ - 1, static_cast<int>(std::floor(r.bottom() / kCell)))};
  }

  static constexpr double kCell = 4;
  int cols_, rows_;
  std::vector<uint8_t> cells_;
};

// ---------------------------------------------------------------- axes

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;
  std::vector<std::string> labels;

  // Where `v` lies between lo (0) and hi (1).
  double Fraction(double v) const {
    if (log) return (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    return (v - lo) / (hi - lo);
  }
};

Axis LinearAxis(double lo, double hi, int target) {
  Axis axis;
  axis.ticks = NiceTicks(lo, hi, target);
  if (axis.ticks.size() < 2) {  // a range too narrow for doubles: one tick, centred
    const double v = axis.ticks.empty() ? lo : axis.ticks.front();
    axis.lo = v - 1;
    axis.hi = v + 1;
    axis.ticks = {v};
    axis.labels = {FormatTick(v, std::abs(v) > 0 ? std::abs(v) : 1)};
    return axis;
  }
  axis.lo = axis.ticks.front();
  axis.hi = axis.ticks.back();
  const double step = (axis.hi - axis.lo) / static_cast<double>(axis.ticks.size() - 1);
  for (double t : axis.ticks) axis.labels.push_back(FormatTick(t, step));
  return axis;
}

// Ticks of a log axis over positive [lo, hi]: every mantissa 1..9 per decade,
// or 1, 2 and 5, or powers of ten (every d-th decade), whichever is densest
// with at most target + 1 ticks. The axis spans the first to the last tick.
Axis LogAxis(double lo, double hi, int target) {
  Axis axis;
  axis.log = true;
  if (hi <= lo * (1 + 1e-12)) {
    lo /= 2;
    hi *= 2;
  }
  const int e_lo = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  const int e_hi = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  // The ticks of one mantissa set, from the largest <= lo to the smallest >= hi.
  auto ticks_of = [&](std::initializer_list<int> mantissas) {
    std::vector<double> all;
    for (int e = e_lo - 1; e <= e_hi; ++e) {
      for (int m : mantissas) all.push_back(Scaled(m, e));
    }
    std::vector<double> out;
    for (size_t i = 0; i < all.size(); ++i) {
      const bool below = all[i] <= lo * (1 + 1e-12);
      const bool next_below = i + 1 < all.size() && all[i + 1] <= lo * (1 + 1e-12);
      if (below && next_below) continue;
      out.push_back(all[i]);
      if (all[i] >= hi * (1 - 1e-12)) break;
    }
    return out;
  };
  const size_t limit = static_cast<size_t>(target) + 1;
  axis.ticks = ticks_of({1, 2, 3, 4, 5, 6, 7, 8, 9});
  if (axis.ticks.size() > limit) axis.ticks = ticks_of({1, 2, 5});
  if (axis.ticks.size() > limit) {
    // Powers of ten, every d-th decade.
    const int decades = e_hi - e_lo;
    int d = 1;
    for (int m = 1;; m *= 10) {
      if (decades / m + 2 <= static_cast<int>(limit)) {
        d = m;
        break;
      }
      if (decades / (2 * m) + 2 <= static_cast<int>(limit)) {
        d = 2 * m;
        break;
      }
      if (decades / (5 * m) + 2 <= static_cast<int>(limit)) {
        d = 5 * m;
        break;
      }
    }
    const int first = static_cast<int>(std::floor(static_cast<double>(e_lo) / d)) * d;
    axis.ticks.clear();
    for (int e = first;; e += d) {
      axis.ticks.push_back(Scaled(1, e));
      if (e >= e_hi) break;
    }
  }
  std::erase_if(axis.ticks, [](double t) { return !std::isfinite(t) || t <= 0; });
  if (axis.ticks.size() < 2) axis.ticks = {lo, hi};
  axis.lo = axis.ticks.front();
  axis.hi = axis.ticks.back();
  for (double t : axis.ticks) axis.labels.push_back(FormatTick(t, t));
  return axis;
}

int XTickTarget(double plot_width) { return std::clamp(static_cast<int>(plot_width / 100), 3, 10); }
int YTickTarget(double plot_height) { return std::clamp(static_cast<int>(plot_height / 55), 3, 8); }

// ---------------------------------------------------------------- cairo

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* cr) const { cairo_destroy(cr); }
};
using SurfacePtr = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
using ContextPtr = std::unique_ptr<cairo_t, ContextDeleter>;

cairo_status_t AppendToString(void* closure, const unsigned char* data, unsigned int length) {
  try {
    static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
    return CAIRO_STATUS_SUCCESS;
  } catch (...) {  // no exception may cross cairo's C frames
    return CAIRO_STATUS_WRITE_ERROR;
  }
}

// Drawing primitives over one cairo context; sizes are given at 800 x 480
// and scaled with the image.
class Painter {
 public:
  Painter(cairo_t* cr, double scale) : cr_(cr), scale_(scale) {
    // The same layout on every surface: glyph advances are not snapped to pixels.
    cairo_font_options_t* options = cairo_font_options_create();
    cairo_font_options_set_hint_metrics(options, CAIRO_HINT_METRICS_OFF);
    cairo_set_font_options(cr_, options);
    cairo_font_options_destroy(options);
    cairo_set_line_cap(cr_, CAIRO_LINE_CAP_BUTT);
    cairo_set_line_join(cr_, CAIRO_LINE_JOIN_ROUND);
    SetFont(kTickSize);
  }

  cairo_t* cr() const { return cr_; }
  double S(double v) const { return v * scale_; }

  void SetFont(double size, bool bold = false) {
    cairo_select_font_face(cr_, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr_, S(size));
    cairo_font_extents(cr_, &font_);
    if (!(font_.ascent > 0) || !(font_.descent >= 0)) {  // no usable font: keep the layout sane
      font_.ascent = S(size) * 0.8;
      font_.descent = S(size) * 0.2;
    }
  }
  double LineHeight() const { return font_.ascent + font_.descent; }
  double Width(const std::string& text) const {
    cairo_text_extents_t extents;
    cairo_text_extents(cr_, text.c_str(), &extents);
    return std::isfinite(extents.x_advance) ? extents.x_advance : 0;
  }
  // `text`, cut with an ellipsis to at most `max_width`.
  std::string Fit(std::string text, double max_width) const {
    if (Width(text) <= max_width) return text;
    while (!text.empty() && Width(text + "\u2026") > max_width) PopCodePoint(text);
    return text + "\u2026";
  }

  void SetColor(Rgb c) const { cairo_set_source_rgb(cr_, c.r / 255.0, c.g / 255.0, c.b / 255.0); }

  // Draws `text` anchored at (x, y): `ha` 0 = left edge, 0.5 = centre, 1 =
  // right edge; `va` 0 = top, 0.5 = middle, 1 = bottom of the line. `angle`
  // turns it (radians, clockwise) around the anchor.
  void Text(const std::string& text, double x, double y, double ha, double va, double angle = 0) const {
    cairo_save(cr_);
    cairo_translate(cr_, x, y);
    if (angle != 0) cairo_rotate(cr_, angle);
    cairo_move_to(cr_, -ha * Width(text), font_.ascent - va * LineHeight());
    cairo_show_text(cr_, text.c_str());
    cairo_restore(cr_);
  }

  // Width of thin lines (grid, axes) and a position that puts them on whole pixels.
  double Thin() const { return std::max(1.0, std::round(scale_)); }
  double Snap(double v) const {
    const double w = Thin();
    return static_cast<int>(w) % 2 == 1 ? std::floor(v) + 0.5 : std::round(v);
  }

  void Background(double width, double height) const {
    cairo_set_source_rgb(cr_, 1, 1, 1);
    cairo_rectangle(cr_, 0, 0, width, height);
    cairo_fill(cr_);
  }

 private:
  cairo_t* cr_;
  double scale_;
  cairo_font_extents_t font_{};
};

// Renders `draw` onto a surface of the format and returns the encoded image.
Result<std::string> Encode(int width, int height, Format format, const std::function<void(Painter&)>& draw) {
  std::string out;
  const bool png = format == Format::kPng;
  SurfacePtr surface(png ? cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height)
                         : cairo_svg_surface_create_for_stream(&AppendToString, &out, width, height));
  if (cairo_surface_status(surface.get()) != CAIRO_STATUS_SUCCESS) {
    return Internal(std::string("cairo: creating the surface: ") +
                    cairo_status_to_string(cairo_surface_status(surface.get())));
  }
  if (!png) cairo_svg_surface_set_document_unit(surface.get(), CAIRO_SVG_UNIT_PT);
  {
    ContextPtr cr(cairo_create(surface.get()));
    const double scale =
        std::clamp(std::sqrt(width * static_cast<double>(height) / (800.0 * 480.0)), 0.6, 4.0);
    Painter painter(cr.get(), scale);
    draw(painter);
    if (cairo_status(cr.get()) != CAIRO_STATUS_SUCCESS) {
      return Internal(std::string("cairo: drawing the chart: ") +
                      cairo_status_to_string(cairo_status(cr.get())));
    }
  }
  cairo_status_t status;
  if (png) {
    cairo_surface_flush(surface.get());
    status = cairo_surface_write_to_png_stream(surface.get(), &AppendToString, &out);
  } else {
    cairo_surface_finish(surface.get());
    status = cairo_surface_status(surface.get());
  }
  surface.reset();
  if (status != CAIRO_STATUS_SUCCESS) {
    return Internal(std::string("cairo: encoding ") + (png ? "PNG" : "SVG") + ": " +
                    cairo_status_to_string(status));
  }
  return out;
}

// ---------------------------------------------------------------- frame

// What sits around the plot area; PlotArea turns it into margins.
struct FrameSpec {
  std::string_view title, x_label, y_label;
  double y_tick_width = 0;    // the widest y tick label
  double x_band = 0;          // height of the x tick labels below the axis
  double left_overhang = 0;   // how far x tick labels reach left of the plot
  double right_overhang = 0;  // ... and right of it
  double reserve_right = 0;   // room for a legend beside the plot
};

Rect PlotArea(Painter& p, const FrameSpec& f, double width, double height) {
  const double pad = p.S(kPad), gap = p.S(kGap), tick = p.S(kTickLen);
  p.SetFont(kTickSize);
  const double tick_h = p.LineHeight();
  p.SetFont(kTitleSize, true);
  const double title_h = f.title.empty() ? 0 : p.LineHeight() + gap;
  p.SetFont(kLabelSize);
  const double label_h = p.LineHeight();
  const double top = pad + std::max(title_h, tick_h / 2);
  double left = pad + (f.y_label.empty() ? 0 : label_h + gap) + f.y_tick_width + gap + tick;
  left = std::max(left, pad + f.left_overhang);
  const double bottom = tick + gap + f.x_band + (f.x_label.empty() ? 0 : gap + label_h) + pad;
  const double right = pad + (f.reserve_right > 0 ? f.reserve_right + gap : f.right_overhang);
  return {left, top, std::max(1.0, width - left - right), std::max(1.0, height - top - bottom)};
}

double WidestLabel(Painter& p, const std::vector<std::string>& labels) {
  p.SetFont(kTickSize);
  double w = 0;
  for (const auto& l : labels) w = std::max(w, p.Width(l));
  return w;
}

void DrawTitleAndLabels(Painter& p, const FrameSpec& f, const Rect& plot, double width) {
  const double pad = p.S(kPad), gap = p.S(kGap), tick = p.S(kTickLen);
  p.SetColor(kInk);
  if (!f.title.empty()) {
    p.SetFont(kTitleSize, true);
    p.Text(p.Fit(std::string(f.title), width - 2 * pad), width / 2, pad, 0.5, 0);
  }
  p.SetFont(kLabelSize);
  if (!f.x_label.empty()) {
    p.Text(p.Fit(std::string(f.x_label), plot.w), plot.x + plot.w / 2,
           plot.bottom() + tick + gap + f.x_band + gap, 0.5, 0);
  }
  if (!f.y_label.empty()) {
    // Beside the tick labels, its top facing left.
    const double x = std::max(pad, plot.x - tick - gap - f.y_tick_width - gap - p.LineHeight());
    p.Text(p.Fit(std::string(f.y_label), plot.h), x, plot.y + plot.h / 2, 0.5, 0, -std::numbers::pi / 2);
  }
}

double YPixel(const Axis& a, const Rect& plot, double v) { return plot.bottom() - a.Fraction(v) * plot.h; }
double XPixel(const Axis& a, const Rect& plot, double v) { return plot.x + a.Fraction(v) * plot.w; }

// Horizontal grid lines, tick marks and labels of the y axis (labels that
// would overlap the one below are left out).
void DrawYAxis(Painter& p, const Rect& plot, const Axis& axis) {
  cairo_t* cr = p.cr();
  const double gap = p.S(kGap), tick = p.S(kTickLen);
  cairo_set_line_width(cr, p.Thin());
  p.SetColor(kGrid);
  for (double t : axis.ticks) {
    const double y = p.Snap(YPixel(axis, plot, t));
    cairo_move_to(cr, plot.x, y);
    cairo_line_to(cr, plot.right(), y);
  }
  cairo_stroke(cr);
  p.SetColor(kSpine);
  for (double t : axis.ticks) {
    const double y = p.Snap(YPixel(axis, plot, t));
    cairo_move_to(cr, plot.x - tick, y);
    cairo_line_to(cr, plot.x, y);
  }
  cairo_stroke(cr);
  p.SetFont(kTickSize);
  p.SetColor(kMuted);
  double last = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < axis.ticks.size(); ++i) {
    const double y = YPixel(axis, plot, axis.ticks[i]);
    if (last - y < p.LineHeight()) continue;
    p.Text(axis.labels[i], plot.x - tick - gap, y, 1, 0.5);
    last = y;
  }
}

// Vertical grid lines, tick marks and labels of a numeric x axis.
void DrawXAxis(Painter& p, const Rect& plot, const Axis& axis) {
  cairo_t* cr = p.cr();
  const double gap = p.S(kGap), tick = p.S(kTickLen);
  cairo_set_line_width(cr, p.Thin());
  p.SetColor(kGrid);
  for (double t : axis.ticks) {
    const double x = p.Snap(XPixel(axis, plot, t));
    cairo_move_to(cr, x, plot.y);
    cairo_line_to(cr, x, plot.bottom());
  }
  cairo_stroke(cr);
  p.SetColor(kSpine);
  for (double t : axis.ticks) {
    const double x = p.Snap(XPixel(axis, plot, t));
    cairo_move_to(cr, x, plot.bottom());
    cairo_line_to(cr, x, plot.bottom() + tick);
  }
  cairo_stroke(cr);
  p.SetFont(kTickSize);
  p.SetColor(kMuted);
  double last_right = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < axis.ticks.size(); ++i) {
    const double x = XPixel(axis, plot, axis.ticks[i]);
    const double w = p.Width(axis.labels[i]);
    if (x - w / 2 < last_right + gap) continue;
    p.Text(axis.labels[i], x, plot.bottom() + tick + gap, 0.5, 0);
    last_right = x + w / 2;
  }
}

void DrawSpines(Painter& p, const Rect& plot) {
  cairo_t* cr = p.cr();
  cairo_set_line_width(cr, p.Thin());
  p.SetColor(kSpine);
  const double left = p.Snap(plot.x), bottom = p.Snap(plot.bottom());
  cairo_move_to(cr, left, plot.y);
  cairo_line_to(cr, left, bottom);
  cairo_line_to(cr, plot.right(), bottom);
  cairo_stroke(cr);
}

void DrawNoData(Painter& p, std::string_view title, double width, double height) {
  p.Background(width, height);
  FrameSpec f{.title = title};
  const Rect plot = PlotArea(p, f, width, height);
  DrawTitleAndLabels(p, f, plot, width);
  p.SetFont(kLabelSize);
  p.SetColor(kMuted);
  p.Text("no data", width / 2, plot.y + plot.h / 2, 0.5, 0.5);
}

// ---------------------------------------------------------------- legend

enum class Swatch { kLine, kBox };

struct Legend {
  std::vector<std::pair<std::string, Rgb>> entries;
  Swatch swatch = Swatch::kLine;
  double w = 0, h = 0, row_h = 0, swatch_w = 0;
};

Legend MakeLegend(Painter& p, std::vector<std::pair<std::string, Rgb>> entries, Swatch swatch,
                  double max_width) {
  Legend legend{std::move(entries), swatch};
  if (legend.entries.empty()) return legend;
  p.SetFont(kLegendSize);
  const double inner = p.S(kGap + 2);
  legend.row_h = p.LineHeight() * 1.3;
  legend.swatch_w = swatch == Swatch::kLine ? p.S(22) : p.S(12);
  const double text_max = std::max(p.S(20), max_width - 2 * inner - legend.swatch_w - p.S(kGap));
  double text_w = 0;
  for (auto& [name, color] : legend.entries) {
    name = p.Fit(name, text_max);
    text_w = std::max(text_w, p.Width(name));
  }
  legend.w = 2 * inner + legend.swatch_w + p.S(kGap) + text_w;
  legend.h =
      2 * inner + legend.row_h * static_cast<double>(legend.entries.size()) - (legend.row_h - p.LineHeight());
  return legend;
}

// The first corner of the plot (top right, top left, bottom right, bottom
// left) where the legend covers no data.
std::optional<Rect> FreeCorner(const Legend& legend, const Rect& plot, const Occupancy& occupied,
                               double inset) {
  const double l = plot.x + inset, r = plot.right() - inset - legend.w;
  const double t = plot.y + inset, b = plot.bottom() - inset - legend.h;
  if (r < l || b < t) return std::nullopt;
  for (auto [x, y] : {std::pair{r, t}, {l, t}, {r, b}, {l, b}}) {
    const Rect box{x, y, legend.w, legend.h};
    if (occupied.Free({box.x - inset / 2, box.y - inset / 2, box.w + inset, box.h + inset})) return box;
  }
  return std::nullopt;
}

void DrawLegend(Painter& p, const Legend& legend, double x, double y) {
  cairo_t* cr = p.cr();
  const double inner = p.S(kGap + 2);
  cairo_rectangle(cr, p.Snap(x), p.Snap(y), std::round(legend.w), std::round(legend.h));
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_fill_preserve(cr);
  cairo_set_line_width(cr, p.Thin());
  p.SetColor(kBorder);
  cairo_stroke(cr);
  p.SetFont(kLegendSize);
  for (size_t i = 0; i < legend.entries.size(); ++i) {
    const auto& [name, color] = legend.entries[i];
    const double top = y + inner + legend.row_h * static_cast<double>(i);
    const double mid = top + p.LineHeight() / 2;
    p.SetColor(color);
    if (legend.swatch == Swatch::kLine) {
      cairo_set_line_width(cr, p.S(kLineWidth));
      cairo_move_to(cr, x + inner, std::round(mid));
      cairo_line_to(cr, x + inner + legend.swatch_w, std::round(mid));
      cairo_stroke(cr);
    } else {
      cairo_rectangle(cr, x + inner, mid - legend.swatch_w / 2, legend.swatch_w, legend.swatch_w);
      cairo_fill(cr);
    }
    p.SetColor(kInk);
    p.Text(name, x + inner + legend.swatch_w + p.S(kGap), top, 0, 0);
  }
}

// ---------------------------------------------------------------- line chart

struct Point {
  double x, y;
};

// The finite runs of each series in pixels: a NaN or infinite point ends a run.
std::vector<std::vector<std::vector<Point>>> SeriesRuns(const LineChart& chart, const Axis& xa,
                                                        const Axis& ya, const Rect& plot) {
  std::vector<std::vector<std::vector<Point>>> out;
  for (const Series& s : chart.series) {
    auto& runs = out.emplace_back();
    bool open = false;
    for (size_t i = 0; i < s.x.size(); ++i) {
      const bool ok = std::isfinite(s.x[i]) && std::isfinite(s.y[i]) && (!chart.log_y || s.y[i] > 0);
      if (!ok) {
        open = false;
        continue;
      }
      if (!open) runs.emplace_back();
      open = true;
      runs.back().push_back({XPixel(xa, plot, s.x[i]), YPixel(ya, plot, s.y[i])});
    }
  }
  return out;
}

std::string SeriesName(const std::string& name, size_t i) {
  return name.empty() ? "series " + std::to_string(i + 1) : name;
}

void DrawLineChart(Painter& p, const LineChart& chart) {
  const double width = chart.width, height = chart.height;
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (const Series& s : chart.series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i]) || (chart.log_y && s.y[i] <= 0)) continue;
      x_lo = std::min(x_lo, s.x[i]);
      x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]);
      y_hi = std::max(y_hi, s.y[i]);
    }
  }
  if (!(x_lo <= x_hi)) return DrawNoData(p, chart.title, width, height);
  p.Background(width, height);

  FrameSpec f{.title = chart.title, .x_label = chart.x_label, .y_label = chart.y_label};
  p.SetFont(kTickSize);
  f.x_band = p.LineHeight();
  // The tick counts depend on the plot size, which depends on the tick labels: settle in two passes.
  Rect plot = PlotArea(p, f, width, height);
  Axis xa, ya;
  for (int pass = 0; pass < 2; ++pass) {
    xa = LinearAxis(x_lo, x_hi, XTickTarget(plot.w));
    ya = chart.log_y ? LogAxis(y_lo, y_hi, YTickTarget(plot.h)) : LinearAxis(y_lo, y_hi, YTickTarget(plot.h));
    f.y_tick_width = WidestLabel(p, ya.labels);
    f.right_overhang = p.Width(xa.labels.back()) / 2;
    f.left_overhang = p.Width(xa.labels.front()) / 2;
    plot = PlotArea(p, f, width, height);
  }

  std::vector<std::pair<std::string, Rgb>> entries;
  if (chart.series.size() > 1) {
    for (size_t i = 0; i < chart.series.size(); ++i) {
      entries.emplace_back(SeriesName(chart.series[i].name, i), SeriesColor(i));
    }
  }
  const Legend legend = MakeLegend(p, std::move(entries), Swatch::kLine, width * 0.3);
  auto runs = SeriesRuns(chart, xa, ya, plot);
  std::optional<Rect> legend_box;
  if (!legend.entries.empty()) {
    Occupancy occupied(width, height);
    for (const auto& series_runs : runs) {
      for (const auto& run : series_runs) {
        occupied.MarkPoint(run.front().x, run.front().y);
        for (size_t i = 1; i < run.size(); ++i)
          occupied.MarkSegment(run[i - 1].x, run[i - 1].y, run[i].x, run[i].y);
      }
    }
    legend_box = FreeCorner(legend, plot, occupied, p.S(kLegendInset));
    if (!legend_box) {
      f.reserve_right = legend.w;
      plot = PlotArea(p, f, width, height);
      runs = SeriesRuns(chart, xa, ya, plot);
      legend_box = Rect{plot.right() + p.S(kGap), plot.y, legend.w, legend.h};
    }
  }

  DrawYAxis(p, plot, ya);
  DrawXAxis(p, plot, xa);

  cairo_t* cr = p.cr();
  const double line_w = p.S(kLineWidth);
  cairo_save(cr);
  cairo_rectangle(cr, plot.x - line_w, plot.y - line_w, plot.w + 2 * line_w, plot.h + 2 * line_w);
  cairo_clip(cr);
  cairo_set_line_width(cr, line_w);
  for (size_t s = 0; s < runs.size(); ++s) {
    p.SetColor(SeriesColor(s));
    for (const auto& run : runs[s]) {
      cairo_move_to(cr, run.front().x, run.front().y);
      for (size_t i = 1; i < run.size(); ++i) cairo_line_to(cr, run[i].x, run[i].y);
    }
    cairo_stroke(cr);
    for (const auto& run : runs[s]) {  // a point with no neighbour would be invisible
      if (run.size() != 1) continue;
      cairo_new_sub_path(cr);
      cairo_arc(cr, run.front().x, run.front().y, line_w * 1.5, 0, 2 * std::numbers::pi);
    }
    cairo_fill(cr);
  }
  cairo_restore(cr);

  DrawSpines(p, plot);
  DrawTitleAndLabels(p, f, plot, width);
  if (legend_box) DrawLegend(p, legend, legend_box->x, legend_box->y);
}

// ---------------------------------------------------------------- bar chart

constexpr double kLabelAngle = std::numbers::pi / 4;  // of group labels that do not fit their slot

struct BarLayout {
  FrameSpec frame;
  Rect plot;
  Axis y;
  bool rotate = false;
  double slot = 0;
};

BarLayout LayoutBars(Painter& p, const BarChart& chart, const std::vector<std::string>& group_labels,
                     double lo, double hi, double reserve_right) {
  const double width = chart.width, height = chart.height, gap = p.S(kGap);
  BarLayout layout;
  layout.frame = {.title = chart.title, .y_label = chart.y_label, .reserve_right = reserve_right};
  p.SetFont(kTickSize);
  const double tick_h = p.LineHeight();
  const double widest = WidestLabel(p, group_labels);
  const double first = p.Width(group_labels.front());
  layout.frame.x_band = tick_h;
  layout.plot = PlotArea(p, layout.frame, width, height);
  for (int pass = 0; pass < 3; ++pass) {
    // Head room for the value labels above (below) the bars.
    const double room = (tick_h + gap) / std::max(layout.plot.h, 1.0);
    const double span = hi - lo;
    const double top = hi > 0 ? hi + span * room : hi, bottom = lo < 0 ? lo - span * room : lo;
    layout.y = LinearAxis(bottom, top, YTickTarget(layout.plot.h));
    layout.frame.y_tick_width = WidestLabel(p, layout.y.labels);
    layout.plot = PlotArea(p, layout.frame, width, height);
    layout.slot = layout.plot.w / static_cast<double>(chart.groups.size());
    layout.rotate = widest > layout.slot - gap;
    if (layout.rotate) {
      layout.frame.x_band = widest * std::sin(kLabelAngle) + tick_h * std::cos(kLabelAngle);
      layout.frame.left_overhang = first * std::cos(kLabelAngle) - layout.slot / 2;
    } else {
      layout.frame.x_band = tick_h;
      layout.frame.left_overhang = 0;
    }
    layout.plot = PlotArea(p, layout.frame, width, height);
    layout.slot = layout.plot.w / static_cast<double>(chart.groups.size());
  }
  return layout;
}

struct BarBox {
  Rect rect;
  double value;
  size_t bar;
  std::string label;
};

// Labels for the values with the same decimals: three significant digits of
// the largest, less the trailing zeros they all share ("0.020", "-0.013", "0.005").
void LabelValues(std::vector<BarBox>& boxes) {
  double largest = 0;
  for (const BarBox& b : boxes) largest = std::max(largest, std::abs(b.value));
  if (largest < 1e-3 || largest >= 1e6) {
    for (BarBox& b : boxes) b.label = FormatValue(b.value);
    return;
  }
  int decimals = std::max(0, 2 - static_cast<int>(std::floor(std::log10(largest))));
  auto all_end_in_zero = [&](int d) {
    return std::all_of(boxes.begin(), boxes.end(), [&](const BarBox& b) {
      const std::string l = FormatValue(b.value, d);
      return l.back() == '0';
    });
  };
  while (decimals > 0 && all_end_in_zero(decimals)) --decimals;
  for (BarBox& b : boxes) b.label = FormatValue(b.value, decimals);
}

std::vector<BarBox> BarBoxes(const BarChart& chart, const BarLayout& layout, double bar_gap) {
  std::vector<BarBox> out;
  const size_t n = chart.bars.size();
  const double group_w = layout.slot * (n == 1 ? 0.6 : 0.8);
  const double bar_w = group_w / static_cast<double>(n);
  const double zero = YPixel(layout.y, layout.plot, 0);
  for (size_t g = 0; g < chart.groups.size(); ++g) {
    const double left = layout.plot.x + layout.slot * static_cast<double>(g) + (layout.slot - group_w) / 2;
    for (size_t b = 0; b < n; ++b) {
      const double v = chart.values[g][b];
      if (!std::isfinite(v)) continue;
      const double y = YPixel(layout.y, layout.plot, v);
      const double x = left + bar_w * static_cast<double>(b) + bar_gap / 2;
      out.push_back({{x, std::min(y, zero), std::max(bar_w - bar_gap, 1.0), std::abs(zero - y)}, v, b, ""});
    }
  }
  LabelValues(out);
  return out;
}

void DrawBarChart(Painter& p, const BarChart& chart) {
  const double width = chart.width, height = chart.height;
  double lo = 0, hi = 0;
  bool any = false;
  for (const auto& row : chart.values) {
    for (double v : row) {
      if (!std::isfinite(v)) continue;
      any = true;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  if (!any) return DrawNoData(p, chart.title, width, height);
  if (lo == hi) hi = 1;  // every value is zero
  p.Background(width, height);

  p.SetFont(kTickSize);
  std::vector<std::string> group_labels;
  for (const auto& g : chart.groups) group_labels.push_back(p.Fit(g, std::max(width * 0.25, p.S(40))));

  std::vector<std::pair<std::string, Rgb>> entries;
  if (chart.bars.size() > 1) {
    for (size_t i = 0; i < chart.bars.size(); ++i)
      entries.emplace_back(SeriesName(chart.bars[i], i), SeriesColor(i));
  }
  const Legend legend = MakeLegend(p, std::move(entries), Swatch::kBox, width * 0.3);

  const double bar_gap = p.S(2);
  BarLayout layout = LayoutBars(p, chart, group_labels, lo, hi, 0);
  std::vector<BarBox> boxes = BarBoxes(chart, layout, bar_gap);
  p.SetFont(kTickSize);
  const double tick_h = p.LineHeight(), gap = p.S(kGap);
  auto value_labels_fit = [&] {
    return std::all_of(boxes.begin(), boxes.end(),
                       [&](const BarBox& b) { return p.Width(b.label) <= b.rect.w + bar_gap; });
  };
  // The value label's box above a positive bar, below a negative one.
  auto label_box = [&](const BarBox& b) {
    const double w = p.Width(b.label);
    const double y = b.value >= 0 ? b.rect.y - p.S(2) - tick_h : b.rect.bottom() + p.S(2);
    return Rect{b.rect.x + b.rect.w / 2 - w / 2, y, w, tick_h};
  };
  bool show_values = value_labels_fit();

  std::optional<Rect> legend_box;
  if (!legend.entries.empty()) {
    Occupancy occupied(width, height);
    for (const BarBox& b : boxes) {
      occupied.MarkRect(b.rect);
      if (show_values) occupied.MarkRect(label_box(b));
    }
    legend_box = FreeCorner(legend, layout.plot, occupied, p.S(kLegendInset));
    if (!legend_box) {
      layout = LayoutBars(p, chart, group_labels, lo, hi, legend.w);
      boxes = BarBoxes(chart, layout, bar_gap);
      p.SetFont(kTickSize);
      show_values = value_labels_fit();
      legend_box = Rect{layout.plot.right() + gap, layout.plot.y, legend.w, legend.h};
    }
  }
  const Rect& plot = layout.plot;

  DrawYAxis(p, plot, layout.y);
  cairo_t* cr = p.cr();
  for (const BarBox& b : boxes) {
    p.SetColor(SeriesColor(b.bar));
    cairo_rectangle(cr, b.rect.x, b.rect.y, b.rect.w, b.rect.h);
    cairo_fill(cr);
  }
  if (layout.y.lo < 0 && layout.y.hi > 0) {  // the zero line
    cairo_set_line_width(cr, p.Thin());
    p.SetColor(kSpine);
    const double y = p.Snap(YPixel(layout.y, plot, 0));
    cairo_move_to(cr, plot.x, y);
    cairo_line_to(cr, plot.right(), y);
    cairo_stroke(cr);
  }
  DrawSpines(p, plot);

  p.SetFont(kTickSize);
  if (show_values) {
    p.SetColor(kMuted);
    for (const BarBox& b : boxes) {
      const Rect r = label_box(b);
      p.Text(b.label, r.x, r.y, 0, 0);
    }
  }
  p.SetColor(kInk);
  const double label_top = plot.bottom() + p.S(kTickLen) + gap;
  for (size_t g = 0; g < group_labels.size(); ++g) {
    const double x = plot.x + layout.slot * (static_cast<double>(g) + 0.5);
    if (layout.rotate) {
      p.Text(group_labels[g], x, label_top, 1, 0.5, -kLabelAngle);
    } else {
      p.Text(group_labels[g], x, label_top, 0.5, 0);
    }
  }
  DrawTitleAndLabels(p, layout.frame, plot, width);
  if (legend_box) DrawLegend(p, legend, legend_box->x, legend_box->y);
}

Status CheckSize(int width, int height) {
  for (auto [what, v] : {std::pair{"width", width}, {"height", height}}) {
    if (v < kMinSize || v > kMaxSize) {
      return InvalidArgument(std::string("chart ") + what + " " + std::to_string(v) + " is outside " +
                             std::to_string(kMinSize) + ".." + std::to_string(kMaxSize));
    }
  }
  return Ok();
}

std::string Quoted(std::string_view name) { return "\"" + std::string(name) + "\""; }

}  // namespace

Rgb SeriesColor(size_t index) { return kPalette[index % kPalette.size()]; }

Result<Format> FormatOf(std::string_view path) {
  const size_t dot = path.rfind('.');
  const size_t slash = path.find_last_of("/\\");
  if (dot != std::string_view::npos && (slash == std::string_view::npos || dot > slash)) {
    std::string ext(path.substr(dot + 1));
    for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (ext == "png") return Format::kPng;
    if (ext == "svg") return Format::kSvg;
  }
  return InvalidArgument("plot file " + Quoted(path) + ": unknown image format; name it .png or .svg");
}

std::vector<double> NiceTicks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (lo > hi) std::swap(lo, hi);
  target = std::clamp(target, 2, 50);
  if (lo == hi) {
    const double d = lo == 0 ? 1 : std::abs(lo) * 0.1;
    lo -= d;
    hi += d;
    if (lo == hi) return {lo};  // subnormal: no room for a step
  }
  // Divided first, so that a span beyond the largest double still has a step.
  const double raw = hi / (target - 1) - lo / (target - 1);
  const int e = static_cast<int>(std::floor(std::log10(raw)));
  int best_m = 0, best_k = 0;
  double best_lo = 0, best_hi = 0, best_score = std::numeric_limits<double>::infinity();
  for (int k = e - 1; k <= e + 1; ++k) {
    for (int m : {1, 2, 5}) {
      const double step = Scaled(m, k);
      if (!(step > 0) || !std::isfinite(step)) continue;
      const double n_lo = std::floor(lo / step + 1e-9), n_hi = std::ceil(hi / step - 1e-9);
      // About `target` ticks, and not much axis beyond the data.
      const double waste = 1 - (hi - lo) / ((n_hi - n_lo) * step);
      const double score = std::abs(n_hi - n_lo + 1 - target) + 5 * std::max(0.0, waste);
      if (score <= best_score) {  // ascending steps: a tie takes the larger step
        best_score = score;
        best_m = m;
        best_k = k;
        best_lo = n_lo;
        best_hi = n_hi;
      }
    }
  }
  std::vector<double> ticks;
  if (best_m == 0) return ticks;
  for (double n = best_lo; n <= best_hi && ticks.size() < 200; ++n) {
    const double v = Scaled(n * best_m, best_k) + 0.0;  // + 0.0 turns -0 into 0
    if (std::isfinite(v) && (ticks.empty() || v > ticks.back())) ticks.push_back(v);
  }
  return ticks;
}

std::string FormatTick(double value, double step) {
  char buf[64];
  if (!std::isfinite(value) || !(step > 0) || !std::isfinite(step)) {
    std::snprintf(buf, sizeof buf, "%g", value);
    return buf;
  }
  if (std::abs(value) <= step * 1e-6) return "0";
  const int r = ResolutionExponent(step);
  std::string out;
  if (step < 1e-4 || step >= 1e5) {
    const int value_exp = static_cast<int>(std::floor(std::log10(std::abs(value)) + 1e-9));
    std::snprintf(buf, sizeof buf, "%.*e", std::clamp(value_exp - r, 0, 16), value);
    out = buf;
    const size_t e = out.find('e');
    std::string mantissa = out.substr(0, e);
    if (mantissa.find('.') != std::string::npos) {
      while (mantissa.back() == '0') mantissa.pop_back();
      if (mantissa.back() == '.') mantissa.pop_back();
    }
    out = mantissa + out.substr(e);
  } else {
    std::snprintf(buf, sizeof buf, "%.*f", std::clamp(-r, 0, 16), value);
    out = buf;
  }
  if (out.starts_with('-') && out.substr(0, out.find('e')).find_first_of("123456789") == std::string::npos) {
    out.erase(0, 1);  // "-0.0"
  }
  return out;
}

Result<std::string> Render(const LineChart& chart, Format format) {
  TAKT_RETURN_IF_ERROR(CheckSize(chart.width, chart.height));
  TAKT_RETURN_IF_ERROR(CheckText("chart title", chart.title));
  TAKT_RETURN_IF_ERROR(CheckText("x label", chart.x_label));
  TAKT_RETURN_IF_ERROR(CheckText("y label", chart.y_label));
  for (size_t i = 0; i < chart.series.size(); ++i) {
    const Series& s = chart.series[i];
    const std::string which = "series " + std::to_string(i) + (s.name.empty() ? "" : " " + Quoted(s.name));
    TAKT_RETURN_IF_ERROR(CheckText(which + " name", s.name));
    if (s.x.size() != s.y.size()) {
      return InvalidArgument(which + ": x has " + std::to_string(s.x.size()) + " values but y has " +
                             std::to_string(s.y.size()));
    }
    if (!chart.log_y) continue;
    for (size_t j = 0; j < s.y.size(); ++j) {
      if (std::isfinite(s.y[j]) && s.y[j] <= 0) {
        return InvalidArgument(which + " point " + std::to_string(j) + " (x = " + FormatValue(s.x[j]) +
                               "): y = " + FormatValue(s.y[j]) + " cannot be shown on a log scale");
      }
    }
  }
  return Encode(chart.width, chart.height, format, [&](Painter& p) { DrawLineChart(p, chart); });
}

Result<std::string> Render(const BarChart& chart, Format format) {
  TAKT_RETURN_IF_ERROR(CheckSize(chart.width, chart.height));
  TAKT_RETURN_IF_ERROR(CheckText("chart title", chart.title));
  TAKT_RETURN_IF_ERROR(CheckText("y label", chart.y_label));
  for (size_t g = 0; g < chart.groups.size(); ++g) {
    TAKT_RETURN_IF_ERROR(CheckText("group " + std::to_string(g) + " name", chart.groups[g]));
  }
  for (size_t b = 0; b < chart.bars.size(); ++b) {
    TAKT_RETURN_IF_ERROR(CheckText("bar " + std::to_string(b) + " name", chart.bars[b]));
  }
  if (chart.values.size() != chart.groups.size()) {
    return InvalidArgument("bar chart values have " + std::to_string(chart.values.size()) +
                           " rows but there are " + std::to_string(chart.groups.size()) + " groups");
  }
  for (size_t g = 0; g < chart.values.size(); ++g) {
    if (chart.values[g].size() != chart.bars.size()) {
      return InvalidArgument("bar chart values of group " + std::to_string(g) + " " +
                             Quoted(chart.groups[g]) + ": " + std::to_string(chart.values[g].size()) +
                             " values but there are " + std::to_string(chart.bars.size()) + " bars");
    }
  }
  return Encode(chart.width, chart.height, format, [&](Painter& p) { DrawBarChart(p, chart); });
}

}  // namespace takt::plot
