// app/control — the control socket: how ringrelayctl (or a script) asks a
// running server to act now, e.g. reload users.json.
//
// A Unix stream socket (config key control.socket), mode 0600, usable by
// root and by the server's own uid only (checked with SO_PEERCRED on every
// connection, so a looser mode or parent directory does not widen it).
// One request per connection: the client sends one line of JSON,
//   {"command": "reload"}            or   {"command": "...", "user": "acme", ...}
// and gets one line back,
//   {"ok": true, ...}                or   {"ok": false, "error": "what went wrong and what to do"}
// then the server closes. The line may be at most `max_request` octets
// (without its "\n"; end of input also ends it) and must arrive within the
// read timeout (5 s). The protocol, command by command: docs/control.md.
//
// Commands are dispatched by name to handlers the application registers
// with `on`; the only built-in one is "ping" -> {"ok": true, "version": ...}.
// `add_accounting_commands` registers "usage" and "blocks_add", which read
// an account's live counters and add relay blocks through the blocks
// ledger (accounts/blocks_ledger.hh).
// Malformed JSON, a request that is not an object, a missing or unknown
// command, and a field a handler needs but the request lacks are answered
// with {"ok": false, "error": ...}; so is any exception a handler throws.
//
// Threads: `control_server` serves from ONE thread of its own, started by
// `start` and joined by `stop`; it is not a shard, so it uses blocking-style
// I/O (poll with deadlines) and handlers may block (a reload reads a file).
// Handlers run on that thread, one request at a time: a handler that
// touches state shared with other threads must lock it. Register handlers
// before `start`. Start the server after blocking the signals the main
// thread waits for: its thread inherits the mask.
//
// Errors: `start` throws std::runtime_error with a message naming the path
// and what to do (another server answers on it, a path too long for a Unix
// socket, a parent directory that cannot be created, bind failures). Once
// running, nothing throws: a failed connection is logged and dropped.
// `json_request`'s field accessors throw `request_error`, which the server
// turns into an error reply; handlers need not catch it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ringrelay/accounts/blocks_ledger.hh>
#include <ringrelay/accounts/quota.hh>
#include <ringrelay/accounts/table.hh>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ringrelay::app {

// The longest request line the server reads (64 KiB), without its "\n".
inline constexpr std::size_t max_request = 65536;

// A field a handler asked for is missing or has another type. The message
// names the field and what was expected; it becomes the reply's "error".
class request_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One parsed request: its command and its other top-level fields.
// Nested arrays and objects are accepted but not readable (no command takes
// one yet): asking for one as a string, integer or boolean is a
// request_error that says what the field holds.
class json_request {
 public:
  // Parses one request line. On failure returns nullopt and sets `error` to
  // what is wrong, in words meant for the reply.
  static std::optional<json_request> parse(std::string_view line, std::string& error);

  const std::string& command() const { return _command; }
  bool has(std::string_view key) const { return _fields.contains(key); }

  // Required fields: throw request_error when the field is absent or holds
  // another type.
  const std::string& string(std::string_view key) const;
  std::int64_t integer(std::string_view key) const;
  bool boolean(std::string_view key) const;
  // An integer from `min` to `max`; the request_error names the range and
  // what the field holds ("n": expected an integer from 1 to 9, got 0).
  std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max) const;

  // Optional fields: nullopt when absent (or null); request_error when
  // present with another type.
  std::optional<std::string> optional_string(std::string_view key) const;
  std::optional<std::int64_t> optional_integer(std::string_view key) const;
  std::optional<bool> optional_boolean(std::string_view key) const;

 private:
  enum class kind { null, boolean, integer, number, string, array, object };
  struct field {
    kind type = kind::null;
    bool boolean = false;
    std::int64_t integer = 0;
    std::string string;
  };

  static std::string name_of(kind k);
  const field* find(std::string_view key, kind wanted, bool required) const;

  std::string _command;
  std::map<std::string, field, std::less<>> _fields;
};

// What a handler answers: success with extra fields, or an error.
class control_reply {
 public:
  static control_reply success() { return control_reply(true, {}); }
  // `error` says what went wrong and what to do; it is sent as is.
  static control_reply failure(std::string error) { return control_reply(false, std::move(error)); }

  // Adds a field to the reply, after "ok" (and "error"). "ok" and "error"
  // themselves are the server's: passing them aborts. Chainable.
  control_reply& set(std::string_view key, std::string_view value);
  control_reply& set(std::string_view key, const char* value) {
    return set(key, std::string_view(value));
  }
  control_reply& set(std::string_view key, bool value);
  template <std::integral Int>
  requires(!std::same_as<Int, bool>) control_reply& set(std::string_view key, Int value) {
    return set_raw(key, std::to_string(value));
  }

  bool ok() const { return _ok; }
  const std::string& error() const { return _error; }
  // The reply as sent: one line of JSON ending in "\n".
  std::string line() const;

 private:
  control_reply(bool ok, std::string error) : _ok(ok), _error(std::move(error)) {}
  control_reply& set_raw(std::string_view key, std::string json_value);

  bool _ok;
  std::string _error;
  std::string _fields;  // ", \"key\": value" for each field, in order
};

class control_server {
 public:
  using handler = std::function<control_reply(const json_request&)>;

  // Nothing is opened until `start`. `read_timeout` bounds the wait for
  // the request line (and for the client to take the reply).
  explicit control_server(std::string path,
                          std::chrono::milliseconds read_timeout = std::chrono::seconds(5));
  // Stops, then removes the socket file if it is still the one this
  // server bound (a newer server's socket at the same path is left alone).
  ~control_server();
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;

  // Registers (or replaces) the handler of `command`. Before `start` only.
  void on(std::string command, handler h);

  // Creates the parent directory (0700) when missing, refuses a path where
  // another server answers or that is not a socket, replaces a stale
  // socket file, binds with mode 0600 and starts the serving thread.
  // Throws std::runtime_error.
  void start();

  // Stops accepting, drops a client still sending its request, lets a
  // handler that is running finish, and joins the thread. Idempotent; any
  // thread but the serving one.
  void stop();

  const std::string& path() const { return _path; }

  // The reply to one request line, without socket I/O: parse, find the
  // handler, run it, turn failures into error replies, log the outcome
  // (`peer` names the client in the log line). The serving thread calls
  // this; tests may too.
  control_reply dispatch(std::string_view line, std::string_view peer = "local") const;

 private:
  void serve();
  void serve_connection(int fd);
  bool peer_allowed(int fd, std::string& who) const;
  // Reads the request line into `line` before `deadline`; false (with the
  // reply to send in `refusal`, possibly empty for none) when it cannot.
  bool read_line(int fd, std::chrono::steady_clock::time_point deadline, std::string& line,
                 std::string& refusal) const;
  void write_reply(int fd, const std::string& reply,
                   std::chrono::steady_clock::time_point deadline) const;

  std::string _path;
  std::chrono::milliseconds _read_timeout;
  std::map<std::string, handler, std::less<>> _handlers;
  int _listen_fd = -1;
  int _stop_fd = -1;  // an eventfd: written by stop() to wake the thread
  dev_t _socket_dev = 0;
  ino_t _socket_ino = 0;  // the socket file we bound, to unlink only our own
  std::thread _thread;
};

// What the accounting commands read and change. Everything here must
// outlive the control server.
struct accounting {
  // The account table in force, or nullptr when the server has no accounts
  // (it started without an accounts file). Called on the control thread.
  std::function<std::shared_ptr<const accounts::table>()> current_table;
  std::string accounts_file;  // accounts.file, for messages
  accounts::blocks_ledger* ledger = nullptr;
  const accounts::quota_clock* clock = nullptr;
};

// Registers "usage" (an account's usage today, its daily quota, its block
// balance and the next reset) and "blocks_add" (adds relay blocks: the
// ledger's file first, then the live balance). Before `start` only.
void add_accounting_commands(control_server& server, accounting context);

}  // namespace ringrelay::app
