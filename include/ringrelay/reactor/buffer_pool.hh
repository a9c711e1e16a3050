// reactor/buffer_pool — the shard's provided-buffer ring for multishot recv.
//
// `count` buffers of `size` bytes are registered with the ring as buffer
// group `group`; the kernel picks one for each recv completion. A buffer
// goes back to the kernel only when its last user lets go: the connection
// that parsed it, a spool write still in flight, later a zero-copy send.
// Users take references with `ref` and drop them with `unref`; the ring is
// refilled in one batch per loop turn (`publish`).
//
// Shard-local: one pool per loop, used from the loop's thread only.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <span>
#include <vector>

namespace ringrelay::reactor {

// Anything that lends out numbered, reference-counted buffers: the kernel's
// provided-buffer ring, or plain memory for TLS plaintext. The spool holds a
// reference while a write from the buffer is in flight.
class buffer_source {
 public:
  virtual void ref(std::uint16_t id) = 0;
  virtual void unref(std::uint16_t id) = 0;
  virtual std::span<const char> data(std::uint16_t id, std::uint32_t len) const = 0;

 protected:
  ~buffer_source() = default;
};

class buffer_pool final : public buffer_source {
 public:
  buffer_pool(io_uring* ring, std::uint16_t group, std::uint32_t count, std::uint32_t size);
  ~buffer_pool();
  buffer_pool(const buffer_pool&) = delete;
  buffer_pool& operator=(const buffer_pool&) = delete;

  std::uint16_t group() const { return _group; }
  std::uint32_t size() const { return _size; }

  // The bytes of buffer `id` as filled by a completion of `len` bytes. The
  // completion gives the caller the first reference.
  std::span<const char> data(std::uint16_t id, std::uint32_t len) const override {
    return {_memory + std::size_t{id} * _size, len};
  }
  void ref(std::uint16_t id) override { ++_refs[id]; }
  void unref(std::uint16_t id) override;

  // Buffers the kernel has not handed out yet; low means receivers should
  // slow down (backpressure).
  std::uint32_t available() const { return _available; }
  std::uint32_t count() const { return _count; }

  // Makes buffers returned this turn visible to the kernel.
  void publish();

  // Called for each completion that consumed a buffer.
  void taken(std::uint16_t id);

 private:
  io_uring* _ring;
  std::uint16_t _group;
  std::uint32_t _count;
  std::uint32_t _size;
  char* _memory = nullptr;
  io_uring_buf_ring* _br = nullptr;
  std::size_t _br_bytes = 0;
  std::vector<std::uint16_t> _refs;
  std::uint32_t _returned = 0;  // added since the last publish
  std::uint32_t _available = 0;
};

// Buffers in plain memory with the same reference counting, for bytes the
// shard produces itself (TLS plaintext). `acquire` hands one out with one
// reference, or returns false when all are in use (the caller waits).
class local_pool final : public buffer_source {
 public:
  local_pool(std::uint32_t count, std::uint32_t size);
  ~local_pool();
  local_pool(const local_pool&) = delete;
  local_pool& operator=(const local_pool&) = delete;

  bool acquire(std::uint16_t& id);
  char* writable(std::uint16_t id) { return _memory + std::size_t{id} * _size; }
  std::uint32_t size() const { return _size; }
  std::size_t available() const { return _free.size(); }

  std::span<const char> data(std::uint16_t id, std::uint32_t len) const override {
    return {_memory + std::size_t{id} * _size, len};
  }
  void ref(std::uint16_t id) override { ++_refs[id]; }
  void unref(std::uint16_t id) override;

 private:
  std::uint32_t _count;
  std::uint32_t _size;
  char* _memory = nullptr;
  std::vector<std::uint16_t> _refs;
  std::vector<std::uint16_t> _free;
};

}  // namespace ringrelay::reactor
