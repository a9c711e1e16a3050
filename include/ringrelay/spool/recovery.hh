// spool/recovery — rebuilds a shard's queue from its spool log at startup.
//
// `recover` scans the shard's segments (format in spool/record.hh) in order
// and keeps each record that is whole and intact: magic and version right,
// padded length inside the file, CRC right, sequence above the previous
// record's. The first other record ends what is kept of its segment: the
// file is truncated there (in the newest segment this is the torn tail of
// a crash and is normal; in an older one it is damage, logged as an error,
// and the scan goes on with the next segment). The zero-filled unwritten
// tail of a preallocated segment is cut off as well.
//
// A message's state is then:
//   - committed when a commit record is present. Its body is the body
//     records of its queue ID from the last `body_first` one before the
//     commit (or the first one) up to the commit, and must add up to the
//     envelope's wire_size, else the message is incomplete (kept and
//     reported, never delivered). A later commit of the same queue ID is a
//     copy and takes over, unless its body is incomplete and the earlier
//     one's is not.
//   - pending = its recipients, intersected with every deferred record's
//     list, minus every done and failed record's recipients (all of them for
//     an empty list), in whatever order these records lie; attempts and next
//     attempt come from the last deferred record. Losing a state record can
//     only make a recipient pending again: a crash may cause a duplicate
//     delivery, never a lost one.
//
// A pending or incomplete message is live in the segments holding its body
// extents, the commit they belong to, and its state records from its last
// deferred record on (all of them if it has none). So a copy forward is:
// body records (the first flagged `body_first`), commit, then a deferred
// record restating exactly the pending recipients; after that the old
// segments no longer hold the message. A segment where no message is live
// may be deleted, with one exception that protects finished messages: while
// any segment holding a commit of a finished message stays, every segment
// holding its state records stays too (else the message would come back).
// Recovery deletes such segments, ascending, except the newest, which it
// keeps so the numbering continues (the writer starts a new segment after
// it). At run time, deleting only the oldest segment, once nothing in it is
// live, respects the exception without tracking it.
//
// Charges: every intact commit record that carries a charge (envelope.hh)
// and whose sequence is above `charges_after` (the last commit an
// accounts::usage_ledger snapshot includes) is reported in `charges`, in
// log order, whatever became of its message; the segments holding them are
// kept even when nothing in them is live, so a crash before the next
// snapshot loses no charge. `segment_info::last_charge` tells the writer
// which segments must wait for a snapshot before they go.
//
// Startup only: blocking I/O, any thread, one call per shard. Errors
// (unreadable directory or file, failed truncate) throw std::runtime_error
// naming the path. Records that pass the checks but whose payload does not
// decode, or whose type is unknown (a newer writer), are skipped and counted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <ringrelay/spool/envelope.hh>
#include <ringrelay/util/id.hh>
#include <span>
#include <string>
#include <vector>

namespace ringrelay::spool {

// Where a piece of a body lies: the payload of one body record.
struct extent {
  std::uint64_t segment = 0;  // segment seq
  std::uint64_t offset = 0;   // of the payload in the segment file
  std::uint32_t length = 0;

  bool operator==(const extent&) const = default;
};

struct recovered_message {
  util::queue_id id = 0;
  envelope env;
  std::vector<extent> body;            // in body order; lengths add up to env.wire_size
  std::vector<std::uint32_t> pending;  // indexes into env.recipients, ascending
  std::int64_t next_attempt = 0;       // wall seconds; 0: never deferred
  std::uint32_t attempts = 0;
  std::uint64_t commit_segment = 0;     // of the commit whose body is `body`
  std::vector<std::uint64_t> segments;  // where it is live, ascending
};

struct segment_info {
  std::uint64_t seq = 0;
  std::uint64_t size = 0;            // the file's length after recovery
  std::vector<util::queue_id> live;  // ascending
  std::uint64_t last_charge = 0;     // sequence of its last charged commit; 0: none
};

// What one commit record charged an account (envelope.hh).
struct charge {
  std::uint64_t sequence = 0;  // of the commit record
  std::string account;
  std::uint32_t day = 0;
  std::uint32_t quota_relays = 0;
  std::uint32_t block_relays = 0;
};

struct damage {
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;  // where the segment now ends
  std::string reason;
};

struct recovery_result {
  // Committed, with recipients pending, in the order of their commits.
  std::vector<recovered_message> messages;
  // Committed with recipients pending, but body records are missing (damage
  // in an older segment): cannot be delivered. They stay live, and are
  // reported at every start, until a failed record for all their recipients
  // (after a bounce tells the sender) finishes them.
  std::vector<recovered_message> incomplete;
  std::vector<segment_info> segments;  // those kept, ascending seq
  std::optional<damage> torn_tail;     // in the newest segment
  std::vector<damage> lost;            // older segments cut short
  std::uint64_t next_sequence = 1;     // for the writer's next record
  std::uint64_t next_segment = 1;      // for the writer's next segment file
  std::vector<charge> charges;         // above `charges_after`, ascending sequence
  std::size_t discarded = 0;           // queue IDs with body records, no commit
  std::size_t skipped_records = 0;
  std::size_t deleted_segments = 0;
};

// Recovers `<spool_dir>/shard<shard>/`, creating it (0700) when missing.
// Charges of commits with a sequence above `charges_after` are reported.
recovery_result recover(const std::string& spool_dir, unsigned shard,
                        std::uint64_t charges_after = 0);

// Appends the octets of `extents` to `out`, with blocking reads (tests,
// bounces, tools; not for a shard's hot path).
void read_extents(const std::string& spool_dir, unsigned shard, std::span<const extent> extents,
                  std::string& out);

}  // namespace ringrelay::spool
