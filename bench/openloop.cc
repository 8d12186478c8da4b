// Open-loop constant-rate HTTP/1.1 load: the C++ twin of bench/serving/openloop.py
// (same flags, same JSON object on stdout), for rates and precision the one
// Python thread cannot keep (it sleeps in whole milliseconds and falls behind
// near 19k req/s on 2 cores).
//   schedule: request i is due at t0 + i/rate (CLOCK_MONOTONIC, t0 = start +
//             50 ms) whatever happened before; it goes out on an idle
//             keep-alive connection, or a new one up to --connections, else
//             waits in a FIFO until one frees up
//   latency:  from the scheduled time (queueing behind a slow answer counts: no
//             coordinated omission) and from the moment the request was written
//             ("service" latency); client lag is how late the client noticed a
//             request was due, so a run the client limited is visible
//   engine:   one thread, non-blocking sockets, TCP_NODELAY, level-triggered
//             epoll, asking to be woken at the next due time to the nanosecond
//             (epoll_pwait2, else an absolute timerfd in the epoll set; timer
//             slack 1 ns) and sending everything due when it wakes; responses
//             parsed incrementally (Content-Length, chunked, Connection: close,
//             HTTP/1.0, read until close); no allocation per request
// Its CPU is mostly the kernel's: a send, a recv and about half a sleep per
// request; on a VM every timer wake-up can cost tens of µs (measure there).
// A response on a connection with no request outstanding, or a connection
// closed while a request is, counts as a read error and drops the connection
// (reopened on demand). Percentiles as openloop.py's percentile().
//
//   build/bench/takt_openloop --port P --path /x --body-file F --content-type T
//       --token TOK --rate R --duration S [--connections C] [--host 127.0.0.1]
// prints one JSON object on stdout (bench/serving/run.py runs it).
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr const char* kProg = "takt_openloop";
constexpr int64_t kMs = 1000000;  // ns
constexpr size_t kMaxHeader = 32 * 1024;
constexpr uint32_t kTimerSlot = 0xffffffffu;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ------------------------------------------------------------------ command line

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string path;
  std::string method = "POST";
  std::string body_file;
  std::string content_type;
  std::string token;
  double rate = 0;
  double duration = 0;
  int connections = 16;
  double drain = 5.0;
};

constexpr const char* kUsage =
    "usage: takt_openloop [-h] [--host HOST] --port PORT --path PATH [--method METHOD]\n"
    "                     [--body-file BODY_FILE] [--content-type CONTENT_TYPE] [--token TOKEN]\n"
    "                     --rate RATE --duration DURATION [--connections CONNECTIONS] [--drain DRAIN]\n";

constexpr const char* kHelp =
    "\nOpen-loop constant-rate HTTP/1.1 load (bench/serving/openloop.py in C++); one JSON object on "
    "stdout.\n\n"
    "options:\n"
    "  -h, --help            show this help message and exit\n"
    "  --host HOST           default 127.0.0.1\n"
    "  --port PORT           (required)\n"
    "  --path PATH           (required)\n"
    "  --method METHOD       default POST\n"
    "  --body-file FILE      request body (default: none)\n"
    "  --content-type TYPE   Content-Type header (default: none)\n"
    "  --token TOKEN         Authorization: Bearer TOKEN (default: none)\n"
    "  --rate RATE           requests per second (required)\n"
    "  --duration DURATION   seconds of scheduled sends (required)\n"
    "  --connections N       at most N keep-alive connections (default 16)\n"
    "  --drain DRAIN         seconds to wait for answers after the last send (default 5.0)\n";

[[noreturn]] void UsageError(const std::string& msg) {
  std::fprintf(stderr, "%s%s: error: %s\n", kUsage, kProg, msg.c_str());
  std::exit(2);
}

bool ParseDouble(const std::string& s, double* out) {
  const char* b = s.c_str();
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(b, &end);
  if (end == b || errno == ERANGE) return false;
  while (*end == ' ' || *end == '\t' || *end == '\n') ++end;
  if (*end != '\0') return false;
  *out = v;
  return true;
}

bool ParseInt(const std::string& s, int* out) {
  const char* b = s.c_str();
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(b, &end, 10);
  if (end == b || errno == ERANGE || v < -2147483648L || v > 2147483647L) return false;
  while (*end == ' ' || *end == '\t' || *end == '\n') ++end;
  if (*end != '\0') return false;
  *out = static_cast<int>(v);
  return true;
}

// argparse's rules: "--flag value" or "--flag=value", a unique prefix of a flag
// is that flag, the last occurrence wins.
Options ParseArgs(int argc, char** argv) {
  static constexpr const char* kFlags[] = {"--host",      "--port",         "--path",  "--method",
                                           "--body-file", "--content-type", "--token", "--rate",
                                           "--duration",  "--connections",  "--drain"};
  Options o;
  bool seen[std::size(kFlags)] = {};
  std::string unknown;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::printf("%s%s", kUsage, kHelp);
      std::exit(0);
    }
    std::string name = arg, value;
    bool inline_value = false;
    if (size_t eq = arg.find('='); arg.starts_with("--") && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      inline_value = true;
    }
    int which = -1;
    if (name.starts_with("--") && name.size() > 2) {
      std::string matches;
      for (size_t f = 0; f < std::size(kFlags); ++f) {
        if (name == kFlags[f]) {
          which = static_cast<int>(f);
          matches.clear();
          break;
        }
        if (std::string_view(kFlags[f]).starts_with(name)) {
          matches += matches.empty() ? "" : ", ";
          matches += kFlags[f];
          which = which == -1 ? static_cast<int>(f) : -2;
        }
      }
      if (which == -2) UsageError("ambiguous option: " + name + " could match " + matches);
    }
    if (which < 0) {
      unknown += (unknown.empty() ? "" : " ") + arg;
      continue;
    }
    const std::string flag = kFlags[which];
    if (!inline_value) {
      if (i + 1 >= argc) UsageError("argument " + flag + ": expected one argument");
      value = argv[++i];
    }
    seen[which] = true;
    auto bad = [&](const char* type) {
      UsageError("argument " + flag + ": invalid " + type + " value: '" + value + "'");
    };
    switch (which) {
      case 0:
        o.host = value;
        break;
      case 1:
        if (!ParseInt(value, &o.port)) bad("int");
        break;
      case 2:
        o.path = value;
        break;
      case 3:
        o.method = value;
        break;
      case 4:
        o.body_file = value;
        break;
      case 5:
        o.content_type = value;
        break;
      case 6:
        o.token = value;
        break;
      case 7:
        if (!ParseDouble(value, &o.rate)) bad("float");
        break;
      case 8:
        if (!ParseDouble(value, &o.duration)) bad("float");
        break;
      case 9:
        if (!ParseInt(value, &o.connections)) bad("int");
        break;
      case 10:
        if (!ParseDouble(value, &o.drain)) bad("float");
        break;
    }
  }
  std::string missing;
  for (int f : {1, 2, 7, 8}) {
    if (!seen[f]) missing += (missing.empty() ? "" : ", ") + std::string(kFlags[f]);
  }
  if (!missing.empty()) UsageError("the following arguments are required: " + missing);
  if (!unknown.empty()) UsageError("unrecognized arguments: " + unknown);
  // Where openloop.py would stop with a traceback (or hang), say why instead.
  if (o.port < 1 || o.port > 65535) UsageError("argument --port: out of range: " + std::to_string(o.port));
  if (!(o.rate > 0) || !std::isfinite(o.rate)) UsageError("argument --rate: must be a positive number");
  if (!(o.duration >= 0) || !std::isfinite(o.duration))
    UsageError("argument --duration: must be a number >= 0");
  if (!std::isfinite(o.drain) || std::fabs(o.duration + o.drain) >= 9e9)
    UsageError("argument --drain: must be a number of seconds");
  if (o.rate * o.duration >= 9e18) UsageError("--rate times --duration is too large");
  return o;
}

// ------------------------------------------------------------------ connections

enum class St : uint8_t {
  kHeaders,      // accumulating the status line and headers
  kBody,         // Content-Length bytes left in `remaining`
  kChunkSize,    // hex digits of a chunk size
  kChunkExt,     // chunk extension up to LF
  kChunkLf,      // LF after the size line's CR
  kChunkData,    // chunk bytes left in `remaining`
  kChunkDataCr,  // CR after a chunk's data
  kChunkDataLf,  // and its LF
  kTrailer,      // trailer lines up to an empty one
  kUntilClose,   // no length, Connection: close: the body ends at EOF
};

struct Conn {
  int fd = -1;
  uint32_t gen = 0;
  bool busy = false;
  bool in_idle = false;
  bool keep = true;
  St st = St::kHeaders;
  bool digits = false;
  int status = 0;
  int64_t sched = 0;
  int64_t sent_at = 0;
  int64_t remaining = 0;
  uint64_t chunk = 0;
  size_t line_len = 0;
  size_t hdr_len = 0;
  std::vector<char> hdr;
};

enum class Feed { kMore, kDone, kError };

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Does the comma-separated header value hold `token` (case-insensitive)?
bool HasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    if (IEquals(Trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

// The status line and headers (without the blank line): status, keep-alive and
// how the body is delimited. False on a malformed head.
bool ParseHead(Conn& c, std::string_view head, bool head_request) {
  size_t eol = head.find('\n');
  std::string_view line = Trim(head.substr(0, eol));
  head.remove_prefix(eol == std::string_view::npos ? head.size() : eol + 1);
  // openloop.py: int(lines[0].split()[1]), 0 when that fails (so non-2xx).
  c.status = 0;
  size_t sp = line.find(' ');
  std::string_view version = line.substr(0, sp);
  if (sp != std::string_view::npos) {
    std::string_view code = Trim(line.substr(sp + 1));
    code = code.substr(0, code.find(' '));
    int v = 0;
    bool ok = !code.empty() && code.size() <= 9;
    for (char ch : code) {
      if (ch < '0' || ch > '9') ok = false;
      v = v * 10 + (ch - '0');
    }
    c.status = ok ? v : 0;
  }
  c.keep = version != "HTTP/1.0";
  bool chunked = false;
  int64_t length = -1;
  while (!head.empty()) {
    eol = head.find('\n');
    line = head.substr(0, eol);
    head.remove_prefix(eol == std::string_view::npos ? head.size() : eol + 1);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = Trim(line.substr(0, colon)), value = Trim(line.substr(colon + 1));
    if (IEquals(name, "content-length")) {
      if (value.empty() || value.size() > 18) return false;
      int64_t v = 0;
      for (char ch : value) {
        if (ch < '0' || ch > '9') return false;
        v = v * 10 + (ch - '0');
      }
      length = v;
    } else if (IEquals(name, "connection")) {
      if (HasToken(value, "close")) {
        c.keep = false;
      } else if (HasToken(value, "keep-alive")) {
        c.keep = true;
      }
    } else if (IEquals(name, "transfer-encoding")) {
      chunked = HasToken(value, "chunked");
    }
  }
  c.remaining = 0;
  if (head_request || (c.status >= 100 && c.status <= 199) || c.status == 204 || c.status == 304) {
    c.st = St::kBody;
  } else if (chunked) {
    c.st = St::kChunkSize;
    c.chunk = 0;
    c.digits = false;
  } else if (length >= 0) {
    c.st = St::kBody;
    c.remaining = length;
  } else if (!c.keep) {
    c.st = St::kUntilClose;
  } else {
    c.st = St::kBody;  // no length on a keep-alive connection: empty, as openloop.py takes it
  }
  return true;
}

// Feeds received bytes to the response parser; *used is how many belong to the
// response (on kDone; the rest would be bytes nothing asked for).
Feed FeedBytes(Conn& c, const char* p, size_t n, bool head_request, size_t* used) {
  size_t i = 0;
  for (;;) {
    switch (c.st) {
      case St::kHeaders: {
        if (i == n) return Feed::kMore;
        size_t old = c.hdr_len;
        size_t take = std::min(n - i, kMaxHeader - old);
        std::memcpy(c.hdr.data() + old, p + i, take);
        c.hdr_len += take;
        std::string_view h(c.hdr.data(), c.hdr_len);
        size_t end = std::string_view::npos, term = 0;
        if (size_t e = h.find("\r\n\r\n", old >= 3 ? old - 3 : 0); e != std::string_view::npos) {
          end = e;
          term = 4;
        }
        if (size_t e = h.find("\n\n", old >= 1 ? old - 1 : 0); e < end) {
          end = e;
          term = 2;
        }
        if (end == std::string_view::npos) {
          if (c.hdr_len == kMaxHeader) return Feed::kError;
          return Feed::kMore;
        }
        i += end + term - old;
        if (!ParseHead(c, h.substr(0, end), head_request)) return Feed::kError;
        c.hdr_len = 0;
        if (c.status >= 100 && c.status <= 199 && c.status != 101) c.st = St::kHeaders;  // interim
        break;
      }
      case St::kBody: {
        int64_t take = std::min<int64_t>(c.remaining, static_cast<int64_t>(n - i));
        i += static_cast<size_t>(take);
        c.remaining -= take;
        if (c.remaining == 0) {
          *used = i;
          return Feed::kDone;
        }
        return Feed::kMore;
      }
      case St::kChunkData: {
        if (i == n) return Feed::kMore;
        int64_t take = std::min<int64_t>(c.remaining, static_cast<int64_t>(n - i));
        i += static_cast<size_t>(take);
        c.remaining -= take;
        if (c.remaining == 0) c.st = St::kChunkDataCr;
        break;
      }
      case St::kUntilClose:
        return Feed::kMore;
      default: {
        if (i == n) return Feed::kMore;
        char ch = p[i++];
        auto end_size_line = [&c] {
          if (!c.digits) return false;
          if (c.chunk == 0) {
            c.st = St::kTrailer;
            c.line_len = 0;
          } else {
            c.st = St::kChunkData;
            c.remaining = static_cast<int64_t>(c.chunk);
          }
          c.chunk = 0;
          c.digits = false;
          return true;
        };
        switch (c.st) {
          case St::kChunkSize: {
            int v = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
            if (v >= 0) {
              if (c.chunk >> 56) return Feed::kError;
              c.chunk = c.chunk * 16 + static_cast<uint64_t>(v);
              c.digits = true;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
              c.st = St::kChunkExt;
            } else if (ch == '\r') {
              c.st = St::kChunkLf;
            } else if (ch != '\n' || !end_size_line()) {
              return Feed::kError;
            }
            break;
          }
          case St::kChunkExt:
            if (ch == '\n' && !end_size_line()) return Feed::kError;
            break;
          case St::kChunkLf:
            if (ch != '\n' || !end_size_line()) return Feed::kError;
            break;
          case St::kChunkDataCr:
            if (ch == '\r') {
              c.st = St::kChunkDataLf;
            } else if (ch == '\n') {
              c.st = St::kChunkSize;
            } else {
              return Feed::kError;
            }
            break;
          case St::kChunkDataLf:
            if (ch != '\n') return Feed::kError;
            c.st = St::kChunkSize;
            break;
          case St::kTrailer:
            if (ch == '\n') {
              if (c.line_len == 0) {
                *used = i;
                return Feed::kDone;
              }
              c.line_len = 0;
            } else if (ch != '\r') {
              if (++c.line_len > kMaxHeader) return Feed::kError;
            }
            break;
          default:
            return Feed::kError;
        }
      }
    }
  }
}

// A small FIFO of connection slots (capacity: --connections).
class SlotQueue {
 public:
  explicit SlotQueue(size_t cap) : q_(cap + 1) {}
  bool empty() const { return head_ == tail_; }
  void push(uint32_t s) {
    q_[tail_] = s;
    tail_ = (tail_ + 1) % q_.size();
  }
  uint32_t pop() {
    uint32_t s = q_[head_];
    head_ = (head_ + 1) % q_.size();
    return s;
  }
  void remove(uint32_t s) {
    size_t out = head_;
    for (size_t i = head_; i != tail_; i = (i + 1) % q_.size()) {
      if (q_[i] != s) {
        q_[out] = q_[i];
        out = (out + 1) % q_.size();
      }
    }
    tail_ = out;
  }

 private:
  std::vector<uint32_t> q_;
  size_t head_ = 0, tail_ = 0;
};

// ------------------------------------------------------------------ output

std::string Num(double v) {
  if (std::isnan(v)) return "NaN";  // what Python's json.dumps writes; json.loads reads it
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[40];
  for (int prec = 15; prec <= 17; ++prec) {  // the shortest that reads back the same
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";  // a float, as Python writes it
  return s;
}

// openloop.py's percentile(): k = clamp(round(p/100*n + 0.5) - 1), round half to even.
double Percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return std::nan("");
  double n = static_cast<double>(sorted.size());
  int64_t k = static_cast<int64_t>(std::nearbyint(p / 100.0 * n + 0.5)) - 1;
  k = std::max<int64_t>(0, std::min<int64_t>(static_cast<int64_t>(sorted.size()) - 1, k));
  return static_cast<double>(sorted[static_cast<size_t>(k)]);
}

// ------------------------------------------------------------------ the client

class Client {
 public:
  explicit Client(const Options& o) : o_(o) {}

  int Run();

 private:
  void Resolve();
  int Connect();
  bool OpenConn(uint32_t* slot);
  void Drop(Conn& c);
  bool WriteAll(Conn& c);
  bool Send(Conn& c, int64_t sched);
  bool Dispatch(int64_t sched);
  void Complete(Conn& c);
  void OnReadable(Conn& c);
  int Wait(int64_t deadline);
  int64_t Due(int64_t i) const { return t0_ + static_cast<int64_t>(static_cast<double>(i) * 1e9 / o_.rate); }

  const Options& o_;
  std::string request_;
  bool head_request_ = false;
  std::vector<sockaddr_storage> addrs_;
  std::vector<socklen_t> addr_lens_;
  int ep_ = -1;
  int tfd_ = -1;
  bool use_pwait2_ = false;
  int64_t armed_ = 0;  // the timerfd's deadline, 0 when not armed
  std::vector<Conn> conns_;
  SlotQueue idle_{0};
  int nconns_ = 0;
  int nbusy_ = 0;
  int64_t t0_ = 0;
  int64_t end_by_ = 0;
  int64_t err_connect_ = 0, err_read_ = 0, err_write_ = 0;
  int64_t completed_ = 0, non2xx_ = 0;
  std::vector<int64_t> lat_, svc_;  // ns
  std::vector<epoll_event> events_;
  std::vector<char> rbuf_;
};

void Client::Resolve() {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(o_.port);
  if (getaddrinfo(o_.host.c_str(), port.c_str(), &hints, &res) != 0) return;  // every connect fails
  for (addrinfo* a = res; a; a = a->ai_next) {
    sockaddr_storage ss{};
    std::memcpy(&ss, a->ai_addr, a->ai_addrlen);
    addrs_.push_back(ss);
    addr_lens_.push_back(a->ai_addrlen);
  }
  freeaddrinfo(res);
}

// A blocking connect (as socket.create_connection), then non-blocking with TCP_NODELAY.
int Client::Connect() {
  for (size_t i = 0; i < addrs_.size(); ++i) {
    int fd = socket(addrs_[i].ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int r;
    do {
      r = connect(fd, reinterpret_cast<const sockaddr*>(&addrs_[i]), addr_lens_[i]);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
      return fd;
    }
    close(fd);
  }
  return -1;
}

bool Client::OpenConn(uint32_t* slot) {
  uint32_t s = 0;
  while (conns_[s].fd >= 0) ++s;  // a free slot exists: nconns_ < --connections
  int fd = Connect();
  if (fd < 0) {
    ++err_connect_;
    return false;
  }
  Conn& c = conns_[s];
  c.fd = fd;
  ++c.gen;
  c.busy = false;
  c.in_idle = false;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = (static_cast<uint64_t>(c.gen) << 32) | s;
  if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    close(fd);
    c.fd = -1;
    ++err_connect_;
    return false;
  }
  ++nconns_;
  *slot = s;
  return true;
}

void Client::Drop(Conn& c) {
  uint32_t s = static_cast<uint32_t>(&c - conns_.data());
  if (c.in_idle) idle_.remove(s);
  c.in_idle = false;
  if (c.busy) --nbusy_;
  c.busy = false;
  close(c.fd);  // also leaves the epoll set
  c.fd = -1;
  ++c.gen;
  --nconns_;
}

// The request is small: one send() nearly always. If not, finish it waiting
// (openloop.py does the same, blocking), at most until the end of the run.
bool Client::WriteAll(Conn& c) {
  const char* p = request_.data();
  size_t left = request_.size();
  while (left > 0) {
    ssize_t n = send(c.fd, p, left, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      left -= static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int64_t ms = (end_by_ - NowNs()) / kMs;
      if (ms <= 0) return false;
      pollfd pfd{c.fd, POLLOUT, 0};
      if (poll(&pfd, 1, static_cast<int>(std::min<int64_t>(ms, 1 << 30))) <= 0) return false;
    } else {
      return false;
    }
  }
  return true;
}

bool Client::Send(Conn& c, int64_t sched) {
  c.busy = true;
  ++nbusy_;
  c.sched = sched;
  c.sent_at = NowNs();
  c.st = St::kHeaders;
  c.hdr_len = 0;
  if (!WriteAll(c)) {
    ++err_write_;
    Drop(c);
    return false;
  }
  return true;
}

bool Client::Dispatch(int64_t sched) {
  while (!idle_.empty()) {
    Conn& c = conns_[idle_.pop()];
    c.in_idle = false;
    if (Send(c, sched)) return true;
  }
  if (nconns_ < o_.connections) {
    uint32_t s;
    if (!OpenConn(&s)) return false;
    return Send(conns_[s], sched);
  }
  return false;
}

void Client::Complete(Conn& c) {
  int64_t done_at = NowNs();
  lat_.push_back(done_at - c.sched);  // reserved for every scheduled request: no allocation
  svc_.push_back(done_at - c.sent_at);
  ++completed_;
  if (c.status < 200 || c.status > 299) ++non2xx_;
  c.busy = false;
  --nbusy_;
}

void Client::OnReadable(Conn& c) {
  ssize_t n = recv(c.fd, rbuf_.data(), rbuf_.size(), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {  // closed (or reset)
    if (c.busy) {
      if (n == 0 && c.st == St::kUntilClose) {
        Complete(c);
      } else {
        ++err_read_;
      }
    }
    Drop(c);
    return;
  }
  if (!c.busy) {  // an answer to nothing
    ++err_read_;
    Drop(c);
    return;
  }
  size_t used = 0;
  switch (FeedBytes(c, rbuf_.data(), static_cast<size_t>(n), head_request_, &used)) {
    case Feed::kMore:
      return;
    case Feed::kError:
      ++err_read_;
      Drop(c);
      return;
    case Feed::kDone:
      Complete(c);
      if (used < static_cast<size_t>(n)) {  // more than the answer: bytes nothing asked for
        ++err_read_;
        Drop(c);
      } else if (c.keep) {
        idle_.push(static_cast<uint32_t>(&c - conns_.data()));
        c.in_idle = true;
      } else {
        Drop(c);
      }
      return;
  }
}

// Waits for socket events until `deadline` (steady_clock ns), to the nanosecond.
int Client::Wait(int64_t deadline) {
  const int max = static_cast<int>(events_.size());
  const int64_t timeout_ns = std::max<int64_t>(0, deadline - NowNs());
#ifdef TAKT_HAVE_EPOLL_PWAIT2
  if (use_pwait2_) {
    timespec ts{static_cast<time_t>(timeout_ns / 1000000000), static_cast<long>(timeout_ns % 1000000000)};
    int n = epoll_pwait2(ep_, events_.data(), max, &ts, nullptr);
    if (n >= 0 || errno != ENOSYS) return n;
    use_pwait2_ = false;  // a kernel before 5.11: the timerfd from now on
  }
#endif
  if (timeout_ns == 0) return epoll_wait(ep_, events_.data(), max, 0);
  if (deadline != armed_) {  // armed once per deadline, however many answers wake the loop before it
    itimerspec its{};        // steady_clock is CLOCK_MONOTONIC, the timerfd's clock
    its.it_value.tv_sec = static_cast<time_t>(deadline / 1000000000);
    its.it_value.tv_nsec = static_cast<long>(deadline % 1000000000);
    timerfd_settime(tfd_, TFD_TIMER_ABSTIME, &its, nullptr);
    armed_ = deadline;
  }
  return epoll_wait(ep_, events_.data(), max, -1);
}

int Client::Run() {
  std::string body;
  if (!o_.body_file.empty()) {
    FILE* f = std::fopen(o_.body_file.c_str(), "rb");
    if (!f) {
      std::fprintf(stderr, "%s: %s: %s\n", kProg, o_.body_file.c_str(), std::strerror(errno));
      return 1;
    }
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) body.append(buf, n);
    std::fclose(f);
  }
  request_ =
      o_.method + " " + o_.path + " HTTP/1.1\r\nHost: " + o_.host + ":" + std::to_string(o_.port) + "\r\n";
  if (!o_.content_type.empty()) request_ += "Content-Type: " + o_.content_type + "\r\n";
  if (!o_.token.empty()) request_ += "Authorization: Bearer " + o_.token + "\r\n";
  if (!body.empty() || o_.method == "POST")
    request_ += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  request_ += "\r\n" + body;
  head_request_ = o_.method == "HEAD";

  std::signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);  // wake when asked, not up to 50 µs later
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) {
    std::fprintf(stderr, "%s: epoll_create1: %s\n", kProg, std::strerror(errno));
    return 1;
  }
#ifdef TAKT_HAVE_EPOLL_PWAIT2
  use_pwait2_ = true;
#endif
  tfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tfd_ >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kTimerSlot;
    epoll_ctl(ep_, EPOLL_CTL_ADD, tfd_, &ev);
  } else if (!use_pwait2_) {
    std::fprintf(stderr, "%s: timerfd_create: %s\n", kProg, std::strerror(errno));
    return 1;
  }

  const size_t nc = static_cast<size_t>(std::max(1, o_.connections));
  conns_.resize(nc);
  for (Conn& c : conns_) c.hdr.resize(kMaxHeader);
  idle_ = SlotQueue(nc);
  events_.resize(nc + 1);
  rbuf_.resize(65536);
  Resolve();

  for (int i = 0; i < o_.connections; ++i) {
    uint32_t s;
    if (OpenConn(&s)) {
      idle_.push(s);
      conns_[s].in_idle = true;
    }
  }
  if (nconns_ == 0) {
    std::printf("{\"error\": \"could not connect\"}\n");
    return 1;
  }

  const int64_t total = static_cast<int64_t>(o_.rate * o_.duration);
  lat_.reserve(static_cast<size_t>(total));
  svc_.reserve(static_cast<size_t>(total));
  int64_t next_i = 0;     // the next request to fall due
  int64_t backlog_i = 0;  // the FIFO backlog: requests [backlog_i, next_i), due, not sent
  int64_t max_lag = 0, lag_sum = 0;
  int64_t drain_wake = 0;
  t0_ = NowNs() + 50 * kMs;
  end_by_ = t0_ + static_cast<int64_t>((o_.duration + o_.drain) * 1e9);

  for (;;) {
    int64_t now = NowNs();
    // Everything due joins the backlog; lag is how late the client noticed (its own limit).
    while (next_i < total) {
      int64_t sched = Due(next_i);
      if (sched > now) break;
      int64_t lag = now - sched;
      lag_sum += lag;
      max_lag = std::max(max_lag, lag);
      ++next_i;
    }
    while (backlog_i < next_i && (!idle_.empty() || nconns_ < o_.connections)) {
      if (!Dispatch(Due(backlog_i))) break;
      ++backlog_i;
    }
    if (next_i >= total && backlog_i == next_i && nbusy_ == 0) break;
    if (now > end_by_) break;
    // Sleep until the next request is due (at most 50 ms, as openloop.py), or an answer.
    int64_t deadline = next_i < total ? std::min(Due(next_i), now + 50 * kMs)
                                      : (drain_wake > now ? drain_wake : now + 50 * kMs);
    drain_wake = deadline;
    int n = Wait(deadline);
    for (int e = 0; e < n; ++e) {
      uint64_t d = events_[static_cast<size_t>(e)].data.u64;
      if (d == kTimerSlot) {  // expired: clear it
        uint64_t ticks;
        ssize_t got = read(tfd_, &ticks, sizeof ticks);
        (void)got;
        armed_ = 0;
        continue;
      }
      Conn& c = conns_[static_cast<uint32_t>(d)];
      if (c.fd < 0 || c.gen != static_cast<uint32_t>(d >> 32)) continue;  // dropped in this batch
      OnReadable(c);
    }
  }

  const double elapsed = static_cast<double>(NowNs() - t0_) / 1e9;
  const int64_t unanswered = total - completed_;
  for (Conn& c : conns_) {
    if (c.fd >= 0) Drop(c);
  }
  std::sort(lat_.begin(), lat_.end());
  std::sort(svc_.begin(), svc_.end());
  auto us = [](double ns) { return Num(ns / 1e3); };
  std::printf(
      "{\"target_rate\": %s, \"scheduled\": %lld, \"completed\": %lld, \"unanswered\": %lld, "
      "\"achieved_rate\": %s, \"non2xx\": %lld, \"errors\": {\"connect\": %lld, \"read\": %lld, \"write\": "
      "%lld}, \"connections\": %d, \"client_max_lag_ms\": %s, \"client_mean_lag_ms\": %s, \"p50_us\": %s, "
      "\"p90_us\": %s, \"p99_us\": %s, \"p999_us\": %s, \"max_us\": %s, \"svc_p50_us\": %s, \"svc_p99_us\": "
      "%s}\n",
      Num(o_.rate).c_str(), static_cast<long long>(total), static_cast<long long>(completed_),
      static_cast<long long>(unanswered),
      Num(elapsed > 0 ? static_cast<double>(completed_) / elapsed : 0.0).c_str(),
      static_cast<long long>(non2xx_), static_cast<long long>(err_connect_),
      static_cast<long long>(err_read_), static_cast<long long>(err_write_), o_.connections,
      Num(static_cast<double>(max_lag) / 1e6).c_str(),
      Num(static_cast<double>(lag_sum) / static_cast<double>(std::max<int64_t>(1, next_i)) / 1e6).c_str(),
      us(Percentile(lat_, 50)).c_str(), us(Percentile(lat_, 90)).c_str(), us(Percentile(lat_, 99)).c_str(),
      us(Percentile(lat_, 99.9)).c_str(),
      us(lat_.empty() ? std::nan("") : static_cast<double>(lat_.back())).c_str(),
      us(Percentile(svc_, 50)).c_str(), us(Percentile(svc_, 99)).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = ParseArgs(argc, argv);
  Client client(o);
  return client.Run();
}
