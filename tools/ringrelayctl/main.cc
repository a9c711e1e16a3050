// ringrelayctl — manages ringrelay's accounts (users.json), talks to a
// running server through its control socket, and checks a sender domain's
// DNS (check-domain, check_domain.hh). `--help` is the manual;
// docs/ringrelayctl.md has the same with examples.
//
// users.json is edited the safe way: under an exclusive lock on its
// directory (two ringrelayctl runs never lose each other's change), the
// current file is read and checked with the server's own loader, changed,
// the result checked again with the same loader, then written to a temp
// file in the same directory, fsynced, renamed over the old one and the
// directory fsynced — so the server, and a crash, only ever see the old or
// the new file whole. Other accounts keep their keys, order and values.
// Afterwards a running server is asked to reload (control socket, see
// docs/control.md); no server is not an error. `usage` and `blocks add`
// ask the running server: an account's live counters are its, and so is
// the ledger of blocks added, in its spool directory.
//
// Passwords come from the terminal with echo off, or as one line on
// standard input — never from argv, where `ps` and shell history would
// show them. Exit status: 0 done, 1 operational error (or a check-domain
// finding that fails), 2 usage error.
#include <fcntl.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <ringrelay/accounts/counters.hh>
#include <ringrelay/accounts/policy.hh>
#include <ringrelay/accounts/table.hh>
#include <ringrelay/accounts/timestamp.hh>
#include <ringrelay/auth/password.hh>
#include <ringrelay/config/config.hh>
#include <ringrelay/config/json_text.hh>
#include <ringrelay/dns/spf.hh>
#include <ringrelay/util/hostname.hh>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "check_domain.hh"

namespace {

using namespace ringrelay;

constexpr const char* usage_text = R"(NAME
    ringrelayctl - manage ringrelay accounts and a running ringrelay server,
    check a sender domain's DNS

SYNOPSIS
    ringrelayctl [OPTIONS] user add USER [--daily-quota N] [--blocks N]
                 [--sender-domain DOMAIN]... [--created-at RFC3339] [--disabled]
    ringrelayctl [OPTIONS] user passwd USER
    ringrelayctl [OPTIONS] user disable USER
    ringrelayctl [OPTIONS] user enable USER
    ringrelayctl [OPTIONS] user list
    ringrelayctl [OPTIONS] user show USER
    ringrelayctl [OPTIONS] usage USER
    ringrelayctl [OPTIONS] blocks add USER N
    ringrelayctl [OPTIONS] reload
    ringrelayctl [OPTIONS] ping
    ringrelayctl [OPTIONS] check-domain DOMAIN [--spf-include NAME]

DESCRIPTION
    The user commands edit the accounts file (users.json, docs/accounts.md)
    atomically and then ask a running server to reload it through the
    control socket. When no server is running the change is saved and will
    be read when the server starts ("saved; no running server to reload").
    usage and blocks add need the running server: they read and change its
    live counters.

    Passwords are never taken from the command line. When standard input is
    a terminal, user add and user passwd prompt twice with echo off;
    otherwise they read one line from standard input, e.g.
        printf '%s\n' "$PASSWORD" | ringrelayctl user add acme

COMMANDS
    user add USER       Create an account. The password is hashed with
                        PBKDF2-SHA256 (100000 iterations); the account may
                        send accounts.activation_delay after its creation.
        --daily-quota N     relays per day, 0 to 1099511627775 (default 1000)
        --blocks N          the relay-block grant (default 0)
        --sender-domain D   an envelope sender domain the account may use;
                            repeat for more; none given = any domain
        --created-at T      creation time, RFC 3339 (default: now), e.g.
                            2026-11-28T12:00:00Z; for tests and migrations
        --disabled          create the account disabled
    user passwd USER    Set a new password (re-hashed with the current
                        iteration count).
    user disable USER   Refuse every login of the account (535 5.7.8).
    user enable USER    Allow logins again.
    user list           One line per account: user, enabled, created_at,
                        daily_quota, blocks, sender domains ("*" = any),
                        after a header line.
    user show USER      The account as "key: value" lines (never the hash).
    usage USER          The account's relays used today, daily quota, live
                        block balance, blocks added by operators and the
                        next quota reset, as "key: value" lines.
    blocks add USER N   Add N relay blocks (1 to 1099511627775) to the
                        account, live: the server records them in its spool
                        directory first (they survive restarts), then adds
                        them to the balance. Prints the new balance.
    reload              Ask the running server to reload the accounts file.
    ping                Check that a server answers on the control socket.
    check-domain DOMAIN Run on DOMAIN the sender verification that MAIL FROM
                        runs, and check its SPF record: exactly one, that
                        parses (RFC 7208), within 10 DNS-querying terms
                        through its includes, and including NAME. Prints
                        one line per finding in plain words, such as
                            MX: 10 mx.example.com (A 192.0.2.10)
                            sender verification: passes
                            SPF: 3 of 10 DNS-querying terms
                            SPF: includes _spf.relay.example: yes
                        A failing line says what to fix; one marked
                        temporary failed because DNS did not answer
                        (SERVFAIL, timeout): try again later. Uses
                        dns.servers, dns.timeout,
                        sender_verify.allow_reserved and
                        sender_verify.spf_include from the config.
        --spf-include NAME  the relay's SPF include name, such as
                            _spf.relay.example; default: the config's
                            sender_verify.spf_include; with neither the
                            include is not checked, and the output says so

OPTIONS
    --config FILE   server configuration to take accounts.file and
                    control.socket from (default conf/ringrelay.json; a
                    missing file means the defaults). Not read when both
                    --users and --socket are given. check-domain takes
                    dns.* and sender_verify.* from it.
    --users FILE    the accounts file (default: accounts.file, itself
                    conf/users.json by default)
    --socket PATH   the control socket (default: control.socket, itself
                    /run/ringrelay/control.sock by default)
    --help          this manual
    --              end of options, for a USER that starts with "-"

FILES
    conf/ringrelay.json, conf/users.json, /run/ringrelay/control.sock
    A new users.json is created with mode 0600; an existing one keeps its
    mode and owner.

EXIT STATUS
    0 done (check-domain: every check passes); 1 operational error (file,
    server or account problem: the message says what to fix), or a
    check-domain finding that fails; 2 usage error (bad command or option).
)";

constexpr std::uint64_t default_daily_quota = 1000;
constexpr std::size_t max_password = 1024;
constexpr int reply_timeout_seconds = 30;

// A mistake on the command line: exit status 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Anything else that stops the command: exit status 1.
class failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string errno_text() {
  return std::strerror(errno);
}

// ---------------------------------------------------------------- options

struct add_options {
  std::uint64_t daily_quota = default_daily_quota;
  std::uint64_t blocks = 0;
  std::vector<std::string> sender_domains;
  std::optional<std::int64_t> created_at;
  bool disabled = false;
  bool any = false;  // one of these options was given (they go with user add only)
};

struct options {
  std::string config = "conf/ringrelay.json";
  std::optional<std::string> users;
  std::optional<std::string> socket;
  std::vector<std::string> words;  // the command and its operands
  add_options add;
  std::optional<std::string> spf_include;  // check-domain only
  bool help = false;
};

bool all_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A decimal count from `min` to max_usage (2^40 - 1).
std::uint64_t parse_count(std::string_view option, std::string_view text, std::uint64_t min = 0) {
  std::uint64_t n = 0;
  bool ok = all_digits(text) && text.size() <= 13;
  for (char c : text) n = n * 10 + static_cast<std::uint64_t>(c - '0');
  if (!ok || n < min || n > accounts::max_usage)
    throw usage_error(std::string(option) + " " + ringrelay::config::json_quote(text) +
                      ": expected an integer from " + std::to_string(min) + " to " +
                      std::to_string(accounts::max_usage));
  return n;
}

constexpr std::string_view value_options[] = {"--config",      "--users",      "--socket",
                                              "--daily-quota", "--blocks",     "--sender-domain",
                                              "--created-at",  "--spf-include"};
constexpr std::string_view add_only[] = {"--daily-quota", "--blocks", "--sender-domain",
                                         "--created-at", "--disabled"};

bool one_of(std::string_view name, std::span<const std::string_view> names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Applies one of `value_options`.
void value_option(options& opt, std::string_view name, const std::string& value) {
  if (name == "--config") {
    opt.config = value;
  } else if (name == "--users") {
    opt.users = value;
  } else if (name == "--socket") {
    opt.socket = value;
  } else if (name == "--daily-quota") {
    opt.add.daily_quota = parse_count(name, value);
  } else if (name == "--blocks") {
    opt.add.blocks = parse_count(name, value);
  } else if (name == "--sender-domain") {
    opt.add.sender_domains.push_back(value);
  } else if (name == "--spf-include") {
    opt.spf_include = value;
  } else if (name == "--created-at") {
    opt.add.created_at = accounts::parse_rfc3339(value);
    if (!opt.add.created_at)
      throw usage_error("--created-at " + ringrelay::config::json_quote(value) +
                        ": expected an RFC 3339 date-time such as 2026-11-28T12:00:00Z (or with "
                        "an offset: 2026-11-28T13:00:00+01:00)");
  }
}

// Options may come before or after the command; "--" ends them (for a
// USER that starts with "-").
options parse_args(int argc, char** argv) {
  options opt;
  bool operands_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    // "-5" is no option: it reaches the command, which says what is wrong.
    if (operands_only || a.size() < 2 || a[0] != '-' || all_digits(a.substr(1))) {
      opt.words.push_back(a);
      continue;
    }
    const auto eq = a.starts_with("--") ? a.find('=') : std::string::npos;
    const std::string name = a.substr(0, eq);
    opt.add.any = opt.add.any || one_of(name, add_only);
    if (name == "--password")
      throw usage_error(
          "passwords are not taken from the command line (ps and shell history would show "
          "them): type it at the prompt, or pipe one line on standard input");
    if (a == "--") {
      operands_only = true;
    } else if (a == "--help" || a == "-h") {
      opt.help = true;
    } else if (a == "--disabled") {
      opt.add.disabled = true;
    } else if (!one_of(name, value_options)) {
      throw usage_error(eq == std::string::npos || (name != "--help" && name != "--disabled")
                            ? "unknown option " + ringrelay::config::json_quote(name)
                            : name + " takes no value");
    } else if (eq != std::string::npos) {
      value_option(opt, name, a.substr(eq + 1));
    } else if (i + 1 < argc) {
      value_option(opt, name, argv[++i]);
    } else {
      throw usage_error(name + " needs a value");
    }
  }
  return opt;
}

// ---------------------------------------------------------------- paths

struct paths {
  std::string users;
  std::string socket;
  std::uint32_t activation_delay = config::accounts_config{}.activation_delay;
};

// The accounts file and socket: the command line's, else the config's,
// else the defaults. The config is read with the server's loader, so both
// agree on what it says.
paths resolve_paths(const options& opt) {
  paths p;
  config::server_config defaults;
  p.users = defaults.accounts.file;
  p.socket = defaults.control.socket;
  if (!(opt.users && opt.socket) && std::filesystem::exists(opt.config)) {
    try {
      auto cfg = config::load(opt.config, {});
      p.users = cfg.accounts.file;
      p.socket = cfg.control.socket;
      p.activation_delay = cfg.accounts.activation_delay;
    } catch (const config::config_error& e) {
      throw failure(std::string(e.what()) +
                    "\n  fix the configuration, or give --users FILE and --socket PATH");
    }
  }
  if (opt.users) p.users = *opt.users;
  if (opt.socket) p.socket = *opt.socket;
  return p;
}

// ---------------------------------------------------------------- users.json

constexpr std::string_view key_order[] = {"username",    "password", "created_at",    "enabled",
                                          "daily_quota", "blocks",   "sender_domains"};

std::size_t key_rank(std::string_view key) {
  return static_cast<std::size_t>(std::find(std::begin(key_order), std::end(key_order), key) -
                                  std::begin(key_order));
}

// One account as written: its keys in file order, each with its value as
// JSON text.
struct entry {
  std::vector<std::pair<std::string, std::string>> fields;

  // Replaces the value of `key`, or adds the key right after the present
  // key that docs/accounts.md lists closest before it ("enabled" after
  // "created_at"), or first when there is none.
  void set(std::string_view key, std::string json) {
    auto at = fields.begin();
    for (auto it = fields.begin(); it != fields.end(); ++it) {
      if (it->first == key) {
        it->second = std::move(json);
        return;
      }
      if (key_rank(it->first) < key_rank(key) &&
          (at == fields.begin() || key_rank(it->first) > key_rank(std::prev(at)->first)))
        at = std::next(it);
    }
    fields.emplace(at, std::string(key), std::move(json));
  }
};

// A DOM value back to JSON text, with ", " and ": " between items. The
// file passed the loader, so values are strings, integers, booleans and
// arrays of strings; the rest is written minified.
std::string to_json(simdjson::dom::element e) {
  using simdjson::dom::element_type;
  if (e.type() == element_type::STRING)
    return ringrelay::config::json_quote(e.get_string().value_unsafe());
  simdjson::dom::array array;
  if (e.get_array().get(array) == simdjson::SUCCESS) {
    std::string out;
    for (auto item : array) out += (out.empty() ? "" : ", ") + to_json(item);
    return "[" + out + "]";
  }
  return simdjson::minify(e);
}

// The accounts file as read: the server's view of it (`table`) and the
// text of each account (`entries`, same order) to write back.
struct users_file {
  std::string path;  // as given, for messages
  std::string real;  // symlinks resolved: where the new file goes
  bool exists = false;
  struct stat st {};  // when it exists: the mode and owner to keep
  std::shared_ptr<const accounts::table> table;
  std::vector<entry> entries;

  std::size_t index_of(std::string_view username) const {
    const auto* a = table->find(username);
    return a ? static_cast<std::size_t>(a - table->all().data()) : entries.size();
  }
  const accounts::account& must_find(std::string_view username) const {
    const auto* a = table->find(username);
    if (!a)
      throw failure("no user " + ringrelay::config::json_quote(username) + " in " + path +
                    " (\"ringrelayctl user list\" shows them)");
    return *a;
  }
  std::string render() const;
};

// The server's loader, with the server's password check: ringrelayctl
// never writes a file the server would refuse.
std::shared_ptr<const accounts::table> check(std::string_view text, const std::string& source) {
  static accounts::counter_store counters;
  return accounts::from_json(text, source, counters, auth::password_hash_problem);
}

std::string read_text(const std::string& path, bool& exists) {
  std::unique_ptr<std::FILE, decltype(&std::fclose)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  exists = f != nullptr;
  if (!f && errno == ENOENT) return "";
  if (!f) throw failure(path + ": cannot open: " + errno_text());
  std::string text;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) text.append(buf, n);
  if (std::ferror(f.get())) throw failure(path + ": cannot read: " + errno_text());
  return text;
}

// Where the file really is: a users.json that is a symbolic link is
// replaced at its target, and the link stays.
std::string real_path(const std::string& path) {
  struct stat link {};
  if (lstat(path.c_str(), &link) != 0 || !S_ISLNK(link.st_mode)) return path;
  std::error_code ec;
  auto target = std::filesystem::canonical(path, ec);
  if (ec) throw failure(path + ": a symbolic link to nowhere: " + ec.message());
  return target.string();
}

users_file load_users(const std::string& path) {
  users_file u;
  u.path = path;
  u.real = real_path(path);
  std::string text = read_text(u.real, u.exists);
  if (u.exists && stat(u.real.c_str(), &u.st) != 0)
    throw failure(path + ": cannot stat: " + errno_text());
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);
  // A missing or blank file is an empty one: `user add` starts it.
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) text = R"({"users": []})";
  try {
    u.table = check(text, path);
  } catch (const config::config_error& e) {
    throw failure(std::string(e.what()) +
                  "\n  fix the file first (format: docs/accounts.md); nothing was changed");
  }
  // The loader accepted the text: this parse and these shapes cannot fail.
  simdjson::dom::parser parser;
  simdjson::dom::array users;
  if (parser.parse(text)["users"].get_array().get(users) != simdjson::SUCCESS)
    throw failure(path + ": cannot parse it a second time");
  for (auto account : users) {
    simdjson::dom::object fields;
    if (account.get_object().get(fields) != simdjson::SUCCESS)
      throw failure(path + ": cannot parse it a second time");
    entry e;
    for (auto [key, value] : fields) e.fields.emplace_back(std::string(key), to_json(value));
    u.entries.push_back(std::move(e));
  }
  return u;
}

std::string users_file::render() const {
  if (entries.empty()) return "{\n  \"users\": []\n}\n";
  std::string out = "{\n  \"users\": [\n";
  for (std::size_t i = 0; i < entries.size(); ++i) {
    out += "    {\n";
    const auto& fields = entries[i].fields;
    for (std::size_t j = 0; j < fields.size(); ++j)
      out += "      " + ringrelay::config::json_quote(fields[j].first) + ": " + fields[j].second +
             (j + 1 < fields.size() ? ",\n" : "\n");
    out += i + 1 < entries.size() ? "    },\n" : "    }\n";
  }
  return out + "  ]\n}\n";
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

 private:
  int _fd;
};

std::string parent_dir(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

// Temp file in the same directory (so rename is atomic), same mode and
// owner as the file it replaces (0600 for a new one: it holds password
// hashes), fsync, rename, fsync the directory (so the rename survives a
// crash).
void write_atomically(const users_file& u, const std::string& text, int dir_fd) {
  const std::string dir = parent_dir(u.real);
  std::string temp = dir + "/." + std::filesystem::path(u.real).filename().string() + ".XXXXXX";
  fd_guard fd(mkstemp(temp.data()));
  if (fd.get() < 0)
    throw failure("cannot create a temporary file in " + dir + ": " + errno_text() +
                  ": the directory must be writable");
  auto fail = [&](const std::string& what) {
    std::string message = "cannot write " + u.path + ": " + what + ": " + errno_text();
    unlink(temp.c_str());
    throw failure(message + "; nothing was changed");
  };
  if (fchmod(fd.get(), u.exists ? (u.st.st_mode & 07777) : 0600) != 0) fail("fchmod");
  if (u.exists && geteuid() == 0 && fchown(fd.get(), u.st.st_uid, u.st.st_gid) != 0) fail("fchown");
  for (std::size_t done = 0; done < text.size();) {
    ssize_t n = write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("write");
    done += static_cast<std::size_t>(n);
  }
  if (fsync(fd.get()) != 0) fail("fsync");
  if (rename(temp.c_str(), u.real.c_str()) != 0) fail("rename");
  if (fsync(dir_fd) != 0)
    throw failure("saved " + u.path + ", but fsync of " + dir + " failed: " + errno_text() +
                  " (the change may not survive a crash)");
}

// Read, change, check and save users.json under an exclusive lock on its
// directory: a concurrent ringrelayctl waits instead of losing the change.
// `change` throws `failure` to refuse; it returns false when there is
// nothing to save.
bool edit_users(const std::string& path, const std::function<bool(users_file&)>& change) {
  const std::string dir = parent_dir(real_path(path));
  fd_guard dir_fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0)
    throw failure("cannot open directory " + dir + " of " + path + ": " + errno_text() +
                  ": create it, or pass --users FILE");
  if (flock(dir_fd.get(), LOCK_EX) != 0) throw failure("cannot lock " + dir + ": " + errno_text());
  users_file u = load_users(path);
  if (!change(u)) return false;
  std::string text = u.render();
  try {
    check(text, path);
  } catch (const config::config_error& e) {
    throw failure(std::string("the change would make the file invalid: ") + e.what() +
                  "\n  nothing was changed");
  }
  write_atomically(u, text, dir_fd.get());
  return true;
}

// ---------------------------------------------------------------- passwords

termios saved_termios;
volatile sig_atomic_t echo_is_off = 0;

// A signal while echo is off must not leave the terminal silent.
void restore_terminal(int sig) {
  if (echo_is_off) tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
  signal(sig, SIG_DFL);
  raise(sig);
}

// One line from fd 0 without its "\n" (and "\r"); false at end of input
// with nothing read, not even a newline. Octets beyond `max` + 1 are read
// but not kept.
bool read_line(std::string& out, std::size_t max) {
  out.clear();
  out.reserve(max + 2);  // no reallocation: no stray copies of the password
  char c;
  for (;;) {
    ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (c == '\n') return true;
    if (out.size() <= max) out += c;
  }
  if (!out.empty() && out.back() == '\r') out.pop_back();
  return !out.empty();
}

// Echo goes off (discarding typeahead) before the prompt shows, so that
// nothing typed after the prompt is lost or echoed.
std::string prompt(const char* text) {
  termios quiet = saved_termios;
  quiet.c_lflag &= static_cast<tcflag_t>(~ECHO);
  quiet.c_lflag |= ECHONL;
  echo_is_off = 1;
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  std::fputs(text, stderr);
  std::fflush(stderr);
  std::string line;
  bool got = read_line(line, max_password);
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
  echo_is_off = 0;
  if (!got) throw failure("no password entered; nothing was changed");
  return line;
}

void wipe(std::string& s) {
  explicit_bzero(s.data(), s.capacity());
  s.clear();
}

std::string read_password(std::string_view username) {
  std::string password;
  if (isatty(STDIN_FILENO)) {
    if (tcgetattr(STDIN_FILENO, &saved_termios) != 0)
      throw failure("cannot read the terminal's settings: " + errno_text());
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) signal(sig, restore_terminal);
    std::string first_prompt = "New password for " + std::string(username) + ": ";
    password = prompt(first_prompt.c_str());
    std::string again = prompt("Retype the password: ");
    bool same = again == password;
    wipe(again);
    if (!same) {
      wipe(password);
      throw failure("the two passwords differ; nothing was changed");
    }
  } else if (!read_line(password, max_password)) {
    throw failure(
        "no password on standard input: pipe it as one line, e.g.\n"
        "  printf '%s\\n' \"$PASSWORD\" | ringrelayctl user add USER");
  }
  std::string problem;
  if (password.empty()) problem = "the password is empty";
  if (password.size() > max_password)
    problem = "the password is longer than " + std::to_string(max_password) + " octets";
  // AUTH PLAIN separates the login from the password with NUL.
  if (password.find('\0') != std::string::npos) problem = "the password contains a NUL octet";
  if (!problem.empty()) {
    wipe(password);
    throw failure(problem + "; nothing was changed");
  }
  return password;
}

std::string hashed_password(std::string_view username) {
  std::string password = read_password(username);
  std::string hash = auth::hash_password(password);
  wipe(password);
  return ringrelay::config::json_quote(hash);
}

// ---------------------------------------------------------------- server

struct server_answer {
  bool reached = false;  // false: nobody answers at the socket
  bool ok = false;
  std::string error;  // the server's, when !ok
  // Its other fields in order: strings as their text, the rest as JSON.
  std::vector<std::pair<std::string, std::string>> fields;

  // "key=value ..."
  std::string extras() const {
    std::string out;
    for (const auto& [key, value] : fields) out += (out.empty() ? "" : " ") + key + "=" + value;
    return out;
  }
  // The value of `key`; "" when the reply lacks it.
  std::string field(std::string_view key) const {
    auto it =
        std::find_if(fields.begin(), fields.end(), [&](const auto& f) { return f.first == key; });
    return it == fields.end() ? "" : it->second;
  }
};

std::vector<std::pair<std::string, std::string>> reply_fields(simdjson::dom::object reply) {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto [key, value] : reply) {
    if (key == "ok" || key == "error") continue;
    std::string text = value.is_string() ? std::string(value.get_string().value_unsafe())
                                         : simdjson::minify(value);
    out.emplace_back(std::string(key), std::move(text));
  }
  return out;
}

// Sends one request line and reads the one-line reply. No server (no
// socket file, or nobody listening on it) is `reached == false`; any other
// problem throws `failure`.
server_answer ask_server(const std::string& socket_path, const std::string& request) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path)
    throw failure("control socket " + ringrelay::config::json_quote(socket_path) +
                  ": a Unix socket path must be 1 to " + std::to_string(sizeof addr.sun_path - 1) +
                  " octets");
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  fd_guard fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw failure("socket: " + errno_text());
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED || errno == ENOTDIR) return {};
    std::string hint = errno == EACCES ? ": run as root or as the server's user" : "";
    throw failure("cannot reach the server on " + socket_path + ": " + errno_text() + hint);
  }
  timeval tv{reply_timeout_seconds, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size()))
    throw failure("cannot send to the server on " + socket_path + ": " + errno_text());
  std::string line;
  char buf[4096];
  ssize_t n;
  while (line.find('\n') == std::string::npos && (n = recv(fd.get(), buf, sizeof buf, 0)) > 0)
    line.append(buf, static_cast<std::size_t>(n));
  simdjson::dom::parser parser;
  simdjson::dom::object reply;
  bool ok = false;
  if (line.empty() || parser.parse(line).get_object().get(reply) != simdjson::SUCCESS ||
      reply["ok"].get_bool().get(ok) != simdjson::SUCCESS)
    throw failure("no valid reply from the server on " + socket_path +
                  (line.empty() ? " (it closed the connection or timed out)" : ""));
  server_answer answer{true, ok, "", reply_fields(reply)};
  std::string_view error;
  if (!ok && reply["error"].get_string().get(error) == simdjson::SUCCESS) answer.error = error;
  return answer;
}

// After a saved change: reload a running server, or say there is none.
void reload_after_change(const paths& p) {
  server_answer a;
  try {
    a = ask_server(p.socket, "{\"command\":\"reload\"}\n");
  } catch (const failure& e) {
    throw failure("saved " + p.users + ", but " + e.what() +
                  "\n  then run \"ringrelayctl reload\" (or send SIGHUP to ringrelay)");
  }
  if (!a.reached) {
    std::puts("saved; no running server to reload");
  } else if (!a.ok) {
    throw failure("saved " + p.users + ", but the server did not reload it: " + a.error);
  } else {
    std::printf("saved; the server reloaded it%s\n",
                a.fields.empty() ? "" : (" (" + a.extras() + ")").c_str());
  }
}

// ---------------------------------------------------------------- commands

// A well-formed hash that matches no password: stands in for the real one
// while the new account is checked, before the password is asked for.
constexpr const char* placeholder_hash =
    "\"pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"";

entry new_entry(const std::string& name, const add_options& add, std::int64_t created,
                std::string password_json) {
  entry e;
  e.set("username", ringrelay::config::json_quote(name));
  e.set("password", std::move(password_json));
  e.set("created_at", ringrelay::config::json_quote(accounts::format_rfc3339(created)));
  e.set("enabled", add.disabled ? "false" : "true");
  e.set("daily_quota", std::to_string(add.daily_quota));
  e.set("blocks", std::to_string(add.blocks));
  std::vector<std::string> domains;
  for (std::string d : add.sender_domains) {
    std::transform(d.begin(), d.end(), d.begin(), [](unsigned char c) { return std::tolower(c); });
    if (d.ends_with('.')) d.pop_back();  // "acme.example." is "acme.example" (RFC 1034 3.1)
    if (std::find(domains.begin(), domains.end(), d) == domains.end()) domains.push_back(d);
  }
  std::string list;
  for (const auto& d : domains)
    list += (list.empty() ? "" : ", ") + ringrelay::config::json_quote(d);
  if (!list.empty()) e.set("sender_domains", "[" + list + "]");
  return e;
}

// Checks the new account alone with the server's loader, so a bad name or
// domain is reported (as a usage error) before the password prompt, with
// the loader's own rules (docs/accounts.md).
void check_new_entry(const std::string& name, const entry& e) {
  users_file alone;
  alone.entries.push_back(e);
  const std::string source = "user add " + ringrelay::config::json_quote(name);
  try {
    check(alone.render(), source);
  } catch (const config::config_error& err) {
    std::string message = err.what();
    if (auto at = message.find(": users.0."); at != std::string::npos)
      message.replace(at, 10, ": ");  // the account's key, not its place in a one-account file
    throw usage_error(message);
  }
}

void user_add(const paths& p, const std::string& name, const add_options& add) {
  const std::int64_t created =
      add.created_at.value_or(static_cast<std::int64_t>(std::time(nullptr)));
  check_new_entry(name, new_entry(name, add, created, placeholder_hash));
  auto refuse_existing = [&](const users_file& u) {
    if (u.table->find(name))
      throw failure("user " + ringrelay::config::json_quote(name) + " already exists in " +
                    p.users +
                    ": choose another name, or change it with \"ringrelayctl user passwd|enable|"
                    "disable\"");
  };
  refuse_existing(load_users(p.users));  // before asking for a password
  entry e = new_entry(name, add, created, hashed_password(name));
  edit_users(p.users, [&](users_file& u) {
    refuse_existing(u);
    u.entries.push_back(std::move(e));
    return true;
  });
  const accounts::activation activation(p.activation_delay);
  std::printf("user %s added to %s%s; it may send from %s\n",
              ringrelay::config::json_quote(name).c_str(), p.users.c_str(),
              add.disabled ? " (disabled)" : "",
              accounts::format_rfc3339(created + activation.delay()).c_str());
  reload_after_change(p);
}

void user_passwd(const paths& p, const std::string& name) {
  load_users(p.users).must_find(name);  // before asking for a password
  std::string hash = hashed_password(name);
  edit_users(p.users, [&](users_file& u) {
    u.must_find(name);
    u.entries[u.index_of(name)].set("password", hash);
    return true;
  });
  std::printf("password of %s changed in %s\n", ringrelay::config::json_quote(name).c_str(),
              p.users.c_str());
  reload_after_change(p);
}

void user_set_enabled(const paths& p, const std::string& name, bool enabled) {
  const char* state = enabled ? "enabled" : "disabled";
  bool changed = edit_users(p.users, [&](users_file& u) {
    if (u.must_find(name).enabled == enabled) return false;
    u.entries[u.index_of(name)].set("enabled", enabled ? "true" : "false");
    return true;
  });
  if (!changed) {
    std::printf("user %s is already %s; nothing to change\n",
                ringrelay::config::json_quote(name).c_str(), state);
    return;
  }
  std::printf("user %s %s in %s\n", ringrelay::config::json_quote(name).c_str(), state,
              p.users.c_str());
  reload_after_change(p);
}

std::string domain_list(const accounts::account& a, const char* separator, const char* any) {
  if (a.sender_domains.empty()) return any;
  std::string out;
  for (const auto& d : a.sender_domains) out += (out.empty() ? "" : separator) + d;
  return out;
}

void user_list(const paths& p) {
  users_file u = load_users(p.users);
  std::vector<std::vector<std::string>> rows = {
      {"USER", "ENABLED", "CREATED_AT", "DAILY_QUOTA", "BLOCKS", "SENDER_DOMAINS"}};
  for (const auto& a : u.table->all())
    rows.push_back({a.username, a.enabled ? "yes" : "no", accounts::format_rfc3339(a.created_at),
                    std::to_string(a.daily_quota), std::to_string(a.blocks),
                    domain_list(a, ",", "*")});
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i)
      line += i + 1 < row.size() ? row[i] + std::string(width[i] - row[i].size() + 2, ' ') : row[i];
    std::puts(line.c_str());
  }
}

// "pbkdf2-sha256, 100000 iterations" from the encoded hash (which the
// loader has checked).
std::string hash_summary(std::string_view encoded) {
  auto first = encoded.find('$');
  auto second = encoded.find('$', first + 1);
  return std::string(encoded.substr(0, first)) + ", " +
         std::string(encoded.substr(first + 1, second - first - 1)) + " iterations";
}

void user_show(const paths& p, const std::string& name) {
  users_file u = load_users(p.users);
  const auto& a = u.must_find(name);
  const accounts::activation activation(p.activation_delay);
  std::printf(
      "username: %s\nenabled: %s\ncreated_at: %s\nactive_from: %s\ndaily_quota: %llu\n"
      "blocks: %lld\nsender_domains: %s\npassword: %s\n",
      a.username.c_str(), a.enabled ? "yes" : "no", accounts::format_rfc3339(a.created_at).c_str(),
      accounts::format_rfc3339(activation.active_at(a)).c_str(),
      static_cast<unsigned long long>(a.daily_quota), static_cast<long long>(a.blocks),
      domain_list(a, ", ", "any").c_str(), hash_summary(a.password).c_str());
}

// Sends `request` to the running server; no server, or a refusal, is a
// `failure` that names `what` (and ends with `unanswered` when no server
// answers).
server_answer ask_running_server(const paths& p, const std::string& what,
                                 const std::string& request, const std::string& unanswered = "") {
  server_answer a = ask_server(p.socket, request);
  if (!a.reached)
    throw failure("no server answers on " + p.socket +
                  ": is ringrelay running? (the socket is the config's control.socket, or "
                  "--socket PATH)" +
                  unanswered);
  if (!a.ok) throw failure("the server refused " + what + ": " + a.error);
  return a;
}

void server_command(const paths& p, const std::string& command) {
  server_answer a = ask_running_server(
      p, command, "{\"command\":" + ringrelay::config::json_quote(command) + "}\n");
  std::printf("%s: ok%s%s\n", command.c_str(), a.fields.empty() ? "" : " ", a.extras().c_str());
}

void show_usage(const paths& p, const std::string& name) {
  server_answer a = ask_running_server(
      p, "usage", "{\"command\":\"usage\",\"user\":" + ringrelay::config::json_quote(name) + "}\n");
  for (const auto& [key, value] : a.fields) std::printf("%s: %s\n", key.c_str(), value.c_str());
}

void blocks_add(const paths& p, const std::string& name, std::uint64_t n) {
  server_answer a = ask_running_server(
      p, "blocks add",
      "{\"command\":\"blocks_add\",\"user\":" + ringrelay::config::json_quote(name) +
          ",\"n\":" + std::to_string(n) + "}\n",
      "; no blocks were added (to give blocks while the server is stopped, raise the account's "
      "\"blocks\" in " +
          p.users + ")");
  std::printf(
      "added %llu relay blocks to %s; its balance is now %s (%s added by operators in all)\n",
      static_cast<unsigned long long>(n), ringrelay::config::json_quote(name).c_str(),
      a.field("blocks").c_str(), a.field("blocks_added").c_str());
}

// Checks the operand count and that user-add options go with user add.
void expect_words(const options& opt, std::size_t count, const char* synopsis) {
  if (opt.words.size() != count) throw usage_error(std::string("usage: ringrelayctl ") + synopsis);
  bool is_add = opt.words.size() >= 2 && opt.words[0] == "user" && opt.words[1] == "add";
  if (opt.add.any && !is_add)
    throw usage_error(
        "--daily-quota, --blocks, --sender-domain, --created-at and --disabled go with "
        "\"user add\" only");
}

// check-domain DOMAIN: the findings' exit status, 0 or 1.
int check_domain_command(const options& opt) {
  expect_words(opt, 2, "check-domain DOMAIN [--spf-include NAME]");
  ctl::check_domain_options o;
  o.domain = opt.words[1];
  std::transform(o.domain.begin(), o.domain.end(), o.domain.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (o.domain.ends_with('.')) o.domain.pop_back();
  if (const auto at = o.domain.rfind('@'); at != std::string::npos)
    throw usage_error("check-domain takes a domain, not an address: ringrelayctl check-domain " +
                      o.domain.substr(at + 1));
  if (!util::valid_hostname(o.domain))
    throw usage_error("DOMAIN " + ringrelay::config::json_quote(opt.words[1]) +
                      ": not a domain name (labels of letters, digits and hyphens, separated by "
                      "dots)");
  config::server_config cfg;
  if (std::filesystem::exists(opt.config)) {
    try {
      cfg = config::load(opt.config, {});
    } catch (const config::config_error& e) {
      throw failure(std::string(e.what()) + "\n  fix the configuration, or give another --config");
    }
  }
  // The include name: the command line's, else sender_verify.spf_include.
  if (opt.spf_include) {
    const auto parsed = dns::parse_spf("v=spf1 include:" + *opt.spf_include);
    if (parsed.error)
      throw usage_error("--spf-include " + ringrelay::config::json_quote(*opt.spf_include) + ": " +
                        parsed.error->message);
    o.spf_include = dns::spf_name(*opt.spf_include);
  } else if (!cfg.sender_verify.spf_include.empty()) {
    o.spf_include = dns::spf_name(cfg.sender_verify.spf_include);
  }
  o.resolver.servers = cfg.dns.servers;
  o.resolver.timeout_ms = cfg.dns.timeout * 1000;
  o.allow_reserved = cfg.sender_verify.allow_reserved;
  o.sender_verify_enabled = cfg.sender_verify.enabled;
  return ctl::check_domain(o);
}

void run(const options& opt) {
  const auto& w = opt.words;
  if (w.empty()) throw usage_error("no command given");
  if (opt.spf_include) throw usage_error("--spf-include goes with \"check-domain\" only");
  if (w[0] == "reload" || w[0] == "ping") {
    expect_words(opt, 1, w[0] == "reload" ? "reload" : "ping");
    return server_command(resolve_paths(opt), w[0]);
  }
  if (w[0] == "usage") {
    expect_words(opt, 2, "usage USER");
    return show_usage(resolve_paths(opt), w[1]);
  }
  if (w[0] == "blocks") {
    if (w.size() < 2 || w[1] != "add")
      throw usage_error(w.size() < 2 ? "\"blocks\" needs a subcommand: add"
                                     : "unknown blocks subcommand " +
                                           ringrelay::config::json_quote(w[1]) + " (there is add)");
    expect_words(opt, 4, "blocks add USER N");
    const std::uint64_t n = parse_count("N", w[3], 1);
    return blocks_add(resolve_paths(opt), w[2], n);
  }
  if (w[0] != "user") throw usage_error("unknown command " + ringrelay::config::json_quote(w[0]));
  if (w.size() < 2)
    throw usage_error("\"user\" needs a subcommand: add, passwd, disable, enable, list or show");
  const std::string& sub = w[1];
  if (sub == "list") {
    expect_words(opt, 2, "user list");
    return user_list(resolve_paths(opt));
  }
  const char* synopses[][2] = {{"add", "user add USER [--daily-quota N] [--blocks N] ..."},
                               {"passwd", "user passwd USER"},
                               {"disable", "user disable USER"},
                               {"enable", "user enable USER"},
                               {"show", "user show USER"}};
  auto it = std::find_if(std::begin(synopses), std::end(synopses),
                         [&](const auto& s) { return sub == s[0]; });
  if (it == std::end(synopses))
    throw usage_error("unknown user subcommand " + ringrelay::config::json_quote(sub));
  expect_words(opt, 3, (*it)[1]);
  const std::string& name = w[2];
  paths p = resolve_paths(opt);
  if (sub == "add") return user_add(p, name, opt.add);
  if (sub == "passwd") return user_passwd(p, name);
  if (sub == "show") return user_show(p, name);
  user_set_enabled(p, name, sub == "enable");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    options opt = parse_args(argc, argv);
    if (opt.help || (!opt.words.empty() && opt.words[0] == "help")) {
      std::fputs(usage_text, stdout);
      return 0;
    }
    if (!opt.words.empty() && opt.words[0] == "check-domain") return check_domain_command(opt);
    run(opt);
    return 0;
  } catch (const usage_error& e) {
    std::fprintf(stderr, "ringrelayctl: %s (see ringrelayctl --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringrelayctl: %s\n", e.what());
    return 1;
  }
}
