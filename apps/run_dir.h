// run_dir.h: a training run's directory on disk. It is locked by the process
// that trains in it, checked writable before any work starts, cleared of the
// temporaries a killed writer left, and its metrics.jsonl is kept in step with
// the checkpoint (the checkpoint is the record: an epoch appears once).
#pragma once

#include <filesystem>
#include <string>

namespace cvae::app {

// An exclusive flock(2) on DIR/.cvae.lock, which holds the owner's pid. The
// kernel releases it when the process ends, however it ends (kill -9 too).
class RunDirLock {
 public:
  // Throws Refused naming the other process when it holds the lock, or when
  // the lock file cannot be created (the directory is not writable).
  explicit RunDirLock(const std::filesystem::path& dir);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  int fd_ = -1;
};

// Creates dir (and its parents) when missing; throws Refused when it cannot be
// created or a file in it cannot be created and written (a byte is written,
// synced and removed).
void prepare_writable_dir(const std::filesystem::path& dir);

// Removes "*.tmp.*" files that an atomic write killed half-way left in dir
// (call with the lock held: no other writer is running there).
void remove_stale_temporaries(const std::filesystem::path& dir);

// Rewrites metrics.jsonl (atomically, only when it changes) to hold exactly
// one line per epoch 1..epoch, in order: the first parsable line of each, lines
// of later epochs dropped (written by a run killed before its checkpoint),
// and `epoch_line` (the checkpoint's copy of its own epoch's line) appended
// when that epoch's line is missing (killed after the checkpoint).
void reconcile_metrics(const std::filesystem::path& file, long long epoch,
                       const std::string& epoch_line);

// Appends one line with a single write(2) (so a kill leaves the line whole or
// absent) and fsyncs. Throws WriteError.
void append_line(const std::filesystem::path& file, const std::string& line);

// Writes a whole file atomically (temporary beside it, fsync, rename). Throws WriteError.
void write_file_atomic(const std::filesystem::path& file, const std::string& bytes);

}  // namespace cvae::app
