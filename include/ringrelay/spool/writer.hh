// spool/writer — a shard's append-only spool log, written through its ring.
//
// Sessions stream body octets in as they arrive, and they are written
// straight from the receive buffers (no user-space copy): the pieces one
// message receives in a loop turn are gathered into one body record, one
// writev of a 32-byte header, the buffer slices and padding, issued by
// `flush` at the end of the turn, or earlier once the record holds
// `max_body_payload` octets (a sixteenth of `segment_size` if that is
// less, so records pack segments well) or `max_record_pieces` slices. So a
// message of any size costs a few receive buffers of memory, each held for
// the turn it arrived in plus its write (and a small body its copy, see
// `body_copy_limit`), and a large body costs one write per turn (or per
// MiB), not one per receive buffer. At the end of data the
// commit record is appended, and the commit callback runs only after an
// fdatasync that covers every record of the message has completed. One
// fdatasync serves every commit that arrived while the previous one ran
// (group commit). Writes and syncs are ordered by their completions, never
// assumed: a sync is issued only once every earlier write has completed.
//
// Every record issued in a loop turn (bodies, commits, state records of
// many messages) lies end to end in the current segment: they go out as one
// writev at the end of the turn (`flush`; a new one per segment and per
// IOV_MAX slices), one hand-off to the kernel's workers instead of one per
// record. (Linking the fdatasync behind that writev was measured and not
// kept: the kernel serializes writes to one file, so the next turn's writes
// then waited for the sync; bench/RESULTS.md.)
//
// Failure: a failed write or sync fails every message it covered (the
// callback gets the negative errno, the session answers 451/452) and is
// never retried-then-acknowledged; the writer moves to a fresh segment.
// While no segment can be prepared (disk full), `writable()` is false and
// preparation is retried every second until space returns.
//
// Segments are preallocated files of `segment_size` octets, prepared ahead
// of need through the ring (openat, fallocate, fsync of the directory). A
// segment is deleted once it and every older segment hold no live message.
//
// Shard-local: one writer per shard, all calls on the shard's thread.
// `open`/`recover` run before the loop starts and may block.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <ringrelay/reactor/buffer_pool.hh>
#include <ringrelay/reactor/loop.hh>
#include <ringrelay/spool/envelope.hh>
#include <ringrelay/spool/record.hh>
#include <ringrelay/spool/recovery.hh>
#include <ringrelay/util/id.hh>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace ringrelay::spool {

// Buffer slices gathered in one body record at most: bounds its writev.
inline constexpr std::size_t max_record_pieces = 256;

// Small bodies are also kept in memory from their arrival until delivery
// (or a deferral) lets them go, so delivery sends them in one write with its
// commands instead of reading the log: up to `body_copy_limit` octets a
// message, the writer's copy budget (io.body_copy_budget) a shard. Past
// either, the body is read back from the log, as after a restart.
inline constexpr std::size_t body_copy_limit = 16 * 1024;
inline constexpr std::size_t default_body_copy_budget = 8 * 1024 * 1024;

// A committed message, as delivery sees it.
struct stored_message {
  util::queue_id id = 0;
  envelope env;
  std::vector<extent> body;
  std::vector<std::uint32_t> pending;  // recipient indexes not yet finished
  std::uint32_t attempts = 0;
  std::int64_t next_attempt = 0;      // wall seconds; 0 = now
  std::uint64_t commit_segment = 0;   // where the commit record lies
  std::uint64_t commit_sequence = 0;  // the commit record's sequence (0 after a restart)
  // Segments this message keeps alive until `release` (body, commit, and
  // after a restart its state records); each counted once.
  std::vector<std::uint64_t> segments;
  // The body as stored, when small enough to keep (body_copy_limit); else,
  // after a restart and once dropped, absent: read it from `body`.
  std::optional<std::string> body_copy;
};

class writer final : public reactor::owner {
 public:
  using message_handle = std::uint32_t;
  using commit_callback = std::function<void(int err, stored_message* msg)>;

  writer(reactor::loop& loop, std::string dir, unsigned shard, std::uint64_t segment_size,
         std::size_t copy_budget = default_body_copy_budget);
  ~writer();

  // Recovers the shard's log (blocking, before the loop runs) and opens a
  // fresh segment for new writes. Returns the messages still to deliver;
  // the charges of commits above `charges_after` go to `charges` (see
  // recovery.hh). Throws std::runtime_error when the directory cannot be
  // used.
  std::vector<stored_message> open(std::uint64_t charges_after = 0,
                                   std::vector<charge>* charges = nullptr);

  // Every charged commit up to `sequence` is in a durable usage snapshot:
  // segments whose charged commits are all covered may now be deleted.
  // Until this is called, no segment holding a charged commit is deleted.
  void charges_saved(std::uint64_t sequence);

  // False while the log cannot take new messages (disk full, I/O error).
  bool writable() const { return _writable; }

  message_handle begin(util::queue_id id);
  // Appends body octets: `prefix` (a few held-back octets, static) then
  // `data`, which lies in buffer `buffer_id` of `source` (referenced until
  // the write that carries it completes). They join the message's pending
  // body record, which is written when full or by the next `flush`.
  void append_body(message_handle h, std::span<const char> prefix, std::span<const char> data,
                   reactor::buffer_source& source, std::uint16_t buffer_id);
  // Writes every pending body record, then submits the turn's records. Call
  // it at the end of each loop turn, after everything that may append body
  // octets or records in that turn (app/shard.cc registers it last, after the
  // SMTP server's turn end).
  void flush();
  // Drops a message that will not be committed: its pending octets are
  // released unwritten, its written records become garbage.
  void abort(message_handle h);
  // Writes the message's pending body record and the commit record, and
  // calls `done` once both are durable (err 0, msg valid during the call)
  // or failed (negative errno, msg null).
  void commit(message_handle h, envelope env, commit_callback done);

  // State records of delivery. They ride on the next sync; losing one in a
  // crash means a retry, never a loss.
  void record_done(const stored_message& m, std::span<const std::uint32_t> finished);
  void record_deferred(const stored_message& m);
  void record_failed(const stored_message& m, std::string_view reason,
                     std::span<const std::uint32_t> recipients);
  // The message is finished (every recipient delivered or failed): its
  // segments may be deleted once nothing older lives.
  void release(const stored_message& m);
  // Lets go of the message's in-memory body (it waits for a retry): later
  // attempts read it from the log.
  void drop_body_copy(stored_message& m);
  // Octets of body copies held (by open and committed messages).
  std::size_t body_copy_octets() const { return _copy_octets; }

  // An open descriptor for segment `seq`, for splicing bodies out.
  int segment_fd(std::uint64_t seq) const;

  void on_completion(std::uint8_t op, const io_uring_cqe& cqe) override;
  // Called every tick: retries segment preparation, syncs pending state
  // records.
  void tick(std::int64_t now_ms);
  // Blocking final sync at shutdown (after the loop has stopped).
  void close_all();

 private:
  struct segment {
    std::uint64_t seq = 0;
    int fd = -1;
    std::uint64_t tail = 0;  // next free offset
    std::uint32_t live = 0;  // messages with records here, not yet finished
    bool dirty = false;      // written since its last sync
    // Write number of the last state record that finished a message living
    // here; the segment may go once a completed sync covers it.
    std::uint64_t dead_after = 0;
    // Sequence of the last charged commit here: the segment stays until a
    // usage snapshot covers it (charges_saved).
    std::uint64_t last_charge = 0;
  };
  // Octets of a body record: a slice of a buffer of `source` (which holds
  // one reference for it), or held-back octets in static storage (null).
  struct piece {
    std::span<const char> bytes;
    reactor::buffer_source* source = nullptr;
    std::uint16_t buffer_id = 0;
  };
  struct write_op final : reactor::owner {
    void on_completion(std::uint8_t op, const io_uring_cqe& cqe) override;
    writer* w = nullptr;
    std::uint32_t index = 0;
    std::uint32_t slot = 0;
    std::uint64_t segment = 0;
    record_header hdr;
    header_bytes header{};
    std::vector<piece> pieces;  // payload of a body record
    std::string owned;          // payload of commit and state records
    std::vector<iovec> iov;
    std::uint64_t offset = 0;  // of the record in its segment
    std::uint64_t number = 0;
    message_handle msg = none;
    // The first record of a run holds the run: its members (itself first)
    // and, for several members, their slices in one array.
    std::vector<std::uint32_t> run;
    std::vector<iovec> run_iov;
    bool issued = false;  // placed in a segment (not in the backlog)
    bool in_use = false;
  };
  struct open_message {
    util::queue_id id = 0;
    std::vector<extent> body;
    std::set<std::uint64_t> segments;
    std::uint64_t commit_segment = 0;
    std::uint64_t commit_sequence = 0;
    bool charged = false;  // its commit carries a charge
    int error = 0;
    std::uint32_t ops_pending = 0;  // writes not yet completed
    // The pending body record: pieces appended since its last write.
    std::vector<piece> batch;
    std::uint32_t batch_bytes = 0;
    bool listed = false;  // in _batched
    bool first = true;
    // The body so far while it may still be kept in memory (copying).
    std::string copy;
    bool copying = true;
    bool aborted = false;
    bool in_use = false;
  };
  struct waiter {
    std::uint64_t write_number;
    message_handle msg;
    stored_message stored;
    commit_callback done;
  };
  static constexpr message_handle none = 0xffffffffu;

  std::uint32_t new_op();
  void add_piece(message_handle h, std::span<const char> bytes, reactor::buffer_source* source,
                 std::uint16_t buffer_id);
  void write_batch(message_handle h);
  void drop_batch(message_handle h);
  void submit_record(std::uint32_t op_index);
  bool issue(std::uint32_t op_index);  // false: no segment space yet
  void submit_run();
  void run_completed(std::uint32_t first_op, int res);
  void record_written(std::uint32_t op_index, int res);
  void maybe_sync();
  void sync_completed(int res);
  void fail_message(message_handle h, int err);
  void finish_op(std::uint32_t op_index);
  void free_message_if_done(message_handle h);
  void mark_live(message_handle h, std::uint64_t seg);
  void prepare_next_segment();
  void next_segment_ready(int fd);
  void delete_dead_segments();
  void append_state(record_type t, util::queue_id id, std::string payload);
  void copy_body(open_message& m, std::span<const char> bytes);
  void drop_copy(open_message& m);

  reactor::loop& _loop;
  std::string _dir;
  unsigned _shard;
  std::uint64_t _segment_size;
  std::uint32_t _slot;
  int _dir_fd = -1;

  std::map<std::uint64_t, segment> _segments;
  std::uint64_t _current = 0;
  std::uint64_t _next_seq = 0;
  std::uint64_t _sequence = 1;  // next record sequence number
  bool _writable = true;
  std::uint64_t _charges_saved = 0;

  // Preparation of the next segment through the ring.
  enum class prep { idle, opening, allocating, syncing_dir, ready, failed };
  prep _prep = prep::idle;
  int _prep_fd = -1;
  std::int64_t _prep_retry_ms = 0;
  std::string _prep_path;

  std::deque<write_op> _ops;  // stable addresses: each op is a ring owner
  std::vector<std::uint32_t> _free_ops;
  std::deque<std::uint32_t> _backlog;  // records waiting for segment space
  // Records issued this turn, end to end in `_run_segment`: one writev at
  // the end of the turn (submit_run).
  std::vector<std::uint32_t> _run;
  std::uint64_t _run_segment = 0;
  std::size_t _run_iovs = 0;
  std::uint64_t _next_write = 1;
  std::uint64_t _completed_upto = 0;  // every write <= this has completed
  std::set<std::uint64_t> _completed_later;

  std::vector<open_message> _messages;
  std::vector<message_handle> _free_messages;
  std::vector<message_handle> _batched;  // messages with a pending body record
  std::uint32_t _batch_limit;            // payload octets of a body record
  std::deque<waiter> _waiting;
  std::size_t _copy_budget;
  std::size_t _copy_octets = 0;  // in body copies, against _copy_budget

  bool _sync_inflight = false;
  int _syncs_outstanding = 0;
  int _sync_error = 0;
  std::uint64_t _sync_covers = 0;  // writes the sync in flight covers
  std::uint64_t _synced_upto = 0;  // every write <= this is on disk
  std::deque<waiter> _syncing;
};

}  // namespace ringrelay::spool
