// run_dir.cpp: the lock, the writability probe, stale temporaries and the
// metrics file's repair, with POSIX calls where the standard library has none.
#include "apps/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "apps/errors.h"
#include "engine/errors.h"

namespace cvae::app {
namespace {

namespace fs = std::filesystem;

std::string errno_text() { return std::strerror(errno); }

// Writes all of bytes to fd; false with errno set on failure.
bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

RunDirLock::RunDirLock(const fs::path& dir) {
  const fs::path file = dir / ".cvae.lock";
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Refused(dir.string() + ": cannot create the lock file (" + errno_text() + ")");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    char buf[64] = {};
    ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    std::string owner = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!owner.empty() && (owner.back() == '\n' || owner.back() == ' ')) owner.pop_back();
    ::close(fd_);
    fd_ = -1;
    if (e != EWOULDBLOCK) throw Refused(file.string() + ": cannot lock (" + std::strerror(e) + ")");
    throw Refused(dir.string() + " is in use by another cvae train (" +
                  (owner.empty() ? std::string("process unknown") : owner) +
                  "); wait for it to finish or stop it, or choose another --out");
  }
  const std::string owner = "pid " + std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || !write_all(fd_, owner.data(), owner.size())) {
    const std::string err = errno_text();
    ::close(fd_);
    fd_ = -1;
    throw Refused(dir.string() + ": not writable (" + err + ")");
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock; the file stays (removing it would race)
}

void prepare_writable_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Refused(dir.string() + ": cannot create the directory (" + ec.message() + ")");
  if (!fs::is_directory(dir, ec)) throw Refused(dir.string() + ": not a directory");
  const fs::path probe = dir / (".cvae-write-probe." + std::to_string(::getpid()));
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && write_all(fd, "x", 1) && ::fsync(fd) == 0;
  const std::string err = errno_text();
  if (fd >= 0) ::close(fd);
  ::unlink(probe.c_str());
  if (!ok) throw Refused(dir.string() + ": not writable (" + err + ")");
}

void remove_stale_temporaries(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    // Our writers' temporaries: NAME.tmp.PID (safetensors, metrics), NAME.tmp-PID-N (PNG).
    bool temporary = name.find(".tmp.") != std::string::npos || name.find(".tmp-") != std::string::npos;
    if (temporary && entry.is_regular_file(ec)) fs::remove(entry.path(), ec);
  }
}

void append_line(const fs::path& file, const std::string& line) {
  const std::string bytes = line + "\n";
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw WriteError(file.string() + ": cannot open for appending (" + errno_text() + ")");
  const off_t start = ::lseek(fd, 0, SEEK_END);
  errno = 0;
  ssize_t w = ::write(fd, bytes.data(), bytes.size());  // one call: the line is whole or absent
  bool ok = w == static_cast<ssize_t>(bytes.size()) && ::fsync(fd) == 0;
  const std::string err = w >= 0 && !ok && errno == 0 ? "short write" : errno_text();
  // A partial line (no space left): cut it off so the file stays whole lines.
  // If even that fails, reconcile_metrics drops the torn line on resume.
  if (!ok && start >= 0) {
    int ignored = ::ftruncate(fd, start);
    (void)ignored;
  }
  ::close(fd);
  if (!ok) throw WriteError(file.string() + ": cannot append (" + err + ")");
}

void write_file_atomic(const fs::path& file, const std::string& bytes) {
  const fs::path tmp = file.string() + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw WriteError(file.string() + ": cannot create a temporary file beside it (" + errno_text() + ")");
  bool ok = write_all(fd, bytes.data(), bytes.size()) && ::fsync(fd) == 0;
  const std::string err = errno_text();
  ok = ::close(fd) == 0 && ok;
  if (ok && std::rename(tmp.c_str(), file.c_str()) != 0) ok = false;
  if (!ok) {
    ::unlink(tmp.c_str());
    throw WriteError(file.string() + ": cannot write (" + err + ")");
  }
}

void reconcile_metrics(const fs::path& file, long long epoch, const std::string& epoch_line) {
  std::string before;
  {
    std::ifstream in(file, std::ios::binary);
    if (in) before.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::map<long long, std::string> kept;  // epoch -> its first line
  std::istringstream lines(before);
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("epoch") || !j["epoch"].is_number_integer()) continue;
    long long e = j["epoch"].get<long long>();
    if (e >= 1 && e <= epoch && !kept.count(e)) kept[e] = line;
  }
  if (epoch >= 1 && !kept.count(epoch) && !epoch_line.empty()) kept[epoch] = epoch_line;
  std::string after;
  for (auto& [e, line] : kept) after += line + "\n";
  if (after != before && !(after.empty() && !fs::exists(file))) write_file_atomic(file, after);
}

}  // namespace cvae::app
