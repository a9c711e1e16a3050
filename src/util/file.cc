#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ringrelay/util/file.hh>
#include <stdexcept>

namespace ringrelay::util {
namespace {

class descriptor {
 public:
  explicit descriptor(int fd) : _fd(fd) {}
  ~descriptor() {
    if (_fd >= 0) ::close(_fd);
  }
  descriptor(const descriptor&) = delete;
  descriptor& operator=(const descriptor&) = delete;
  int get() const { return _fd; }

 private:
  int _fd;
};

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

bool write_file_atomically(const std::string& path, std::string_view contents, mode_t mode) {
  const std::string dir = parent_of(path);
  std::string temp = path + ".XXXXXX";
  descriptor fd(mkostemp(temp.data(), O_CLOEXEC));
  if (fd.get() < 0)
    throw std::runtime_error("cannot write " + path + ": cannot create a temporary file in " + dir +
                             ": " + std::strerror(errno));
  auto fail = [&](const char* step) {
    std::string message = "cannot write " + path + ": " + step + ": " + std::strerror(errno);
    ::unlink(temp.c_str());
    throw std::runtime_error(message);
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) mode = st.st_mode & 07777;
  if (::fchmod(fd.get(), mode) != 0) fail("fchmod");
  for (std::size_t done = 0; done < contents.size();) {
    ssize_t n = ::write(fd.get(), contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("write");
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) fail("fsync");
  if (::rename(temp.c_str(), path.c_str()) != 0) fail("rename");
  descriptor dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  return dir_fd.get() >= 0 && ::fsync(dir_fd.get()) == 0;
}

}  // namespace ringrelay::util
