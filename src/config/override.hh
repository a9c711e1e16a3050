// config/override — `--set dotted.key=value` applied to the JSON tree.
//
// The value is JSON when it parses as JSON, else the text as a string, so
// `--set hostname=mx.example.com` and `--set limits.recipients=50` both do
// what they look like. Path segments name object members; on an array, a
// segment is an index: an existing element, or one past the last to append.
// Missing objects on the way are created. Whether the key is a real one is
// left to validation, which then names this --set. Throws config_error
// prefixed with "--set TEXT: ". Private to the config module.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "json_tree.hh"

namespace ringrelay::config::detail {

// Applies `text` to `root` (an object); the new values get `origin`.
// Returns the dotted key it set.
std::string apply_override(json_value& root, std::string_view text, std::uint32_t origin);

}  // namespace ringrelay::config::detail
