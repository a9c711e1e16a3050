// The control socket's specification: request parsing and field access as
// tables, replies as exact lines, then the real socket — ping, refusals,
// the 64 KiB bound, the read timeout, stale and live sockets at the path,
// file modes, the peer check and a stop that does not wait for clients.
#include "control.hh"

#include <gtest/gtest.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace ringrelay::app {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// ---------------------------------------------------------------- parsing

struct parse_case {
  const char* line;
  const char* error_part;  // nullptr: parses
};

TEST(json_request, parses_or_names_the_problem) {
  const parse_case cases[] = {
      {R"({"command": "ping"})", nullptr},
      {R"(  {"command":"reload"}  )", nullptr},
      {R"({"command": "x", "user": "acme", "n": 3})", nullptr},
      {"", "empty request"},
      {"   \r", "empty request"},
      {"{", "invalid JSON"},
      {R"({"command": "ping"} trailing)", "invalid JSON"},
      {R"({"command": "p\u0000ng)", "invalid JSON"},
      {"\xff\xfe", "invalid JSON"},
      {"[1, 2]", "expected a JSON object, got an array"},
      {"\"ping\"", "expected a JSON object, got a string"},
      {"{}", R"("command" is required)"},
      {R"({"command": 1})", R"("command" is required and must be a non-empty string)"},
      {R"({"command": ""})", "non-empty string"},
      {R"({"command": "a", "command": "b"})", R"(key "command" repeated)"},
      {R"({"command": "a", "user": 1, "user": 2})", R"(key "user" repeated)"},
  };
  for (const auto& c : cases) {
    std::string error;
    auto r = json_request::parse(c.line, error);
    if (c.error_part == nullptr) {
      EXPECT_TRUE(r.has_value()) << c.line << ": " << error;
    } else {
      EXPECT_FALSE(r.has_value()) << c.line;
      EXPECT_NE(error.find(c.error_part), std::string::npos) << c.line << " -> " << error;
    }
  }
}

json_request request(const std::string& line) {
  std::string error;
  auto r = json_request::parse(line, error);
  if (!r) throw std::logic_error(line + ": " + error);
  return *r;
}

std::string error_of(const std::function<void()>& read) {
  try {
    read();
  } catch (const request_error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(json_request, reads_fields_by_type) {
  auto r = request(R"({"command": "user", "name": "acme", "quota": -7, "on": true, "none": null, )"
                   R"("big": 18446744073709551615, "pi": 3.5, "list": [1], "obj": {}})");
  EXPECT_EQ(r.command(), "user");
  EXPECT_FALSE(r.has("command")) << "the command is not one of the fields";
  EXPECT_TRUE(r.has("name"));
  EXPECT_EQ(r.string("name"), "acme");
  EXPECT_EQ(r.integer("quota"), -7);
  EXPECT_TRUE(r.boolean("on"));
  EXPECT_EQ(r.optional_string("name"), "acme");
  EXPECT_EQ(r.optional_string("absent"), std::nullopt);
  EXPECT_EQ(r.optional_string("none"), std::nullopt) << "null counts as absent";
  EXPECT_EQ(r.optional_integer("quota"), -7);
  EXPECT_EQ(r.optional_boolean("on"), true);
  EXPECT_EQ(r.optional_boolean("absent"), std::nullopt);
}

TEST(json_request, names_the_field_and_the_type_expected) {
  auto r =
      request(R"({"command": "user", "name": "acme", "quota": 1, "big": 18446744073709551615, )"
              R"("pi": 3.5, "list": [1], "obj": {}, "none": null})");
  const std::pair<std::function<void()>, const char*> cases[] = {
      {[&] { r.string("user"); }, R"("user" is required (a string))"},
      {[&] { r.integer("none"); }, R"("none" is required (an integer))"},
      {[&] { r.boolean("missing"); }, R"("missing" is required (true or false))"},
      {[&] { r.string("quota"); }, R"("quota": expected a string, got an integer)"},
      {[&] { r.integer("name"); }, R"("name": expected an integer, got a string)"},
      {[&] { r.integer("big"); },
       R"("big": expected an integer from -2^63 to 2^63-1, got a number)"},
      {[&] { r.integer("pi"); }, R"("pi": expected an integer from -2^63 to 2^63-1, got a number)"},
      {[&] { r.optional_string("list"); }, R"("list": expected a string, got an array)"},
      {[&] { r.optional_integer("obj"); }, R"("obj": expected an integer, got an object)"},
      {[&] { r.optional_boolean("name"); }, R"("name": expected true or false, got a string)"},
  };
  for (const auto& [read, expected] : cases) EXPECT_EQ(error_of(read), expected);
}

// ---------------------------------------------------------------- replies

TEST(control_reply, is_one_line_of_json) {
  EXPECT_EQ(control_reply::success().line(), "{\"ok\":true}\n");
  EXPECT_EQ(control_reply::success()
                .set("version", "0.1.0")
                .set("accounts", std::size_t{3})
                .set("delta", -2)
                .set("changed", false)
                .line(),
            "{\"ok\":true,\"version\":\"0.1.0\",\"accounts\":3,\"delta\":-2,\"changed\":false}\n");
  EXPECT_EQ(control_reply::failure("bad \"x\"\nfix it").line(),
            "{\"ok\":false,\"error\":\"bad \\\"x\\\"\\nfix it\"}\n");
  EXPECT_EQ(control_reply::failure("no").set("line", 3).line(),
            "{\"ok\":false,\"error\":\"no\",\"line\":3}\n");
}

TEST(control_reply, stays_valid_json_for_any_bytes) {
  const std::string nasty[] = {std::string("a\0b", 3), "\x01\x1f\x7f", "caf\xc3\xa9",
                               "bad \xff\xfe utf-8", "back\\slash"};
  for (const auto& s : nasty) {
    std::string line = control_reply::failure(s).set("value", s).line();
    ASSERT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line only";
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    EXPECT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS) << line;
  }
}

TEST(control_reply, refuses_the_reserved_keys) {
  EXPECT_DEATH(control_reply::success().set("ok", true), "written by the server");
  EXPECT_DEATH(control_reply::success().set("error", "x"), "written by the server");
}

// ---------------------------------------------------------------- dispatch

TEST(control_server, dispatches_to_handlers_and_turns_failures_into_replies) {
  control_server server("/nonexistent/control.sock");
  server.on("greet", [](const json_request& r) {
    return control_reply::success().set("hello", r.string("name"));
  });
  server.on("refuse", [](const json_request&) {
    return control_reply::failure("users.json: line 3: fix the file");
  });
  server.on("throw",
            [](const json_request&) -> control_reply { throw std::runtime_error("disk on fire"); });
  const std::pair<const char*, const char*> cases[] = {
      {R"({"command":"ping"})", "{\"ok\":true,\"version\":\"0.1.0\"}\n"},
      {R"({"command":"greet","name":"acme"})", "{\"ok\":true,\"hello\":\"acme\"}\n"},
      {R"({"command":"greet"})",
       "{\"ok\":false,\"error\":\"\\\"name\\\" is required (a string)\"}\n"},
      {R"({"command":"refuse"})",
       "{\"ok\":false,\"error\":\"users.json: line 3: fix the file\"}\n"},
      {R"({"command":"throw"})",
       "{\"ok\":false,\"error\":\"command \\\"throw\\\" failed: disk on fire\"}\n"},
      {R"({"command":"nope"})",
       "{\"ok\":false,\"error\":\"unknown command \\\"nope\\\" (this server knows greet, ping, "
       "refuse, throw)\"}\n"},
  };
  for (const auto& [line, reply] : cases) EXPECT_EQ(server.dispatch(line).line(), reply) << line;
}

// ---------------------------------------------------------------- socket

class temp_dir {
 public:
  temp_dir() {
    std::string pattern = (fs::temp_directory_path() / "rrctl-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    _path = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(_path, ec);
  }
  std::string operator/(const std::string& name) const { return (_path / name).string(); }
  const fs::path& path() const { return _path; }

 private:
  fs::path _path;
};

int connect_to(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

// Sends `bytes` on a new connection (then ends the input when `end_input`)
// and returns everything the server answered before closing.
std::string round_trip(const std::string& path, const std::string& bytes, bool end_input = false) {
  int fd = connect_to(path);
  if (fd < 0) return "(connect failed: " + std::string(std::strerror(errno)) + ")";
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may refuse before reading everything
    sent += static_cast<std::size_t>(n);
  }
  if (end_input) shutdown(fd, SHUT_WR);
  std::string reply = read_all(fd);
  close(fd);
  return reply;
}

const std::string ping = "{\"command\":\"ping\"}\n";
const std::string pong = "{\"ok\":true,\"version\":\"0.1.0\"}\n";

TEST(control_socket, answers_one_request_per_connection) {
  temp_dir dir;
  control_server server(dir / "control.sock");
  server.on("echo", [](const json_request& r) {
    return control_reply::success().set("said", r.string("text"));
  });
  server.start();
  EXPECT_EQ(round_trip(server.path(), ping), pong);
  EXPECT_EQ(round_trip(server.path(), ping + ping), pong) << "one request per connection";
  EXPECT_EQ(round_trip(server.path(), "{\"command\":\"ping\"}", true), pong)
      << "end of input ends the line";
  EXPECT_EQ(round_trip(server.path(), "{\"command\":\"echo\",\"text\":\"h\\u00e9\"}\r\n"),
            "{\"ok\":true,\"said\":\"h\xc3\xa9\"}\n");
  EXPECT_NE(
      round_trip(server.path(), "{\"command\":\"nope\"}\n").find("unknown command \\\"nope\\\""),
      std::string::npos);
  EXPECT_NE(round_trip(server.path(), "not json\n").find("\"ok\":false,\"error\":\"invalid JSON"),
            std::string::npos);
  EXPECT_NE(round_trip(server.path(), "{\"command\":\"echo\"}\n").find("\\\"text\\\" is required"),
            std::string::npos);
  EXPECT_NE(round_trip(server.path(), "", true).find("empty request"), std::string::npos);
}

TEST(control_socket, bounds_the_request_line_at_64_kib) {
  temp_dir dir;
  control_server server(dir / "control.sock");
  server.start();
  std::string longest = "{\"command\":\"ping\"}";
  longest.resize(max_request, ' ');
  EXPECT_EQ(round_trip(server.path(), longest + "\n"), pong) << "65536 octets is allowed";
  std::string reply = round_trip(server.path(), longest + " \n");
  EXPECT_NE(reply.find("\"ok\":false,\"error\":\"request longer than 65536 octets"),
            std::string::npos)
      << reply;
  reply = round_trip(server.path(), std::string(300000, 'x'));
  EXPECT_NE(reply.find("request longer than 65536 octets"), std::string::npos) << reply;
  EXPECT_EQ(round_trip(server.path(), ping), pong) << "still serving";
}

TEST(control_socket, times_out_a_silent_client_and_keeps_serving) {
  temp_dir dir;
  control_server server(dir / "control.sock", 300ms);
  server.start();
  int fd = connect_to(server.path());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send(fd, "{\"comm", 6, 0), 6);
  auto t0 = std::chrono::steady_clock::now();
  std::string reply = read_all(fd);
  close(fd);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_NE(reply.find("\"ok\":false,\"error\":\"no complete request line within 300 ms"),
            std::string::npos)
      << reply;
  EXPECT_EQ(round_trip(server.path(), ping), pong);
}

TEST(control_socket, stop_does_not_wait_for_a_silent_client) {
  temp_dir dir;
  control_server server(dir / "control.sock");
  server.start();
  int fd = connect_to(server.path());
  ASSERT_GE(fd, 0);
  std::this_thread::sleep_for(50ms);  // let the server start reading
  auto t0 = std::chrono::steady_clock::now();
  server.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  close(fd);
  EXPECT_EQ(connect_to(server.path()), -1) << "nobody listens after stop";
}

TEST(control_socket, creates_private_files_and_removes_its_socket) {
  temp_dir dir;
  const std::string path = dir / "run/ringrelay/control.sock";
  {
    control_server server(path);
    server.start();
    struct stat st {};
    ASSERT_EQ(lstat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    for (const auto* d : {"run", "run/ringrelay"}) {
      ASSERT_EQ(stat((dir / d).c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 07777, 0700u) << d;
    }
    EXPECT_EQ(round_trip(path, ping), pong);
  }
  EXPECT_FALSE(fs::exists(fs::symlink_status(path))) << "the destructor unlinks the socket";
}

TEST(control_socket, replaces_a_stale_socket) {
  temp_dir dir;
  const std::string path = dir / "control.sock";
  {
    // A socket file nobody listens on, as a killed server leaves it.
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    close(fd);
  }
  ASSERT_TRUE(fs::is_socket(path));
  control_server server(path);
  server.start();
  EXPECT_EQ(round_trip(path, ping), pong);
}

std::string start_error(control_server& server) {
  try {
    server.start();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(started)";
}

TEST(control_socket, refuses_a_path_another_server_answers_on) {
  temp_dir dir;
  control_server first(dir / "control.sock");
  first.start();
  control_server second(dir / "control.sock");
  EXPECT_NE(start_error(second).find("another server answers on it"), std::string::npos);
  EXPECT_EQ(round_trip(first.path(), ping), pong) << "the first server is untouched";
}

TEST(control_socket, refuses_bad_paths_with_what_to_do) {
  temp_dir dir;
  std::ofstream(dir / "file") << "x";
  control_server not_socket(dir / "file");
  EXPECT_NE(start_error(not_socket).find("exists and is not a socket"), std::string::npos);
  EXPECT_TRUE(fs::is_regular_file(dir / "file")) << "a file that is not a socket is kept";
  control_server under_file(dir / "file/control.sock");
  EXPECT_NE(start_error(under_file).find("is not a directory"), std::string::npos);
  control_server too_long(dir / std::string(120, 'x'));
  EXPECT_NE(start_error(too_long).find("set control.socket to a shorter path"), std::string::npos);
  control_server empty("");
  EXPECT_NE(start_error(empty).find("a Unix socket path must be 1 to 107 octets"),
            std::string::npos);
}

TEST(control_socket, leaves_a_newer_servers_socket_alone) {
  temp_dir dir;
  const std::string path = dir / "control.sock";
  auto old_server = std::make_unique<control_server>(path);
  old_server->start();
  old_server->stop();  // its file stays, and is stale now
  control_server new_server(path);
  new_server.start();
  old_server.reset();
  EXPECT_EQ(round_trip(path, ping), pong);
}

// Another uid connecting: refused by SO_PEERCRED even when the file's mode
// would let it in. Needs root to switch uid in the child.
TEST(control_socket, refuses_other_uids) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  temp_dir dir;
  chmod(dir.path().c_str(), 0755);
  control_server server(dir / "control.sock");
  server.start();
  chmod(server.path().c_str(), 0666);
  // The child of a threaded process may only make system calls: everything
  // it needs is prepared before the fork.
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, server.path().data(), server.path().size());
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char buf[512];
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) _exit(4);
    // The server refuses before reading: the send may fail, the reply is there.
    send(fd, ping.data(), ping.size(), MSG_NOSIGNAL);
    ssize_t n = read(fd, buf, sizeof buf);
    _exit(n > 0 && write(pipe_fds[1], buf, static_cast<std::size_t>(n)) == n ? 0 : 6);
  }
  close(pipe_fds[1]);
  std::string reply = read_all(pipe_fds[0]);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_NE(reply.find("\"ok\":false,\"error\":\"permission denied: only root and uid 0"),
            std::string::npos)
      << reply;
  EXPECT_EQ(round_trip(server.path(), ping), pong) << "root is allowed";
}

}  // namespace
}  // namespace ringrelay::app
