// app/control — see the header for the contract and docs/control.md for
// the protocol.
//
// One thread, one connection at a time: control requests are rare (an
// operator's command, a script's reload) and each is answered in
// milliseconds, so a queue of waiting clients in the listen backlog is
// simpler than concurrency and costs nothing. Every wait is a poll() that
// also watches an eventfd, so `stop` never waits for a slow client.
#include "control.hh"

#include <fcntl.h>
#include <poll.h>
#include <simdjson.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ringrelay/config/json_text.hh>
#include <ringrelay/log/log.hh>
#include <ringrelay/util/clock.hh>
#include <utility>

namespace ringrelay::app {
namespace {

constexpr std::string_view version = "0.1.0";
constexpr const char* example = R"(send one line of JSON such as {"command": "ping"})";

std::string errno_text(int e) {
  return std::strerror(e);
}

std::string_view kind_name(simdjson::dom::element_type t) {
  using simdjson::dom::element_type;
  switch (t) {
    case element_type::ARRAY:
      return "an array";
    case element_type::OBJECT:
      return "an object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return "a number";
    case element_type::STRING:
      return "a string";
    case element_type::BOOL:
      return "true or false";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "a value";
}

bool fill_sockaddr(const std::string& path, sockaddr_un& addr) {
  addr = {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, path.data(), path.size());
  return true;
}

// True when a server accepts connections at `path` right now.
bool someone_answers(const sockaddr_un& addr) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool answered = connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return answered;
}

// mkdir -p with mode 0700 for each directory created: the socket's
// directory need not be visible to anyone else.
void make_parents(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  const std::string dir = path.substr(0, slash);
  struct stat st {};
  if (stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      throw std::runtime_error("control socket " + path + ": " + dir +
                               " is not a directory: set control.socket to another path");
    return;
  }
  make_parents(dir);
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    throw std::runtime_error("control socket " + path + ": cannot create directory " + dir + ": " +
                             errno_text(errno) +
                             ": create it, or set control.socket to another path");
}

class fd_guard {
 public:
  explicit fd_guard(int fd) : _fd(fd) {}
  ~fd_guard() {
    if (_fd >= 0) close(_fd);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  int get() const { return _fd; }
  int release() { return std::exchange(_fd, -1); }

 private:
  int _fd;
};

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(0, left.count()));
}

}  // namespace

// ---------------------------------------------------------------- request

std::optional<json_request> json_request::parse(std::string_view line, std::string& error) {
  if (line.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    error = "empty request: " + std::string(example);
    return std::nullopt;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto e = parser.parse(line.data(), line.size()).get(doc); e != simdjson::SUCCESS) {
    error = "invalid JSON (" + std::string(simdjson::error_message(e)) + "): " + example;
    return std::nullopt;
  }
  simdjson::dom::object object;
  if (doc.get_object().get(object) != simdjson::SUCCESS) {
    error = "expected a JSON object, got " + std::string(kind_name(doc.type())) + ": " + example;
    return std::nullopt;
  }
  json_request out;
  for (auto [key, value] : object) {
    field f;
    switch (value.type()) {
      case simdjson::dom::element_type::BOOL:
        f.type = kind::boolean;
        f.boolean = value.get_bool().value_unsafe();
        break;
      case simdjson::dom::element_type::INT64:
        f.type = kind::integer;
        f.integer = value.get_int64().value_unsafe();
        break;
      case simdjson::dom::element_type::UINT64:
      case simdjson::dom::element_type::DOUBLE:
        f.type = kind::number;
        break;
      case simdjson::dom::element_type::STRING:
        f.type = kind::string;
        f.string = std::string(value.get_string().value_unsafe());
        break;
      case simdjson::dom::element_type::ARRAY:
        f.type = kind::array;
        break;
      case simdjson::dom::element_type::OBJECT:
        f.type = kind::object;
        break;
      case simdjson::dom::element_type::NULL_VALUE:
        break;
    }
    if (!out._fields.emplace(std::string(key), std::move(f)).second) {
      error = "key " + config::json_quote(key) + " repeated: give each field once";
      return std::nullopt;
    }
  }
  auto command = out._fields.find("command");
  if (command == out._fields.end() || command->second.type != kind::string ||
      command->second.string.empty()) {
    error = R"("command" is required and must be a non-empty string: )" + std::string(example);
    return std::nullopt;
  }
  out._command = std::move(command->second.string);
  out._fields.erase(command);
  return out;
}

std::string json_request::name_of(kind k) {
  static constexpr std::string_view names[] = {
      "null", "true or false", "an integer", "a number", "a string", "an array", "an object"};
  return std::string(names[static_cast<int>(k)]);
}

const json_request::field* json_request::find(std::string_view key, kind wanted,
                                              bool required) const {
  auto it = _fields.find(key);
  if (it == _fields.end() || it->second.type == kind::null) {
    if (required)
      throw request_error(config::json_quote(key) + " is required (" + name_of(wanted) + ")");
    return nullptr;
  }
  if (it->second.type != wanted) {
    std::string what = wanted == kind::integer && it->second.type == kind::number
                           ? "an integer from -2^63 to 2^63-1"
                           : name_of(wanted);
    throw request_error(config::json_quote(key) + ": expected " + what + ", got " +
                        name_of(it->second.type));
  }
  return &it->second;
}

const std::string& json_request::string(std::string_view key) const {
  return find(key, kind::string, true)->string;
}

std::int64_t json_request::integer(std::string_view key) const {
  return find(key, kind::integer, true)->integer;
}

std::int64_t json_request::integer(std::string_view key, std::int64_t min, std::int64_t max) const {
  const std::string range = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  auto it = _fields.find(key);
  if (it == _fields.end() || it->second.type == kind::null)
    throw request_error(config::json_quote(key) + " is required (" + range + ")");
  const field& f = it->second;
  if (f.type != kind::integer || f.integer < min || f.integer > max)
    throw request_error(config::json_quote(key) + ": expected " + range + ", got " +
                        (f.type == kind::integer ? std::to_string(f.integer) : name_of(f.type)));
  return f.integer;
}

bool json_request::boolean(std::string_view key) const {
  return find(key, kind::boolean, true)->boolean;
}

std::optional<std::string> json_request::optional_string(std::string_view key) const {
  const field* f = find(key, kind::string, false);
  return f ? std::optional(f->string) : std::nullopt;
}

std::optional<std::int64_t> json_request::optional_integer(std::string_view key) const {
  const field* f = find(key, kind::integer, false);
  return f ? std::optional(f->integer) : std::nullopt;
}

std::optional<bool> json_request::optional_boolean(std::string_view key) const {
  const field* f = find(key, kind::boolean, false);
  return f ? std::optional(f->boolean) : std::nullopt;
}

// ---------------------------------------------------------------- reply

control_reply& control_reply::set(std::string_view key, std::string_view value) {
  return set_raw(key, config::json_quote(value));
}

control_reply& control_reply::set(std::string_view key, bool value) {
  return set_raw(key, value ? "true" : "false");
}

control_reply& control_reply::set_raw(std::string_view key, std::string json_value) {
  if (key == "ok" || key == "error") {
    std::fprintf(stderr, "control_reply::set: \"%.*s\" is written by the server, not a handler\n",
                 static_cast<int>(key.size()), key.data());
    std::abort();
  }
  _fields += ',' + config::json_quote(key) + ':' + json_value;
  return *this;
}

std::string control_reply::line() const {
  std::string out = _ok ? R"({"ok":true)" : R"({"ok":false,"error":)" + config::json_quote(_error);
  return out + _fields + "}\n";
}

// ---------------------------------------------------------------- server

control_server::control_server(std::string path, std::chrono::milliseconds read_timeout)
    : _path(std::move(path)), _read_timeout(read_timeout) {
  on("ping", [](const json_request&) { return control_reply::success().set("version", version); });
}

control_server::~control_server() {
  stop();
  // Only our own socket: if another server has since bound the path
  // (ours was stale to it), its file is not ours to remove. The inode
  // number alone does not tell: the filesystem may have given the new
  // socket our freed one. Ours no longer listens, so a file someone
  // answers on is not ours.
  struct stat st {};
  sockaddr_un addr;
  if (_socket_ino != 0 && lstat(_path.c_str(), &st) == 0 && st.st_dev == _socket_dev &&
      st.st_ino == _socket_ino && fill_sockaddr(_path, addr) && !someone_answers(addr))
    unlink(_path.c_str());
}

void control_server::on(std::string command, handler h) {
  _handlers[std::move(command)] = std::move(h);
}

void control_server::start() {
  sockaddr_un addr;
  if (!fill_sockaddr(_path, addr))
    throw std::runtime_error("control socket \"" + _path + "\": a Unix socket path must be 1 to " +
                             std::to_string(sizeof addr.sun_path - 1) + " octets, this one has " +
                             std::to_string(_path.size()) +
                             ": set control.socket to a shorter path");
  make_parents(_path);
  struct stat st {};
  if (lstat(_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw std::runtime_error("control socket " + _path +
                               ": the path exists and is not a socket: remove it, or set "
                               "control.socket to another path");
    if (someone_answers(addr))
      throw std::runtime_error("control socket " + _path +
                               ": another server answers on it (is ringrelay already running?): "
                               "stop it, or set control.socket to another path");
    // Nobody listens: the file is left over from a server that died.
    if (unlink(_path.c_str()) != 0 && errno != ENOENT)
      throw std::runtime_error("control socket " + _path +
                               ": cannot remove the stale socket: " + errno_text(errno));
  }
  fd_guard fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) throw std::runtime_error("control socket: socket(): " + errno_text(errno));
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error("control socket " + _path + ": bind: " + errno_text(errno) +
                             ": check the directory's permissions, or set control.socket to "
                             "another path");
  // The file's mode comes from the umask at bind; set it before listen(),
  // so nobody can have connected under a looser one.
  if (chmod(_path.c_str(), 0600) != 0 || lstat(_path.c_str(), &st) != 0 ||
      listen(fd.get(), 16) != 0) {
    int e = errno;
    unlink(_path.c_str());
    throw std::runtime_error("control socket " + _path + ": " + errno_text(e));
  }
  fd_guard stop_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (stop_fd.get() < 0) {
    int e = errno;
    unlink(_path.c_str());
    throw std::runtime_error("control socket: eventfd: " + errno_text(e));
  }
  _socket_dev = st.st_dev;
  _socket_ino = st.st_ino;
  _listen_fd = fd.release();
  _stop_fd = stop_fd.release();
  _thread = std::thread([this] { serve(); });
}

void control_server::stop() {
  if (_thread.joinable()) {
    std::uint64_t one = 1;
    if (write(_stop_fd, &one, sizeof one) != sizeof one)
      RR_ERROR("control: cannot wake the control thread: %s", std::strerror(errno));
    _thread.join();
  }
  for (int* fd : {&_listen_fd, &_stop_fd}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

void control_server::serve() {
  log::set_thread_name("control");
  RR_INFO("control: listening on %s", _path.c_str());
  for (;;) {
    pollfd fds[2] = {{_listen_fd, POLLIN, 0}, {_stop_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      RR_ERROR("control: poll: %s; the control socket stops answering", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    int fd = accept4(_listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
      // EMFILE and the like: wait a little instead of spinning on a
      // listener that stays readable.
      RR_WARN("control: accept: %s", std::strerror(errno));
      pollfd stop = {_stop_fd, POLLIN, 0};
      if (poll(&stop, 1, 100) > 0) return;
      continue;
    }
    serve_connection(fd);
    close(fd);
  }
}

bool control_server::peer_allowed(int fd, std::string& who) const {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    who = "unknown peer";
    return false;
  }
  who = "uid=" + std::to_string(cred.uid) + " pid=" + std::to_string(cred.pid);
  return cred.uid == 0 || cred.uid == geteuid();
}

void control_server::serve_connection(int fd) {
  const auto deadline = std::chrono::steady_clock::now() + _read_timeout;
  std::string who;
  if (!peer_allowed(fd, who)) {
    RR_WARN("control: refused %s: not root or the server's uid %u", who.c_str(), geteuid());
    auto reply =
        control_reply::failure("permission denied: only root and uid " + std::to_string(geteuid()) +
                               " (the server's) may use the control socket");
    write_reply(fd, reply.line(), deadline);
    return;
  }
  std::string line, refusal;
  if (!read_line(fd, deadline, line, refusal)) {
    if (!refusal.empty()) {
      RR_WARN("control: %s: %s", who.c_str(), refusal.c_str());
      write_reply(fd, control_reply::failure(refusal).line(), deadline);
    }
    return;
  }
  control_reply reply = dispatch(line, who);
  write_reply(fd, reply.line(), std::chrono::steady_clock::now() + _read_timeout);
}

bool control_server::read_line(int fd, std::chrono::steady_clock::time_point deadline,
                               std::string& line, std::string& refusal) const {
  char buf[8192];
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {_stop_fd, POLLIN, 0}};
    int n = poll(fds, 2, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (fds[1].revents != 0) return false;  // stopping: drop the client
    if (n == 0) {
      refusal = "no complete request line within " + std::to_string(_read_timeout.count()) +
                " ms: " + std::string(example) + " ending in a newline";
      return false;
    }
    ssize_t got = recv(fd, buf, sizeof buf, 0);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got < 0) return false;
    // End of input ends the line too, so `printf '{...}' | nc -U` works.
    if (got == 0) return true;
    auto old = line.size();
    line.append(buf, static_cast<std::size_t>(got));
    auto newline = line.find('\n', old);
    if (newline != std::string::npos) line.resize(newline);
    if (line.size() > max_request) {
      refusal = "request longer than " + std::to_string(max_request) +
                " octets: send one line of JSON, at most that long";
      return false;
    }
    if (newline != std::string::npos) return true;
  }
}

void control_server::write_reply(int fd, const std::string& reply,
                                 std::chrono::steady_clock::time_point deadline) const {
  std::size_t sent = 0;
  while (sent < reply.size()) {
    ssize_t n = send(fd, reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p = {fd, POLLOUT, 0};
      if (poll(&p, 1, remaining_ms(deadline)) > 0) continue;
    }
    RR_DEBUG("control: reply not delivered: %s", n < 0 ? std::strerror(errno) : "timeout");
    return;
  }
}

control_reply control_server::dispatch(std::string_view line, std::string_view peer) const {
  std::string error;
  auto request = json_request::parse(line, error);
  control_reply reply = control_reply::failure(error);
  std::string command = request ? config::json_quote(request->command()) : "(none)";
  if (request) {
    auto it = _handlers.find(request->command());
    if (it == _handlers.end()) {
      std::string known;
      for (const auto& [name, h] : _handlers) known += (known.empty() ? "" : ", ") + name;
      reply = control_reply::failure("unknown command " + command + " (this server knows " + known +
                                     ")");
    } else {
      try {
        reply = it->second(*request);
      } catch (const request_error& e) {
        reply = control_reply::failure(std::string(e.what()));
      } catch (const std::exception& e) {
        reply = control_reply::failure("command " + command + " failed: " + e.what());
      }
    }
  }
  if (reply.ok())
    RR_INFO("control: %.*s command=%s ok", static_cast<int>(peer.size()), peer.data(),
            command.c_str());
  else
    RR_WARN("control: %.*s command=%s refused: %s", static_cast<int>(peer.size()), peer.data(),
            command.c_str(), reply.error().c_str());
  return reply;
}

// ---------------------------------------------------------------- accounting

namespace {

// The account `user` in the table in force, or nullptr with `refusal` set
// to the reply that says why and what to do (`hint` ends it).
const accounts::account* find_account(const accounting& context,
                                      const std::shared_ptr<const accounts::table>& table,
                                      const std::string& user, const std::string& hint,
                                      control_reply& refusal) {
  if (!table) {
    refusal = control_reply::failure("the server has no accounts: it started without " +
                                     context.accounts_file +
                                     "; create accounts with \"ringrelayctl user add\", then "
                                     "restart ringrelay");
    return nullptr;
  }
  const accounts::account* a = table->find(user);
  if (!a)
    refusal = control_reply::failure("no user " + config::json_quote(user) + " in " +
                                     table->source() + hint);
  return a;
}

}  // namespace

void add_accounting_commands(control_server& server, accounting context) {
  server.on("usage", [context](const json_request& r) {
    const std::string& user = r.string("user");
    auto table = context.current_table();
    control_reply reply = control_reply::success();
    const accounts::account* a =
        find_account(context, table, user, " (\"ringrelayctl user list\" shows them)", reply);
    if (!a) return reply;
    // One instant for the day, the date and the reset, as the 452 reply
    // reads them.
    const std::int64_t now = util::wall_seconds();
    const accounts::quota_clock& clock = *context.clock;
    const std::uint32_t day = clock.day_number(now);
    return reply.set("user", a->username)
        .set("day", clock.format(now).substr(0, 10))
        .set("used", a->counters->usage(day))
        .set("daily_quota", a->daily_quota)
        .set("blocks", a->counters->blocks.load(std::memory_order_acquire))
        .set("blocks_added", context.ledger->added(user))
        .set("resets_at", clock.format(clock.next_reset(now)))
        .set("time_zone", clock.zone());
  });
  server.on("blocks_add", [context](const json_request& r) {
    const std::string& user = r.string("user");
    const std::int64_t n = r.integer("n", 1, accounts::max_blocks_added);
    auto table = context.current_table();
    control_reply reply = control_reply::success();
    const accounts::account* a = find_account(
        context, table, user,
        ": blocks go to an existing account; create it with \"ringrelayctl user add\" first, or "
        "check the name with \"ringrelayctl user list\"; no blocks were added",
        reply);
    if (!a) return reply;
    // The ledger first: once its file holds the blocks, a restart adds them
    // again; if it cannot be written, the live balance is left alone too.
    std::int64_t total = 0;
    try {
      total = context.ledger->add(user, n);
    } catch (const std::exception& e) {
      return control_reply::failure(std::string(e.what()) +
                                    "; no blocks were added: fix that and try again");
    }
    const std::int64_t balance = accounts::add_blocks(*a->counters, n);
    RR_INFO("control: blocks added user=%s n=%lld blocks=%lld blocks_added=%lld",
            config::json_quote(user).c_str(), static_cast<long long>(n),
            static_cast<long long>(balance), static_cast<long long>(total));
    return reply.set("user", a->username)
        .set("added", n)
        .set("blocks", balance)
        .set("blocks_added", total);
  });
}

}  // namespace ringrelay::app
