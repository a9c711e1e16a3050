// The verification cache: hits, misses, invalidation when the stored hash
// changes, least-recently-used eviction, and keys that hold no password.
#include <gtest/gtest.h>

#include <ringrelay/auth/verification_cache.hh>
#include <string>

namespace ringrelay::auth {
namespace {

const std::string hash_v1 = "pbkdf2-sha256$1000$c2FsdHNhbHQ=$first";
const std::string hash_v2 = "pbkdf2-sha256$1000$c2FsdHNhbHQ=$second";

TEST(verification_cache, hit_and_miss) {
  verification_cache cache;
  const auto right = cache.make_key("alice", "pw", hash_v1);
  const auto wrong = cache.make_key("alice", "pW", hash_v1);
  EXPECT_FALSE(cache.lookup(right)) << "empty cache";
  cache.insert(right);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_TRUE(cache.lookup(right));
  EXPECT_TRUE(cache.lookup(cache.make_key("alice", "pw", hash_v1))) << "keys are reproducible";
  EXPECT_FALSE(cache.lookup(wrong));
  EXPECT_TRUE(cache.lookup(right)) << "a wrong password does not evict the right one";
  EXPECT_FALSE(cache.lookup(cache.make_key("bob", "pw", hash_v1)));
  EXPECT_FALSE(cache.lookup(cache.make_key("Alice", "pw", hash_v1)));
}

TEST(verification_cache, a_changed_hash_invalidates) {
  verification_cache cache;
  cache.insert(cache.make_key("alice", "old", hash_v1));
  // The password was changed (users.json reloaded): the old one must not
  // log in from the cache, and the entry goes.
  EXPECT_FALSE(cache.lookup(cache.make_key("alice", "old", hash_v2)));
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_FALSE(cache.lookup(cache.make_key("alice", "old", hash_v1)));
  // The new password, verified, replaces it.
  cache.insert(cache.make_key("alice", "new", hash_v2));
  EXPECT_TRUE(cache.lookup(cache.make_key("alice", "new", hash_v2)));
  cache.insert(cache.make_key("alice", "newer", hash_v2));
  EXPECT_EQ(cache.size(), 1u) << "one entry per user";
  EXPECT_FALSE(cache.lookup(cache.make_key("alice", "new", hash_v2)));
  EXPECT_TRUE(cache.lookup(cache.make_key("alice", "newer", hash_v2)));
  cache.erase("alice");
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_FALSE(cache.lookup(cache.make_key("alice", "newer", hash_v2)));
  cache.erase("nobody");
}

TEST(verification_cache, evicts_the_least_recently_used) {
  verification_cache cache(3);
  EXPECT_EQ(cache.capacity(), 3u);
  auto key = [&](const char* user) { return cache.make_key(user, "pw", hash_v1); };
  cache.insert(key("a"));
  cache.insert(key("b"));
  cache.insert(key("c"));
  EXPECT_TRUE(cache.lookup(key("a")));  // b is now the oldest
  cache.insert(key("d"));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_FALSE(cache.lookup(key("b")));
  EXPECT_TRUE(cache.lookup(key("a")));
  EXPECT_TRUE(cache.lookup(key("c")));
  EXPECT_TRUE(cache.lookup(key("d")));
  // a is oldest now; re-inserting it makes it newest.
  cache.insert(key("a"));
  cache.insert(key("e"));
  EXPECT_FALSE(cache.lookup(key("c")));
  EXPECT_TRUE(cache.lookup(key("a")));
  // Many more users than slots: the size stays bounded.
  for (int i = 0; i < 1000; ++i) cache.insert(key(("u" + std::to_string(i)).c_str()));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_TRUE(cache.lookup(key("u999")));
  EXPECT_FALSE(cache.lookup(key("u996")));
}

TEST(verification_cache, keys_hold_no_password) {
  verification_cache cache;
  const auto k = cache.make_key("alice", "hunter2hunter2hunter2", hash_v1);
  const std::string tag(k.tag.begin(), k.tag.end());
  EXPECT_EQ(tag.find("hunter2"), std::string::npos);
  // The username is bound to the password: no shifting octets between them.
  EXPECT_NE(cache.make_key("ab", "c", hash_v1).tag, cache.make_key("a", "bc", hash_v1).tag);
  // Each cache has its own secret: a tag is useless elsewhere.
  verification_cache other;
  EXPECT_NE(other.make_key("alice", "hunter2hunter2hunter2", hash_v1).tag, k.tag);
  EXPECT_EQ(other.make_key("alice", "x", hash_v1).hash_digest, k.hash_digest);
}

}  // namespace
}  // namespace ringrelay::auth
