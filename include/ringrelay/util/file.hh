// util/file — small whole-file writes that survive a crash.
//
// `write_file_atomically` replaces `path` with `contents` so that after a
// crash at any moment the path holds either the old contents or the new
// ones, never a mix: a temporary file in the same directory is written,
// fsynced, renamed over `path`, and the directory is fsynced so the rename
// itself is durable. A new file gets `mode`; an existing one keeps its mode.
//
// Blocking I/O: startup, worker and control threads, never a shard.
// Errors up to the rename throw std::runtime_error naming the path, the
// step and errno's text; the temporary file is removed and `path` is left
// as it was. After the rename, a failed fsync of the directory returns
// false: the new contents are in place, but a crash may still bring the
// old ones back. Callers decide what that means for them.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace ringrelay::util {

[[nodiscard]] bool write_file_atomically(const std::string& path, std::string_view contents,
                                         mode_t mode = 0600);

}  // namespace ringrelay::util
