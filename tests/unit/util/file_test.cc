// util/file: write_file_atomically replaces whole files, keeps an existing
// file's mode, and fails without touching the target.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <ringrelay/util/file.hh>
#include <sstream>
#include <stdexcept>
#include <string>

namespace ringrelay::util {
namespace {

namespace fs = std::filesystem;

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "rr-file-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    _path = tmpl;
  }
  ~temp_dir() { fs::remove_all(_path); }
  const std::string& path() const { return _path; }

 private:
  std::string _path;
};

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(write_file_atomically, creates_and_replaces_leaving_no_temporary_file) {
  temp_dir dir;
  const std::string path = dir.path() + "/state.json";
  EXPECT_TRUE(write_file_atomically(path, "first", 0640));
  EXPECT_EQ(read(path), "first");
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  chmod(path.c_str(), 0604);
  std::string big(1 << 20, 'x');
  EXPECT_TRUE(write_file_atomically(path, big));
  EXPECT_EQ(read(path), big);
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read)
      << "an existing file keeps its mode";
  EXPECT_TRUE(write_file_atomically(path, ""));
  EXPECT_EQ(read(path), "");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator{}), 1);
}

TEST(write_file_atomically, a_failure_names_the_path_and_changes_nothing) {
  temp_dir dir;
  const std::string missing = dir.path() + "/no/such/dir/state.json";
  try {
    (void)write_file_atomically(missing, "x");
    ADD_FAILURE() << "wrote into a missing directory";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  // The target is a directory: rename fails, the temporary file goes.
  const std::string target = dir.path() + "/taken";
  fs::create_directory(target);
  fs::create_directory(target + "/inside");
  EXPECT_THROW((void)write_file_atomically(target, "x"), std::runtime_error);
  EXPECT_TRUE(fs::is_directory(target));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator{}), 1);
}

}  // namespace
}  // namespace ringrelay::util
