// The accounts module's specification, as tables: users.json texts and what
// the loader must make of them, counter slots across reloads, activation
// times and sender domains.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ringrelay/accounts/counters.hh>
#include <ringrelay/accounts/policy.hh>
#include <ringrelay/accounts/table.hh>
#include <ringrelay/accounts/timestamp.hh>
#include <ringrelay/config/config.hh>
#include <string>
#include <vector>

namespace ringrelay::accounts {
namespace {

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::int64_t>::is_always_lock_free);
static_assert(alignof(counter_slot) == 64 && sizeof(counter_slot) == 64);

const std::string source = "conf/users.json";

// Stands in for auth::password_hash_problem, which sits above this module.
std::string fake_check(std::string_view encoded) {
  return encoded.starts_with("pbkdf2-sha256$") ? "" : "not a pbkdf2-sha256 hash";
}

// One account object with `extra` members appended (or replacing nothing:
// tests that need a key missing write the object themselves).
std::string user(const std::string& name, const std::string& extra = "") {
  return R"({"username": ")" + name +
         R"(", "password": "pbkdf2-sha256$1000$c2FsdHNhbHQ=$aGFzaA==", )"
         R"("created_at": "2026-11-28T12:00:00Z", "daily_quota": 100)" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

std::string users(const std::vector<std::string>& objects) {
  std::string out = R"({"users": [)";
  for (std::size_t i = 0; i < objects.size(); ++i) out += (i ? ", " : "") + objects[i];
  return out + "]}";
}

std::shared_ptr<const table> parse(const std::string& json, counter_store& store) {
  return from_json(json, source, store, fake_check);
}

std::string error_of(const std::string& json) {
  counter_store store;
  try {
    parse(json, store);
  } catch (const config::config_error& e) {
    EXPECT_EQ(store.size(), 0u) << "a refused file must not create counter slots";
    return e.what();
  }
  ADD_FAILURE() << "loaded: " << json;
  return "";
}

TEST(accounts_table, reads_every_field) {
  counter_store store;
  auto t = parse(users({user("acme", R"("enabled": false, "blocks": 7, )"
                                     R"("sender_domains": ["Acme.Example", "mail.acme.example."])"),
                        user("Acme")}),
                 store);
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ(t->source(), source);
  const account* a = t->find("acme");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->username, "acme");
  EXPECT_EQ(a->password, "pbkdf2-sha256$1000$c2FsdHNhbHQ=$aGFzaA==");
  EXPECT_EQ(a->created_at, 1795867200);  // 2026-11-28T12:00:00Z
  EXPECT_FALSE(a->enabled);
  EXPECT_EQ(a->daily_quota, 100u);
  EXPECT_EQ(a->blocks, 7);
  EXPECT_EQ(a->sender_domains, (std::vector<std::string>{"acme.example", "mail.acme.example"}));
  ASSERT_NE(a->counters, nullptr);
  EXPECT_EQ(a->counters->blocks.load(), 7);

  const account* b = t->find("Acme");  // usernames are case-sensitive
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_TRUE(b->enabled);
  EXPECT_EQ(b->blocks, 0);
  EXPECT_TRUE(b->sender_domains.empty());
  EXPECT_EQ(t->find("ACME"), nullptr);
  EXPECT_EQ(t->find(""), nullptr);
  EXPECT_EQ(t->all()[0].username, "acme");  // file order
  EXPECT_EQ(t->all()[1].username, "Acme");
}

TEST(accounts_table, accepts_edge_values) {
  counter_store store;
  auto t = parse(
      "\xEF\xBB\xBF" +
          users({user("a@b.example", R"("blocks": 1099511627775)"),
                 R"({"username": "x", "password": "pbkdf2-sha256$1000$c2FsdHNhbHQ=$aGFzaA==", )"
                 R"("created_at": "1970-01-01T00:00:00Z", "daily_quota": 0})"}),
      store);
  EXPECT_NE(t->find("a@b.example"), nullptr);  // "@" is allowed, not required
  EXPECT_EQ(t->find("a@b.example")->blocks, 1099511627775);
  EXPECT_EQ(t->find("x")->daily_quota, 0u);
  EXPECT_EQ(t->find("x")->created_at, 0);
  EXPECT_EQ(parse(R"({"users": []})", store)->size(), 0u);
}

struct bad_file {
  const char* name;
  std::string json;
  std::string message;  // the whole config_error text
};

TEST(accounts_table, refuses_bad_files_naming_file_and_key) {
  const std::string required = "(see docs/accounts.md)";
  const bad_file cases[] = {
      {"not JSON", "{",
       "conf/users.json: invalid JSON (JSON document ended early in the middle of an object or "
       "array.)"},
      {"bad atom", R"({"users": [{"username": "a", "enabled": tru}]})",
       "conf/users.json: users.0.enabled: expected true or false, got tru"},
      {"bad string", "{\"users\": [{\"username\": \"a\\q\"}]}",
       "conf/users.json: line 1, column 30: invalid JSON (Problem while parsing a string)"},
      {"not an object", "[]",
       "conf/users.json: expected an object at the top level: {\"users\": [...]}"},
      {"unknown top key", R"({"users": [], "user": []})",
       "conf/users.json: unknown key \"user\" (the top level has users)"},
      {"no users", "{}",
       "conf/users.json: users: required: an array of accounts ({\"users\": []} for none)"},
      {"users repeated", R"({"users": [], "users": []})", "conf/users.json: users: key repeated"},
      {"users not array", R"({"users": {}})",
       "conf/users.json: users: expected an array of accounts, got an object"},
      {"account not object", R"({"users": ["acme"]})",
       "conf/users.json: users.0: expected an object (one account), got \"acme\""},
      {"unknown key", users({user("acme", R"("quota": 5)")}),
       "conf/users.json: unknown key \"users.0.quota\" (an account has username, password, "
       "created_at, enabled, daily_quota, blocks, sender_domains)"},
      {"repeated key", users({user("acme", R"("daily_quota": 5)")}),
       "conf/users.json: users.0.daily_quota: key repeated"},
      {"username type", users({user("acme"), R"({"username": 5})"}),
       "conf/users.json: users.1.username: expected a string, got 5"},
      {"username empty", users({user("")}),
       "conf/users.json: users.0.username: expected a username of 1 to 255 octets without "
       "spaces or control characters, got \"\""},
      {"username space", users({user("ac me")}),
       "conf/users.json: users.0.username: expected a username of 1 to 255 octets without "
       "spaces or control characters, got \"ac me\""},
      {"username control", users({user("ac\\u0001me")}),
       "conf/users.json: users.0.username: expected a username of 1 to 255 octets without "
       "spaces or control characters, got \"ac\\u0001me\""},
      {"username too long", users({user(std::string(256, 'u'))}),
       "conf/users.json: users.0.username: expected a username of 1 to 255 octets without "
       "spaces or control characters, got \"" +
           std::string(59, 'u') + "..."},
      {"password repeated", users({user("acme", R"("password": null)")}),
       "conf/users.json: users.0.password: key repeated"},
      {"password refused",
       users(
           {R"({"password": "md5$x", "username": "acme", "created_at": "2026-11-28T12:00:00Z", "daily_quota": 1})"}),
       "conf/users.json: users.0.password: not a pbkdf2-sha256 hash (user \"acme\")"},
      {"password not string", users({R"({"password": true, "username": "acme"})"}),
       "conf/users.json: users.0.password: expected a string, got true"},
      {"created_at format", users({R"({"username": "acme", "created_at": "2026-11-28 12:00"})"}),
       "conf/users.json: users.0.created_at: expected an RFC 3339 UTC date-time such as "
       "\"2026-11-28T12:00:00Z\", got \"2026-11-28 12:00\""},
      {"created_at impossible date",
       users({R"({"username": "acme", "created_at": "2026-02-29T12:00:00Z"})"}),
       "conf/users.json: users.0.created_at: expected an RFC 3339 UTC date-time such as "
       "\"2026-11-28T12:00:00Z\", got \"2026-02-29T12:00:00Z\""},
      {"created_at number", users({R"({"created_at": 1795867200})"}),
       "conf/users.json: users.0.created_at: expected a string, got 1795867200"},
      {"enabled type", users({user("acme", R"("enabled": "yes")")}),
       "conf/users.json: users.0.enabled: expected true or false, got \"yes\""},
      {"quota negative", users({R"({"daily_quota": -1})"}),
       "conf/users.json: users.0.daily_quota: expected an integer from 0 to 1099511627775, got -1"},
      {"quota fraction", users({R"({"daily_quota": 1.5})"}),
       "conf/users.json: users.0.daily_quota: expected an integer from 0 to 1099511627775, got "
       "1.5"},
      {"quota too big", users({R"({"daily_quota": 1099511627776})"}),
       "conf/users.json: users.0.daily_quota: expected an integer from 0 to 1099511627775, got "
       "1099511627776"},
      {"quota beyond 64 bits", users({R"({"daily_quota": 99999999999999999999})"}),
       "conf/users.json: users.0.daily_quota: expected an integer from 0 to 1099511627775, got "
       "99999999999999999999"},
      {"quota string", users({R"({"daily_quota": "10k"})"}),
       "conf/users.json: users.0.daily_quota: expected an integer from 0 to 1099511627775, got "
       "\"10k\""},
      {"blocks negative", users({user("acme", R"("blocks": -5)")}),
       "conf/users.json: users.0.blocks: expected an integer from 0 to 1099511627775, got -5"},
      {"domains type", users({user("acme", R"("sender_domains": "acme.example")")}),
       "conf/users.json: users.0.sender_domains: expected an array of domain names, got "
       "\"acme.example\""},
      {"domains empty", users({user("acme", R"("sender_domains": [])")}),
       "conf/users.json: users.0.sender_domains: an empty list allows no sender domain: leave "
       "the key out to allow any"},
      {"domain invalid",
       users({user("acme", R"("sender_domains": ["ok.example", "-bad.example"])")}),
       "conf/users.json: users.0.sender_domains.1: expected a domain name such as "
       "\"example.com\", got \"-bad.example\""},
      {"domain not string", users({user("acme", R"("sender_domains": [7])")}),
       "conf/users.json: users.0.sender_domains.0: expected a string, got 7"},
      {"no username",
       users(
           {R"({"password": "pbkdf2-sha256$x", "created_at": "2026-11-28T12:00:00Z", "daily_quota": 1})"}),
       "conf/users.json: users.0: \"username\" is required " + required},
      {"no password",
       users({R"({"username": "a", "created_at": "2026-11-28T12:00:00Z", "daily_quota": 1})"}),
       "conf/users.json: users.0: \"password\" is required " + required},
      {"no created_at",
       users({R"({"username": "a", "password": "pbkdf2-sha256$x", "daily_quota": 1})"}),
       "conf/users.json: users.0: \"created_at\" is required " + required},
      {"no quota",
       users(
           {R"({"username": "a", "password": "pbkdf2-sha256$x", "created_at": "2026-11-28T12:00:00Z"})"}),
       "conf/users.json: users.0: \"daily_quota\" is required " + required},
      {"duplicate user", users({user("acme"), user("bob"), user("acme")}),
       "conf/users.json: users.2.username: duplicate user \"acme\" (also users.0)"},
      {"trailing content", R"({"users": []} {})",
       "conf/users.json: line 1, column 15: invalid JSON (Unexpected trailing content in the JSON "
       "input.)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(error_of(c.json), c.message);
  }
}

class accounts_file : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "rr-accounts-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    _dir = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(_dir); }

  std::string write(const std::string& text) {
    auto path = (_dir / "users.json").string();
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
    return path;
  }

  std::filesystem::path _dir;
};

TEST_F(accounts_file, loads_a_file_and_names_it_in_errors) {
  counter_store store;
  auto path = write(users({user("acme")}));
  EXPECT_NE(load(path, store, fake_check)->find("acme"), nullptr);
  write(users({user("acme", R"("enabled": 1)")}));
  try {
    load(path, store, fake_check);
    FAIL() << "loaded";
  } catch (const config::config_error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": users.0.enabled: expected true or false, got 1");
  }
  const auto missing = (_dir / "none.json").string();
  try {
    load(missing, store, fake_check);
    FAIL() << "loaded";
  } catch (const config::config_error& e) {
    EXPECT_EQ(std::string(e.what()), missing + ": cannot open: No such file or directory");
  }
}

TEST(accounts_counters, reload_keeps_slots_by_username) {
  counter_store store;
  auto first = parse(users({user("alice", R"("blocks": 5)"), user("bob")}), store);
  counter_slot* alice = first->find("alice")->counters;
  counter_slot* bob = first->find("bob")->counters;
  EXPECT_NE(alice, bob);
  alice->usage_word.store(pack_usage(20000, 42));
  alice->blocks.fetch_sub(2);

  // A reload: order changed, carol added, alice's file balance changed.
  auto second =
      parse(users({user("bob"), user("carol", R"("blocks": 9)"), user("alice", R"("blocks": 99)")}),
            store);
  EXPECT_EQ(second->find("alice")->counters, alice);
  EXPECT_EQ(second->find("bob")->counters, bob);
  EXPECT_EQ(alice->usage(20000), 42u);
  EXPECT_EQ(alice->blocks.load(), 97) << "the grant rose by 94: 5 + 94 - 2 used";
  EXPECT_EQ(second->find("alice")->blocks, 99) << "the table shows the file's value";
  counter_slot* carol = second->find("carol")->counters;
  EXPECT_EQ(carol->blocks.load(), 9);
  EXPECT_EQ(store.size(), 3u);

  // Bob leaves and comes back: his slot waited for him.
  auto third = parse(users({user("alice")}), store);
  EXPECT_EQ(third->find("bob"), nullptr);
  auto fourth = parse(users({user("bob")}), store);
  EXPECT_EQ(fourth->find("bob")->counters, bob);
  EXPECT_EQ(store.size(), 3u);

  // A refused reload takes no slot.
  EXPECT_THROW(parse(users({user("dave"), user("dave")}), store), config::config_error);
  EXPECT_EQ(store.size(), 3u);
  // The earlier tables are untouched.
  EXPECT_EQ(first->find("alice")->counters, alice);
}

TEST(accounts_counters, a_changed_grant_moves_the_balance_by_the_change) {
  // Each row is one load of users.json with acme's "blocks" (nullopt: acme
  // is not in the file), what happens between loads, and the balance after.
  struct row {
    const char* what;
    std::optional<std::int64_t> grant;
    std::int64_t used_before;   // blocks messages used since the last load
    std::int64_t added_before;  // blocks operators added since the last load
    std::int64_t balance;
  };
  const row rows[] = {
      {"first load: the grant", 10, 0, 0, 10},
      {"same grant, 3 used: nothing changes", 10, 3, 0, 7},
      {"grant 10 -> 15 adds 5", 15, 0, 0, 12},
      {"operators added 100, grant unchanged", 15, 0, 100, 112},
      {"grant 15 -> 5 takes 10", 5, 0, 0, 102},
      {"acme leaves the file: the slot waits", std::nullopt, 2, 0, 100},
      {"acme comes back with grant 5: no change", 5, 0, 0, 100},
      {"grant 5 -> 0 after using 100: below zero", 0, 100, 0, -5},
      {"grant 0 -> 20", 20, 0, 0, 15},
  };
  counter_store store;
  counter_slot* slot = nullptr;
  for (const auto& r : rows) {
    if (slot) {
      slot->blocks.fetch_sub(r.used_before);
      add_blocks(*slot, r.added_before);
    }
    auto t = parse(
        users({r.grant ? user("acme", R"("blocks": )" + std::to_string(*r.grant)) : user("bob")}),
        store);
    if (r.grant) slot = t->find("acme")->counters;
    EXPECT_EQ(slot->blocks.load(), r.balance) << r.what;
  }
  EXPECT_EQ(store.size(), 2u);
}

TEST(accounts_counters, slot_for_applies_the_grant_change_once) {
  counter_store store;
  counter_slot& slot = store.slot_for("acme", 7);
  EXPECT_EQ(slot.blocks.load(), 7);
  EXPECT_EQ(&store.slot_for("acme", 7), &slot);
  EXPECT_EQ(&store.slot_for("acme", 7), &slot);
  EXPECT_EQ(slot.blocks.load(), 7) << "asking again with the same grant changes nothing";
  store.slot_for("acme", 9);
  store.slot_for("acme", 9);
  EXPECT_EQ(slot.blocks.load(), 9);
  EXPECT_EQ(store.size(), 1u);
}

TEST(accounts_counters, slots_are_cache_line_aligned) {
  counter_store store;
  std::vector<std::string> objects;
  for (int i = 0; i < 1000; ++i) objects.push_back(user("u" + std::to_string(i)));
  auto t = parse(users(objects), store);
  for (const auto& a : t->all()) {
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.counters) % 64, 0u) << a.username;
    EXPECT_TRUE(a.counters->usage_word.is_lock_free());
  }
  EXPECT_EQ(store.size(), 1000u);
}

TEST(accounts_counters, usage_is_per_day) {
  struct row {
    std::uint64_t word;
    std::uint32_t day;
    std::uint64_t usage;
  };
  const row rows[] = {
      {0, 0, 0},
      {pack_usage(20000, 5), 20000, 5},
      {pack_usage(20000, 5), 20001, 0},  // yesterday's usage is not today's
      {pack_usage(20001, 5), 20000, 0},
      {pack_usage(max_day, max_usage), max_day, max_usage},
  };
  for (const auto& r : rows) {
    counter_slot slot;
    slot.usage_word.store(r.word);
    EXPECT_EQ(slot.usage(r.day), r.usage) << r.word << " day " << r.day;
  }
  EXPECT_EQ(packed_day(pack_usage(123, 456)), 123u);
  EXPECT_EQ(packed_usage(pack_usage(123, 456)), 456u);
}

TEST(accounts_policy, activation_after_the_delay) {
  account a;
  a.created_at = 1795867200;
  struct row {
    std::uint32_t delay;
    std::int64_t now;
    bool active;
  };
  const row rows[] = {
      {900, 1795867200, false},      {900, 1795867200 + 899, false},
      {900, 1795867200 + 900, true}, {900, 1795867200 + 100000, true},
      {0, 1795867200, true},         {0, 1795867199, false},  // created in the future
  };
  for (const auto& r : rows) {
    activation act(r.delay);
    EXPECT_EQ(act.active_at(a), a.created_at + r.delay);
    EXPECT_EQ(act.active(a, r.now), r.active) << "delay " << r.delay << " now " << r.now;
  }
  EXPECT_EQ(format_rfc3339(activation(900).active_at(a)), "2026-11-28T12:15:00Z");
}

TEST(accounts_policy, sender_domains) {
  account any;
  account listed;
  listed.sender_domains = {"acme.example", "mail.acme.example"};
  struct row {
    const account* a;
    std::string_view domain;
    bool allowed;
  };
  const row rows[] = {
      {&any, "anything.example", true},
      {&any, "", true},
      {&listed, "acme.example", true},
      {&listed, "ACME.Example", true},
      {&listed, "acme.example.", true},
      {&listed, "mail.acme.example", true},
      {&listed, "sub.acme.example", false},  // subdomains are listed one by one
      {&listed, "acme.example.org", false},
      {&listed, "cme.example", false},
      {&listed, "", false},
      {&listed, ".", false},
      {&listed, "acme.example..", false},
  };
  for (const auto& r : rows)
    EXPECT_EQ(sender_domain_allowed(*r.a, r.domain), r.allowed) << '"' << r.domain << '"';
}

TEST(accounts_timestamp, parses_rfc3339) {
  struct row {
    std::string_view text;
    std::optional<std::int64_t> seconds;
  };
  const row rows[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"2026-11-28T12:00:00Z", 1795867200},
      {"2026-11-28t12:00:00z", 1795867200},
      {"2026-11-28T12:00:00.123456Z", 1795867200},
      {"2026-11-28T13:00:00+01:00", 1795867200},
      {"2026-11-28T07:30:00-04:30", 1795867200},
      {"2024-02-29T00:00:00Z", 1709164800},
      {"2016-12-31T23:59:60Z", 1483228800},  // a leap second counts as the next second
      {"9999-12-31T23:59:59Z", 253402300799},
      {"2026-11-28T12:00:00", std::nullopt},   // no offset
      {"2026-11-28 12:00:00Z", std::nullopt},  // RFC 3339 allows it; ISO 8601 and we do not
      {"2026-11-28T12:00Z", std::nullopt},
      {"2026-11-28T12:00:00.Z", std::nullopt},
      {"2026-11-28T12:00:00+0100", std::nullopt},
      {"2026-11-28T12:00:00+24:00", std::nullopt},
      {"2026-13-01T00:00:00Z", std::nullopt},
      {"2026-00-01T00:00:00Z", std::nullopt},
      {"2025-02-29T00:00:00Z", std::nullopt},
      {"2026-04-31T00:00:00Z", std::nullopt},
      {"2026-11-28T24:00:00Z", std::nullopt},
      {"2026-11-28T12:60:00Z", std::nullopt},
      {"1969-12-31T23:59:59Z", std::nullopt},
      {"1970-01-01T00:00:00+00:01", std::nullopt},  // before the epoch
      {"+2026-11-28T12:00:00Z", std::nullopt},
      {"2026-11-28T12:00:00ZZ", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& r : rows) EXPECT_EQ(parse_rfc3339(r.text), r.seconds) << r.text;
}

TEST(accounts_timestamp, formats_utc) {
  EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(format_rfc3339(1795867200), "2026-11-28T12:00:00Z");
  EXPECT_EQ(format_rfc3339(1709164800 + 86399), "2024-02-29T23:59:59Z");
  EXPECT_EQ(format_rfc3339(-5), "1970-01-01T00:00:00Z");
  EXPECT_EQ(format_rfc3339(std::int64_t{1} << 50), "9999-12-31T23:59:59Z");
  for (std::int64_t t = 0; t < 253402300799; t += 86399 * 97 + 13)
    ASSERT_EQ(parse_rfc3339(format_rfc3339(t)), t);
}

}  // namespace
}  // namespace ringrelay::accounts
