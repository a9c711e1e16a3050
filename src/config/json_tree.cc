#include "json_tree.hh"

#include <simdjson.h>

#include <cstdio>

namespace ringrelay::config::detail {
namespace {

namespace od = simdjson::ondemand;

// Deeper than any config needs; bounds the builder's recursion.
constexpr int max_depth = 64;

struct syntax_error {
  std::string message;
};

struct duplicate_error {
  std::string path;
};

void check(simdjson::error_code e) {
  if (e != simdjson::SUCCESS) throw syntax_error{simdjson::error_message(e)};
}

// `value::raw_json_token` returns a view, `document::raw_json_token` a
// result: one spelling for both. The token runs up to the next token, so
// trailing whitespace is trimmed.
std::string_view token_of(od::value& v) {
  return v.raw_json_token();
}
std::string_view token_of(od::document& d) {
  std::string_view t;
  check(d.raw_json_token().get(t));
  return t;
}
std::string trimmed(std::string_view t) {
  while (!t.empty() &&
         (t.back() == ' ' || t.back() == '\t' || t.back() == '\n' || t.back() == '\r'))
    t.remove_suffix(1);
  return std::string(t);
}

// Walks an On Demand value (or the document itself, whose scalars are read
// through the same calls) into a json_value, depth first, in input order.
class builder {
 public:
  explicit builder(std::uint32_t origin) : _origin(origin) {}

  template <class V>
  json_value build(V& v, const std::string& path, int depth) {
    if (depth > max_depth) throw syntax_error{"nested more than 64 levels deep"};
    json_value out;
    out.origin = _origin;
    od::json_type t{};
    check(v.type().get(t));
    switch (t) {
      case od::json_type::object:
        return build_object(v, path, depth, std::move(out));
      case od::json_type::array:
        return build_array(v, path, depth, std::move(out));
      case od::json_type::number:
        return build_number(v, std::move(out));
      case od::json_type::string: {
        std::string_view s;
        check(v.get_string().get(s));
        out.type = json_value::kind::string;
        out.text = std::string(s);
        return out;
      }
      case od::json_type::boolean:
        check(v.get_bool().get(out.boolean));
        out.type = json_value::kind::boolean;
        return out;
      case od::json_type::null: {
        bool is_null = false;
        check(v.is_null().get(is_null));
        if (!is_null) throw syntax_error{simdjson::error_message(simdjson::N_ATOM_ERROR)};
        return out;
      }
    }
    throw syntax_error{"unknown JSON value type"};
  }

 private:
  template <class V>
  json_value build_object(V& v, const std::string& path, int depth, json_value out) {
    out.type = json_value::kind::object;
    od::object object;
    check(v.get_object().get(object));
    for (auto field : object) {
      std::string_view key_view;
      check(field.unescaped_key().get(key_view));
      std::string key(key_view);
      std::string child_path = path.empty() ? key : path + "." + key;
      if (out.find(key)) throw duplicate_error{child_path};
      od::value child;
      check(field.value().get(child));
      out.members.push_back({std::move(key), build(child, child_path, depth + 1)});
    }
    return out;
  }

  template <class V>
  json_value build_array(V& v, const std::string& path, int depth, json_value out) {
    out.type = json_value::kind::array;
    od::array array;
    check(v.get_array().get(array));
    for (auto element : array) {
      od::value child;
      check(element.get(child));
      std::string child_path = path + (path.empty() ? "" : ".") + std::to_string(out.items.size());
      out.items.push_back(build(child, child_path, depth + 1));
    }
    return out;
  }

  // Integers that fit in int64 keep their value; larger integers and
  // fractions are validated and kept as text only, so a range check can
  // still quote them.
  template <class V>
  json_value build_number(V& v, json_value out) {
    out.type = json_value::kind::number;
    out.text = trimmed(token_of(v));
    od::number_type nt{};
    check(v.get_number_type().get(nt));
    if (nt == od::number_type::signed_integer) {
      std::int64_t i = 0;
      check(v.get_int64().get(i));
      out.integer = i;
    } else if (nt == od::number_type::unsigned_integer) {
      std::uint64_t u = 0;
      check(v.get_uint64().get(u));
    } else {
      double d = 0;
      check(v.get_double().get(d));
    }
    return out;
  }

  std::uint32_t _origin;
};

// simdjson reports some errors at the position where it noticed them and
// none for errors found while indexing the whole input.
std::optional<std::size_t> error_offset(od::document& doc, const simdjson::padded_string& input) {
  const char* at = nullptr;
  if (doc.current_location().get(at) != simdjson::SUCCESS) return std::nullopt;
  return static_cast<std::size_t>(at - input.data());
}

}  // namespace

const json_value* json_value::find(std::string_view key) const {
  for (const auto& m : members)
    if (m.key == key) return &m.value;
  return nullptr;
}

json_value* json_value::find(std::string_view key) {
  for (auto& m : members)
    if (m.key == key) return &m.value;
  return nullptr;
}

void json_value::set_origin(std::uint32_t o) {
  origin = o;
  for (auto& i : items) i.set_origin(o);
  for (auto& m : members) m.value.set_origin(o);
}

json_parse_result parse_json(std::string_view text, std::uint32_t origin) {
  json_parse_result result;
  simdjson::padded_string input(text);
  od::parser parser;
  od::document doc;
  if (auto e = parser.iterate(input).get(doc)) {
    result.error = simdjson::error_message(e);
    return result;
  }
  try {
    result.value = builder(origin).build(doc, "", 0);
  } catch (const syntax_error& e) {
    result.error = e.message;
    // "Ended early" is detected while indexing: its position is not where
    // the problem is, so none is given rather than a wrong one.
    if (e.message != simdjson::error_message(simdjson::INCOMPLETE_ARRAY_OR_OBJECT))
      result.offset = error_offset(doc, input);
    return result;
  } catch (const duplicate_error& e) {
    result.error = "duplicate key " + quote(e.path);
    result.duplicate_key = true;
    return result;
  }
  // On Demand stops after the first complete value; anything but
  // whitespace after it ("{}{}") leaves the cursor inside the input.
  if (auto at = error_offset(doc, input)) {
    result.value.reset();
    result.error = simdjson::error_message(simdjson::TRAILING_CONTENT);
    result.offset = at;
  }
  return result;
}

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

namespace {

void render_into(const json_value& v, std::string& out, std::size_t max) {
  if (out.size() > max) return;
  switch (v.type) {
    case json_value::kind::null:
      out += "null";
      return;
    case json_value::kind::boolean:
      out += v.boolean ? "true" : "false";
      return;
    case json_value::kind::number:
      out += v.text;
      return;
    case json_value::kind::string:
      out += quote(v.text);
      return;
    case json_value::kind::array:
      out += '[';
      for (std::size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ',';
        render_into(v.items[i], out, max);
      }
      out += ']';
      return;
    case json_value::kind::object:
      out += '{';
      for (std::size_t i = 0; i < v.members.size(); ++i) {
        if (i) out += ',';
        out += quote(v.members[i].key) + ':';
        render_into(v.members[i].value, out, max);
      }
      out += '}';
      return;
  }
}

}  // namespace

std::string render(const json_value& v, std::size_t max) {
  std::string out;
  render_into(v, out, max);
  if (out.size() > max) out = out.substr(0, max) + "...";
  return out;
}

std::string_view describe(const json_value& v) {
  switch (v.type) {
    case json_value::kind::null:
      return "null";
    case json_value::kind::boolean:
      return "a boolean";
    case json_value::kind::number:
      return v.integer ? "an integer" : "a number";
    case json_value::kind::string:
      return "a string";
    case json_value::kind::array:
      return "an array";
    case json_value::kind::object:
      return "an object";
  }
  return "a value";
}

}  // namespace ringrelay::config::detail
