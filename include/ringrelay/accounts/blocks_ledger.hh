// accounts/blocks_ledger — the relay blocks operators added, kept on disk.
//
// `ringrelayctl blocks add USER N` raises an account's block balance while
// the server runs (control socket, docs/control.md); this ledger is what
// makes the addition survive a restart. It holds, per username, the total
// of the blocks ever added, in <spool.dir>/blocks-added.json:
//   {"version": 1, "added": {"acme": 500, "bob@corp.example": 20}}
// At startup the server adds each total to the account's counter slot, so
// the balance is the users.json grant + the blocks added − the blocks used
// (counters.hh). Totals only grow; what messages use is not recorded here.
//
// `add` writes the new totals to a temporary file in the ledger's
// directory, fsyncs it, renames it over the ledger and fsyncs the
// directory, and only then changes the totals in memory: once it returns,
// the addition is on disk; when it throws, the file and the totals are as
// they were.
//
// Threads: `load` is startup code. The other members take a mutex, so any
// thread may call them; `add` waits for the disk, so it belongs on the
// control thread, never on a shard.
//
// Errors: `load` throws config::config_error naming the file and what is
// wrong with it (a missing file is an empty ledger, not an error). `add`
// throws std::runtime_error naming the file, the step that failed and why,
// and std::invalid_argument for an empty username, an `n` outside
// 1..max_blocks_added or a total that would pass INT64_MAX; either way
// nothing changed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <ringrelay/accounts/counters.hh>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ringrelay::accounts {

// The ledger's file name in spool.dir.
inline constexpr std::string_view blocks_ledger_file = "blocks-added.json";

// The most blocks one `add` takes: 2^40 − 1, like the users.json grant.
inline constexpr std::int64_t max_blocks_added = static_cast<std::int64_t>(max_usage);

class blocks_ledger {
 public:
  // Reads the ledger at `path`; a missing file is an empty ledger that
  // `add` will create. Throws config::config_error.
  static std::unique_ptr<blocks_ledger> load(const std::string& path);

  blocks_ledger(const blocks_ledger&) = delete;
  blocks_ledger& operator=(const blocks_ledger&) = delete;

  // Adds `n` (1 to max_blocks_added) to the total of `username` and writes
  // the ledger (see above) before returning the new total. Throws
  // std::runtime_error or std::invalid_argument, changing nothing.
  std::int64_t add(std::string_view username, std::int64_t n);

  // The total added for `username`; 0 when none.
  std::int64_t added(std::string_view username) const;
  // Every username with its total, sorted by username.
  std::vector<std::pair<std::string, std::int64_t>> all() const;

 private:
  using totals = std::map<std::string, std::int64_t, std::less<>>;
  blocks_ledger(std::string path, totals added)
      : _path(std::move(path)), _added(std::move(added)) {}

  std::string _path;
  mutable std::mutex _mutex;
  totals _added;
};

}  // namespace ringrelay::accounts
