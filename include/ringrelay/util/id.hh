// util/id — queue IDs.
//
// A queue ID names one accepted message from acceptance to delivery, in logs,
// replies ("queued as ID") and the spool. It is unique across shards and
// restarts: wall-clock seconds, the shard number and a per-shard counter.
// Each shard owns its own generator; not thread-safe by design.
#pragma once

#include <cstdint>
#include <string>

namespace ringrelay::util {

using queue_id = std::uint64_t;

class queue_id_generator {
 public:
  explicit queue_id_generator(unsigned shard) : _shard(shard & 0x3f) {}
  queue_id next(std::int64_t wall_seconds);

 private:
  unsigned _shard;
  std::int64_t _second = 0;
  std::uint32_t _counter = 0;
};

// 16 upper-case hex digits, fixed width so IDs sort by time.
std::string format_queue_id(queue_id id);
void format_queue_id(queue_id id, char (&out)[17]);

}  // namespace ringrelay::util
