// util/crc32c — CRC-32C (Castagnoli), the checksum of spool records.
//
// Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at
// first use) and a table-driven version otherwise; both give the same
// value. Pure function, any thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ringrelay::util {

// Extends `crc` (0 to start) over `len` bytes at `data`.
std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t len);

// The portable version, exposed so tests can compare the two.
std::uint32_t crc32c_portable(std::uint32_t crc, const void* data, std::size_t len);

}  // namespace ringrelay::util
