#include "sim/weld.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <string>
#include <vector>

#include "sim/random.h"

namespace takt::sim {
namespace {

constexpr int64_t kHour = 3600;
constexpr uint64_t kMaxTableRows = 5'000'000;
constexpr uint64_t kProgressEvery = 10'000;

// ---- The physics, in one place so that it can be read and tuned. ----------

// Mean hours between the end of one failure and the start of the next
// episode's run-up (on top of the run-up itself and a 12 h minimum).
constexpr double kMeanHoursBetweenFailures = 330;
// Share of failures that come with hardly any precursor.
constexpr double kSuddenFailureShare = 0.08;
// Mean hours between benign drifts (they fade out, no failure follows).
constexpr double kMeanHoursBetweenBenignDrifts = 650;
// Probability per row of a single-hour spike on one sensor.
constexpr double kSpikeProbability = 0.004;
// Mean hours between part-program changes (load and cycle-time steps).
constexpr double kMeanHoursBetweenProgramChanges = 240;

// Hourly sensor noise (one standard deviation, before the robot's own noise
// scale): motor current A, motor temperature °C, weld current kA, weld
// voltage V, electrode force kN, cycle time s.
constexpr std::array<double, 6> kNoise = {0.65, 1.1, 0.3, 0.15, 0.08, 1.2};

// Baseline wander: an Ornstein-Uhlenbeck process per robot with this time
// constant and these stationary deviations (motor current, motor temperature
// in °C, weld current, weld voltage). Slow enough to look flat within a day,
// large enough that absolute levels say little on their own.
constexpr double kWanderHours = 400;
constexpr std::array<double, 4> kWanderSigma = {0.06, 2.5, 0.05, 0.05};

// Effects at full drift (level 1); the level grows as the square of the
// run-up's progress and is scaled by a per-episode severity around 1.
constexpr double kMotorCurrentGain = 0.18;    // relative rise of motor current
constexpr double kMotorTempRise = 8.0;        // °C on top of what the current explains
constexpr double kMotorNoiseGain = 1.5;       // relative rise of motor current noise
constexpr double kCycleGain = 0.05;           // relative lengthening of the cycle
constexpr double kWeldCurrentDrop = 1.1;      // kA
constexpr double kWeldVoltageRise = 0.6;      // V
constexpr double kWeldNoiseGain = 4.0;        // relative rise of weld current/voltage noise
constexpr double kElectrodeForceDrop = 0.08;  // kN

enum class Mode { kMotor, kWeld };

// A drift of one robot: the run-up to a failure, or a benign drift that fades.
struct Episode {
  int64_t start = 0;  // first hour of the drift
  int64_t end = 0;    // failure (or fade-out) hour, exclusive
  Mode mode = Mode::kMotor;
  double severity = 0;

  bool Active(int64_t h) const { return h >= start && h < end; }
  double Progress(int64_t h) const {
    return static_cast<double>(h - start + 1) / static_cast<double>(end - start);
  }
};

struct Plant {
  std::string name;
  int utc_offset_hours = 0;
  double ambient_offset = 0;  // °C
  double current_offset = 0;  // A
  double voltage_offset = 0;  // V
  double utilization = 1;
  Rng rng{0};
  double weather = 0;  // AR(1) deviation of the ambient temperature
  int64_t heat_start = 0;
  int64_t heat_end = 0;
  double heat_amplitude = 0;
  // Per hour:
  int local_hour = 0;
  double load = 1;  // share of full production
  double ambient = 21;
};

struct Robot {
  int plant = 0;
  std::string serial;
  Rng rng{0};
  // Baselines.
  double motor_current = 0;
  double thermal_gain = 0;  // °C per A
  double weld_current = 0;
  double weld_voltage = 0;
  double electrode_force = 0;
  double cycle_time = 0;
  double dress_interval = 0;  // parts between tip dresses
  double noise = 1;           // sensor noise scale of this robot
  // State.
  double motor_temp = 0;
  double parts_since_dress = 0;
  double program_load = 1;
  double program_cycle = 1;
  // Slow wander of the baselines (wear, lubrication, sensor ageing): relative
  // for motor current, weld current and voltage, in °C for the temperature.
  std::array<double, 4> wander{};
  int64_t next_program_change = 0;
  Episode failure;  // the next failure and its run-up
  Episode benign;   // the next benign drift
};

// One row of telemetry.
struct Reading {
  int64_t timestamp = 0;
  const Plant* plant = nullptr;
  const Robot* robot = nullptr;
  double motor_current_a = 0;
  double motor_temp_c = 0;
  double weld_current_ka = 0;
  double weld_voltage_v = 0;
  double electrode_force_kn = 0;
  double cycle_time_s = 0;
  int64_t tip_dress_count = 0;
  int64_t fails_within_24h = 0;
};

constexpr std::array<std::string_view, 4> kPlantNames = {"wolfsburg", "zwickau", "emden", "chattanooga"};
constexpr std::array<int, 4> kPlantUtcOffsets = {1, 1, 1, -5};

double RoundTo(double v, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Schedules the robot's next failure, its run-up starting after hour `from`.
void ScheduleFailure(Robot& r, int64_t from) {
  Episode& e = r.failure;
  e.mode = r.rng.Bernoulli(0.55) ? Mode::kMotor : Mode::kWeld;
  const int64_t run_up = e.mode == Mode::kMotor ? r.rng.UniformInt(48, 120) : r.rng.UniformInt(24, 72);
  const auto gap = static_cast<int64_t>(std::llround(r.rng.Exponential(kMeanHoursBetweenFailures)));
  e.end = from + 12 + run_up + gap;
  e.start = e.end - run_up;
  e.severity = r.rng.Bernoulli(kSuddenFailureShare) ? r.rng.Uniform(0.05, 0.2) : r.rng.Uniform(0.6, 1.4);
}

void ScheduleBenign(Robot& r, int64_t from) {
  Episode& e = r.benign;
  e.mode = r.rng.Bernoulli(0.5) ? Mode::kMotor : Mode::kWeld;
  e.start = from + static_cast<int64_t>(std::llround(r.rng.Exponential(kMeanHoursBetweenBenignDrifts)));
  e.end = e.start + r.rng.UniformInt(24, 96);
  e.severity = r.rng.Uniform(0.35, 0.9);
}

class WeldSimulator {
 public:
  explicit WeldSimulator(const WeldOptions& o) : options_(o) {
    for (int p = 0; p < o.plants; ++p) plants_.push_back(MakePlant(p));
    robots_.reserve(static_cast<size_t>(o.robots));
    for (int i = 0; i < o.robots; ++i) robots_.push_back(MakeRobot(i));
  }

  uint64_t total_rows() const {
    return static_cast<uint64_t>(options_.robots) * static_cast<uint64_t>(options_.days) * 24;
  }

  // Calls sink(const Reading&) for every row, in time then robot order; stops
  // early (returning false) when the sink returns false.
  template <typename Sink>
  bool Run(Sink&& sink) {
    const int64_t hours = static_cast<int64_t>(options_.days) * 24;
    Reading reading;
    for (int64_t h = 0; h < hours; ++h) {
      const int64_t ts = options_.start + h * kHour;
      for (Plant& p : plants_) StepPlant(p, h, ts);
      for (Robot& r : robots_) {
        StepRobot(r, h, ts, reading);
        if (!sink(reading)) return false;
      }
    }
    return true;
  }

 private:
  Plant MakePlant(int index) {
    Plant p;
    p.rng = Rng::ForStream(options_.seed, 1'000'000'000ULL + static_cast<uint64_t>(index));
    if (index < static_cast<int>(kPlantNames.size())) {
      p.name = std::string(kPlantNames[static_cast<size_t>(index)]);
      p.utc_offset_hours = kPlantUtcOffsets[static_cast<size_t>(index)];
    } else {
      p.name = "plant-" + std::to_string(index + 1);
      p.utc_offset_hours = static_cast<int>(p.rng.UniformInt(-6, 9));
    }
    p.ambient_offset = p.rng.Normal(0, 3.0);
    p.current_offset = p.rng.Normal(0, 0.3);
    p.voltage_offset = p.rng.Normal(0, 0.12);
    p.utilization = p.rng.Uniform(0.85, 1.0);
    ScheduleHeat(p, 0);
    return p;
  }

  void ScheduleHeat(Plant& p, int64_t from) {
    p.heat_start = from + static_cast<int64_t>(std::llround(p.rng.Exponential(300)));
    p.heat_end = p.heat_start + p.rng.UniformInt(24, 72);
    p.heat_amplitude = p.rng.Uniform(2.0, 5.0);
  }

  Robot MakeRobot(int index) {
    Robot r;
    r.plant = index % options_.plants;
    r.rng = Rng::ForStream(options_.seed, static_cast<uint64_t>(index));
    char serial[32];
    std::snprintf(serial, sizeof serial, "WG-%04d-%04X", index + 1,
                  static_cast<unsigned>(r.rng.Next() & 0xFFFF));
    r.serial = serial;
    r.motor_current = std::max(6.0, r.rng.Normal(11.0, 1.5));
    r.thermal_gain = r.rng.Normal(2.2, 0.25);
    r.weld_current = std::max(7.0, r.rng.Normal(9.6, 0.9));
    r.weld_voltage = std::max(5.0, r.rng.Normal(6.8, 0.5));
    r.electrode_force = std::max(2.5, r.rng.Normal(3.4, 0.18));
    r.cycle_time = std::max(45.0, r.rng.Normal(58.0, 3.5));
    r.dress_interval = static_cast<double>(r.rng.UniformInt(180, 260));
    r.noise = r.rng.Uniform(0.8, 1.25);
    for (size_t i = 0; i < r.wander.size(); ++i) r.wander[i] = r.rng.Normal(0, kWanderSigma[i]);
    r.parts_since_dress = r.rng.Uniform(0, r.dress_interval);
    r.motor_temp = 21.0 + r.thermal_gain * r.motor_current;
    r.next_program_change =
        static_cast<int64_t>(std::llround(r.rng.Exponential(kMeanHoursBetweenProgramChanges)));
    // The first failure may have its run-up under way when the data starts.
    int64_t from = -r.rng.UniformInt(0, 400);
    ScheduleFailure(r, from);
    while (r.failure.end <= 0) ScheduleFailure(r, r.failure.end);
    ScheduleBenign(r, -r.rng.UniformInt(0, 300));
    return r;
  }

  void StepPlant(Plant& p, int64_t h, int64_t ts) {
    const int64_t local = ts + p.utc_offset_hours * kHour;
    p.local_hour = static_cast<int>(FloorDiv(local, kHour) - FloorDiv(local, 86400) * 24);
    // 1970-01-01 was a Thursday: Monday = 0 ... Sunday = 6.
    const int64_t weekday = (FloorDiv(local, 86400) + 3) % 7;
    double shift;
    if (p.local_hour >= 6 && p.local_hour < 14) {
      shift = 1.0;  // early
    } else if (p.local_hour >= 14 && p.local_hour < 22) {
      shift = 0.95;  // late
    } else {
      shift = 0.7;  // night
    }
    if (weekday >= 5) shift = 0.3;  // weekend: maintenance shift only
    p.load = shift * p.utilization;

    p.weather = 0.95 * p.weather + p.rng.Normal(0, 0.4);
    if (h >= p.heat_end) ScheduleHeat(p, h);
    double heat = 0;
    if (h >= p.heat_start && h < p.heat_end) {
      const double u = static_cast<double>(h - p.heat_start) / static_cast<double>(p.heat_end - p.heat_start);
      heat = p.heat_amplitude * std::sin(std::numbers::pi * u);
    }
    p.ambient = 21.0 + p.ambient_offset + 2.5 * std::sin(2 * std::numbers::pi * (p.local_hour - 9) / 24.0) +
                p.weather + heat;
  }

  void StepRobot(Robot& r, int64_t h, int64_t ts, Reading& out) {
    const Plant& p = plants_[static_cast<size_t>(r.plant)];
    Rng& rng = r.rng;

    if (h >= r.failure.end) {
      // Failed in the previous hour and repaired: drifts gone, new electrode tips.
      r.parts_since_dress = 0;
      ScheduleFailure(r, h);
    }
    if (h >= r.benign.end) ScheduleBenign(r, h);
    if (h >= r.next_program_change) {
      r.program_load = std::clamp(r.program_load * std::exp(rng.Normal(0, 0.04)), 0.85, 1.15);
      r.program_cycle = std::clamp(r.program_cycle * std::exp(rng.Normal(0, 0.03)), 0.9, 1.1);
      r.next_program_change =
          h + 1 + static_cast<int64_t>(std::llround(rng.Exponential(kMeanHoursBetweenProgramChanges)));
    }

    double motor = 0;
    double weld = 0;
    if (r.failure.Active(h)) {
      const double u = r.failure.Progress(h);
      (r.failure.mode == Mode::kMotor ? motor : weld) += r.failure.severity * u * u;
    }
    if (r.benign.Active(h)) {
      // Rises like a run-up, then fades out.
      const double u = r.benign.Progress(h);
      const double shape = u < 0.7 ? (u / 0.7) * (u / 0.7) : (1.0 - u) / 0.3;
      (r.benign.mode == Mode::kMotor ? motor : weld) += r.benign.severity * shape;
    }

    for (size_t i = 0; i < r.wander.size(); ++i) {
      r.wander[i] +=
          -r.wander[i] / kWanderHours + rng.Normal(0, kWanderSigma[i] * std::sqrt(2.0 / kWanderHours));
    }
    const double load = (0.88 + 0.12 * p.load) * r.program_load * (1 + r.wander[0]);
    const double motor_current = r.motor_current * load * (1 + kMotorCurrentGain * motor) + p.current_offset;
    const double temp_target =
        p.ambient + r.wander[1] + r.thermal_gain * motor_current + kMotorTempRise * motor;
    r.motor_temp += 0.45 * (temp_target - r.motor_temp);
    const double cycle =
        r.cycle_time * r.program_cycle * (1 + kCycleGain * motor) * (1.0 + 0.05 * (1 - p.load));
    const double wear = r.parts_since_dress / r.dress_interval;
    const double weld_noise = 1 + kWeldNoiseGain * weld;

    double v[6];
    v[0] = motor_current + rng.Normal(0, kNoise[0] * r.noise * (1 + kMotorNoiseGain * motor));
    v[1] = r.motor_temp + rng.Normal(0, kNoise[1] * r.noise);
    v[2] = r.weld_current * (1 + r.wander[2]) + 0.35 * wear - kWeldCurrentDrop * weld +
           rng.Normal(0, kNoise[2] * r.noise * weld_noise);
    v[3] = r.weld_voltage * (1 + r.wander[3]) + p.voltage_offset - 0.15 * wear + kWeldVoltageRise * weld +
           rng.Normal(0, kNoise[3] * r.noise * weld_noise);
    v[4] = r.electrode_force - kElectrodeForceDrop * weld + rng.Normal(0, kNoise[4] * r.noise);
    v[5] = cycle + rng.Normal(0, kNoise[5] * r.noise);
    if (rng.Bernoulli(kSpikeProbability)) {
      const auto which = static_cast<size_t>(rng.UniformInt(0, 5));
      const double sign = rng.Bernoulli(0.5) ? 1.0 : -1.0;
      v[which] += sign * rng.Uniform(4, 8) * kNoise[which];
    }

    // Parts welded this hour, and tip dressing.
    r.parts_since_dress += p.load * 0.85 * 3600.0 / cycle;
    while (r.parts_since_dress >= r.dress_interval) r.parts_since_dress -= r.dress_interval;

    out.timestamp = ts;
    out.plant = &p;
    out.robot = &r;
    out.motor_current_a = RoundTo(std::max(0.5, v[0]), 2);
    out.motor_temp_c = RoundTo(std::max(-20.0, v[1]), 2);
    out.weld_current_ka = RoundTo(std::max(0.5, v[2]), 3);
    out.weld_voltage_v = RoundTo(std::max(0.5, v[3]), 3);
    out.electrode_force_kn = RoundTo(std::max(0.2, v[4]), 3);
    out.cycle_time_s = RoundTo(std::max(10.0, v[5]), 2);
    out.tip_dress_count = static_cast<int64_t>(r.parts_since_dress);
    out.fails_within_24h = (h >= r.failure.end - 24 && h < r.failure.end) ? 1 : 0;
  }

  WeldOptions options_;
  std::vector<Plant> plants_;
  std::vector<Robot> robots_;
};

// "2026-01-01T00:00:00Z"
std::string FormatHour(int64_t ts) {
  using namespace std::chrono;
  const sys_seconds t{seconds{ts}};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{t - day};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  return buf;
}

void AppendFixed(std::string& s, double v, int decimals) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, decimals);
  s.append(buf, res.ptr);
}

void AppendInt(std::string& s, int64_t v) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  s.append(buf, res.ptr);
}

frame::Column MakeColumn(std::string_view name, frame::Type type) {
  frame::Column c;
  c.field.name = std::string(name);
  c.field.type = type;
  return c;
}

}  // namespace

Status ValidateWeldOptions(const WeldOptions& o) {
  if (o.robots < 1 || o.robots > 100000) {
    return InvalidArgument("robots must be between 1 and 100000, got " + std::to_string(o.robots));
  }
  if (o.plants < 1 || o.plants > o.robots) {
    return InvalidArgument("plants must be between 1 and the number of robots (" + std::to_string(o.robots) +
                           "), got " + std::to_string(o.plants));
  }
  if (o.days < 1 || o.days > 3650) {
    return InvalidArgument("days must be between 1 and 3650, got " + std::to_string(o.days));
  }
  // Keep every timestamp within years 0000-9999 so that it prints as ISO 8601.
  constexpr int64_t kYear0 = -62167219200;      // 0000-01-01T00:00:00Z
  constexpr int64_t kYear10000 = 253402300800;  // 10000-01-01T00:00:00Z
  if (o.start < kYear0 || o.start > kYear10000 - static_cast<int64_t>(o.days) * 86400) {
    return InvalidArgument("start must lie between years 0 and 9999, got " + std::to_string(o.start));
  }
  return Ok();
}

Status WriteWeldCsv(const WeldOptions& options, std::ostream& out,
                    const std::function<void(uint64_t, uint64_t)>& progress) {
  TAKT_RETURN_IF_ERROR(ValidateWeldOptions(options));
  WeldSimulator sim(options);
  const uint64_t total = sim.total_rows();
  std::string buf;
  buf.reserve(1 << 20);
  for (size_t i = 0; i < kWeldColumns.size(); ++i) {
    if (i) buf += ',';
    buf += kWeldColumns[i];
  }
  buf += '\n';

  uint64_t done = 0;
  int64_t hour_ts = INT64_MIN;
  std::string hour_text;
  const bool ok = sim.Run([&](const Reading& r) {
    if (r.timestamp != hour_ts) {
      hour_ts = r.timestamp;
      hour_text = FormatHour(hour_ts);
    }
    buf += hour_text;
    buf += ',';
    buf += r.plant->name;
    buf += ',';
    buf += r.robot->serial;
    buf += ',';
    AppendFixed(buf, r.motor_current_a, 2);
    buf += ',';
    AppendFixed(buf, r.motor_temp_c, 2);
    buf += ',';
    AppendFixed(buf, r.weld_current_ka, 3);
    buf += ',';
    AppendFixed(buf, r.weld_voltage_v, 3);
    buf += ',';
    AppendFixed(buf, r.electrode_force_kn, 3);
    buf += ',';
    AppendFixed(buf, r.cycle_time_s, 2);
    buf += ',';
    AppendInt(buf, r.tip_dress_count);
    buf += ',';
    AppendInt(buf, r.fails_within_24h);
    buf += '\n';
    ++done;
    if (buf.size() >= (1 << 20) - 256) {
      out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
      buf.clear();
      if (!out) return false;
    }
    if (progress && done % kProgressEvery == 0 && done != total) progress(done, total);
    return true;
  });
  if (ok) out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
  if (ok) out.flush();
  if (!ok || !out)
    return Internal("writing weld CSV: the output stream failed after " + std::to_string(done) + " rows");
  if (progress) progress(done, total);
  return Ok();
}

Result<frame::Table> GenerateWeld(const WeldOptions& options) {
  TAKT_RETURN_IF_ERROR(ValidateWeldOptions(options));
  const uint64_t total = static_cast<uint64_t>(options.robots) * static_cast<uint64_t>(options.days) * 24;
  if (total > kMaxTableRows) {
    return InvalidArgument("robots x days x 24 = " + std::to_string(total) + " rows is more than the " +
                           std::to_string(kMaxTableRows) + " an in-memory table may hold; stream it as CSV");
  }
  WeldSimulator sim(options);
  using frame::Type;
  frame::Table t;
  t.columns.push_back(MakeColumn(kWeldColumns[0], Type::kTimestamp));
  t.columns.push_back(MakeColumn(kWeldColumns[1], Type::kString));
  t.columns.push_back(MakeColumn(kWeldColumns[2], Type::kString));
  for (size_t i = 3; i <= 8; ++i) t.columns.push_back(MakeColumn(kWeldColumns[i], Type::kFloat64));
  t.columns.push_back(MakeColumn(kWeldColumns[9], Type::kInt64));
  t.columns.push_back(MakeColumn(kWeldColumns[10], Type::kInt64));
  const size_t n = static_cast<size_t>(total);
  t.columns[0].ints.reserve(n);
  t.columns[1].strings.reserve(n);
  t.columns[2].strings.reserve(n);
  for (size_t i = 3; i <= 8; ++i) t.columns[i].doubles.reserve(n);
  t.columns[9].ints.reserve(n);
  t.columns[10].ints.reserve(n);

  sim.Run([&](const Reading& r) {
    t.columns[0].ints.push_back(r.timestamp);
    t.columns[1].strings.push_back(r.plant->name);
    t.columns[2].strings.push_back(r.robot->serial);
    t.columns[3].doubles.push_back(r.motor_current_a);
    t.columns[4].doubles.push_back(r.motor_temp_c);
    t.columns[5].doubles.push_back(r.weld_current_ka);
    t.columns[6].doubles.push_back(r.weld_voltage_v);
    t.columns[7].doubles.push_back(r.electrode_force_kn);
    t.columns[8].doubles.push_back(r.cycle_time_s);
    t.columns[9].ints.push_back(r.tip_dress_count);
    t.columns[10].ints.push_back(r.fails_within_24h);
    return true;
  });
  return t;
}

}  // namespace takt::sim
