// accounts/usage_ledger: what a charge adds, the snapshot's round trip and
// its errors, and restoring ledgers into the shared counters.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <ringrelay/accounts/usage_ledger.hh>
#include <ringrelay/config/config.hh>
#include <ringrelay/util/file.hh>
#include <string>
#include <thread>
#include <vector>

namespace ringrelay::accounts {
namespace {

namespace fs = std::filesystem;

TEST(usage_ledger, charges_add_up_per_day_and_blocks_never_reset) {
  usage_ledger l;
  l.add("acme", 100, 3, 0, 7);
  l.add("acme", 100, 2, 1, 9);
  EXPECT_EQ(l.accounts().at("acme"), (account_usage{100, 5, 1}));
  // A newer day starts the quota over; blocks keep counting.
  l.add("acme", 101, 4, 2, 12);
  EXPECT_EQ(l.accounts().at("acme"), (account_usage{101, 4, 3}));
  // A charge to an older day (a message reserved before midnight) only
  // adds its blocks: the old day's quota no longer limits anything.
  l.add("acme", 100, 6, 1, 13);
  EXPECT_EQ(l.accounts().at("acme"), (account_usage{101, 4, 4}));
  l.add("other", 101, 1, 0, 14);
  EXPECT_EQ(l.accounts().size(), 2u);
  EXPECT_EQ(l.sequence(), 14u);
}

TEST(usage_ledger, the_snapshot_round_trips) {
  usage_ledger l;
  l.add("acme", 20425, 12, 3, 1234);
  l.add("name \"with\" quotes\\", 20424, 1, 0, 1235);
  l.add(std::string(255, 'x'), 20425, 1'099'511'627'775ull, 0, 1236);
  usage_ledger back = usage_ledger::decode(l.encode(1), "test");
  EXPECT_EQ(back, l);
  EXPECT_EQ(usage_ledger::decode(usage_ledger{}.encode(0), "test"), usage_ledger{});
}

TEST(usage_ledger, a_damaged_snapshot_is_an_error_naming_the_file) {
  const char* bad[] = {
      "",
      "{",
      "[]",
      R"({"version": 2, "sequence": 1, "accounts": {}})",
      R"({"version": 1, "accounts": {}})",
      R"({"version": 1, "sequence": -1, "accounts": {}})",
      R"({"version": 1, "sequence": 1})",
      R"({"version": 1, "sequence": 1, "accounts": {"a": 5}})",
      R"({"version": 1, "sequence": 1, "accounts": {"a": {"day": 1, "quota": 1}}})",
      R"({"version": 1, "sequence": 1, "accounts": {"a": {"day": 99999999, "quota": 1, "blocks_used": 0}}})",
  };
  for (const char* text : bad) {
    try {
      usage_ledger::decode(text, "spool/shard0/usage.json");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const config::config_error& e) {
      EXPECT_NE(std::string(e.what()).find("spool/shard0/usage.json"), std::string::npos)
          << e.what();
    }
  }
}

TEST(usage_ledger, load_reads_the_saved_file_and_a_missing_one_is_empty) {
  std::string tmpl = (fs::temp_directory_path() / "rr-ledger-XXXXXX").string();
  ASSERT_TRUE(::mkdtemp(tmpl.data()));
  const std::string path = usage_snapshot_path(tmpl, 3);
  fs::create_directories(fs::path(path).parent_path());
  EXPECT_EQ(usage_ledger::load(path), usage_ledger{});
  usage_ledger l;
  l.add("acme", 5, 2, 1, 42);
  ASSERT_TRUE(util::write_file_atomically(path, l.encode(3)));
  EXPECT_EQ(usage_ledger::load(path), l);
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  fs::remove_all(tmpl);
}

TEST(usage_ledger, restore_adds_today_and_debits_blocks) {
  counter_slot slot;
  slot.blocks = 10;
  slot.usage_word = pack_usage(99, 50);  // yesterday's usage: replaced
  restore(slot, 100, {100, 7, 2});
  EXPECT_EQ(slot.usage(100), 7u);
  EXPECT_EQ(slot.blocks.load(), 8);
  restore(slot, 100, {100, 3, 0});  // a second shard's ledger adds
  EXPECT_EQ(slot.usage(100), 10u);
  // A ledger whose latest day is not today only debits its blocks.
  restore(slot, 100, {98, 40, 5});
  EXPECT_EQ(slot.usage(100), 10u);
  EXPECT_EQ(slot.blocks.load(), 3);
  // A word already on a later day (a clock ahead) is left alone.
  counter_slot ahead;
  ahead.usage_word = pack_usage(101, 4);
  restore(ahead, 100, {100, 9, 0});
  EXPECT_EQ(ahead.usage(101), 4u);
}

TEST(usage_ledger, shards_restoring_at_once_lose_nothing) {
  counter_slot slot;
  slot.blocks = 1'000'000;
  std::vector<std::thread> shards;
  for (int t = 0; t < 4; ++t)
    shards.emplace_back([&slot] {
      for (int i = 0; i < 10'000; ++i) restore(slot, 100, {100, 1, 1});
    });
  for (auto& t : shards) t.join();
  EXPECT_EQ(slot.usage(100), 40'000u);
  EXPECT_EQ(slot.blocks.load(), 1'000'000 - 40'000);
}

}  // namespace
}  // namespace ringrelay::accounts
