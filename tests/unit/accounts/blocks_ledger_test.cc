// The blocks ledger (blocks-added.json): what load makes of a file, that
// add writes the new totals before it returns and survives a reload, that a
// failed write changes neither the file nor the totals, and that adds from
// many threads lose nothing.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <ringrelay/accounts/blocks_ledger.hh>
#include <ringrelay/config/config.hh>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace ringrelay::accounts {
namespace {

using totals = std::vector<std::pair<std::string, std::int64_t>>;

class ledger_file : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "rr-ledger-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    _dir = pattern;
    _path = (_dir / blocks_ledger_file).string();
  }
  void TearDown() override { std::filesystem::remove_all(_dir); }

  void write(const std::string& text) const {
    std::ofstream(_path, std::ios::binary | std::ios::trunc) << text;
  }
  std::string read() const {
    std::ifstream in(_path, std::ios::binary);
    std::stringstream out;
    out << in.rdbuf();
    return out.str();
  }
  // The files in the directory besides the ledger (temporary files left).
  std::vector<std::string> others() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(_dir))
      if (e.path().filename() != blocks_ledger_file) out.push_back(e.path().filename().string());
    return out;
  }

  std::filesystem::path _dir;
  std::string _path;
};

TEST_F(ledger_file, a_missing_file_is_empty_and_add_creates_it) {
  auto ledger = blocks_ledger::load(_path);
  EXPECT_EQ(ledger->all(), totals{});
  EXPECT_EQ(ledger->added("acme"), 0);
  EXPECT_FALSE(std::filesystem::exists(_path)) << "load writes nothing";
  EXPECT_EQ(ledger->add("acme", 500), 500);
  EXPECT_EQ(read(), "{\n  \"version\": 1,\n  \"added\": {\n    \"acme\": 500\n  }\n}\n");
  EXPECT_EQ(std::filesystem::status(_path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(others(), std::vector<std::string>{}) << "no temporary file left";
}

TEST_F(ledger_file, totals_add_up_and_survive_a_reload) {
  auto ledger = blocks_ledger::load(_path);
  EXPECT_EQ(ledger->add("zed", 1), 1);
  EXPECT_EQ(ledger->add("acme", 500), 500);
  EXPECT_EQ(ledger->add("acme", 20), 520);
  EXPECT_EQ(ledger->add("bob@corp.example", max_blocks_added), max_blocks_added);
  EXPECT_EQ(ledger->add("\"quoted\" \xC3\xA9", 3), 3);
  const totals expected = {{"\"quoted\" \xC3\xA9", 3},
                           {"acme", 520},
                           {"bob@corp.example", max_blocks_added},
                           {"zed", 1}};
  EXPECT_EQ(ledger->all(), expected) << "sorted by username";
  auto again = blocks_ledger::load(_path);
  EXPECT_EQ(again->all(), expected);
  EXPECT_EQ(again->added("acme"), 520);
  EXPECT_EQ(again->add("acme", 1), 521) << "a reloaded ledger goes on from its totals";
}

TEST_F(ledger_file, loads_what_a_person_may_write) {
  const std::pair<const char*, totals> rows[] = {
      {R"({"version": 1, "added": {}})", {}},
      {R"({"added": {"b": 2, "a": 0}, "version": 1})", {{"a", 0}, {"b", 2}}},
      {" \n{\"version\":1,\"added\":{\"acme\":9223372036854775807}}\n\n",
       {{"acme", std::numeric_limits<std::int64_t>::max()}}},
  };
  for (const auto& [text, expected] : rows) {
    write(text);
    EXPECT_EQ(blocks_ledger::load(_path)->all(), expected) << text;
  }
}

TEST_F(ledger_file, refuses_bad_files_naming_the_file_and_the_problem) {
  const std::pair<const char*, const char*> rows[] = {
      {"", "invalid JSON"},
      {"{", "invalid JSON"},
      {R"({"version": 1, "added": {}} {})", "invalid JSON"},
      {"[]", "expected an object at the top level"},
      {R"({"added": {}})", "\"version\" is required"},
      {R"({"version": 1})", "\"added\" is required"},
      {R"({"version": 2, "added": {}})", "version: expected 1, got 2"},
      {R"({"version": "1", "added": {}})", "version: expected 1, got \"1\""},
      {R"({"version": 1, "version": 1, "added": {}})", "key \"version\" repeated"},
      {R"({"version": 1, "added": {}, "extra": 1})", "unknown key \"extra\""},
      {R"({"version": 1, "added": []})", "added: expected an object of usernames"},
      {R"({"version": 1, "added": {"acme": -1}})",
       "added: user \"acme\": expected an integer from 0 to 9223372036854775807, got -1"},
      {R"({"version": 1, "added": {"acme": 1.5}})", "got 1.5"},
      {R"({"version": 1, "added": {"acme": "5"}})", "got \"5\""},
      {R"({"version": 1, "added": {"acme": 9223372036854775808}})", "got 9223372036854775808"},
      {R"({"version": 1, "added": {"acme": 1, "acme": 2}})", "added: user \"acme\" repeated"},
      {R"({"version": 1, "added": {"": 1}})", "added: an empty username"},
  };
  for (const auto& [text, expected] : rows) {
    write(text);
    try {
      blocks_ledger::load(_path);
      ADD_FAILURE() << "loaded: " << text;
    } catch (const config::config_error& e) {
      const std::string message = e.what();
      EXPECT_TRUE(message.starts_with(_path + ": ")) << message;
      EXPECT_NE(message.find(expected), std::string::npos) << text << "\n  " << message;
      EXPECT_NE(message.find("docs/accounts.md"), std::string::npos) << message;
    }
  }
  std::filesystem::remove(_path);
  std::filesystem::create_directory(_path);
  EXPECT_THROW(blocks_ledger::load(_path), config::config_error) << "a directory";
}

TEST_F(ledger_file, refuses_bad_additions_and_changes_nothing) {
  auto ledger = blocks_ledger::load(_path);
  ledger->add("acme", 5);
  const std::string before = read();
  const std::pair<std::string, std::int64_t> rows[] = {
      {"acme", 0}, {"acme", -1}, {"acme", max_blocks_added + 1}, {"", 1}};
  for (const auto& [user, n] : rows)
    EXPECT_THROW(ledger->add(user, n), std::invalid_argument) << user << " " << n;
  write(R"({"version": 1, "added": {"acme": 9223372036854775000}})");
  auto full = blocks_ledger::load(_path);
  const std::string full_text = read();
  try {
    full->add("acme", 1000);
    ADD_FAILURE() << "passed INT64_MAX";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("would pass"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read(), full_text);
  EXPECT_EQ(full->added("acme"), 9223372036854775000);
  EXPECT_EQ(ledger->added("acme"), 5);
  EXPECT_NE(before, full_text);
}

// Writes beyond `bytes` fail with EFBIG while it lives (root ignores file
// modes, not this limit).
class file_size_limit {
 public:
  explicit file_size_limit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &_saved);
    _handler = signal(SIGXFSZ, SIG_IGN);
    rlimit limit = _saved;
    limit.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~file_size_limit() {
    setrlimit(RLIMIT_FSIZE, &_saved);
    signal(SIGXFSZ, _handler);
  }
  file_size_limit(const file_size_limit&) = delete;
  file_size_limit& operator=(const file_size_limit&) = delete;

 private:
  rlimit _saved{};
  sighandler_t _handler;
};

TEST_F(ledger_file, a_failed_write_leaves_the_old_file_and_totals) {
  auto ledger = blocks_ledger::load(_path);
  ledger->add("acme", 500);
  const std::string before = read();
  {
    file_size_limit limit(16);
    try {
      ledger->add("acme", 20);
      ADD_FAILURE() << "the write succeeded past the file size limit";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "cannot write " + _path + ": write: File too large");
    }
  }
  EXPECT_EQ(read(), before);
  EXPECT_EQ(ledger->added("acme"), 500) << "memory changes only after the file";
  EXPECT_EQ(others(), std::vector<std::string>{}) << "the temporary file is removed";
  EXPECT_EQ(blocks_ledger::load(_path)->added("acme"), 500);
  EXPECT_EQ(ledger->add("acme", 20), 520) << "the next add works again";

  // The directory is gone: no temporary file can be made.
  std::filesystem::remove_all(_dir);
  try {
    ledger->add("acme", 1);
    ADD_FAILURE() << "wrote into a missing directory";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot write " + _path +
                                         ": cannot create a temporary file in " + _dir.string() +
                                         ": No such file or directory");
  }
  EXPECT_EQ(ledger->added("acme"), 520);
}

TEST_F(ledger_file, adds_from_many_threads_lose_nothing) {
  auto ledger = blocks_ledger::load(_path);
  constexpr int threads = 4;
  constexpr int adds = 25;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < adds; ++i) {
        ledger->add("shared", 1);
        ledger->add("user" + std::to_string(t), 2);
      }
    });
  for (auto& t : pool) t.join();
  auto again = blocks_ledger::load(_path);
  EXPECT_EQ(again->added("shared"), threads * adds);
  for (int t = 0; t < threads; ++t) EXPECT_EQ(again->added("user" + std::to_string(t)), 2 * adds);
  EXPECT_EQ(again->all(), ledger->all());
}

}  // namespace
}  // namespace ringrelay::accounts
