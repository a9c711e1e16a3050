// config/json_text — writing JSON text: the string literal of any octets.
//
// Used where ringrelay writes JSON itself (the control socket's replies,
// ringrelayctl's users.json). Pure; any thread.
#pragma once

#include <string>
#include <string_view>

namespace ringrelay::config {

// `s` as a JSON string literal, quotes included. Control characters are
// escaped; UTF-8 passes through, and text that is not valid UTF-8 (a file
// name, say) has its high octets escaped one by one so the result stays
// valid JSON.
std::string json_quote(std::string_view s);

}  // namespace ringrelay::config
