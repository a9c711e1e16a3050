#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ringrelay/log/log.hh>
#include <ringrelay/spool/writer.hh>
#include <ringrelay/util/clock.hh>
#include <stdexcept>

namespace ringrelay::spool {
namespace {

enum op : std::uint8_t {
  op_write = 1,
  op_sync = 2,
  op_open = 3,
  op_allocate = 4,
  op_dir_sync = 5,
  op_ignore = 6,
};

}  // namespace

writer::writer(reactor::loop& loop, std::string dir, unsigned shard, std::uint64_t segment_size,
               std::size_t copy_budget)
    : _loop(loop),
      _dir(std::move(dir)),
      _shard(shard),
      _segment_size(segment_size),
      _slot(loop.add_owner(this)),
      _batch_limit(static_cast<std::uint32_t>(
          std::clamp<std::uint64_t>(segment_size / 16, 4096, max_body_payload))),
      _copy_budget(copy_budget) {}

writer::~writer() {
  for (auto& op : _ops) _loop.remove_owner(op.slot);
  _loop.remove_owner(_slot);
  for (auto& [seq, seg] : _segments)
    if (seg.fd >= 0) ::close(seg.fd);
  if (_prep_fd >= 0) ::close(_prep_fd);
  if (_dir_fd >= 0) ::close(_dir_fd);
}

std::vector<stored_message> writer::open(std::uint64_t charges_after,
                                         std::vector<charge>* charges) {
  recovery_result r = recover(_dir, _shard, charges_after);
  if (charges) *charges = std::move(r.charges);
  std::string shard_dir = shard_directory(_dir, _shard);
  _dir_fd = ::open(shard_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (_dir_fd < 0) throw std::runtime_error(shard_dir + ": " + strerror(errno));
  // recover() has logged the torn tail, damage and incomplete messages.
  for (const auto& info : r.segments) {
    std::string path = segment_path(_dir, _shard, info.seq);
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(path + ": " + strerror(errno));
    segment seg;
    seg.seq = info.seq;
    seg.fd = fd;
    seg.tail = info.size;
    seg.last_charge = info.last_charge;
    _segments[info.seq] = seg;
  }
  std::vector<stored_message> out;
  for (auto& m : r.messages) {
    stored_message s;
    s.id = m.id;
    s.env = std::move(m.env);
    s.body = std::move(m.body);
    s.pending = std::move(m.pending);
    s.attempts = m.attempts;
    s.next_attempt = m.next_attempt;
    s.commit_segment = m.commit_segment;
    s.segments = m.segments;
    for (auto seq : m.segments) ++_segments[seq].live;
    out.push_back(std::move(s));
  }
  // Above the snapshot's too, should the segments have been removed by hand.
  _sequence = std::max(r.next_sequence, charges_after + 1);
  _next_seq = r.next_segment;

  // The first segment of this run is prepared synchronously: the loop is not
  // running yet, and a spool that cannot take one segment cannot start.
  std::string path = segment_path(_dir, _shard, _next_seq);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error(path + ": " + strerror(errno));
  if (int rc = posix_fallocate(fd, 0, static_cast<off_t>(_segment_size)); rc != 0) {
    ::close(fd);
    ::unlink(path.c_str());
    throw std::runtime_error(path + ": cannot preallocate " + std::to_string(_segment_size) +
                             " octets: " + strerror(rc));
  }
  fsync(_dir_fd);
  segment seg;
  seg.seq = _next_seq;
  seg.fd = fd;
  _segments[_next_seq] = seg;
  _current = _next_seq++;
  RR_INFO("spool shard=%u recovered pending=%zu discarded=%zu deleted_segments=%zu segment=%llu",
          _shard, out.size(), r.discarded, r.deleted_segments,
          static_cast<unsigned long long>(_current));
  return out;
}

int writer::segment_fd(std::uint64_t seq) const {
  auto it = _segments.find(seq);
  return it == _segments.end() ? -1 : it->second.fd;
}

writer::message_handle writer::begin(util::queue_id id) {
  message_handle h;
  if (!_free_messages.empty()) {
    h = _free_messages.back();
    _free_messages.pop_back();
  } else {
    h = static_cast<message_handle>(_messages.size());
    _messages.emplace_back();
  }
  // The batch's storage is kept: a large body fills it once per record.
  std::vector<piece> batch = std::move(_messages[h].batch);
  _messages[h] = open_message{};
  _messages[h].batch = std::move(batch);
  _messages[h].id = id;
  _messages[h].in_use = true;
  return h;
}

std::uint32_t writer::new_op() {
  std::uint32_t i;
  if (!_free_ops.empty()) {
    i = _free_ops.back();
    _free_ops.pop_back();
  } else {
    i = static_cast<std::uint32_t>(_ops.size());
    _ops.emplace_back();
    _ops[i].w = this;
    _ops[i].index = i;
    _ops[i].slot = _loop.add_owner(&_ops[i]);
  }
  write_op& o = _ops[i];
  o.in_use = true;
  o.hdr = record_header{};
  o.pieces.clear();
  o.owned.clear();
  o.msg = none;
  o.issued = false;
  return i;
}

void writer::append_body(message_handle h, std::span<const char> prefix, std::span<const char> data,
                         reactor::buffer_source& source, std::uint16_t buffer_id) {
  copy_body(_messages[h], prefix);
  copy_body(_messages[h], data);
  add_piece(h, prefix, nullptr, 0);
  add_piece(h, data, &source, buffer_id);
}

// Keeps the body in memory while it fits the message's limit and the
// shard's budget; the first octet past either drops the copy for good.
void writer::copy_body(open_message& m, std::span<const char> bytes) {
  if (!m.copying || bytes.empty()) return;
  if (m.copy.size() + bytes.size() > body_copy_limit ||
      _copy_octets + bytes.size() > _copy_budget) {
    drop_copy(m);
    return;
  }
  m.copy.append(bytes.data(), bytes.size());
  _copy_octets += bytes.size();
}

void writer::drop_copy(open_message& m) {
  _copy_octets -= m.copy.size();
  std::string().swap(m.copy);
  m.copying = false;
}

void writer::drop_body_copy(stored_message& m) {
  if (!m.body_copy) return;
  _copy_octets -= m.body_copy->size();
  m.body_copy.reset();
}

// Adds octets to the message's pending body record, writing it out first
// whenever it is full: a piece longer than the room left is split across
// records (each part holding its own buffer reference).
void writer::add_piece(message_handle h, std::span<const char> bytes,
                       reactor::buffer_source* source, std::uint16_t buffer_id) {
  while (!bytes.empty()) {
    open_message& m = _messages[h];
    if (m.error) return;  // the message fails at its commit; nothing more is written
    if (m.batch_bytes == _batch_limit || m.batch.size() == max_record_pieces) {
      write_batch(h);
      continue;
    }
    auto part = bytes.first(std::min<std::size_t>(bytes.size(), _batch_limit - m.batch_bytes));
    bytes = bytes.subspan(part.size());
    m.batch_bytes += static_cast<std::uint32_t>(part.size());
    if (!m.listed) {
      m.listed = true;
      _batched.push_back(h);
    }
    // A session appends a buffer in consecutive slices: they share one iovec
    // and the reference already held.
    if (!m.batch.empty()) {
      piece& last = m.batch.back();
      if (last.source == source && last.buffer_id == buffer_id &&
          last.bytes.data() + last.bytes.size() == part.data()) {
        last.bytes = {last.bytes.data(), last.bytes.size() + part.size()};
        continue;
      }
    }
    if (source) source->ref(buffer_id);
    m.batch.push_back({part, source, buffer_id});
  }
}

void writer::write_batch(message_handle h) {
  open_message& m = _messages[h];
  if (m.batch.empty()) return;
  std::uint32_t i = new_op();
  write_op& o = _ops[i];
  o.hdr.type = record_type::body;
  // A commit takes the body from the last body_first record on (recovery.hh).
  o.hdr.flags = m.first ? body_first : 0;
  m.first = false;
  o.hdr.payload_len = m.batch_bytes;
  o.hdr.id = m.id;
  o.msg = h;
  // The record takes the pieces and their references; the emptied vectors
  // swap places, so neither side allocates again.
  o.pieces.swap(m.batch);
  m.batch_bytes = 0;
  ++m.ops_pending;
  submit_record(i);
}

// A handle may be listed twice (aborted and begun again in one turn): the
// second write_batch finds nothing to write. Writing appends to no list.
void writer::flush() {
  for (auto h : _batched) {
    _messages[h].listed = false;
    write_batch(h);
  }
  _batched.clear();
  submit_run();
}

// Releases pending octets unwritten.
void writer::drop_batch(message_handle h) {
  open_message& m = _messages[h];
  for (const auto& p : m.batch)
    if (p.source) p.source->unref(p.buffer_id);
  m.batch.clear();
  m.batch_bytes = 0;
}

void writer::append_state(record_type t, util::queue_id id, std::string payload) {
  std::uint32_t i = new_op();
  write_op& o = _ops[i];
  o.hdr.type = t;
  o.hdr.payload_len = static_cast<std::uint32_t>(payload.size());
  o.hdr.id = id;
  o.owned = std::move(payload);
  submit_record(i);
}

void writer::submit_record(std::uint32_t i) {
  _ops[i].number = _next_write++;
  if (!_writable) {
    // No segment can be prepared (disk full): fail now, the session answers
    // 452 and the client retries later.
    if (_ops[i].msg != none) fail_message(_ops[i].msg, -ENOSPC);
    finish_op(i);
    return;
  }
  // Records keep their submission order in the log: once one waits for
  // segment space, every later one waits behind it.
  if (!_backlog.empty() || !issue(i)) _backlog.push_back(i);
}

void writer::mark_live(message_handle h, std::uint64_t seq) {
  if (h == none) return;
  if (_messages[h].segments.insert(seq).second) ++_segments[seq].live;
}

bool writer::issue(std::uint32_t i) {
  write_op& o = _ops[i];
  std::uint64_t need = record_size(o.hdr.payload_len);
  segment* seg = &_segments[_current];
  if (seg->tail + need > _segment_size) {
    if (_prep != prep::ready) {
      prepare_next_segment();
      return false;
    }
    _current = _next_seq - 1;
    _prep = prep::idle;
    seg = &_segments[_current];
    RR_DEBUG("spool shard=%u new segment=%llu", _shard, static_cast<unsigned long long>(_current));
  }
  std::uint64_t offset = seg->tail;
  seg->tail += need;
  o.segment = _current;
  o.hdr.sequence = _sequence++;

  record_crc crc(o.hdr);
  for (const auto& p : o.pieces) crc.update(p.bytes);
  crc.update(o.owned);
  o.hdr.crc = crc.value();
  encode_header(o.hdr, o.header);

  o.iov.clear();
  o.iov.push_back({o.header.data(), o.header.size()});
  for (const auto& p : o.pieces)
    o.iov.push_back({const_cast<char*>(p.bytes.data()), p.bytes.size()});
  if (!o.owned.empty()) o.iov.push_back({o.owned.data(), o.owned.size()});
  if (std::size_t pad = padding_for(o.hdr.payload_len))
    o.iov.push_back({const_cast<char*>(zero_padding), pad});

  if (o.msg != none) {
    open_message& m = _messages[o.msg];
    mark_live(o.msg, _current);
    if (o.hdr.type == record_type::body) {
      m.body.push_back({_current, offset + header_size, o.hdr.payload_len});
    } else if (o.hdr.type == record_type::commit) {
      m.commit_segment = _current;
      m.commit_sequence = o.hdr.sequence;
      if (m.charged) seg->last_charge = o.hdr.sequence;
    }
  }

  o.offset = offset;
  o.issued = true;
  if (!_run.empty() && (_run_segment != _current || _run_iovs + o.iov.size() > IOV_MAX))
    submit_run();
  _run_segment = _current;
  _run.push_back(i);
  _run_iovs += o.iov.size();

  // Prepare the next segment well before this one fills, so a rollover
  // never waits for the disk.
  if (seg->tail > _segment_size / 2 && _prep == prep::idle) prepare_next_segment();
  return true;
}

// One writev for the turn's records; its first record holds the run.
void writer::submit_run() {
  if (_run.empty()) return;
  write_op& f = _ops[_run.front()];
  const std::vector<iovec>* iov = &f.iov;
  if (_run.size() > 1) {
    f.run_iov.clear();
    for (auto i : _run) f.run_iov.insert(f.run_iov.end(), _ops[i].iov.begin(), _ops[i].iov.end());
    iov = &f.run_iov;
  }
  f.run.clear();
  f.run.swap(_run);
  _run_iovs = 0;
  io_uring_sqe* s = _loop.sqe();
  io_uring_prep_writev(s, _segments[f.segment].fd, iov->data(), static_cast<unsigned>(iov->size()),
                       f.offset);
  io_uring_sqe_set_data64(s, _loop.token(f.slot, op_write));
}

void writer::write_op::on_completion(std::uint8_t, const io_uring_cqe& cqe) {
  w->run_completed(index, cqe.res);
}

// record_written frees ops but never takes one: the run's list stays put
// while it is walked, and keeps its storage for the op's next run.
void writer::run_completed(std::uint32_t first, int res) {
  const std::vector<std::uint32_t>& members = _ops[first].run;
  std::uint64_t total = 0;
  for (auto i : members) total += record_size(_ops[i].hdr.payload_len);
  bool whole = res >= 0 && static_cast<std::uint64_t>(res) == total;
  if (!whole && res >= 0) res = -EIO;  // short write: nothing of the run is trusted
  for (auto i : members)
    record_written(i, whole ? static_cast<int>(record_size(_ops[i].hdr.payload_len)) : res);
  _ops[first].run.clear();
  maybe_sync();
}

void writer::record_written(std::uint32_t i, int res) {
  write_op& o = _ops[i];
  auto expected = record_size(o.hdr.payload_len);
  if (res >= 0 && static_cast<std::size_t>(res) != expected) res = -EIO;  // short write
  if (res < 0) {
    RR_ERROR("spool shard=%u write failed segment=%llu: %s", _shard,
             static_cast<unsigned long long>(o.segment), strerror(-res));
    // Recovery stops at the first hole in a segment, so nothing written to
    // this segment may be acknowledged any more: fail every message with a
    // record here and move new records to a fresh segment.
    for (std::uint32_t h = 0; h < _messages.size(); ++h)
      if (_messages[h].in_use && _messages[h].segments.count(o.segment)) fail_message(h, res);
    if (o.msg != none) fail_message(o.msg, res);
    if (o.segment == _current) _segments[_current].tail = _segment_size;
  } else if (auto it = _segments.find(o.segment); it != _segments.end()) {
    it->second.dirty = true;
  }
  // Otherwise the segment was deleted while this write was in flight (a
  // state record of a message released meanwhile): nothing there needs a
  // sync. operator[] here used to recreate it without a file, and the next
  // fdatasync of that fd -1 failed every commit in its batch with EBADF.
  finish_op(i);
}

// Bookkeeping common to a completed write and a write dropped from the
// backlog: the write counts as done for ordering, its buffer goes back.
void writer::finish_op(std::uint32_t i) {
  write_op& o = _ops[i];
  if (o.number == _completed_upto + 1) {
    _completed_upto = o.number;
    while (!_completed_later.empty() && *_completed_later.begin() == _completed_upto + 1) {
      _completed_upto = *_completed_later.begin();
      _completed_later.erase(_completed_later.begin());
    }
  } else {
    _completed_later.insert(o.number);
  }
  for (const auto& p : o.pieces)
    if (p.source) p.source->unref(p.buffer_id);
  o.pieces.clear();
  message_handle h = o.msg;
  o.in_use = false;
  o.owned.clear();
  _free_ops.push_back(i);
  if (h != none) {
    --_messages[h].ops_pending;
    free_message_if_done(h);
  }
}

void writer::fail_message(message_handle h, int err) {
  if (!_messages[h].error) _messages[h].error = err;
  drop_batch(h);
}

void writer::free_message_if_done(message_handle h) {
  open_message& m = _messages[h];
  if (!m.aborted || m.ops_pending) return;
  for (auto seq : m.segments) --_segments[seq].live;
  m = open_message{};
  _free_messages.push_back(h);
  delete_dead_segments();
}

void writer::abort(message_handle h) {
  drop_batch(h);
  drop_copy(_messages[h]);
  _messages[h].aborted = true;
  free_message_if_done(h);
}

void writer::commit(message_handle h, envelope env, commit_callback done) {
  // The body's last record goes before the commit record: a sync issued
  // once the commit's write has completed covers both.
  write_batch(h);
  open_message& m = _messages[h];
  if (m.error) {
    int err = m.error;
    abort(h);
    done(err, nullptr);
    return;
  }
  std::uint32_t i = new_op();
  write_op& o = _ops[i];
  o.hdr.type = record_type::commit;
  o.hdr.id = m.id;
  m.charged = !env.account.empty() && (env.quota_relays != 0 || env.block_relays != 0);
  encode(env, o.owned);
  o.hdr.payload_len = static_cast<std::uint32_t>(o.owned.size());
  o.msg = h;
  ++m.ops_pending;
  waiter w;
  w.msg = h;
  w.stored.id = m.id;
  w.stored.env = std::move(env);
  w.done = std::move(done);
  submit_record(i);
  w.write_number = o.number;
  _waiting.push_back(std::move(w));
  maybe_sync();
}

// Group commit: one fdatasync per dirty segment covers every commit whose
// writes (and all writes before them) have completed. Commits arriving
// while it runs wait for the next one.
void writer::maybe_sync() {
  if (_sync_inflight) return;
  bool eligible = !_waiting.empty() && _waiting.front().write_number <= _completed_upto;
  if (!eligible) return;
  while (!_waiting.empty() && _waiting.front().write_number <= _completed_upto) {
    _syncing.push_back(std::move(_waiting.front()));
    _waiting.pop_front();
  }
  _sync_inflight = true;
  _sync_error = 0;
  _syncs_outstanding = 0;
  _sync_covers = _completed_upto;
  for (auto& [seq, seg] : _segments) {
    if (!seg.dirty) continue;
    seg.dirty = false;
    io_uring_sqe* s = _loop.sqe();
    io_uring_prep_fsync(s, seg.fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(s, _loop.token(_slot, op_sync));
    ++_syncs_outstanding;
  }
  if (_syncs_outstanding == 0) sync_completed(0);
}

void writer::sync_completed(int res) {
  if (res < 0 && !_sync_error) _sync_error = res;
  if (_syncs_outstanding > 0 && --_syncs_outstanding > 0) return;
  _sync_inflight = false;
  if (!_sync_error) _synced_upto = std::max(_synced_upto, _sync_covers);
  if (_sync_error) {
    // The page cache may have dropped the failed pages: nothing this sync
    // covered may be acknowledged, and the segment is not trusted further.
    RR_ERROR("spool shard=%u fdatasync failed: %s; %zu message(s) refused", _shard,
             strerror(-_sync_error), _syncing.size());
    for (auto& [seq, seg] : _segments)
      if (seq == _current) seg.tail = _segment_size;
  }
  auto batch = std::move(_syncing);
  _syncing.clear();
  for (auto& w : batch) {
    open_message& m = _messages[w.msg];
    int err = _sync_error ? _sync_error : m.error;
    if (err) {
      drop_copy(m);
      m.aborted = true;
      free_message_if_done(w.msg);
      w.done(err, nullptr);
      continue;
    }
    w.stored.body = std::move(m.body);
    w.stored.commit_segment = m.commit_segment;
    w.stored.commit_sequence = m.commit_sequence;
    w.stored.segments.assign(m.segments.begin(), m.segments.end());
    if (m.copying) {
      w.stored.body_copy = std::move(m.copy);
      m.copy.clear();
      m.copying = false;
    }
    w.stored.pending.resize(w.stored.env.recipients.size());
    for (std::uint32_t r = 0; r < w.stored.pending.size(); ++r) w.stored.pending[r] = r;
    // The message's segments stay live until delivery releases it.
    m.segments.clear();
    m.aborted = true;
    free_message_if_done(w.msg);
    w.done(0, &w.stored);
  }
  maybe_sync();
}

void writer::record_done(const stored_message& m, std::span<const std::uint32_t> finished) {
  std::string p;
  encode_done(finished, p);
  append_state(record_type::done, m.id, std::move(p));
}

void writer::record_deferred(const stored_message& m) {
  deferred_state d;
  d.next_attempt = m.next_attempt;
  d.attempts = m.attempts;
  d.pending = m.pending;
  std::string p;
  encode_deferred(d, p);
  append_state(record_type::deferred, m.id, std::move(p));
}

void writer::record_failed(const stored_message& m, std::string_view reason,
                           std::span<const std::uint32_t> recipients) {
  failure f;
  f.reason.assign(reason);
  f.recipients.assign(recipients.begin(), recipients.end());
  std::string p;
  encode_failed(f, p);
  append_state(record_type::failed, m.id, std::move(p));
}

void writer::charges_saved(std::uint64_t sequence) {
  _charges_saved = std::max(_charges_saved, sequence);
  delete_dead_segments();
}

void writer::release(const stored_message& m) {
  if (m.body_copy) _copy_octets -= m.body_copy->size();
  for (auto seq : m.segments) {
    auto it = _segments.find(seq);
    if (it == _segments.end()) continue;
    if (it->second.live > 0) --it->second.live;
    // The state records that finished the message were submitted just
    // before this call.
    it->second.dead_after = std::max(it->second.dead_after, _next_write - 1);
  }
  delete_dead_segments();
}

// Only the oldest segments go, in order: a finished message's state records
// lie in the same or a newer segment than its commit, so they outlive it
// (recovery.hh explains why that keeps it from coming back).
void writer::delete_dead_segments() {
  while (!_segments.empty()) {
    auto it = _segments.begin();
    if (it->first == _current || it->second.live > 0) return;
    // The done records that made this segment dead may lie in a newer
    // segment: delete only once a completed sync covers them, or a crash
    // could bring a delivered message back as incomplete.
    if (_synced_upto < it->second.dead_after) return;
    // A charged commit must outlive the crash that would need it for
    // replay, until a usage snapshot includes it.
    if (it->second.last_charge > _charges_saved) return;
    // The name must stay valid until the SQE is submitted (below).
    std::string name = segment_name(it->first);
    io_uring_sqe* s = _loop.sqe();
    io_uring_prep_close(s, it->second.fd);
    io_uring_sqe_set_data64(s, _loop.token(_slot, op_ignore));
    s = _loop.sqe();
    io_uring_prep_unlinkat(s, _dir_fd, name.c_str(), 0);
    io_uring_sqe_set_data64(s, _loop.token(_slot, op_ignore));
    io_uring_submit(_loop.ring());
    RR_DEBUG("spool shard=%u deleted segment=%llu", _shard,
             static_cast<unsigned long long>(it->first));
    _segments.erase(it);
  }
}

void writer::prepare_next_segment() {
  if (_prep != prep::idle) return;
  _prep = prep::opening;
  _prep_path = segment_path(_dir, _shard, _next_seq);
  io_uring_sqe* s = _loop.sqe();
  io_uring_prep_openat(s, AT_FDCWD, _prep_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                       0600);
  io_uring_sqe_set_data64(s, _loop.token(_slot, op_open));
}

void writer::on_completion(std::uint8_t op, const io_uring_cqe& cqe) {
  switch (op) {
    case op_sync:
      sync_completed(cqe.res);
      break;
    case op_open:
      if (cqe.res < 0) {
        next_segment_ready(cqe.res);
        break;
      }
      _prep_fd = cqe.res;
      _prep = prep::allocating;
      {
        io_uring_sqe* s = _loop.sqe();
        io_uring_prep_fallocate(s, _prep_fd, 0, 0, static_cast<off_t>(_segment_size));
        io_uring_sqe_set_data64(s, _loop.token(_slot, op_allocate));
      }
      break;
    case op_allocate:
      if (cqe.res < 0) {
        next_segment_ready(cqe.res);
        break;
      }
      _prep = prep::syncing_dir;
      {
        // The new file's directory entry must be durable before a commit in
        // it is acknowledged.
        io_uring_sqe* s = _loop.sqe();
        io_uring_prep_fsync(s, _dir_fd, 0);
        io_uring_sqe_set_data64(s, _loop.token(_slot, op_dir_sync));
      }
      break;
    case op_dir_sync:
      next_segment_ready(cqe.res < 0 ? cqe.res : _prep_fd);
      break;
    default:
      break;
  }
}

void writer::next_segment_ready(int fd_or_error) {
  if (fd_or_error < 0) {
    int err = -fd_or_error;
    // Logged once per outage; the retries every second stay quiet.
    if (_writable)
      RR_ERROR(
          "spool shard=%u cannot prepare segment %s: %s; refusing new mail (421) and "
          "retrying every second until it can",
          _shard, _prep_path.c_str(), strerror(err));
    if (_prep_fd >= 0) {
      ::close(_prep_fd);
      _prep_fd = -1;
      io_uring_sqe* s = _loop.sqe();
      io_uring_prep_unlinkat(s, AT_FDCWD, _prep_path.c_str(), 0);
      io_uring_sqe_set_data64(s, _loop.token(_slot, op_ignore));
      io_uring_submit(_loop.ring());
    }
    _prep = prep::failed;
    _writable = false;
    _prep_retry_ms = _loop.now_ms() + 1000;
    // Whatever waits for space now fails: the sessions answer 452 and the
    // clients retry later.
    auto waiting = std::move(_backlog);
    _backlog.clear();
    for (auto i : waiting) {
      if (_ops[i].msg != none) fail_message(_ops[i].msg, -err);
      finish_op(i);
    }
    maybe_sync();
    return;
  }
  segment seg;
  seg.seq = _next_seq;
  seg.fd = fd_or_error;
  _segments[_next_seq] = seg;
  ++_next_seq;
  _prep_fd = -1;
  _prep = prep::ready;
  if (!_writable) RR_INFO("spool shard=%u writable again", _shard);
  _writable = true;
  while (!_backlog.empty() && issue(_backlog.front())) _backlog.pop_front();
}

void writer::tick(std::int64_t now_ms) {
  if (_prep == prep::failed && now_ms >= _prep_retry_ms) {
    _prep = prep::idle;
    prepare_next_segment();
  }
  // State records (done, deferred) ride on commit syncs; without commits,
  // sync them here so a restart does not redeliver much.
  if (!_sync_inflight) {
    // Else an earlier failed sync's error would be reported again when this
    // one completes, and would cut the segment in use short.
    _sync_error = 0;
    _sync_covers = _completed_upto;
    for (auto& [seq, seg] : _segments) {
      if (!seg.dirty) continue;
      seg.dirty = false;
      _sync_inflight = true;
      ++_syncs_outstanding;
      io_uring_sqe* s = _loop.sqe();
      io_uring_prep_fsync(s, seg.fd, IORING_FSYNC_DATASYNC);
      io_uring_sqe_set_data64(s, _loop.token(_slot, op_sync));
    }
    // Nothing dirty: every completed write is covered by a finished sync.
    if (!_sync_inflight) _synced_upto = std::max(_synced_upto, _completed_upto);
  }
  delete_dead_segments();
}

void writer::close_all() {
  // Records whose writes the stopped loop never saw complete (the last
  // turn's run is not even submitted): written again, blocking, at the same
  // place with the same octets.
  for (const auto& o : _ops) {
    if (!o.in_use || !o.issued) continue;
    auto it = _segments.find(o.segment);
    if (it == _segments.end() || it->second.fd < 0) continue;
    if (pwritev(it->second.fd, o.iov.data(), static_cast<int>(o.iov.size()),
                static_cast<off_t>(o.offset)) < 0)
      RR_ERROR("spool shard=%u write at exit failed segment=%llu: %s", _shard,
               static_cast<unsigned long long>(o.segment), strerror(errno));
  }
  for (auto& [seq, seg] : _segments) {
    if (seg.fd < 0) continue;
    fdatasync(seg.fd);
    ::close(seg.fd);
    seg.fd = -1;
  }
}

}  // namespace ringrelay::spool
