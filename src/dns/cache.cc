#include <algorithm>
#include <ringrelay/dns/cache.hh>

namespace ringrelay::dns {
namespace {

std::string rcode_text(rcode c) {
  switch (c) {
    case rcode::formerr:
      return "the server answered FORMERR";
    case rcode::notimp:
      return "the server answered NOTIMP";
    case rcode::refused:
      return "the server answered REFUSED";
    default:
      return "the server answered RCODE " + std::to_string(static_cast<unsigned>(c));
  }
}

}  // namespace

const char* status_name(lookup_status s) {
  switch (s) {
    case lookup_status::ok:
      return "ok";
    case lookup_status::nxdomain:
      return "nxdomain";
    case lookup_status::nodata:
      return "nodata";
    case lookup_status::servfail:
      return "servfail";
    case lookup_status::timeout:
      return "timeout";
    case lookup_status::error:
      return "error";
  }
  return "error";
}

std::vector<const record*> lookup_result::of_type(rr_type t) const {
  std::vector<const record*> out;
  for (const auto& r : records)
    if (r.type == t) out.push_back(&r);
  return out;
}

lookup_result result_of(const answer& a, rr_type asked, const cache_limits& limits) {
  lookup_result r;
  r.records = a.records;
  const auto negative = [&] {
    r.ttl =
        std::min(a.negative_ttl().value_or(limits.default_negative_ttl), limits.max_negative_ttl);
  };
  switch (a.code) {
    case rcode::noerror:
      if (std::any_of(r.records.begin(), r.records.end(),
                      [&](const record& rec) { return rec.type == asked; })) {
        r.status = lookup_status::ok;
        r.ttl = limits.max_ttl;
        for (const auto& rec : r.records) r.ttl = std::min(r.ttl, rec.ttl);
      } else {
        // RFC 2308 §2.2: NOERROR without the asked type is NODATA.
        r.status = lookup_status::nodata;
        negative();
      }
      break;
    case rcode::nxdomain:
      r.status = lookup_status::nxdomain;
      negative();
      break;
    case rcode::servfail:
      r.status = lookup_status::servfail;
      break;
    default:
      r.status = lookup_status::error;
      r.detail = rcode_text(a.code);
      break;
  }
  return r;
}

std::string cache::key(std::string_view name, rr_type type) {
  std::string k(name);
  const auto t = static_cast<std::uint16_t>(type);
  // A name never holds a NUL (answer.hh escapes it), so this cannot collide.
  k.push_back('\0');
  k.push_back(static_cast<char>(t >> 8));
  k.push_back(static_cast<char>(t & 0xff));
  return k;
}

std::optional<lookup_result> cache::find(std::string_view name, rr_type type, std::int64_t now_ms) {
  auto it = _index.find(key(name, type));
  if (it == _index.end()) return std::nullopt;
  const auto pos = it->second;
  if (pos->expires_ms <= now_ms) {
    _lru.erase(pos);
    _index.erase(it);
    return std::nullopt;
  }
  _lru.splice(_lru.begin(), _lru, pos);
  lookup_result r = pos->result;
  r.ttl = static_cast<std::uint32_t>((pos->expires_ms - now_ms + 999) / 1000);
  return r;
}

void cache::store(std::string_view name, rr_type type, const lookup_result& r,
                  std::int64_t now_ms) {
  if (r.ttl == 0) return;
  std::string k = key(name, type);
  const std::int64_t expires = now_ms + std::int64_t{r.ttl} * 1000;
  if (auto it = _index.find(k); it != _index.end()) {
    it->second->result = r;
    it->second->expires_ms = expires;
    _lru.splice(_lru.begin(), _lru, it->second);
    return;
  }
  _lru.push_front(entry{k, r, expires});
  _index.emplace(std::move(k), _lru.begin());
  if (_lru.size() > _limits.max_entries) {
    _index.erase(_lru.back().key);
    _lru.pop_back();
  }
}

}  // namespace ringrelay::dns
