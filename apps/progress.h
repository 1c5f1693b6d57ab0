// progress.h: the per-epoch progress display. On a terminal, one line redrawn
// in place (step, images/s, running loss, ETA); otherwise plain lines at a
// fixed step interval, so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace cvae::app {

class ProgressBar {
 public:
  // `total` steps in this epoch, starting at `first` (after a resume).
  ProgressBar(std::string label, int64_t total, int64_t first, int64_t plain_every);
  // `images` since the last update; updates may skip steps (GPU runs read the
  // loss back only every few steps).
  void update(int64_t step, int64_t images, double running_loss);
  void finish();  // ends the line on a terminal

 private:
  std::string label_;
  int64_t total_, first_, plain_every_;
  bool tty_;
  int64_t last_plain_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int64_t images_ = 0;
};

std::string format_duration(double seconds);  // "1:05" or "1:02:03"

}  // namespace cvae::app
