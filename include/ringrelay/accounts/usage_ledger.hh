// accounts/usage_ledger — what one shard's stored messages charged, for
// usage that survives a restart or a kill -9.
//
// The live counters (counters.hh) are shared atomics and forget everything
// at exit. Each shard therefore keeps its own ledger of the charges of the
// messages it stored: per account, the quota relays charged on the latest
// day seen and the blocks used in all. A charge enters the ledger when its
// commit record is durable (the moment the 250 goes out), and commits
// complete in the log's sequence order, so "every charged commit up to
// sequence S" is exactly the ledger's content once S is its `sequence()`.
//
// Persistence is a snapshot plus the log: the shard writes the ledger, with
// S, to `<spool.dir>/shard<N>/usage.json` atomically every few seconds;
// after a restart it loads the snapshot, adds the charges of the commit
// records above S that recovery found (spool/recovery.hh), and adds the
// whole ledger to the counters with `restore`. The spool keeps a segment
// holding a charged commit until a durable snapshot covers it, so between
// them the snapshot and the log hold every charge of a message that got its
// 250. A commit whose record reached the disk but whose 250 never went out
// (a crash in between) is charged too: recovery delivers that message.
//
// The file, JSON:
//   {"version": 1, "shard": 0, "sequence": 1234,
//    "accounts": {"acme": {"day": 20425, "quota": 12, "blocks_used": 3}}}
// `day` is the quota day number (quota.hh) the `quota` relays were charged
// to; `blocks_used` never resets.
//
// Threads: a ledger belongs to one shard (or to startup code); `encode`'s
// output may be handed to another thread to write. `load` and `decode` run
// at startup and throw config::config_error naming the file and the problem.
#pragma once

#include <cstdint>
#include <map>
#include <ringrelay/accounts/counters.hh>
#include <string>
#include <string_view>

namespace ringrelay::accounts {

struct account_usage {
  std::uint32_t day = 0;          // the latest day charged
  std::uint64_t quota = 0;        // relays charged to that day's quota
  std::uint64_t blocks_used = 0;  // relays charged to blocks, ever
  bool operator==(const account_usage&) const = default;
};

class usage_ledger {
 public:
  using accounts_map = std::map<std::string, account_usage, std::less<>>;

  // Adds the charge of the commit record `sequence` (above every earlier
  // one). Quota relays of a day older than the account's latest are final
  // and no longer limit anything: only blocks are added for them.
  void add(std::string_view account, std::uint32_t day, std::uint64_t quota_relays,
           std::uint64_t block_relays, std::uint64_t sequence);

  // The last commit included; 0 for none.
  std::uint64_t sequence() const { return _sequence; }
  const accounts_map& accounts() const { return _accounts; }

  std::string encode(unsigned shard) const;
  // `source` names the text in messages.
  static usage_ledger decode(std::string_view json, const std::string& source);
  // A missing file is an empty ledger.
  static usage_ledger load(const std::string& path);

  bool operator==(const usage_ledger& o) const {
    return _sequence == o._sequence && _accounts == o._accounts;
  }

 private:
  accounts_map _accounts;
  std::uint64_t _sequence = 0;
};

// The snapshot's path for a shard.
std::string usage_snapshot_path(const std::string& spool_dir, unsigned shard);

// Adds what `u` records to `slot`: its quota relays to the usage of `u.day`
// when `today` is that day (a word holding an older day is replaced, one
// holding a newer day is left alone), and its blocks as a debit of the
// balance. Lock-free, like the charging calls; shards add their ledgers to
// the same slots at startup.
void restore(counter_slot& slot, std::uint32_t today, const account_usage& u);

}  // namespace ringrelay::accounts
